//! Group-normalised advantages over a step's samples (recipe §5.4), times
//! the curriculum weight: pure functions of the rewards and the counts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tau2_api::phases::{Curriculum, RewardShaping};

use crate::reward::shaped_reward;
use crate::trajectory::Trajectory;

/// Group-normalised advantages (§5.4 final version): with validity `v`,
/// μ = Σ v r / max(1, Σ v), c = (r − μ) v, σ = sqrt(Σ c² / max(1, Σ v))
/// (population std), A = c / (σ + 1e-6).
pub fn group_advantages(rewards: &[f64], valid: &[bool]) -> Vec<f64> {
    let n_valid = valid.iter().filter(|v| **v).count().max(1) as f64;
    let mean = rewards
        .iter()
        .zip(valid)
        .filter(|(_, v)| **v)
        .map(|(r, _)| r)
        .sum::<f64>()
        / n_valid;
    let centred: Vec<f64> = rewards
        .iter()
        .zip(valid)
        .map(|(r, v)| if *v { r - mean } else { 0.0 })
        .collect();
    let std = (centred.iter().map(|c| c * c).sum::<f64>() / n_valid).sqrt();
    centred.iter().map(|c| c / (std + 1e-6)).collect()
}

/// Per-task attempt and success counts for the curriculum weight.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CurriculumState {
    /// task key -> (attempts, successes)
    pub tasks: BTreeMap<String, (u64, u64)>,
}

impl CurriculumState {
    /// Counts one attempt, then returns the task's weight (§5.4: 1 until
    /// `min_attempts`, then `solved_weight` above `solved_above` success
    /// rate, `hard_weight` below `hard_below`).
    pub fn record(&mut self, c: &Curriculum, key: &str, success: bool) -> f64 {
        let e = self.tasks.entry(key.to_string()).or_default();
        e.0 += 1;
        e.1 += u64::from(success);
        if !c.enabled || e.0 < c.min_attempts.max(1) as u64 {
            return 1.0;
        }
        let rate = e.1 as f64 / e.0 as f64;
        if rate > c.solved_above {
            c.solved_weight
        } else if rate < c.hard_below {
            c.hard_weight
        } else {
            1.0
        }
    }
}

/// Shaped rewards and advantages of a step's trajectories, in input order.
pub fn advantages(
    trajectories: &[Trajectory],
    shaping: &RewardShaping,
    curriculum: &Curriculum,
    state: &mut CurriculumState,
) -> (Vec<f64>, Vec<f64>) {
    let shaped: Vec<f64> = trajectories
        .iter()
        .map(|t| shaped_reward(t, shaping))
        .collect();
    let mut groups: BTreeMap<(String, String), Vec<usize>> = BTreeMap::new();
    for (i, t) in trajectories.iter().enumerate() {
        groups
            .entry((t.domain.as_str().to_string(), t.task_id.clone()))
            .or_default()
            .push(i);
    }
    let mut adv = vec![0.0; trajectories.len()];
    for idx in groups.values() {
        let r: Vec<f64> = idx.iter().map(|i| shaped[*i]).collect();
        let v: Vec<bool> = idx.iter().map(|i| trajectories[*i].valid).collect();
        for (i, a) in idx.iter().zip(group_advantages(&r, &v)) {
            adv[*i] = a;
        }
    }
    // Curriculum counts in batch order, each sample read after its update.
    for (i, t) in trajectories.iter().enumerate() {
        let key = format!("{}/{}", t.domain.as_str(), t.task_id);
        adv[i] *= state.record(curriculum, &key, t.is_success());
    }
    (shaped, adv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advantages_exclude_invalid_samples() {
        // Valid rewards 1, 0, 0.5: μ = 0.5, c = (0.5, -0.5, 0), σ = sqrt(0.5/3).
        let a = group_advantages(&[1.0, 0.0, 0.5, 7.0], &[true, true, true, false]);
        let s = (0.5f64 / 3.0).sqrt() + 1e-6;
        let want = [0.5 / s, -0.5 / s, 0.0, 0.0];
        for (x, y) in a.iter().zip(want) {
            assert!((x - y).abs() < 1e-12, "{a:?}");
        }
        // All equal: zero advantage; all invalid: zero, no NaN.
        assert_eq!(group_advantages(&[0.3, 0.3], &[true, true]), vec![0.0, 0.0]);
        assert_eq!(
            group_advantages(&[1.0, 0.0], &[false, false]),
            vec![0.0, 0.0]
        );
    }

    #[test]
    fn curriculum_weights_after_min_attempts() {
        let c = Curriculum::default();
        let mut s = CurriculumState::default();
        for _ in 0..4 {
            assert_eq!(s.record(&c, "t", true), 1.0);
        }
        assert_eq!(s.record(&c, "t", true), c.solved_weight); // 5/5 > 0.75
        for _ in 0..4 {
            s.record(&c, "h", false);
        }
        assert_eq!(s.record(&c, "h", false), c.hard_weight); // 0/5 < 0.25
    }
}
