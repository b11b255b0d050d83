//! Hyper-parameters of the four phases, with the recipe's values as defaults
//! (`shared/spec/cookbook.md`). These types are both part of the
//! `Tau2Pipeline` spec and what a worker reads, so they carry no Kubernetes types.
//!
//! Every struct has a container-level `#[serde(default)]`: the derived schema
//! then puts each field's default into the CRD, and the API server fills in
//! whatever a user leaves out.

use std::fmt;
use std::marker::PhantomData;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::bench::Domain;

/// The phases of a pipeline, in the order they run.
#[derive(
    Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
#[serde(rename_all = "lowercase")]
pub enum PhaseName {
    /// Supervised fine-tuning on demonstration trajectories.
    Sft,
    /// Rejection-sampling fine-tuning: sample episodes, keep the good ones, fine-tune on them.
    Rft,
    /// Group relative policy optimisation on tau2-bench rewards.
    Grpo,
    /// Evaluation: pass@1, pass@k and pass^k on the evaluation split.
    Eval,
}

impl PhaseName {
    /// Every phase, in pipeline order.
    pub const ALL: [PhaseName; 4] = [
        PhaseName::Sft,
        PhaseName::Rft,
        PhaseName::Grpo,
        PhaseName::Eval,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PhaseName::Sft => "sft",
            PhaseName::Rft => "rft",
            PhaseName::Grpo => "grpo",
            PhaseName::Eval => "eval",
        }
    }
}

impl fmt::Display for PhaseName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the learning rate moves over a phase.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LrSchedule {
    /// Linear warm-up, then cosine decay to zero.
    Cosine,
    /// Linear warm-up, then linear decay to zero.
    Linear,
    /// Linear warm-up, then constant.
    Constant,
}

/// Per-phase defaults of the shared [`Optimizer`] and [`Rollout`] settings.
///
/// The settings are one generic type so that they are declared once, yet each
/// phase's schema carries that phase's own defaults (a nested struct's fields
/// are defaulted by the API server from the nested type's `Default`).
pub trait PhaseDefaults {
    const OPTIMIZER: OptimizerValues;
    const ROLLOUT: RolloutValues;
}

/// Plain values behind [`Optimizer`]'s defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OptimizerValues {
    pub learning_rate: f64,
    pub schedule: LrSchedule,
    pub warmup_ratio: f64,
    pub weight_decay: f64,
}

/// Plain values behind [`Rollout`]'s defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RolloutValues {
    pub temperature: f64,
    pub top_k: i32,
    pub max_new_tokens: i32,
}

/// SFT and RFT's fine-tuning: lr 1e-5, cosine with 5% warm-up, weight decay 0.01.
#[derive(JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub struct SftDefaults;
/// RFT sampling: temperature 0.8, 4096 new tokens per turn.
#[derive(JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub struct RftDefaults;
/// GRPO: constant lr 1e-6, weight decay 0.1; sampling at temperature 0.7.
#[derive(JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrpoDefaults;
/// Evaluation sampling: temperature 0.8, top-k 20, 1200 new tokens per turn.
#[derive(JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvalDefaults;

const SFT_OPTIMIZER: OptimizerValues = OptimizerValues {
    learning_rate: 1e-5,
    schedule: LrSchedule::Cosine,
    warmup_ratio: 0.05,
    weight_decay: 0.01,
};
const TRAIN_ROLLOUT: RolloutValues = RolloutValues {
    temperature: 0.8,
    top_k: 0,
    max_new_tokens: 4096,
};

impl PhaseDefaults for SftDefaults {
    const OPTIMIZER: OptimizerValues = SFT_OPTIMIZER;
    const ROLLOUT: RolloutValues = TRAIN_ROLLOUT;
}
impl PhaseDefaults for RftDefaults {
    const OPTIMIZER: OptimizerValues = SFT_OPTIMIZER;
    const ROLLOUT: RolloutValues = TRAIN_ROLLOUT;
}
impl PhaseDefaults for GrpoDefaults {
    const OPTIMIZER: OptimizerValues = OptimizerValues {
        learning_rate: 1e-6,
        schedule: LrSchedule::Constant,
        warmup_ratio: 0.0,
        weight_decay: 0.1,
    };
    const ROLLOUT: RolloutValues = RolloutValues {
        temperature: 0.7,
        ..TRAIN_ROLLOUT
    };
}
impl PhaseDefaults for EvalDefaults {
    const OPTIMIZER: OptimizerValues = SFT_OPTIMIZER;
    const ROLLOUT: RolloutValues = RolloutValues {
        temperature: 0.8,
        top_k: 20,
        max_new_tokens: 1200,
    };
}

