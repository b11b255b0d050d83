//! The `Tau2Pipeline` custom resource (`tau2.dev/v1alpha1`).
//!
//! Field docs become the CRD's descriptions (what `kubectl explain` shows).
//! Cross-field rules are CEL `x-kubernetes-validations`, so the API server
//! rejects a bad pipeline with a message that says what to fix.

mod status;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, EnvVar, LocalObjectReference, PersistentVolumeClaimSpec, Toleration,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use status::*;

use crate::bench::{DataVersion, Domain, Split};
use crate::job::Dtype;
use crate::phases::{EvalParams, GrpoParams, PhaseName, RftParams, SftParams};
use crate::user_sim::UserSimulator;

/// The `Tau2Pipeline` resource: one object, the whole SFT -> RFT -> GRPO -> eval recipe.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "tau2.dev",
    version = "v1alpha1",
    kind = "Tau2Pipeline",
    plural = "tau2pipelines",
    singular = "tau2pipeline",
    shortname = "t2p",
    category = "tau2",
    namespaced,
    status = "Tau2PipelineStatus",
    doc = "A Tau2Pipeline trains a model on tau2-bench: SFT, then RFT, then GRPO, then evaluation with pass@k, \
           each phase a Job that starts from the previous phase's checkpoint.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase", description = "Overall state of the pipeline"),
    printcolumn(name = "Current", type_ = "string", json_path = ".status.currentPhase", description = "The phase running now (or that ended the pipeline)"),
    printcolumn(name = "Progress", type_ = "string", json_path = ".status.progress", description = "Steps done in the current phase"),
    printcolumn(name = "Pass@1", type_ = "number", json_path = ".status.results.overall.passAt1", description = "Evaluation: share of tasks whose first sample succeeded"),
    printcolumn(name = "Pass@k", type_ = "number", json_path = ".status.results.overall.passAtK", description = "Evaluation: share of tasks with a success among the first k samples"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new(
        "self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$') && size(self.metadata.name) <= 46"
    ).message(
        "metadata.name must be a DNS label (lowercase letters, digits, '-') of at most 46 characters: \
         Job and pod names add the phase and attempt to it"
    ),
    validation = Rule::new(
        "!has(oldSelf.status) || !has(oldSelf.status.startTime) || (self.spec.model == oldSelf.spec.model && \
         self.spec.tau2 == oldSelf.spec.tau2 && self.spec.phases == oldSelf.spec.phases && \
         self.spec.storage == oldSelf.spec.storage && self.spec.seed == oldSelf.spec.seed)"
    ).message(
        "spec.model, spec.tau2, spec.phases, spec.storage and spec.seed cannot change once the pipeline has \
         started (status.startTime is set); create a new Tau2Pipeline instead"
    ).reason(Reason::FieldValueForbidden),
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new(
        "has(self.userSimulator) || !(self.phases.rft.enabled || self.phases.grpo.enabled || self.phases.eval.enabled)"
    ).message(
        "spec.userSimulator is required when phases rft, grpo or eval are enabled: they run episodes against a \
         simulated user"
    ).field_path(".userSimulator"),
)]
pub struct Tau2PipelineSpec {
    /// The base model every phase starts from (through the previous phase's checkpoint).
    pub model: ModelSpec,
    /// Where the tau2-bench data lives, and which domains and splits to use.
    #[serde(default)]
    pub tau2: Tau2Spec,
    /// The simulated user that RFT, GRPO and eval episodes talk to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_simulator: Option<UserSimulator>,
    /// The user simulator for evaluation only, when it differs from the one used in training
    /// (the model card evaluates against gpt-4.1-mini, trains against Qwen3-4B-Instruct-2507).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_user_simulator: Option<UserSimulator>,
    /// The volume for checkpoints, episodes and results, shared by all phases.
    pub storage: StorageSpec,
    /// The worker pods: image, resources and scheduling.
    #[serde(default)]
    pub worker: WorkerSpec,
    /// The phases and their hyper-parameters; defaults are the recipe's.
    #[serde(default)]
    pub phases: Phases,
    /// Seed for data order and sampling; a resumed phase continues the same random streams.
    #[serde(default = "default_seed")]
    #[schemars(range(min = 0))]
    pub seed: i64,
    /// Stop the pipeline: the running phase's Job is suspended (its pod deleted) and resumes from its
    /// latest checkpoint when this is set back to false. Jobs created while suspended are created
    /// suspended, so Kueue can admit them.
    #[serde(default)]
    pub suspend: bool,
    /// Delete the pipeline this many seconds after it succeeds or fails. Unset keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub ttl_seconds_after_finished: Option<i32>,
}

fn default_seed() -> i64 {
    42
}

