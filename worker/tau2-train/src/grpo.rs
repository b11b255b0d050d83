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

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tau2_api::bench::Domain;
use tau2_api::phases::{Curriculum, GrpoParams, LrSchedule, RewardShaping};
use tau2_model::Qwen3;
use tau2_model::rng::Rng;
use tch::{Kind, Tensor};

use crate::batch::{Padded, Sequence, micro_batches, pad};
use crate::checkpoint::{Checkpoints, StepRecord, TrainState};
use crate::error::{Result, TrainError};
use crate::optim::{AdamW, AdamWConfig};
use crate::progress::Observer;
use crate::reward::shaped_reward;
use crate::run;
use crate::schedule::Schedule;
use crate::trajectory::Trajectory;

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

/// Coefficients of the policy loss.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LossConfig {
    pub clip_low: f64,
    pub clip_high: f64,
    pub kl_coef: f64,
    pub entropy_coef: f64,
    pub temperature: f64,
}

/// One sequence's loss terms, each a token mean over its policy tokens
/// (scalar tensors; `pg` and `kl` carry gradients, as does `entropy`).
pub struct SeqTerms {
    pub pg: Tensor,
    pub kl: Tensor,
    pub entropy: Tensor,
}

/// §5.5 for one sequence: `logp`, `old`, `reference`, `entropy` are `[n]`
/// over its policy tokens.
pub fn sequence_terms(
    logp: &Tensor,
    old: &Tensor,
    reference: Option<&Tensor>,
    entropy: &Tensor,
    advantage: f64,
    cfg: &LossConfig,
) -> SeqTerms {
    let n = (logp.numel() as f64).max(1.0);
    let ratio = (logp - old).exp();
    let unclipped = -&ratio * advantage;
    let clipped = -ratio.clamp(1.0 - cfg.clip_low, 1.0 + cfg.clip_high) * advantage;
    let pg = unclipped.maximum(&clipped).sum(Kind::Float) / n;
    let kl = match reference {
        Some(r) => {
            let delta = r - logp;
            (delta.exp() - &delta - 1.0)
                .clamp(-10.0, 10.0)
                .sum(Kind::Float)
                / n
        }
        None => Tensor::zeros([], (Kind::Float, logp.device())),
    };
    SeqTerms {
        pg,
        kl,
        entropy: entropy.sum(Kind::Float) / n,
    }
}

/// The per-sample objective: `pg − entropy_coef·H + kl_coef·KL`.
pub fn sample_loss(t: &SeqTerms, cfg: &LossConfig) -> Tensor {
    &t.pg - &t.entropy * cfg.entropy_coef + &t.kl * cfg.kl_coef
}

/// Per-token values over the targets of a padded micro-batch (row-major).
pub struct TargetLogprobs {
    /// Log-probs under `logits / temperature` (carry gradients).
    pub logp: Tensor,
    /// Full-vocabulary entropy there, when asked for.
    pub entropy: Option<Tensor>,
    /// Detached log-probs under the raw distribution (temperature 1, what
    /// the sampler records), when asked for.
    pub raw: Option<Tensor>,
}

/// Log-probs of the target tokens of a padded micro-batch under
/// `logits / temperature`, optionally with the entropy there and the raw
/// (temperature 1) log-probs.
pub fn policy_logprobs(
    model: &Qwen3,
    p: &Padded,
    temperature: f64,
    with_entropy: bool,
    with_raw: bool,
) -> Result<TargetLogprobs> {
    let attention = p.padded.then_some(&p.attention);
    let hidden = model.forward_hidden(&p.ids, attention, None, None)?;
    let t = p.ids.size()[1];
    let selected = p.targets.narrow(1, 1, t - 1);
    let rc = selected.nonzero();
    let flat = rc.select(1, 0) * t + rc.select(1, 1);
    let targets = p.ids.narrow(1, 1, t - 1).masked_select(&selected);
    let raw_logits = model.logits_at(&hidden, &flat).to_kind(Kind::Float);
    let logits = &raw_logits / temperature;
    let all = logits.log_softmax(-1, Kind::Float);
    let logp = all.gather(1, &targets.unsqueeze(1), false).squeeze_dim(1);
    let entropy = with_entropy.then(|| -(all.exp() * &all).sum_dim_intlist(-1, false, Kind::Float));
    let raw = with_raw.then(|| {
        let _guard = tch::no_grad_guard();
        let z = raw_logits.detach();
        z.gather(1, &targets.unsqueeze(1), false).squeeze_dim(1) - z.logsumexp([-1], false)
    });
    Ok(TargetLogprobs { logp, entropy, raw })
}