/// AdamW settings. Betas (0.9, 0.98), epsilon 1e-8 and gradient clipping at 1.0 are the recipe's for every phase.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", default, bound = "")]
pub struct Optimizer<D: PhaseDefaults> {
    /// Peak learning rate.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub learning_rate: f64,
    /// Learning-rate schedule after warm-up.
    pub schedule: LrSchedule,
    /// Fraction of the phase's optimizer steps spent warming up linearly from 0.
    #[schemars(range(min = 0.0, max = 0.99))]
    pub warmup_ratio: f64,
    /// Decoupled (AdamW) weight decay.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub weight_decay: f64,
    /// Adam beta1.
    #[schemars(range(min = 0.0, max = 0.9999))]
    pub beta1: f64,
    /// Adam beta2.
    #[schemars(range(min = 0.0, max = 0.9999))]
    pub beta2: f64,
    /// Adam epsilon.
    #[schemars(range(min = 0.0))]
    pub epsilon: f64,
    /// Gradients are clipped to this global L2 norm; 0 disables clipping.
    #[schemars(range(min = 0.0))]
    pub max_grad_norm: f64,
    #[serde(skip)]
    #[schemars(skip)]
    _defaults: PhantomData<D>,
}

impl<D: PhaseDefaults> Default for Optimizer<D> {
    fn default() -> Self {
        let v = D::OPTIMIZER;
        Self {
            learning_rate: v.learning_rate,
            schedule: v.schedule,
            warmup_ratio: v.warmup_ratio,
            weight_decay: v.weight_decay,
            beta1: 0.9,
            beta2: 0.98,
            epsilon: 1e-8,
            max_grad_norm: 1.0,
            _defaults: PhantomData,
        }
    }
}

/// How episodes are sampled from the policy.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", default, bound = "")]
pub struct Rollout<D: PhaseDefaults> {
    /// Sampling temperature; 0 samples greedily.
    #[schemars(range(min = 0.0, max = 5.0))]
    pub temperature: f64,
    /// Nucleus sampling: keep the smallest set of tokens whose probability reaches topP.
    #[schemars(range(min = 0.0, max = 1.0), extend("exclusiveMinimum" = true))]
    pub top_p: f64,
    /// Keep only the k most likely tokens; 0 disables the filter.
    #[schemars(range(min = 0))]
    pub top_k: i32,
    /// Most tokens the policy may generate in one turn.
    #[schemars(range(min = 1))]
    pub max_new_tokens: i32,
    /// Most orchestrator steps (agent, user and tool messages) in one episode.
    #[schemars(range(min = 1))]
    pub max_steps: i32,
    /// Most tool errors before an episode is ended.
    #[schemars(range(min = 1))]
    pub max_errors: i32,
    #[serde(skip)]
    #[schemars(skip)]
    _defaults: PhantomData<D>,
}

impl<D: PhaseDefaults> Default for Rollout<D> {
    fn default() -> Self {
        let v = D::ROLLOUT;
        Self {
            temperature: v.temperature,
            top_p: 1.0,
            top_k: v.top_k,
            max_new_tokens: v.max_new_tokens,
            max_steps: 100,
            max_errors: 10,
            _defaults: PhantomData,
        }
    }
}