/// Where the base checkpoint comes from.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.uri.matches('^(hf://[A-Za-z0-9][-A-Za-z0-9_.]*/[A-Za-z0-9][-A-Za-z0-9_.]*(@[-A-Za-z0-9_./]+)?|pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?/.+|file:///.+|builtin://tiny)$')",
        "message": "model.uri must be hf://<org>/<repo>[@<revision>], pvc://<claim>/<path>, file:///<path> or builtin://tiny",
        "fieldPath": ".uri",
    },
]))]
pub struct ModelSpec {
    /// A Hugging Face checkpoint, `hf://<org>/<repo>[@<revision>]` (its safetensors weights, config and
    /// tokenizer, downloaded once by the first phase's worker into `base-model/` on the storage volume,
    /// through a cache there that retried attempts reuse; the worker pods need access to the Hub, or to a
    /// mirror named by `HF_ENDPOINT` in `worker.env`), a directory on a PersistentVolumeClaim,
    /// `pvc://<claim>/<path>`, a directory in the worker image, `file:///<path>`, or `builtin://tiny`, a tiny
    /// random Qwen3 the worker creates (for tests and demos).
    #[schemars(length(min = 1, max = 1024))]
    pub uri: String,
    /// The dtype weights are trained and served in; optimizer master weights stay in float32.
    #[serde(default)]
    pub dtype: Dtype,
    /// A Secret key holding a Hugging Face token, for gated or private repositories (the model's and an
    /// `hf://datasets/` SFT dataset's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hf_token_secret_ref: Option<crate::user_sim::SecretKeyRef>,
}

/// The tau2-bench data and the tasks to train and evaluate on.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", default)]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.dataUri.matches('^(pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?/.+|file:///.+)$')",
        "message": "tau2.dataUri must be pvc://<claim>/<path> or file:///<path>",
        "fieldPath": ".dataUri",
    },
    {
        "rule": "(self.trainSplit in ['small', 'full']) ? self.domains.all(d, d == 'telecom') : (self.trainSplit == 'base' || !('mock' in self.domains))",
        "message": "tau2.trainSplit must be a split every selected domain has: mock has only 'base', and 'small' and 'full' \
         exist only for telecom",
        "fieldPath": ".trainSplit",
    },
    {
        "rule": "(self.evalSplit in ['small', 'full']) ? self.domains.all(d, d == 'telecom') : (self.evalSplit == 'base' || !('mock' in self.domains))",
        "message": "tau2.evalSplit must be a split every selected domain has: mock has only 'base', and 'small' and 'full' \
         exist only for telecom",
        "fieldPath": ".evalSplit",
    },
]))]
pub struct Tau2Spec {
    /// The directory in tau2-bench's layout (`<domain>/tasks.json`, `split_tasks.json`, `db.json`, policies):
    /// `pvc://<claim>/<path>`, or `file:///<path>` for data in the worker image, which ships tau2-bench's
    /// data at /opt/tau2.
    #[schemars(length(min = 1, max = 1024))]
    pub data_uri: String,
    /// Which tau2-bench version's data and semantics to use.
    pub data_version: DataVersion,
    /// Domains to train and evaluate on.
    #[schemars(length(min = 1, max = 4))]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub domains: Vec<Domain>,
    /// The split RFT and GRPO draw training tasks from.
    pub train_split: Split,
    /// The split evaluation runs on.
    pub eval_split: Split,
    /// Evaluate only the first N tasks of each domain's split (the cookbook's 70-task table used 25).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_eval_tasks_per_domain: Option<i32>,
}

impl Default for Tau2Spec {
    fn default() -> Self {
        Self {
            data_uri: "file:///opt/tau2".into(),
            data_version: DataVersion::default(),
            domains: vec![Domain::Airline, Domain::Retail, Domain::Telecom],
            train_split: Split::Train,
            eval_split: Split::Test,
            max_eval_tasks_per_domain: None,
        }
    }
}

/// The volume for checkpoints, episodes and results.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "has(self.existingClaim) != has(self.volumeClaimTemplate)",
        "message": "set exactly one of storage.existingClaim and storage.volumeClaimTemplate",
    },
]))]
pub struct StorageSpec {
    /// An existing PersistentVolumeClaim in the pipeline's namespace. With more than one pipeline on it,
    /// each keeps its files under its own name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub existing_claim: Option<String>,
    /// A claim the operator creates for this pipeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_claim_template: Option<VolumeClaimTemplate>,
}

/// A PersistentVolumeClaim the operator creates and owns.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VolumeClaimTemplate {
    /// The claim's spec (access modes, storage class, size).
    pub spec: PersistentVolumeClaimSpec,
    /// What happens to the claim, and the checkpoints on it, when the pipeline is deleted.
    #[serde(default)]
    pub when_deleted: ClaimRetention,
}

/// What happens to an operator-created claim when its pipeline is deleted.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ClaimRetention {
    /// Keep the claim (and the trained checkpoints on it).
    #[default]
    Retain,
    /// Delete the claim with the pipeline.
    Delete,
}

/// Compute for one phase's worker pod.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WorkerResources {
    /// GPUs (`nvidia.com/gpu`) for the pod; 0 runs on CPU.
    #[serde(default = "default_gpus")]
    #[schemars(range(min = 0, max = 64))]
    pub gpus: i32,
    /// CPU request and limit, e.g. "8".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Quantity>,
    /// Memory request and limit, e.g. "64Gi".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Quantity>,
}

fn default_gpus() -> i32 {
    1
}

impl Default for WorkerResources {
    fn default() -> Self {
        Self {
            gpus: default_gpus(),
            cpu: None,
            memory: None,
        }
    }
}