/// π_old for updates that reuse a rollout: each trajectory's per-token
/// log-probs under the current weights at `temperature`, aligned with its
/// ids (0 off the policy tokens, and everywhere for a sample that cannot
/// be trained on).
pub fn rollout_logprobs(
    model: &Qwen3,
    trajectories: &[Trajectory],
    temperature: f64,
    max_tokens_per_micro_batch: usize,
) -> Result<Vec<Vec<f32>>> {
    let _guard = tch::no_grad_guard();
    let seqs = sequences(trajectories);
    let lengths: Vec<usize> = seqs.iter().map(Sequence::len).collect();
    let mut out: Vec<Vec<f32>> = trajectories
        .iter()
        .map(|t| vec![0.0; t.ids.len()])
        .collect();
    for mb in micro_batches(
        &lengths,
        &trainable(trajectories, &seqs),
        max_tokens_per_micro_batch,
    ) {
        let rows: Vec<&Sequence> = mb.iter().map(|i| &seqs[*i]).collect();
        let p = pad(&rows, 0, model.device());
        let logp = policy_logprobs(model, &p, temperature, false, false)?.logp;
        let mut values = Vec::<f32>::try_from(logp.to_device(tch::Device::Cpu))?.into_iter();
        for &i in &mb {
            let mask = &seqs[i].mask;
            for (j, v) in out[i].iter_mut().enumerate().skip(1) {
                if mask[j] {
                    *v = values.next().unwrap_or(0.0);
                }
            }
        }
    }
    Ok(out)
}

fn sequences(trajectories: &[Trajectory]) -> Vec<Sequence> {
    trajectories
        .iter()
        .map(|t| Sequence {
            ids: t.ids.clone(),
            mask: t.policy_mask.clone(),
        })
        .collect()
}

/// The samples that enter the loss: valid, with policy tokens.
fn trainable(trajectories: &[Trajectory], seqs: &[Sequence]) -> Vec<usize> {
    (0..seqs.len())
        .filter(|i| trajectories[*i].valid && seqs[*i].targets() > 0)
        .collect()
}