/// Supervised fine-tuning on conversations with tools (JSON lines: `messages` + `tools`).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct SftParams {
    /// Where the training conversations come from: `hf://datasets/<org>/<name>[@<revision>]/<file>.jsonl`
    /// (downloaded by the worker), `pvc://<claim>/<path>`, `file:///<path in the worker image>`, or
    /// `builtin://gold` (demonstrations replayed from the gold actions of the training split).
    #[schemars(length(min = 1, max = 1024))]
    pub dataset: String,
    /// Passes over the dataset.
    #[schemars(range(min = 1, max = 100))]
    pub epochs: i32,
    /// Conversations per optimizer step.
    #[schemars(range(min = 1))]
    pub batch_size: i32,
    /// Tokens in one forward/backward pass; a batch larger than this is split and its gradients accumulated.
    #[schemars(range(min = 256))]
    pub max_tokens_per_micro_batch: i32,
    /// Conversations longer than this many tokens are left out (and counted in the logs).
    #[schemars(range(min = 256))]
    pub max_sequence_length: i32,
    /// Save a checkpoint every this many optimizer steps (and always at the end).
    #[schemars(range(min = 1))]
    pub save_every_steps: i32,
    pub optimizer: Optimizer<SftDefaults>,
}

impl Default for SftParams {
    fn default() -> Self {
        Self {
            dataset: "hf://datasets/Jarrodbarnes/tau2-sft-seed-v3/seed_sft_v3.jsonl".into(),
            epochs: 2,
            batch_size: 16,
            max_tokens_per_micro_batch: 12288,
            max_sequence_length: 32768,
            save_every_steps: 50,
            optimizer: Optimizer::default(),
        }
    }
}

/// Which weights RFT fine-tunes on the kept trajectories.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetrainFrom {
    /// The pipeline's base model, as the recipe's script does.
    Base,
    /// The checkpoint the previous phase produced (the policy that sampled).
    Previous,
}

/// Which sampled episodes RFT keeps.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct RftKeep {
    /// Keep every episode whose task reward is at least this.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub min_reward: f64,
    /// For a task with no kept episode, keep its single best episode if its partial score reaches this;
    /// 1 or more keeps no failures.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub best_partial_above: f64,
}

impl Default for RftKeep {
    fn default() -> Self {
        Self {
            min_reward: 1.0,
            best_partial_above: 0.6,
        }
    }
}

/// Rejection-sampling fine-tuning: sample, keep successes (and the best near-misses), fine-tune.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct RftParams {
    /// Episodes sampled per training task.
    #[schemars(range(min = 1, max = 64))]
    pub samples_per_task: i32,
    pub rollout: Rollout<RftDefaults>,
    pub keep: RftKeep,
    /// Weights of the partial score used by `keep.bestPartialAbove`.
    pub partial_weights: PartialWeights,
    /// Which weights are fine-tuned on the kept episodes.
    pub retrain_from: RetrainFrom,
    /// Fine-tune on the SFT phase's dataset together with the kept episodes (the recipe's merged set).
    pub merge_sft_dataset: bool,
    /// Passes over the kept episodes.
    #[schemars(range(min = 1, max = 100))]
    pub epochs: i32,
    /// Conversations per optimizer step.
    #[schemars(range(min = 1))]
    pub batch_size: i32,
    /// Tokens in one forward/backward pass.
    #[schemars(range(min = 256))]
    pub max_tokens_per_micro_batch: i32,
    /// Save a checkpoint every this many optimizer steps (and always at the end).
    #[schemars(range(min = 1))]
    pub save_every_steps: i32,
    pub optimizer: Optimizer<RftDefaults>,
}

impl Default for RftParams {
    fn default() -> Self {
        Self {
            samples_per_task: 8,
            rollout: Rollout::default(),
            keep: RftKeep::default(),
            partial_weights: PartialWeights::default(),
            retrain_from: RetrainFrom::Base,
            merge_sft_dataset: true,
            epochs: 2,
            batch_size: 16,
            max_tokens_per_micro_batch: 12288,
            save_every_steps: 50,
            optimizer: Optimizer::default(),
        }
    }
}

/// Weights of the reward components in a partial score; they are renormalised over the components a task has.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct PartialWeights {
    /// Share of gold actions that the trajectory performed.
    #[schemars(range(min = 0.0))]
    pub action: f64,
    /// Share of required information communicated to the user.
    #[schemars(range(min = 0.0))]
    pub communicate: f64,
    /// Share of environment assertions that hold at the end.
    #[schemars(range(min = 0.0))]
    pub env_assertion: f64,
    /// 1 when the final database matches the gold one.
    #[schemars(range(min = 0.0))]
    pub db: f64,
}

