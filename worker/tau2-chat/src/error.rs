//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong while loading, rendering, tokenizing or
/// building training sequences.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid JSON in {path}: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("invalid tokenizer configuration: {0}")]
    Config(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The template failed to compile or raised while rendering (including
    /// the template's own `raise_exception`).
    #[error("chat template: {0}")]
    Template(String),
    /// Rendering a prefix of the conversation does not give a prefix of the
    /// whole rendering, so per-turn masks or deltas cannot be derived.
    #[error(
        "the chat template is not prefix-stable at message {message}: rendering messages[..{end}] \
         is not a prefix of the full conversation (first difference at byte {at}: {prefix:?} vs {full:?})"
    )]
    NotPrefixStable {
        message: usize,
        end: usize,
        at: usize,
        prefix: String,
        full: String,
    },
    /// Tokenizing the conversation piece by piece gives other ids than
    /// tokenizing it whole: a BPE merge spans a turn boundary.
    #[error(
        "tokens merge across the boundary before byte {at} of the rendered conversation (near {near:?}); \
         segment-wise ids differ from whole-text ids at token {token}"
    )]
    TokenBoundary {
        at: usize,
        token: usize,
        near: String,
    },
    /// An assistant turn rendered without the end-of-turn token.
    #[error("assistant message {message} renders without the end-of-turn token {token:?}")]
    NoEndOfTurn { message: usize, token: String },
    /// An API used out of order (e.g. two generations without a response).
    #[error("{0}")]
    State(String),
    #[error("invalid message: {0}")]
    Message(String),
}

impl ChatError {
    pub(crate) fn tokenizer(e: impl std::fmt::Display) -> Self {
        ChatError::Tokenizer(e.to_string())
    }
}

pub type Result<T, E = ChatError> = std::result::Result<T, E>;
