//! The GRPO loop: per step, rollouts of the step's tasks, their advantages,
//! the step's updates, then metrics and a checkpoint.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Instant;

use tau2_api::phases::{Curriculum, GrpoParams, LrSchedule, RewardShaping};
use tau2_model::Qwen3;
use tau2_model::rng::Rng;

use super::advantages::{CurriculumState, advantages};
use super::loss::LossConfig;
use super::step::{StepSums, accumulate_gradients, rollout_logprobs, update_plan};
use super::{RolloutSource, TaskRef, step_seed};
use crate::checkpoint::{Checkpoints, StepRecord, TrainState};
use crate::error::{Result, TrainError};
use crate::optim::{AdamW, AdamWConfig};
use crate::progress::Observer;
use crate::run;
use crate::schedule::Schedule;
use crate::trajectory::Trajectory;

#[derive(Clone, Debug, PartialEq)]
pub struct GrpoConfig {
    pub steps: u64,
    pub tasks_per_step: usize,
    pub samples_per_task: usize,
    /// Passes over each step's samples, and optimizer updates per pass.
    pub update_epochs: usize,
    pub mini_batches: usize,
    pub loss: LossConfig,
    pub shaping: RewardShaping,
    pub curriculum: Curriculum,
    pub max_tokens_per_micro_batch: usize,
    pub save_every_steps: u64,
    pub keep_last: usize,
    pub seed: u64,
    pub adamw: AdamWConfig,
    pub schedule: LrSchedule,
    pub learning_rate: f64,
    pub warmup_ratio: f64,
    /// Return after this many steps without finishing, as if killed (tests).
    pub stop_after_steps: Option<u64>,
}

impl GrpoConfig {
    pub fn from_params(p: &GrpoParams, seed: u64) -> Result<Self> {
        let positive = crate::error::positive;
        let samples = positive("samplesPerTask", p.samples_per_task)?;
        if samples < 2 {
            return Err(TrainError::Config(
                "samplesPerTask must be at least 2: a group of one has no advantage".into(),
            ));
        }
        let tasks_per_step = positive("tasksPerStep", p.tasks_per_step)?;
        let mini_batches = positive("miniBatches", p.mini_batches)?;
        if mini_batches > tasks_per_step * samples {
            return Err(TrainError::Config(format!(
                "miniBatches ({mini_batches}) must not exceed tasksPerStep x samplesPerTask ({}): \
                 each mini-batch needs at least one episode",
                tasks_per_step * samples
            )));
        }
        Ok(Self {
            steps: positive("steps", p.steps)? as u64,
            tasks_per_step,
            samples_per_task: samples,
            update_epochs: positive("updateEpochs", p.update_epochs)?,
            mini_batches,
            loss: LossConfig::from_params(p),
            shaping: p.reward_shaping.clone(),
            curriculum: p.curriculum.clone(),
            max_tokens_per_micro_batch: positive(
                "maxTokensPerMicroBatch",
                p.max_tokens_per_micro_batch,
            )?,
            save_every_steps: positive("saveEverySteps", p.save_every_steps)? as u64,
            keep_last: 2,
            seed,
            adamw: AdamWConfig::from(&p.optimizer),
            schedule: p.optimizer.schedule,
            learning_rate: p.optimizer.learning_rate,
            warmup_ratio: p.optimizer.warmup_ratio,
            stop_after_steps: None,
        })
    }
}

#[derive(Clone, Debug)]
pub struct GrpoOutcome {
    pub final_dir: Option<PathBuf>,
    pub steps: u64,
    pub resumed_from: Option<u64>,
    pub history: Vec<StepRecord>,
}

/// The tasks of step `step`: the next P of a per-epoch permutation.
fn step_tasks(tasks: &[TaskRef], per_step: usize, seed: u64, step: u64) -> Vec<TaskRef> {
    let n = tasks.len() as u64;
    let mut cache: HashMap<u64, Vec<usize>> = HashMap::new();
    (0..per_step as u64)
        .map(|j| {
            let pos = step * per_step as u64 + j;
            let epoch = pos / n;
            let perm = cache.entry(epoch).or_insert_with(|| {
                let mut rng = Rng::new(seed ^ (epoch + 1).wrapping_mul(0xA24B_AED4_963E_E407));
                let mut p: Vec<usize> = (0..tasks.len()).collect();
                for i in (1..p.len()).rev() {
                    p.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
                }
                p
            });
            tasks[perm[(pos % n) as usize]].clone()
        })
        .collect()
}