impl Default for PartialWeights {
    fn default() -> Self {
        Self {
            action: 0.5,
            communicate: 0.15,
            env_assertion: 0.35,
            db: 0.0,
        }
    }
}

impl PartialWeights {
    /// The recipe's telecom weights (`TAU2_TELECOM_COMMUNICATION_BOOST`).
    pub fn telecom() -> Self {
        Self {
            action: 0.35,
            communicate: 0.35,
            env_assertion: 0.30,
            db: 0.0,
        }
    }
}

fn default_telecom_weights() -> PartialWeights {
    PartialWeights::telecom()
}

/// Per-domain multipliers of the shaping coefficient alpha.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct DomainMultipliers {
    #[schemars(range(min = 0.0))]
    pub mock: f64,
    #[schemars(range(min = 0.0))]
    pub airline: f64,
    #[schemars(range(min = 0.0))]
    pub retail: f64,
    #[schemars(range(min = 0.0))]
    pub telecom: f64,
}

impl Default for DomainMultipliers {
    fn default() -> Self {
        Self {
            mock: 1.0,
            airline: 1.0,
            retail: 0.8,
            telecom: 1.6,
        }
    }
}

impl DomainMultipliers {
    pub fn get(&self, domain: Domain) -> f64 {
        match domain {
            Domain::Mock => self.mock,
            Domain::Airline => self.airline,
            Domain::Retail => self.retail,
            Domain::Telecom => self.telecom,
        }
    }
}

/// The recipe's shaped reward: `task reward + alpha x multiplier(domain) x partial score`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct RewardShaping {
    /// Base coefficient of the partial score; keep `alpha x multiplier` below 1 so that a success
    /// always outranks any failure.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub alpha: f64,
    pub domain_multipliers: DomainMultipliers,
    /// Partial-score weights for airline, retail and mock.
    pub weights: PartialWeights,
    /// Partial-score weights for telecom.
    #[serde(default = "default_telecom_weights")]
    pub telecom_weights: PartialWeights,
}

impl Default for RewardShaping {
    fn default() -> Self {
        Self {
            alpha: 0.25,
            domain_multipliers: DomainMultipliers::default(),
            weights: PartialWeights::default(),
            telecom_weights: PartialWeights::telecom(),
        }
    }
}

/// Down-weights tasks the policy already solves or still cannot solve.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Curriculum {
    pub enabled: bool,
    /// Attempts on a task before its weight can change.
    #[schemars(range(min = 1))]
    pub min_attempts: i32,
    /// A task whose success rate is above this counts as solved...
    #[schemars(range(min = 0.0, max = 1.0))]
    pub solved_above: f64,
    /// ...and its advantages are multiplied by this.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub solved_weight: f64,
    /// A task whose success rate is below this counts as hard...
    #[schemars(range(min = 0.0, max = 1.0))]
    pub hard_below: f64,
    /// ...and its advantages are multiplied by this.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub hard_weight: f64,
}

impl Default for Curriculum {
    fn default() -> Self {
        Self {
            enabled: true,
            min_attempts: 5,
            solved_above: 0.75,
            solved_weight: 0.1,
            hard_below: 0.25,
            hard_weight: 0.5,
        }
    }
}

