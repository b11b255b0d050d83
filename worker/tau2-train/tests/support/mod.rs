//! Helpers shared by the integration tests.

use tau2_api::bench::Domain;
use tau2_train::trajectory::Trajectory;

/// A valid mock-domain trajectory with the given ids, policy mask and reward.
pub fn trajectory(
    task: &str,
    sample: u32,
    ids: Vec<u32>,
    mask: Vec<bool>,
    reward: f64,
) -> Trajectory {
    Trajectory {
        domain: Domain::Mock,
        task_id: task.into(),
        sample,
        logprobs: vec![0.0; ids.len()],
        ids,
        policy_mask: mask,
        reward,
        reward_info: None,
        termination: "user_stop".into(),
        valid: true,
        messages: serde_json::Value::Null,
    }
}
