//! Rejection-sampling fine-tuning (cookbook §4, ml.md §c.5): sample N
//! episodes per training task, keep the successes and, for a task with
//! none, its single best failure if the partial score reaches the
//! threshold; the kept trajectories (their sampled ids and policy masks)
//! are the SFT data of the retrain.
//!
//! Decisions where the recipe is unclear (cookbook §9.4):
//! * partial score: the recipe's formula (cookbook §5.3), weights from
//!   `RftParams.partialWeights` (default action 0.5, communicate 0.15, env
//!   0.35, db 0), renormalised over the components the task has;
//! * invalid episodes (context overflow, participant or evaluator failures)
//!   are never kept: their end is not the policy's doing;
//! * duplicates: an episode whose ids equal an already kept one of the same
//!   task is dropped (identical samples would only reweight the task);
//! * ties among failures go to the earliest sample (deterministic);
//! * no cap on successes per task (the recipe keeps them all).

use std::io::{BufRead, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};
use tau2_api::bench::Domain;
use tau2_api::phases::{PartialWeights, RftKeep};

use crate::reward::partial_score;
use crate::trajectory::Trajectory;

#[derive(Debug, thiserror::Error)]
pub enum RftError {
    #[error("cannot write {path}: {source}")]
    Write {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{path} line {line}: not a trajectory: {source}")]
    Parse {
        path: std::path::PathBuf,
        line: usize,
        source: serde_json::Error,
    },
    #[error("invalid RFT settings: {0}")]
    Config(String),
    #[error(transparent)]
    Eval(#[from] crate::eval::EvalError),
    #[error(transparent)]
    Rollout(#[from] crate::rollout::RolloutError),
}

/// File names in the phase's output directory.
pub const SAMPLES_FILE: &str = "rft_samples.jsonl";
pub const KEPT_FILE: &str = "rft_kept.jsonl";
pub const SELECTION_FILE: &str = "rft_selection.json";

/// What the sampling half of RFT wrote, for the SFT half.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RftReport {
    pub selection: Selection,
    pub rollout: crate::rollout::RolloutStats,
    /// Every sampled episode (JSON lines of `Trajectory`).
    pub samples_file: std::path::PathBuf,
    /// The kept episodes: the SFT data of the retrain.
    pub kept_file: std::path::PathBuf,
}

/// RFT's sampling half: `samples_per_task` episodes of every task of
/// `split` in `domains`, the selection, and the files in `out_dir`
/// ([`SAMPLES_FILE`], [`KEPT_FILE`], [`SELECTION_FILE`]).
#[allow(clippy::too_many_arguments)]
pub fn sample_and_select(
    runtime: &tokio::runtime::Runtime,
    domains: &[tau2_bench::domains::LoadedDomain],
    split: tau2_api::bench::Split,
    params: &tau2_api::phases::RftParams,
    chat: &tau2_chat::ChatTokenizer,
    generator: &mut dyn crate::policy::Generator,
    user: &crate::rollout::UserSimulator,
    rollout: &crate::rollout::RolloutConfig,
    judge: Option<&dyn tau2_bench::evaluator::NlJudge>,
    out_dir: &Path,
) -> Result<(Vec<Trajectory>, RftReport), RftError> {
    let samples = u32::try_from(params.samples_per_task)
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| {
            RftError::Config(format!(
                "samplesPerTask must be at least 1, got {}",
                params.samples_per_task
            ))
        })?;
    let mut jobs = Vec::new();
    for loaded in domains {
        let tasks = crate::eval::split_tasks(loaded, split, None)?;
        jobs.extend(crate::rollout::RolloutJob::per_task(
            loaded, &tasks, samples,
        ));
    }
    let (outcomes, stats) =
        crate::rollout::run_rollouts(runtime, &jobs, chat, generator, user, rollout, judge)?;
    let sampled: Vec<Trajectory> = outcomes.into_iter().map(|o| o.trajectory).collect();
    let (kept, selection) = kept_trajectories(&sampled, &params.keep, &params.partial_weights);
    std::fs::create_dir_all(out_dir).map_err(|source| RftError::Write {
        path: out_dir.to_path_buf(),
        source,
    })?;
    let report = RftReport {
        selection,
        rollout: stats,
        samples_file: out_dir.join(SAMPLES_FILE),
        kept_file: out_dir.join(KEPT_FILE),
    };
    write_jsonl(&report.samples_file, &sampled)?;
    write_jsonl(&report.kept_file, &kept)?;
    crate::eval::write_json_atomic(&out_dir.join(SELECTION_FILE), &report)?;
    Ok((kept, report))
}

/// Why each kept episode was kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeepReason {
    Success,
    BestPartial,
}