/// Group relative policy optimisation on shaped tau2-bench rewards.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct GrpoParams {
    /// Rollout steps; each samples `tasksPerStep x samplesPerTask` fresh episodes and then makes
    /// `updateEpochs x miniBatches` optimizer updates on them (one in the recipe).
    #[schemars(range(min = 1))]
    pub steps: i32,
    /// Tasks per step.
    #[schemars(range(min = 1))]
    pub tasks_per_step: i32,
    /// Episodes per task (the group whose rewards are normalised together); at least 2.
    #[schemars(range(max = 64))]
    pub samples_per_task: i32,
    pub rollout: Rollout<GrpoDefaults>,
    /// Passes over each step's episodes (PPO epochs). The recipe makes one, where the probability
    /// ratio stays 1; more reuse each rollout, with the ratio to the rollout's policy clipped.
    #[schemars(range(min = 1, max = 16))]
    pub update_epochs: i32,
    /// Optimizer updates per pass, each on an equal share of the step's episodes in a seeded
    /// random order (the recipe's one = slime's global batch equal to the rollout batch).
    #[schemars(range(min = 1, max = 64))]
    pub mini_batches: i32,
    /// Lower clip of the probability ratio: ratios below `1 - clipLow` are clipped.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub clip_low: f64,
    /// Upper clip of the probability ratio: ratios above `1 + clipHigh` are clipped.
    #[schemars(range(min = 0.0, max = 10.0))]
    pub clip_high: f64,
    /// Coefficient of the k3 KL estimate to the frozen reference (the phase's starting checkpoint).
    #[schemars(range(min = 0.0))]
    pub kl_coef: f64,
    /// Coefficient of the entropy bonus.
    #[schemars(range(min = 0.0))]
    pub entropy_coef: f64,
    pub reward_shaping: RewardShaping,
    pub curriculum: Curriculum,
    /// Tokens in one forward/backward pass.
    #[schemars(range(min = 256))]
    pub max_tokens_per_micro_batch: i32,
    /// Save a checkpoint every this many optimizer steps (and always at the end).
    #[schemars(range(min = 1))]
    pub save_every_steps: i32,
    pub optimizer: Optimizer<GrpoDefaults>,
}

impl Default for GrpoParams {
    fn default() -> Self {
        Self {
            steps: 200,
            tasks_per_step: 16,
            samples_per_task: 4,
            rollout: Rollout::default(),
            update_epochs: 1,
            mini_batches: 1,
            clip_low: 0.2,
            clip_high: 0.28,
            kl_coef: 0.01,
            entropy_coef: 0.001,
            reward_shaping: RewardShaping::default(),
            curriculum: Curriculum::default(),
            max_tokens_per_micro_batch: 20480,
            save_every_steps: 10,
            optimizer: Optimizer::default(),
        }
    }
}

/// Evaluation on the evaluation split.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct EvalParams {
    /// Episodes per task.
    #[schemars(range(min = 1, max = 64))]
    pub samples_per_task: i32,
    /// The k of pass@k and pass^k; at most `samplesPerTask`.
    #[schemars(range(min = 1, max = 64))]
    pub k: i32,
    pub rollout: Rollout<EvalDefaults>,
}

impl Default for EvalParams {
    fn default() -> Self {
        Self {
            samples_per_task: 4,
            k: 4,
            rollout: Rollout::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_settings_take_their_phase_defaults() {
        let grpo = GrpoParams::default();
        assert_eq!(grpo.optimizer.learning_rate, 1e-6);
        assert_eq!(grpo.optimizer.schedule, LrSchedule::Constant);
        assert_eq!(grpo.rollout.temperature, 0.7);
        let sft = SftParams::default();
        assert_eq!(sft.optimizer.learning_rate, 1e-5);
        assert_eq!(sft.optimizer.warmup_ratio, 0.05);
        let eval = EvalParams::default();
        assert_eq!(
            (eval.rollout.top_k, eval.rollout.max_new_tokens),
            (20, 1200)
        );
    }

    #[test]
    fn a_partial_optimizer_keeps_the_phase_defaults_for_the_rest() -> serde_json::Result<()> {
        let grpo: GrpoParams = serde_json::from_str(r#"{"optimizer": {"weightDecay": 0.2}}"#)?;
        assert_eq!(grpo.optimizer.weight_decay, 0.2);
        assert_eq!(grpo.optimizer.learning_rate, 1e-6);
        Ok(())
    }

    #[test]
    fn shaping_keeps_successes_above_failures_by_default() {
        let s = RewardShaping::default();
        for d in Domain::ALL {
            assert!(s.alpha * s.domain_multipliers.get(d) < 1.0, "{d:?}");
        }
    }
}
