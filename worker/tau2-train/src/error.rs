//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can stop a training phase.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: invalid JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A dataset line that cannot be used at all (not JSON, no messages).
    #[error("{path}:{line}: {message}")]
    Data {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("checkpoint {path}: {message}")]
    Checkpoint { path: PathBuf, message: String },
    #[error("rollout failed: {0}")]
    Rollout(String),
    #[error("model: {0}")]
    Model(#[from] tau2_model::ModelError),
    #[error("chat: {0}")]
    Chat(#[from] tau2_chat::ChatError),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

impl TrainError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn checkpoint(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::Checkpoint {
            path: path.into(),
            message: message.into(),
        }
    }
}

pub type Result<T, E = TrainError> = std::result::Result<T, E>;

/// A phase parameter that must be a positive count (the CRD's i32 fields).
pub(crate) fn positive(name: &str, v: i32) -> Result<usize> {
    usize::try_from(v)
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| TrainError::Config(format!("{name} must be positive, got {v}")))
}
