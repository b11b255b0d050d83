//! One sampled episode as the trainers consume it: the exact token ids the
//! policy saw and generated (never re-tokenized), which of them the policy
//! sampled, their log-probabilities at sampling time, and the reward.

use serde::{Deserialize, Serialize};
use tau2_api::bench::Domain;
use tau2_bench::evaluator::RewardInfo;

/// An episode of one task by the policy, ready for RFT selection or GRPO.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Trajectory {
    pub domain: Domain,
    pub task_id: String,
    /// Which sample of the task (0-based; GRPO groups share the task).
    pub sample: u32,
    /// The whole episode's tokens: prompt, generated turns, environment and
    /// user turns, as the model saw them.
    pub ids: Vec<u32>,
    /// `true` for tokens the policy generated (the only ones trained on).
    pub policy_mask: Vec<bool>,
    /// Per token: the log-probability the behaviour policy gave it when
    /// sampling (the raw model log-softmax at temperature 1, before top-k/p);
    /// 0 where `policy_mask` is false.
    pub logprobs: Vec<f32>,
    /// The task reward from the official evaluator.
    pub reward: f64,
    /// The evaluator's full breakdown (partial scores for reward shaping).
    pub reward_info: Option<RewardInfo>,
    /// The orchestrator's termination reason (`user_stop`, `max_steps`, ...).
    pub termination: String,
    /// False when the episode cannot be trained on (truncated context,
    /// token-boundary error, environment failure); GRPO excludes it from
    /// its group's statistics.
    pub valid: bool,
    /// The tau2 messages of the episode, for inspection and RFT export.
    pub messages: serde_json::Value,
}

impl Trajectory {
    /// Number of tokens the policy generated.
    pub fn policy_tokens(&self) -> usize {
        self.policy_mask.iter().filter(|m| **m).count()
    }

    /// Whether the task was solved (reward within 1e-6 of 1, as tau2 counts).
    pub fn is_success(&self) -> bool {
        (self.reward - 1.0).abs() < 1e-6
    }
}