/// The samples of each optimizer update of one step: `epochs` passes over
/// `0..n`, each in a random order from `seed` (in order when the whole
/// step is one update, as in the recipe) and cut into `mini_batches`
/// near-equal parts.
pub fn update_plan(n: usize, epochs: usize, mini_batches: usize, seed: u64) -> Vec<Vec<usize>> {
    let parts = mini_batches.clamp(1, n.max(1));
    let mut plan = Vec::with_capacity(epochs * parts);
    for epoch in 0..epochs as u64 {
        let mut order: Vec<usize> = (0..n).collect();
        if epochs * parts > 1 {
            let mut rng = Rng::new(seed ^ (epoch + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            for i in (1..n).rev() {
                order.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
            }
        }
        let mut rest = order.as_slice();
        for k in 0..parts {
            let size = n / parts + usize::from(k < n % parts);
            let (part, tail) = rest.split_at(size);
            plan.push(part.to_vec());
            rest = tail;
        }
    }
    plan
}

/// Sums over one step's trainable samples, for the metrics.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepSums {
    /// The step's loss (what was backpropagated).
    pub loss: f64,
    pub pg: f64,
    pub kl: f64,
    pub entropy: f64,
    /// Σ over samples of the mean |trainer − sampler| raw (temperature 1)
    /// log-prob of their policy tokens.
    pub logprob_gap: f64,
    /// Samples that entered the loss (valid, with policy tokens).
    pub trainable: usize,
    /// Tokens forwarded (padding excluded) and policy tokens among them.
    pub tokens: usize,
    pub policy_tokens: usize,
}

impl StepSums {
    /// Adds an update's sums over `share` of the step's samples (its loss
    /// is a mean over them).
    fn absorb(&mut self, other: &StepSums, share: f64) {
        self.loss += other.loss * share;
        self.pg += other.pg;
        self.kl += other.kl;
        self.entropy += other.entropy;
        self.logprob_gap += other.logprob_gap;
        self.trainable += other.trainable;
        self.tokens += other.tokens;
        self.policy_tokens += other.policy_tokens;
    }
}

/// One step's forward and backward over its rollouts, gradients left in the
/// optimizer's accumulators (the caller steps it); with no optimizer, the
/// forward alone under `no_grad`, for the metrics. `old` gives π_old per
/// trajectory, aligned with its ids like [`Trajectory::logprobs`]; `None`
/// takes the current weights (one update per rollout, ratio 1). The loss is
/// Σ over valid samples of [`sample_loss`] / (all samples, invalid included).
#[allow(clippy::too_many_arguments)]
pub fn accumulate_gradients(
    model: &Qwen3,
    reference: Option<&Qwen3>,
    trajectories: &[Trajectory],
    adv: &[f64],
    old: Option<&[Vec<f32>]>,
    loss: &LossConfig,
    max_tokens_per_micro_batch: usize,
    mut optimizer: Option<&mut AdamW>,
) -> Result<StepSums> {
    let _measure_only = optimizer.is_none().then(tch::no_grad_guard);
    if let Some(old) = old {
        let aligned = old.len() == trajectories.len()
            && old
                .iter()
                .zip(trajectories)
                .all(|(o, t)| o.len() == t.ids.len());
        if !aligned {
            return Err(TrainError::Config(
                "old log-probs must align with the trajectories' ids".into(),
            ));
        }
    }
    let device = model.device();
    let batch = trajectories.len().max(1) as f64;
    let seqs = sequences(trajectories);
    let trainable = trainable(trajectories, &seqs);
    let lengths: Vec<usize> = seqs.iter().map(Sequence::len).collect();
    let mut sums = StepSums {
        trainable: trainable.len(),
        ..StepSums::default()
    };
    for mb in micro_batches(&lengths, &trainable, max_tokens_per_micro_batch) {
        let rows: Vec<&Sequence> = mb.iter().map(|i| &seqs[*i]).collect();
        let p = pad(&rows, 0, device);
        let TargetLogprobs { logp, entropy, raw } =
            policy_logprobs(model, &p, loss.temperature, true, true)?;
        let entropy = entropy.unwrap_or_else(|| logp.zeros_like());
        let raw = raw.unwrap_or_else(|| logp.detach());
        let ref_logp = match (reference, loss.kl_coef > 0.0) {
            (Some(r), true) => {
                let _guard = tch::no_grad_guard();
                Some(policy_logprobs(r, &p, loss.temperature, false, false)?.logp)
            }
            _ => None,
        };
        let old_logp = match old {
            Some(old) => {
                let rows: Vec<f32> = mb
                    .iter()
                    .flat_map(|i| policy_values(&old[*i], &trajectories[*i].policy_mask))
                    .collect();
                Tensor::from_slice(&rows).to_device(device)
            }
            None => logp.detach(),
        };
        let sizes = &p.targets_per_row;
        let lp = logp.split_with_sizes(sizes, 0);
        let ol = old_logp.split_with_sizes(sizes, 0);
        let en = entropy.split_with_sizes(sizes, 0);
        let rw = raw.split_with_sizes(sizes, 0);
        let rl = ref_logp.as_ref().map(|r| r.split_with_sizes(sizes, 0));
        let mut mb_loss = Tensor::zeros([], (Kind::Float, device));
        for (row, &i) in mb.iter().enumerate() {
            let terms = sequence_terms(
                &lp[row],
                &ol[row],
                rl.as_ref().map(|r| &r[row]),
                &en[row],
                adv[i],
                loss,
            );
            mb_loss += sample_loss(&terms, loss) / batch;
            sums.pg += terms.pg.double_value(&[]);
            sums.kl += terms.kl.double_value(&[]);
            sums.entropy += terms.entropy.double_value(&[]);
            // Sampler vs trainer log-probs on the policy tokens.
            let t = &trajectories[i];
            let sampled: Vec<f32> = policy_values(&t.logprobs, &t.policy_mask).collect();
            let sampled = Tensor::from_slice(&sampled).to_device(device);
            sums.logprob_gap += (&rw[row] - sampled)
                .abs()
                .mean(Kind::Float)
                .double_value(&[]);
        }
        if let Some(optimizer) = optimizer.as_deref_mut() {
            mb_loss.backward();
            optimizer.accumulate();
        }
        sums.loss += mb_loss.double_value(&[]);
        sums.tokens += p.tokens;
        sums.policy_tokens += sizes.iter().sum::<i64>() as usize;
    }
    Ok(sums)
}

/// The per-token `values` at the policy's target positions (token 0 is
/// never a target), in order.
fn policy_values<'a>(values: &'a [f32], mask: &'a [bool]) -> impl Iterator<Item = f32> + 'a {
    values
        .iter()
        .zip(mask)
        .skip(1)
        .filter(|(_, m)| **m)
        .map(|(v, _)| *v)
}

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
            loss: LossConfig {
                clip_low: p.clip_low,
                clip_high: p.clip_high,
                kl_coef: p.kl_coef,
                entropy_coef: p.entropy_coef,
                temperature: p.rollout.temperature.max(1e-3),
            },
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
    fn update_plan_cuts_each_pass_into_near_equal_shuffled_parts() {
        // The recipe's single update: every sample, in order.
        assert_eq!(update_plan(5, 1, 1, 3), vec![vec![0, 1, 2, 3, 4]]);
        let plan = update_plan(10, 2, 3, 3);
        assert_eq!(plan.len(), 6);
        for pass in plan.chunks(3) {
            let sizes: Vec<usize> = pass.iter().map(Vec::len).collect();
            assert_eq!(sizes, [4, 3, 3]);
            let mut all: Vec<usize> = pass.concat();
            all.sort_unstable();
            assert_eq!(
                all,
                (0..10).collect::<Vec<_>>(),
                "each pass sees every sample once"
            );
        }
        assert_ne!(plan[0..3].concat(), plan[3..6].concat(), "passes reshuffle");
        assert_eq!(plan, update_plan(10, 2, 3, 3), "seeded");
        assert_ne!(plan, update_plan(10, 2, 3, 4));
        // More mini-batches than samples: one sample each.
        assert_eq!(update_plan(2, 1, 5, 0).len(), 2);
    }

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

    #[test]
    fn loss_terms_by_hand() {
        let cfg = LossConfig {
            clip_low: 0.2,
            clip_high: 0.28,
            kl_coef: 0.01,
            entropy_coef: 0.001,
            temperature: 1.0,
        };
        // Two tokens: ratios e^0.5 ≈ 1.6487 (clipped at 1.28) and e^-0.5 ≈ 0.6065.
        let logp = Tensor::from_slice(&[-1.0f32, -2.0]);
        let old = Tensor::from_slice(&[-1.5f32, -1.5]);
        let reference = Tensor::from_slice(&[-1.2f32, -1.8]);
        let ent = Tensor::from_slice(&[2.0f32, 4.0]);
        let (r1, r2) = (0.5f64.exp(), (-0.5f64).exp());
        // A = +1: max(-r, -clip(r)) per token.
        let t = sequence_terms(&logp, &old, Some(&reference), &ent, 1.0, &cfg);
        let pg = ((-r1).max(-1.28) + (-r2).max(-0.8)) / 2.0;
        assert!((t.pg.double_value(&[]) - pg).abs() < 1e-6);
        // A = -1: max(r, clip(r)).
        let t2 = sequence_terms(&logp, &old, Some(&reference), &ent, -1.0, &cfg);
        let pg2 = (r1.max(1.28) + r2.max(0.8)) / 2.0;
        assert!((t2.pg.double_value(&[]) - pg2).abs() < 1e-6);
        // k3 with Δ = ref − logp = (-0.2, 0.2).
        let k3 = |d: f64| d.exp() - d - 1.0;
        let kl = (k3(-0.2) + k3(0.2)) / 2.0;
        assert!((t.kl.double_value(&[]) - kl).abs() < 1e-6);
        assert!((t.entropy.double_value(&[]) - 3.0).abs() < 1e-6);
        let total = sample_loss(&t, &cfg).double_value(&[]);
        assert!((total - (pg - 0.001 * 3.0 + 0.01 * kl)).abs() < 1e-6);
    }

    #[test]
    fn ratio_one_gradient_is_minus_advantage_times_score() {
        // With old = logp.detach(), d pg / d logp_t = -A / n for every token.
        let cfg = LossConfig {
            clip_low: 0.2,
            clip_high: 0.28,
            kl_coef: 0.0,
            entropy_coef: 0.0,
            temperature: 1.0,
        };
        let logp = Tensor::from_slice(&[-1.0f32, -2.0, -0.5]).set_requires_grad(true);
        let t = sequence_terms(&logp, &logp.detach(), None, &logp.zeros_like(), 2.0, &cfg);
        t.pg.backward();
        let g = Vec::<f32>::try_from(logp.grad()).expect("grad");
        for x in g {
            assert!((f64::from(x) + 2.0 / 3.0).abs() < 1e-6);
        }
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