/// Runs GRPO from the latest checkpoint in `checkpoints` and writes `final/`.
/// `reference` is the frozen KL reference (needed when `kl_coef > 0`).
pub fn train(
    model: &Qwen3,
    reference: Option<&Qwen3>,
    tasks: &[TaskRef],
    rollouts: &mut dyn RolloutSource,
    cfg: &GrpoConfig,
    checkpoints: &Checkpoints,
    observer: &mut dyn Observer,
) -> Result<GrpoOutcome> {
    if tasks.is_empty() {
        return Err(TrainError::Config("no training tasks".into()));
    }
    if cfg.loss.kl_coef > 0.0 && reference.is_none() {
        return Err(TrainError::Config(
            "klCoef > 0 needs a reference model".into(),
        ));
    }
    let schedule = Schedule::new(cfg.schedule, cfg.learning_rate, cfg.warmup_ratio, cfg.steps);
    let mut optimizer = AdamW::new(model, cfg.adamw)?;
    let fresh = TrainState {
        phase: "grpo".into(),
        total_steps: cfg.steps,
        seed: cfg.seed,
        ..TrainState::default()
    };
    let (mut state, resumed_from) = run::begin(model, &mut optimizer, checkpoints, fresh)?;
    let mut curriculum: CurriculumState =
        serde_json::from_value(state.extra.clone()).unwrap_or_default();
    while state.step < cfg.steps {
        if cfg.stop_after_steps == Some(state.step) {
            return Ok(GrpoOutcome {
                final_dir: None,
                steps: state.step,
                resumed_from,
                history: state.history,
            });
        }
        let t0 = Instant::now();
        let step_tasks = step_tasks(tasks, cfg.tasks_per_step, cfg.seed, state.step);
        let trajectories = {
            let _guard = tch::no_grad_guard();
            rollouts
                .rollout(
                    model,
                    &step_tasks,
                    cfg.samples_per_task,
                    step_seed(cfg.seed, state.step),
                )
                .map_err(TrainError::Rollout)?
        };
        let rollout_secs = t0.elapsed().as_secs_f64();
        let mut trajectories = trajectories;
        for t in &mut trajectories {
            // Misshapen trajectories cannot be trained on.
            if t.ids.len() != t.policy_mask.len() || t.ids.len() != t.logprobs.len() {
                t.valid = false;
            }
        }
        let (shaped, adv) = advantages(
            &trajectories,
            &cfg.shaping,
            &cfg.curriculum,
            &mut curriculum,
        );
        let t1 = Instant::now();
        let lr = schedule.lr(state.step);
        // The update order's own stream, apart from the rollouts'.
        let seed = step_seed(cfg.seed, state.step) ^ 0x5851_F42D_4C95_7F2D;
        let signal = adv.iter().any(|a| *a != 0.0);
        let plan = if signal {
            update_plan(
                trajectories.len(),
                cfg.update_epochs,
                cfg.mini_batches,
                seed,
            )
        } else {
            Vec::new()
        };
        let old = if plan.len() > 1 {
            Some(rollout_logprobs(
                model,
                &trajectories,
                cfg.loss.temperature,
                cfg.max_tokens_per_micro_batch,
            )?)
        } else {
            None
        };
        // Metrics come from the first pass, which sees every sample once.
        let first_pass = plan.len() / cfg.update_epochs.max(1);
        let mut sums = StepSums::default();
        let (mut grad_norm, mut tokens) = (0.0, 0);
        if plan.is_empty() {
            // No update, but the policy's entropy, KL and log-prob gap on
            // its rollouts are still worth watching.
            sums = accumulate_gradients(
                model,
                reference,
                &trajectories,
                &adv,
                None,
                &cfg.loss,
                cfg.max_tokens_per_micro_batch,
                None,
            )?;
        }
        for (u, part) in plan.iter().enumerate() {
            let pick = |v: &[f64]| part.iter().map(|i| v[*i]).collect::<Vec<_>>();
            let (part_trajectories, part_old);
            let (ts, olds) = if part.len() == trajectories.len() && plan.len() == 1 {
                (trajectories.as_slice(), None)
            } else {
                part_trajectories = part
                    .iter()
                    .map(|i| trajectories[*i].clone())
                    .collect::<Vec<_>>();
                part_old = old
                    .as_ref()
                    .map(|o| part.iter().map(|i| o[*i].clone()).collect::<Vec<_>>());
                (part_trajectories.as_slice(), part_old.as_deref())
            };
            let part_sums = accumulate_gradients(
                model,
                reference,
                ts,
                &pick(&adv),
                olds,
                &cfg.loss,
                cfg.max_tokens_per_micro_batch,
                Some(&mut optimizer),
            )?;
            grad_norm += optimizer.step(lr).grad_norm / plan.len() as f64;
            tokens += part_sums.tokens;
            if u < first_pass {
                sums.absorb(
                    &part_sums,
                    part.len() as f64 / trajectories.len().max(1) as f64,
                );
            }
        }
        state.step += 1;
        state.data_position += step_tasks.len() as u64;
        let n = trajectories.len().max(1) as f64;
        let nt = sums.trainable.max(1) as f64;
        let mut metrics = BTreeMap::from([
            ("loss".to_string(), sums.loss),
            ("pg_loss".to_string(), sums.pg / nt),
            ("kl".to_string(), sums.kl / nt),
            ("entropy".to_string(), sums.entropy / nt),
            (
                "reward".to_string(),
                trajectories.iter().map(|t| t.reward).sum::<f64>() / n,
            ),
            ("shaped_reward".to_string(), shaped.iter().sum::<f64>() / n),
            (
                "valid_fraction".to_string(),
                trajectories.iter().filter(|t| t.valid).count() as f64 / n,
            ),
            (
                "zero_advantage_fraction".to_string(),
                adv.iter().filter(|a| a.abs() < 1e-12).count() as f64 / n,
            ),
            ("logprob_gap".to_string(), sums.logprob_gap / nt),
            (
                "policy_tokens".to_string(),
                trajectories
                    .iter()
                    .filter(|t| t.valid)
                    .map(Trajectory::policy_tokens)
                    .sum::<usize>() as f64,
            ),
            ("grad_norm".to_string(), grad_norm),
            ("updates".to_string(), plan.len() as f64),
            ("lr".to_string(), lr),
        ]);
        let train_secs = t1.elapsed().as_secs_f64().max(1e-9);
        let mut timing = BTreeMap::from([
            ("tokens_per_second".to_string(), tokens as f64 / train_secs),
            ("rollout_seconds".to_string(), rollout_secs),
            (
                "episodes_per_second".to_string(),
                n / rollout_secs.max(1e-9),
            ),
        ]);
        if plan.is_empty() {
            // Nothing was trained: no gradient or training speed to report.
            metrics.remove("grad_norm");
            timing.remove("tokens_per_second");
        }
        tracing::info!(
            step = state.step,
            total = cfg.steps,
            loss = sums.loss,
            reward = metrics["reward"],
            "grpo step"
        );
        state.extra = serde_json::to_value(&curriculum).unwrap_or_default();
        run::end_step(
            model,
            &optimizer,
            checkpoints,
            &mut state,
            observer,
            metrics,
            &timing,
            cfg.save_every_steps,
        )?;
    }
    let final_dir = run::finish(model, checkpoints, &state, observer)?;
    Ok(GrpoOutcome {
        final_dir: Some(final_dir),
        steps: state.step,
        resumed_from,
        history: state.history,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tau2_api::bench::Domain;

    #[test]
    fn config_rejects_more_mini_batches_than_episodes() {
        let p = GrpoParams {
            tasks_per_step: 2,
            samples_per_task: 3,
            mini_batches: 7,
            ..GrpoParams::default()
        };
        let e = GrpoConfig::from_params(&p, 0).expect_err("7 > 6");
        assert!(
            e.to_string().contains("miniBatches (7) must not exceed"),
            "{e}"
        );
        let ok = GrpoConfig::from_params(
            &GrpoParams {
                mini_batches: 6,
                ..p
            },
            0,
        )
        .expect("6");
        assert_eq!((ok.update_epochs, ok.mini_batches), (1, 6));
    }

    #[test]
    fn task_order_covers_every_task_each_epoch() {
        let tasks: Vec<TaskRef> = (0..5)
            .map(|i| TaskRef {
                domain: Domain::Mock,
                task_id: i.to_string(),
            })
            .collect();
        let mut seen: Vec<String> = (0..5)
            .flat_map(|s| step_tasks(&tasks, 1, 3, s))
            .map(|t| t.key())
            .collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 5);
        assert_eq!(step_tasks(&tasks, 2, 3, 1), step_tasks(&tasks, 2, 3, 1));
    }
}