/// The selection for one task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskSelection {
    pub domain: Domain,
    pub task_id: String,
    pub samples: usize,
    pub successes: usize,
    pub invalid: usize,
    /// Kept sample indices with the reason.
    pub kept: Vec<(u32, KeepReason)>,
    /// The best partial score among valid failures, if any.
    pub best_partial: Option<f64>,
}

/// The whole selection: per task, and totals.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Selection {
    pub tasks: Vec<TaskSelection>,
    pub sampled: usize,
    pub kept: usize,
    pub kept_successes: usize,
    pub kept_partial: usize,
    pub duplicates_dropped: usize,
    /// Share of sampled episodes that succeeded (the recipe reports 25%).
    pub success_rate: f64,
}

/// Selects the episodes to fine-tune on (see the module docs). Returns
/// indices into `trajectories`, in input order, and the report.
pub fn select(
    trajectories: &[Trajectory],
    keep: &RftKeep,
    weights: &PartialWeights,
) -> (Vec<usize>, Selection) {
    // Group by task, keeping the order tasks first appear in.
    let mut order: Vec<(Domain, &str)> = Vec::new();
    let mut groups: std::collections::HashMap<(Domain, &str), Vec<usize>> = Default::default();
    for (i, t) in trajectories.iter().enumerate() {
        let key = (t.domain, t.task_id.as_str());
        let g = groups.entry(key).or_default();
        if g.is_empty() {
            order.push(key);
        }
        g.push(i);
    }
    let meets = |r: f64| r >= keep.min_reward - 1e-6;
    let mut chosen = Vec::new();
    let mut tasks = Vec::new();
    let mut duplicates = 0;
    for key in order {
        let members = groups.remove(&key).unwrap_or_default();
        let valid: Vec<usize> = members
            .iter()
            .copied()
            .filter(|&i| trajectories[i].valid)
            .collect();
        let mut kept: Vec<(usize, KeepReason)> = valid
            .iter()
            .filter(|&&i| meets(trajectories[i].reward))
            .map(|&i| (i, KeepReason::Success))
            .collect();
        let failures = valid.iter().filter(|&&i| !meets(trajectories[i].reward));
        let best = failures
            .map(|&i| {
                let p = trajectories[i]
                    .reward_info
                    .as_ref()
                    .map_or(0.0, |info| partial_score(info, weights));
                (i, p)
            })
            // Highest score; the earliest sample on ties.
            .fold(None::<(usize, f64)>, |best, (i, p)| match best {
                Some((_, bp)) if bp >= p => best,
                _ => Some((i, p)),
            });
        if kept.is_empty()
            && let Some((i, p)) = best
            && p >= keep.best_partial_above
        {
            kept.push((i, KeepReason::BestPartial));
        }
        // Drop exact duplicates of an earlier kept episode of this task.
        let mut unique: Vec<(usize, KeepReason)> = Vec::new();
        for (i, why) in kept {
            if unique
                .iter()
                .any(|(j, _)| trajectories[*j].ids == trajectories[i].ids)
            {
                duplicates += 1;
            } else {
                unique.push((i, why));
            }
        }
        tasks.push(TaskSelection {
            domain: key.0,
            task_id: key.1.to_string(),
            samples: members.len(),
            successes: members
                .iter()
                .filter(|&&i| trajectories[i].is_success())
                .count(),
            invalid: members.len() - valid.len(),
            kept: unique
                .iter()
                .map(|&(i, why)| (trajectories[i].sample, why))
                .collect(),
            best_partial: best.map(|(_, p)| p),
        });
        chosen.extend(unique);
    }
    chosen.sort_by_key(|(i, _)| *i);
    let kept_successes = chosen
        .iter()
        .filter(|(_, w)| *w == KeepReason::Success)
        .count();
    let sampled = trajectories.len();
    let selection = Selection {
        tasks,
        sampled,
        kept: chosen.len(),
        kept_successes,
        kept_partial: chosen.len() - kept_successes,
        duplicates_dropped: duplicates,
        success_rate: trajectories.iter().filter(|t| t.is_success()).count() as f64
            / sampled.max(1) as f64,
    };
    (chosen.into_iter().map(|(i, _)| i).collect(), selection)
}

