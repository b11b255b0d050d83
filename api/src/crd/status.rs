//! `Tau2Pipeline.status`: what the operator observed, written by it alone.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::bench::{Domain, Split};
use crate::phases::PhaseName;

/// Overall state of a pipeline.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PipelinePhase {
    /// No worker pod runs: the first Job is being created, its pod waits to be scheduled or for its
    /// image, or a failed attempt waits for its retry. The `Running` condition says why.
    #[default]
    Pending,
    /// The current phase's worker pod runs.
    Running,
    /// Every enabled phase succeeded.
    Succeeded,
    /// A phase failed more often than its backoffLimit allows, or the pipeline cannot run.
    Failed,
    /// `spec.suspend` is set; nothing runs.
    Suspended,
}

impl PipelinePhase {
    /// Succeeded and Failed never change again.
    pub fn is_terminal(self) -> bool {
        matches!(self, PipelinePhase::Succeeded | PipelinePhase::Failed)
    }
}

/// State of one phase.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PhaseState {
    /// Not started yet.
    #[default]
    Pending,
    /// Its Job exists and has not finished (its pod may still be waiting to be scheduled).
    Running,
    /// Finished; its final checkpoint is recorded.
    Succeeded,
    /// Failed more often than its backoffLimit allows.
    Failed,
    /// Disabled in the spec.
    Skipped,
}

/// Observed state of a Tau2Pipeline.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Tau2PipelineStatus {
    /// Overall state: Pending, Running, Succeeded, Failed or Suspended.
    #[serde(default)]
    pub phase: PipelinePhase,
    /// The phase running now, or the one that ended the pipeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_phase: Option<PhaseName>,
    /// Steps done in the current phase, e.g. "120/200".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When the first phase's Job was created; from then on the training inputs are immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the pipeline succeeded or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Conditions for `kubectl wait --for=condition=<type>`: Running (False with the reason a pod does not
    /// run: Unschedulable, ImagePullBackOff, BackOff...), Suspended, Succeeded, Failed (with the failed pod's
    /// reason and message).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// One record per phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phases: Option<PhaseStatuses>,
    /// Checkpoints written so far, oldest first (the operator keeps the most recent 100).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checkpoints: Vec<CheckpointRecord>,
    /// Evaluation results, once the eval phase has finished.
    ///
    /// Definitions, for `n` samples of a task of which `c` succeeded (success is a task reward of 1):
    /// pass@1 is the success of the first sample (the model card's pass@1); pass@1 (unbiased) is `c/n`;
    /// pass@k is 1 if any of the first k samples succeeded (the model card's pass@4); pass@k (unbiased) is
    /// `1 - C(n-c, k) / C(n, k)`; pass^k is `C(c, k) / C(n, k)`, the chance that k samples all succeed
    /// (tau2-bench's leaderboard metric). Each is averaged over tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results: Option<EvalResults>,
}

/// The record of each phase.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PhaseStatuses {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sft: Option<PhaseStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rft: Option<PhaseStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpo: Option<PhaseStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval: Option<PhaseStatus>,
}

impl PhaseStatuses {
    pub fn get(&self, phase: PhaseName) -> Option<&PhaseStatus> {
        match phase {
            PhaseName::Sft => self.sft.as_ref(),
            PhaseName::Rft => self.rft.as_ref(),
            PhaseName::Grpo => self.grpo.as_ref(),
            PhaseName::Eval => self.eval.as_ref(),
        }
    }

    pub fn get_mut(&mut self, phase: PhaseName) -> &mut Option<PhaseStatus> {
        match phase {
            PhaseName::Sft => &mut self.sft,
            PhaseName::Rft => &mut self.rft,
            PhaseName::Grpo => &mut self.grpo,
            PhaseName::Eval => &mut self.eval,
        }
    }
}

/// What happened in one phase.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PhaseStatus {
    /// Pending, Running, Succeeded, Failed or Skipped.
    #[serde(default)]
    pub state: PhaseState,
    /// Jobs started for this phase so far (1 + retries).
    #[serde(default)]
    pub attempts: i32,
    /// The Job of the latest attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Latest progress the worker reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<PhaseProgress>,
    /// The checkpoint this phase ended with; the next phase starts from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_checkpoint: Option<String>,
    /// Why the phase is in its state, e.g. the pod's reason and message after a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Progress of a running phase.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PhaseProgress {
    /// Optimizer steps (or, in eval, episodes) done.
    pub step: i64,
    /// Steps the phase will take in all.
    pub total_steps: i64,
    /// Latest metrics by name, e.g. loss, reward, kl, tokensPerSecond.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, f64>,
    /// When the worker reported this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<Time>,
}

/// A complete checkpoint on the pipeline's volume.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointRecord {
    pub phase: PhaseName,
    /// Optimizer step it was taken at.
    pub step: i64,
    /// Directory on the storage volume, relative to the pipeline's root there.
    pub path: String,
    /// When it was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Time>,
    /// The phase's final checkpoint (an HF-format model the next phase starts from).
    #[serde(default)]
    pub r#final: bool,
}

/// Evaluation results; see [`Tau2PipelineStatus::results`] for the definitions.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EvalResults {
    /// The split evaluated.
    pub split: Split,
    /// The k of pass@k and pass^k.
    pub k: i32,
    /// Samples per task.
    pub samples_per_task: i32,
    /// Over all tasks of all domains (each task weighs the same).
    pub overall: PassRates,
    /// Per domain.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["domain"]))]
    pub domains: Vec<DomainPassRates>,
}

/// Pass rates over a set of tasks; see [`EvalResults`] for the definitions.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PassRates {
    /// Tasks evaluated.
    pub tasks: i32,
    /// Share of tasks whose first sample succeeded.
    pub pass_at1: f64,
    /// Mean success rate over all samples (unbiased pass@1).
    pub pass_at1_unbiased: f64,
    /// Share of tasks with a success among the first k samples.
    pub pass_at_k: f64,
    /// Unbiased pass@k estimate from all samples.
    pub pass_at_k_unbiased: f64,
    /// tau2-bench's pass^k: the chance that k samples of a task all succeed.
    pub pass_hat_k: f64,
    /// Mean task reward over all samples.
    pub average_reward: f64,
}

/// Pass rates of one domain.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DomainPassRates {
    pub domain: Domain,
    #[serde(flatten)]
    pub rates: PassRates,
}