/// When the kubelet pulls the worker image.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

/// The worker pods of every phase.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct WorkerSpec {
    /// The worker image; defaults to the image the operator was installed with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// When to pull the image; Kubernetes' default when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,
    /// Secrets for pulling the image from a private registry.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,
    /// Resources of every phase's pod; a phase's own `resources` replaces this.
    pub resources: WorkerResources,
    /// Labels a node must have to run the worker pods.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations of the worker pods (GPU nodes are often tainted).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Affinity of the worker pods.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// PriorityClass of the worker pods.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// ServiceAccount the worker pods run as; the namespace's default when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// Extra environment variables of the worker container (proxies, cache locations...).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
}

/// One phase: whether it runs, how often it may be retried, its resources and its hyper-parameters.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Phase<P: Default> {
    /// Run this phase. A disabled phase is skipped and the next one starts from the checkpoint before it.
    pub enabled: bool,
    /// Retries of a failed phase (each resumes from the latest checkpoint) before the pipeline fails.
    #[schemars(range(min = 0, max = 100))]
    pub backoff_limit: i32,
    /// Resources of this phase's pod, replacing `worker.resources`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<WorkerResources>,
    #[serde(flatten)]
    pub params: P,
}

impl<P: Default> Default for Phase<P> {
    fn default() -> Self {
        Self {
            enabled: true,
            backoff_limit: 3,
            resources: None,
            params: P::default(),
        }
    }
}

/// The four phases in the order they run.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(default)]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.sft.enabled || self.rft.enabled || self.grpo.enabled || self.eval.enabled",
        "message": "enable at least one of phases.sft, phases.rft, phases.grpo and phases.eval",
    },
    {
        "rule": "self.eval.k <= self.eval.samplesPerTask",
        "message": "phases.eval.k must not exceed phases.eval.samplesPerTask: pass@k needs k samples per task",
        "fieldPath": ".eval.k",
    },
    {
        "rule": "self.grpo.samplesPerTask >= 2",
        "message": "phases.grpo.samplesPerTask must be at least 2: GRPO normalises rewards within each task's group",
        "fieldPath": ".grpo.samplesPerTask",
    },
    {
        "rule": "self.grpo.miniBatches <= self.grpo.tasksPerStep * self.grpo.samplesPerTask",
        "message": "phases.grpo.miniBatches must not exceed phases.grpo.tasksPerStep x samplesPerTask: each mini-batch needs at least one episode",
        "fieldPath": ".grpo.miniBatches",
    },
    {
        "rule": "self.sft.dataset.matches('^(hf://datasets/[^/]+/[^/]+/.+|pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?/.+|file:///.+|builtin://gold)$')",
        "message": "phases.sft.dataset must be hf://datasets/<org>/<name>/<file>, pvc://<claim>/<path>, file:///<path> or builtin://gold",
        "fieldPath": ".sft.dataset",
    },
    {
        "rule": "self.grpo.rewardShaping.weights.action + self.grpo.rewardShaping.weights.communicate + \
         self.grpo.rewardShaping.weights.envAssertion + self.grpo.rewardShaping.weights.db > 0.0 && \
         self.grpo.rewardShaping.telecomWeights.action + self.grpo.rewardShaping.telecomWeights.communicate + \
         self.grpo.rewardShaping.telecomWeights.envAssertion + self.grpo.rewardShaping.telecomWeights.db > 0.0",
        "message": "phases.grpo.rewardShaping weights must not all be 0 (set alpha to 0 to turn shaping off)",
        "fieldPath": ".grpo.rewardShaping",
    },
]))]
pub struct Phases {
    /// Supervised fine-tuning on demonstrations.
    pub sft: Phase<SftParams>,
    /// Rejection-sampling fine-tuning on the policy's own successful episodes.
    pub rft: Phase<RftParams>,
    /// Reinforcement learning with group-normalised, shaped rewards.
    pub grpo: Phase<GrpoParams>,
    /// Evaluation: pass@1, pass@k and pass^k.
    pub eval: Phase<EvalParams>,
}

impl Phases {
    /// Whether a phase is enabled.
    pub fn enabled(&self, phase: PhaseName) -> bool {
        match phase {
            PhaseName::Sft => self.sft.enabled,
            PhaseName::Rft => self.rft.enabled,
            PhaseName::Grpo => self.grpo.enabled,
            PhaseName::Eval => self.eval.enabled,
        }
    }

    /// The enabled phases, in the order they run.
    pub fn enabled_phases(&self) -> impl Iterator<Item = PhaseName> + '_ {
        PhaseName::ALL.into_iter().filter(|p| self.enabled(*p))
    }

    /// Retries allowed for a phase.
    pub fn backoff_limit(&self, phase: PhaseName) -> i32 {
        match phase {
            PhaseName::Sft => self.sft.backoff_limit,
            PhaseName::Rft => self.rft.backoff_limit,
            PhaseName::Grpo => self.grpo.backoff_limit,
            PhaseName::Eval => self.eval.backoff_limit,
        }
    }
}

#[cfg(test)]
mod tests;
