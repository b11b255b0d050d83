//! GRPO (recipe §5): per step, P tasks × G samples from the current
//! policy; shaped rewards; group-normalised advantages over the valid
//! samples (times the curriculum weight); then optimizer updates on the
//! clipped-ratio loss with a k3 KL to the frozen reference and an entropy
//! bonus, each a per-sequence token mean averaged over the update's samples.
//! The recipe makes one update per step on all its samples; `updateEpochs`
//! passes of `miniBatches` updates each reuse a rollout (PPO epochs, or
//! slime's global batch smaller than the rollout batch).
//!
//! Decisions where the recipe leaves room:
//! - π_old is the rollout's weights, as slime recomputes "old" log-probs
//!   with them: with one update per step that is the current weights
//!   (detached), the ratio is exactly 1 in value and the clip inactive;
//!   with more, they are computed once before the first update. The
//!   sampler's own log-probs (in [`Trajectory::logprobs`], temperature 1)
//!   are only compared with the trainer's at temperature 1, as the
//!   `logprob_gap` metric.
//! - A step in which no sample has a non-zero advantage (every group
//!   solved, or failed, alike) makes no update, as DAPO drops such groups:
//!   Adam would otherwise move the weights on momentum and on the KL and
//!   entropy terms alone, magnified by its normalisation.
//! - Log-probs, entropy and KL use logits divided by the rollout
//!   temperature (slime and TRL do the same).
//! - Invalid samples get advantage 0, are excluded from their group's
//!   statistics and contribute nothing to the loss; the mean is still over
//!   all P × G samples (slime divides by the global batch).
//! - Rollouts come through [`RolloutSource`], so the trainer runs on
//!   synthetic trajectories in tests. Randomness for step `s` is the seed
//!   [`step_seed`]`(seed, s)`: nothing but the step count needs saving.
//!
//! The modules, as verl splits its core algorithms from its trainer:
//! [`advantages`] (pure group advantages and the curriculum weight),
//! [`loss`] (pure per-token loss terms), [`step`] (one optimisation step's
//! forward and backward over a batch) and [`train_loop`] (rollout → step →
//! checkpoint).

pub mod advantages;
pub mod loss;
pub mod step;
pub mod train_loop;

use serde::{Deserialize, Serialize};
use tau2_api::bench::Domain;
use tau2_model::Qwen3;
use tau2_model::rng::Rng;

use crate::trajectory::Trajectory;

pub use advantages::{CurriculumState, advantages, group_advantages};
pub use loss::{LossConfig, SeqTerms, sample_loss, sequence_terms};
pub use step::{
    StepSums, TargetLogprobs, accumulate_gradients, policy_logprobs, rollout_logprobs, update_plan,
};
pub use train_loop::{GrpoConfig, GrpoOutcome, train};

/// A training task, as the rollout side looks it up.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TaskRef {
    pub domain: Domain,
    pub task_id: String,
}

impl TaskRef {
    /// `domain/task_id`, the curriculum's key.
    pub fn key(&self) -> String {
        format!("{}/{}", self.domain.as_str(), self.task_id)
    }
}

/// Produces `samples` trajectories for each task with the current policy.
/// Trajectories of one task may come in any order; they are grouped by
/// (domain, task id).
pub trait RolloutSource {
    fn rollout(
        &mut self,
        policy: &Qwen3,
        tasks: &[TaskRef],
        samples: usize,
        seed: u64,
    ) -> std::result::Result<Vec<Trajectory>, String>;
}

impl<F> RolloutSource for F
where
    F: FnMut(&Qwen3, &[TaskRef], usize, u64) -> std::result::Result<Vec<Trajectory>, String>,
{
    fn rollout(
        &mut self,
        policy: &Qwen3,
        tasks: &[TaskRef],
        samples: usize,
        seed: u64,
    ) -> std::result::Result<Vec<Trajectory>, String> {
        self(policy, tasks, samples, seed)
    }
}

/// The seed of step `step`'s rollouts.
pub fn step_seed(seed: u64, step: u64) -> u64 {
    Rng::new(seed ^ step.wrapping_mul(0xD1B5_4A32_D192_ED03)).next_u64()
}