/// The trajectories RFT fine-tunes on: the boundary between sampling and
/// the SFT trainer, which trains on their ids with their policy masks.
pub fn kept_trajectories(
    trajectories: &[Trajectory],
    keep: &RftKeep,
    weights: &PartialWeights,
) -> (Vec<Trajectory>, Selection) {
    let (indices, selection) = select(trajectories, keep, weights);
    let kept = indices
        .into_iter()
        .filter_map(|i| trajectories.get(i).cloned())
        .collect();
    (kept, selection)
}

/// Writes trajectories as JSON lines (the SFT trainer's trajectory input).
pub fn write_jsonl(path: &Path, trajectories: &[Trajectory]) -> Result<(), RftError> {
    let err = |source| RftError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).map_err(err)?);
    for t in trajectories {
        serde_json::to_writer(&mut out, t).map_err(|e| err(e.into()))?;
        out.write_all(b"\n").map_err(err)?;
    }
    out.flush().map_err(err)
}

/// Reads trajectories written by [`write_jsonl`].
pub fn read_jsonl(path: &Path) -> Result<Vec<Trajectory>, RftError> {
    let file = std::fs::File::open(path).map_err(|source| RftError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut out = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|source| RftError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(
            serde_json::from_str(&line).map_err(|source| RftError::Parse {
                path: path.to_path_buf(),
                line: n + 1,
                source,
            })?,
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tau2_bench::evaluator::{ActionCheck, CommunicateCheck, DbCheck, RewardInfo};
    use tau2_bench::task::Action;

    fn action(matched: bool) -> ActionCheck {
        ActionCheck {
            action: Action {
                action_id: "a".into(),
                requestor: Default::default(),
                name: "f".into(),
                arguments: Default::default(),
                info: None,
                compare_args: None,
            },
            action_match: matched,
            action_reward: if matched { 1.0 } else { 0.0 },
        }
    }

    fn info(actions: &[bool], communicate: &[bool]) -> RewardInfo {
        RewardInfo {
            action_checks: Some(actions.iter().map(|&m| action(m)).collect()),
            communicate_checks: (!communicate.is_empty()).then(|| {
                communicate
                    .iter()
                    .map(|&met| CommunicateCheck {
                        info: "x".into(),
                        met,
                        justification: String::new(),
                    })
                    .collect()
            }),
            db_check: Some(DbCheck {
                db_match: false,
                db_reward: 0.0,
            }),
            ..Default::default()
        }
    }

    fn traj(task: &str, sample: u32, reward: f64, info: Option<RewardInfo>) -> Trajectory {
        Trajectory {
            domain: Domain::Retail,
            task_id: task.into(),
            sample,
            ids: vec![1, 2, sample + 10],
            policy_mask: vec![false, true, true],
            logprobs: vec![0.0, -1.0, -1.0],
            reward,
            reward_info: info,
            termination: "user_stop".into(),
            valid: true,
            messages: serde_json::Value::Null,
        }
    }

    #[test]
    fn selection_uses_the_shared_partial_score() {
        let w = PartialWeights::default();
        // Actions only: the action share (db has weight 0).
        assert!((partial_score(&info(&[true, true, false], &[]), &w) - 2.0 / 3.0).abs() < 1e-12);
        // Actions and communicate: (0.5 * 1/2 + 0.15 * 1) / 0.65.
        let p = partial_score(&info(&[true, false], &[true]), &w);
        assert!((p - (0.25 + 0.15) / 0.65).abs() < 1e-12);
        // Nothing present: 0.
        assert_eq!(partial_score(&RewardInfo::default(), &w), 0.0);
    }

    #[test]
    fn keeps_successes_and_the_best_qualifying_failure() {
        let keep = RftKeep::default();
        let w = PartialWeights::default();
        let mut ts = vec![
            // t0: two successes (one a duplicate of the other) and a failure.
            traj("t0", 0, 1.0, Some(info(&[true], &[]))),
            traj("t0", 1, 0.0, Some(info(&[true, false], &[]))),
            traj("t0", 2, 1.0, Some(info(&[true], &[]))),
            // t1: no success; the failures score 0.5, 0.75, 0.75 (tie: earlier wins).
            traj("t1", 0, 0.0, Some(info(&[true, false], &[]))),
            traj("t1", 1, 0.0, Some(info(&[true, true, true, false], &[]))),
            traj("t1", 2, 0.0, Some(info(&[true, true, true, false], &[]))),
            // t2: best failure 0.5 < 0.6: nothing kept.
            traj("t2", 0, 0.0, Some(info(&[true, false], &[]))),
            // t3: an invalid success is never kept; the valid failure qualifies.
            traj("t3", 0, 1.0, Some(info(&[true], &[]))),
            traj(
                "t3",
                1,
                0.0,
                Some(info(&[true, true, true, true, false], &[])),
            ),
        ];
        ts[2].ids = ts[0].ids.clone();
        ts[7].valid = false;
        let (kept, sel) = kept_trajectories(&ts, &keep, &w);
        let got: Vec<(&str, u32)> = kept
            .iter()
            .map(|t| (t.task_id.as_str(), t.sample))
            .collect();
        assert_eq!(got, [("t0", 0), ("t1", 1), ("t3", 1)]);
        assert_eq!(sel.kept, 3);
        assert_eq!((sel.kept_successes, sel.kept_partial), (1, 2));
        assert_eq!(sel.duplicates_dropped, 1);
        assert_eq!(sel.tasks[1].kept, [(1, KeepReason::BestPartial)]);
        assert!(sel.tasks[2].kept.is_empty());
        assert_eq!(sel.tasks[2].best_partial, Some(0.5));
        assert_eq!(sel.tasks[3].invalid, 1);
        assert!((sel.success_rate - 3.0 / 9.0).abs() < 1e-12);
        // A threshold of 1 keeps no failures.
        let strict = RftKeep {
            best_partial_above: 1.0,
            ..keep
        };
        let (kept, _) = kept_trajectories(&ts, &strict, &w);
        assert_eq!(kept.len(), 1);
    }

    #[test]
    fn jsonl_round_trip() -> Result<(), RftError> {
        let dir = tempfile::tempdir().map_err(|source| RftError::Write {
            path: "tmp".into(),
            source,
        })?;
        let path = dir.path().join("kept.jsonl");
        let ts = vec![traj("t0", 0, 1.0, Some(info(&[true], &[])))];
        write_jsonl(&path, &ts)?;
        let back = read_jsonl(&path)?;
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].ids, ts[0].ids);
        assert_eq!(back[0].reward_info, ts[0].reward_info);
        Ok(())
    }
}
