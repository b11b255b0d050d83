//! What the reconciler reads from the progress service: the latest reports of
//! one pipeline, per phase. The progress store implements [`ProgressSource`]
//! (`crate::progress::source` converts its state into this view); the reconciler only needs this snapshot, so planning
//! stays pure and fixtures can spell progress out in YAML.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::{Deserialize, Serialize};
use tau2_api::crd::EvalResults;
use tau2_api::phases::PhaseName;

/// The latest reports of one pipeline, by phase.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PipelineProgress {
    #[serde(default)]
    pub phases: BTreeMap<PhaseName, PhaseProgressView>,
}

/// The latest reports of one phase (of its newest attempt that reported).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PhaseProgressView {
    pub attempt: u32,
    #[serde(default)]
    pub step: u64,
    #[serde(default)]
    pub total_steps: u64,
    /// Latest value of each metric: loss, reward, tokens_per_second...
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    /// When the latest report was produced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated: Option<Time>,
    /// Checkpoints reported, oldest first.
    #[serde(default)]
    pub checkpoints: Vec<CheckpointView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Validated evaluation results, in the status' shape.
    pub results: Option<EvalResults>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<FinishedView>,
}

impl PhaseProgressView {
    /// The latest checkpoint, if any.
    pub fn latest_checkpoint(&self) -> Option<&CheckpointView> {
        self.checkpoints.last()
    }

    /// The final checkpoint, if the worker reported one.
    pub fn final_checkpoint(&self) -> Option<&CheckpointView> {
        self.checkpoints.iter().rev().find(|c| c.r#final)
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointView {
    pub step: u64,
    /// Relative to the pipeline's root on the storage volume.
    pub path: String,
    #[serde(default)]
    pub r#final: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Time>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FinishedView {
    pub succeeded: bool,
    #[serde(default)]
    pub message: String,
}

/// Where the reconciler gets progress snapshots from. The progress service's
/// store implements it; [`NoProgress`] stands in without a progress service.
pub trait ProgressSource: Send + Sync {
    /// The latest reports of the pipeline with this uid, if any arrived.
    fn snapshot(&self, namespace: &str, name: &str, uid: &str) -> Option<PipelineProgress>;
    /// The pipeline is gone: drop what is kept for it.
    fn forget(&self, _namespace: &str, _name: &str, _uid: &str) {}
    /// Drops every pipeline `keep` (namespace, name, uid) says no to: those
    /// no longer in the controller's cache (a deletion missed while another
    /// replica led), or all of them when this replica stops leading.
    fn retain(&self, _keep: &dyn Fn(&str, &str, &str) -> bool) {}
}

/// A source with no reports (no progress service).
pub struct NoProgress;

impl ProgressSource for NoProgress {
    fn snapshot(&self, _: &str, _: &str, _: &str) -> Option<PipelineProgress> {
        None
    }
}
