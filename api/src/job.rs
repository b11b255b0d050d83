//! What the operator hands a phase's worker: the phase configuration file, and
//! the environment variables that point at it and at the secrets.
//!
//! The operator writes a [`PhaseJob`] as JSON into a ConfigMap mounted in the
//! worker pod; `tau2-worker <phase> --config <file>` reads it. Paths are those
//! inside the pod.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::bench::{DataVersion, Domain, Split};
use crate::phases::{EvalParams, GrpoParams, PhaseName, RftParams, SftParams};
use crate::user_sim::UserSimulator;

/// Environment variable holding the path of the phase configuration file.
pub const ENV_PHASE_CONFIG: &str = "TAU2_PHASE_CONFIG";
/// Environment variable holding the user simulator's API key, when it has one.
pub const ENV_USER_SIM_API_KEY: &str = "TAU2_USER_SIM_API_KEY";
/// Environment variable holding the evaluation user simulator's API key, when it has one.
pub const ENV_EVAL_USER_SIM_API_KEY: &str = "TAU2_EVAL_USER_SIM_API_KEY";
/// Environment variable holding a Hugging Face token for downloads.
pub const ENV_HF_TOKEN: &str = "HF_TOKEN";
/// File name of the configuration inside its ConfigMap.
pub const CONFIG_FILE_NAME: &str = "phase.json";
/// Environment variable holding the attempt number (1 for the first Job of a phase); the same as
/// [`PhaseJob::attempt`], for scripts and logs.
pub const ENV_ATTEMPT: &str = "TAU2_ATTEMPT";
/// Environment variable holding the progress service's gRPC address, when there is one.
pub const ENV_PROGRESS_ENDPOINT: &str = "TAU2_PROGRESS_ENDPOINT";
/// Environment variable holding the pipeline's progress token (also in [`ProgressEndpoint::token_file`]).
pub const ENV_PROGRESS_TOKEN: &str = "TAU2_PROGRESS_TOKEN";
/// Environment variable holding the file the worker writes its [`PhaseSummary`] to when the phase ends;
/// Kubernetes keeps it as the container's termination message, so the operator recovers the outcome
/// even when a progress report was lost.
pub const ENV_TERMINATION_MESSAGE_PATH: &str = "TAU2_TERMINATION_MESSAGE_PATH";

/// Floating-point format of the weights.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    #[default]
    Bfloat16,
    Float16,
    Float32,
}

/// The pipeline a job belongs to.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PipelineRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

/// The weights a phase reads.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ModelInput {
    /// The pipeline's base model (HF layout); RFT may retrain from it.
    pub base: PathBuf,
    /// Where the base comes from when the worker has to fetch or create it into `base` first
    /// (`hf://<org>/<repo>[@<revision>]` or `builtin://tiny`); unset when `base` is already a model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The checkpoint this phase starts from: the previous phase's final one, or the base.
    pub init: PathBuf,
    pub dtype: Dtype,
}

/// The tau2-bench data and tasks.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DataInput {
    /// Directory in tau2-bench's layout.
    pub dir: PathBuf,
    pub version: DataVersion,
    pub domains: Vec<Domain>,
    pub train_split: Split,
    pub eval_split: Split,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_eval_tasks_per_domain: Option<i32>,
}

/// The phase to run and its hyper-parameters.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum PhaseParams {
    Sft(SftParams),
    Rft(RftParams),
    Grpo(GrpoParams),
    Eval(EvalParams),
}

impl PhaseParams {
    pub fn phase(&self) -> PhaseName {
        match self {
            PhaseParams::Sft(_) => PhaseName::Sft,
            PhaseParams::Rft(_) => PhaseName::Rft,
            PhaseParams::Grpo(_) => PhaseName::Grpo,
            PhaseParams::Eval(_) => PhaseName::Eval,
        }
    }
}

/// Where progress reports go.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ProgressEndpoint {
    /// gRPC address of the operator's progress service, e.g. `http://tau2-operator.tau2-system:9090`.
    pub address: String,
    /// File holding the pipeline's bearer token.
    pub token_file: PathBuf,
}

/// Everything one phase's worker needs to know.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PhaseJob {
    pub pipeline: PipelineRef,
    /// 1 for the first Job of the phase, 2 for its first retry...
    pub attempt: i32,
    pub seed: i64,
    pub model: ModelInput,
    pub data: DataInput,
    /// The user simulator; its API key, if any, is in [`ENV_USER_SIM_API_KEY`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_simulator: Option<UserSimulator>,
    /// The phase's directory on the storage volume: checkpoints, episodes, `results.json`.
    pub output_dir: PathBuf,
    pub params: PhaseParams,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<ProgressEndpoint>,
}

/// What a worker writes to [`ENV_TERMINATION_MESSAGE_PATH`] when a phase ends: JSON of at most 4 KiB
/// (Kubernetes truncates longer termination messages).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PhaseSummary {
    pub succeeded: bool,
    /// The final checkpoint, relative to the pipeline's root on the storage volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_checkpoint: Option<String>,
    /// The last step done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<i64>,
    /// Why the phase failed, or a short note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Evaluation results, in the shape of the pipeline status' `results`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results: Option<serde_json::Value>,
}

/// Why a phase configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read phase configuration {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("phase configuration {path} is invalid: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
}

impl PhaseJob {
    /// Reads a configuration file, naming the file and the problem on failure.
    pub fn read(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    pub fn phase(&self) -> PhaseName {
        self.params.phase()
    }
}
