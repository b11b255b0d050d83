//! One optimisation step's forward and backward over a batch of rollouts:
//! the policy's log-probs on the target tokens, π_old for reused rollouts,
//! the order of the step's updates and the gradients they accumulate.

use tau2_model::Qwen3;
use tau2_model::rng::Rng;
use tch::{Kind, Tensor};

use super::loss::{LossConfig, sample_loss, sequence_terms};
use crate::batch::{Padded, Sequence, micro_batches, pad};
use crate::error::{Result, TrainError};
use crate::optim::AdamW;
use crate::trajectory::Trajectory;

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
    pub(super) fn absorb(&mut self, other: &StepSums, share: f64) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
