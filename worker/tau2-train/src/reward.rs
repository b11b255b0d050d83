//! The recipe's partial score and shaped reward (cookbook §5.3).

use tau2_api::bench::Domain;
use tau2_api::phases::{PartialWeights, RewardShaping};
use tau2_bench::evaluator::RewardInfo;

use crate::trajectory::Trajectory;

fn fraction(met: impl Iterator<Item = bool>) -> Option<f64> {
    let (n, k) = met.fold((0usize, 0usize), |(n, k), m| (n + 1, k + usize::from(m)));
    (n > 0).then(|| k as f64 / n as f64)
}

/// Weighted mean of the components present in `info` (renormalised over
/// the present ones; 0 when none is present or all present weigh 0):
/// action and communicate checks, env assertions (fractions met) and the
/// DB check (0/1).
pub fn partial_score(info: &RewardInfo, w: &PartialWeights) -> f64 {
    let parts = [
        (
            w.action,
            info.action_checks
                .as_deref()
                .and_then(|c| fraction(c.iter().map(|c| c.action_match))),
        ),
        (
            w.communicate,
            info.communicate_checks
                .as_deref()
                .and_then(|c| fraction(c.iter().map(|c| c.met))),
        ),
        (
            w.env_assertion,
            info.env_assertions
                .as_deref()
                .and_then(|c| fraction(c.iter().map(|c| c.met))),
        ),
        (
            w.db,
            info.db_check
                .as_ref()
                .map(|d| if d.db_match { 1.0 } else { 0.0 }),
        ),
    ];
    let (num, den) = parts
        .iter()
        .filter_map(|(w, v)| v.map(|v| (w * v, *w)))
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    if den > 0.0 { num / den } else { 0.0 }
}

/// The partial-score weights of a domain (telecom has its own).
pub fn weights_for(shaping: &RewardShaping, domain: Domain) -> &PartialWeights {
    if domain == Domain::Telecom {
        &shaping.telecom_weights
    } else {
        &shaping.weights
    }
}

/// `task_reward + alpha × multiplier(domain) × partial`; 0 for an invalid
/// trajectory (the recipe's removed samples).
pub fn shaped_reward(t: &Trajectory, shaping: &RewardShaping) -> f64 {
    if !t.valid {
        return 0.0;
    }
    let partial = t
        .reward_info
        .as_ref()
        .map_or(0.0, |i| partial_score(i, weights_for(shaping, t.domain)));
    t.reward + shaping.alpha * shaping.domain_multipliers.get(t.domain) * partial
}
