//! Batched sampling with a KV cache.
//!
//! Prompts are left-padded into one batch, prefilled once, then decoded one
//! token per step for every row until each row has hit a stop token or
//! `max_new_tokens`.
//!
//! Two log-probabilities are returned per generated token:
//! * `logprobs`: under the distribution actually sampled from (logits /
//!   temperature, then top-k and top-p truncation, renormalised). 0 for
//!   greedy decoding, which picks with probability 1.
//! * `model_logprobs`: under the raw model distribution, `log_softmax(logits)`
//!   at temperature 1 with no truncation. To score sampled tokens for GRPO at
//!   the sampling temperature without truncation, use
//!   [`Qwen3::target_logprobs`] (TRL's convention).
//!
//! Sampling draws one uniform per row and step from a seeded [`Rng`] and
//! inverts the CDF, so results depend only on the seed and the inputs.
//! [`generate_seeded`] gives every row its own stream, so that a row's
//! tokens do not depend on which other rows share its batch.

use tch::{Device, Kind, Tensor};

use crate::error::{ModelError, Result};
use crate::kv_cache::KvCache;
use crate::qwen3::Qwen3;
use crate::rng::Rng;

#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 = greedy (argmax).
    pub temperature: f64,
    /// Keep the k most likely tokens (ties at the k-th logit are all kept);
    /// 0 = off.
    pub top_k: i64,
    /// Keep the smallest set of most likely tokens whose mass reaches p
    /// (always at least one); 1 = off.
    pub top_p: f64,
    pub max_new_tokens: usize,
    /// Generation of a row ends after it emits one of these (it is included).
    pub stop_token_ids: Vec<i64>,
    /// Never sample ids at or above this (embedding rows the tokenizer has no
    /// token for, e.g. 151669.. for Qwen3).
    pub vocab_limit: Option<i64>,
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            max_new_tokens: 16,
            stop_token_ids: Vec::new(),
            vocab_limit: None,
            seed: 0,
        }
    }
}

impl SamplingParams {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(ModelError::Input(m));
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return bad(format!(
                "temperature must be >= 0, got {}",
                self.temperature
            ));
        }
        if self.top_k < 0 {
            return bad(format!("top_k must be >= 0, got {}", self.top_k));
        }
        if self.top_p.is_nan() || self.top_p <= 0.0 || self.top_p > 1.0 {
            return bad(format!("top_p must be in (0, 1], got {}", self.top_p));
        }
        if self.vocab_limit.is_some_and(|v| v <= 0) {
            return bad("vocab_limit must be positive".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// Emitted a stop token (the last token of `tokens`).
    Stop,
    /// Reached `max_new_tokens`.
    Length,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    pub tokens: Vec<i64>,
    /// Under the sampling distribution (see the module docs).
    pub logprobs: Vec<f32>,
    /// Under the raw model distribution (temperature 1, no truncation).
    pub model_logprobs: Vec<f32>,
    pub finish_reason: FinishReason,
}

/// Turns logits into tokens, one row at a time, reproducibly.
#[derive(Debug)]
pub struct Sampler {
    params: SamplingParams,
    rng: Rng,
    /// One stream per row, when rows are seeded separately.
    row_rngs: Vec<Rng>,
}

/// One sampling step's result, per row.
#[derive(Debug)]
pub struct Sampled {
    pub tokens: Vec<i64>,
    pub logprobs: Vec<f32>,
    pub model_logprobs: Vec<f32>,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Result<Self> {
        params.validate()?;
        let rng = Rng::new(params.seed);
        Ok(Self {
            params,
            rng,
            row_rngs: Vec::new(),
        })
    }

    /// A sampler whose row `r` draws from its own stream seeded `row_seeds[r]`
    /// (`params.seed` is unused).
    pub fn with_row_seeds(params: SamplingParams, row_seeds: &[u64]) -> Result<Self> {
        let mut s = Self::new(params)?;
        s.row_rngs = row_seeds.iter().map(|&seed| Rng::new(seed)).collect();
        Ok(s)
    }

    /// Samples one token per row of `logits` `[batch, vocab]`.
    pub fn sample(&mut self, logits: &Tensor) -> Result<Sampled> {
        let size = logits.size();
        let &[batch, vocab] = size.as_slice() else {
            return Err(ModelError::Input(format!(
                "logits must be [batch, vocab], got {size:?}"
            )));
        };
        let p = &self.params;
        let mut logits = logits.to_kind(Kind::Float);
        if let Some(limit) = p.vocab_limit.filter(|&l| l < vocab) {
            // Mask rather than narrow so ids keep their meaning (and without
            // writing into the caller's tensor).
            let tail = Tensor::full(
                [batch, vocab - limit],
                f64::NEG_INFINITY,
                (Kind::Float, logits.device()),
            );
            logits = Tensor::cat(&[logits.narrow(1, 0, limit), tail], 1);
        }
        let raw = logits.log_softmax(-1, Kind::Float);
        let (tokens, logprobs) = if p.temperature == 0.0 {
            (
                logits.argmax(-1, false),
                Tensor::zeros([batch], (Kind::Float, logits.device())),
            )
        } else {
            let mut scaled = logits / p.temperature;
            if p.top_k > 0 && p.top_k < vocab {
                let (top, _) = scaled.topk(p.top_k, -1, true, true);
                let kth = top.narrow(1, p.top_k - 1, 1);
                scaled = scaled.masked_fill(&scaled.lt_tensor(&kth), f64::NEG_INFINITY);
            }
            if p.top_p < 1.0 {
                let (sorted, order) = scaled.sort(-1, true);
                let probs = sorted.softmax(-1, Kind::Float);
                // Drop a token once the mass before it has reached top_p.
                let before = probs.cumsum(-1, Kind::Float) - &probs;
                let drop_sorted = before.ge(p.top_p);
                let drop = drop_sorted.zeros_like().scatter(-1, &order, &drop_sorted);
                scaled = scaled.masked_fill(&drop, f64::NEG_INFINITY);
            }
            let logp = scaled.log_softmax(-1, Kind::Float);
            let cdf = logp.exp().to_kind(Kind::Double).cumsum(-1, Kind::Double);
            let u: Vec<f64> = if self.row_rngs.is_empty() {
                (0..batch).map(|_| self.rng.uniform()).collect()
            } else if self.row_rngs.len() == batch as usize {
                self.row_rngs.iter_mut().map(Rng::uniform).collect()
            } else {
                return Err(ModelError::Input(format!(
                    "{} row seeds for a batch of {batch}",
                    self.row_rngs.len()
                )));
            };
            let target = Tensor::from_slice(&u).to_device(cdf.device()).unsqueeze(1)
                * cdf.narrow(1, vocab - 1, 1);
            let picked = target
                .searchsorted(&cdf, false, true, "right", None::<Tensor>)
                .clamp_max(vocab - 1);
            // Rounding could land on a zero-probability id; fall back to the mode.
            let picked_lp = logp.gather(1, &picked, false);
            let picked = picked
                .where_self(&picked_lp.isfinite(), &logp.argmax(-1, true))
                .squeeze_dim(1);
            let lp = logp.gather(1, &picked.unsqueeze(1), false).squeeze_dim(1);
            (picked, lp)
        };
        let model_lp = raw.gather(1, &tokens.unsqueeze(1), false).squeeze_dim(1);
        Ok(Sampled {
            tokens: Vec::<i64>::try_from(tokens.to_device(Device::Cpu))?,
            logprobs: Vec::<f32>::try_from(logprobs.to_device(Device::Cpu))?,
            model_logprobs: Vec::<f32>::try_from(model_lp.to_device(Device::Cpu))?,
        })
    }
}

/// Left-pads `prompts` into `[batch, max_len]` ids and a 0/1 mask.
pub fn left_pad(prompts: &[Vec<i64>], pad_id: i64) -> (Tensor, Tensor) {
    let width = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(prompts.len() * width);
    let mut mask = Vec::with_capacity(prompts.len() * width);
    for p in prompts {
        let pad = width - p.len();
        ids.extend(std::iter::repeat_n(pad_id, pad).chain(p.iter().copied()));
        mask.extend(std::iter::repeat_n(0i64, pad).chain(std::iter::repeat_n(1, p.len())));
    }
    let shape = [prompts.len() as i64, width as i64];
    (
        Tensor::from_slice(&ids).view(shape),
        Tensor::from_slice(&mask).view(shape),
    )
}

/// Generates a continuation for every prompt (token ids), batched.
pub fn generate(
    model: &Qwen3,
    prompts: &[Vec<i64>],
    params: &SamplingParams,
) -> Result<Vec<Generation>> {
    run(model, prompts, params, Sampler::new(params.clone())?)
}

/// [`generate`] with one seed per prompt: a row's sample is the same in
/// any batch (up to float rounding of the batched forward).
pub fn generate_seeded(
    model: &Qwen3,
    prompts: &[Vec<i64>],
    params: &SamplingParams,
    row_seeds: &[u64],
) -> Result<Vec<Generation>> {
    if row_seeds.len() != prompts.len() {
        return Err(ModelError::Input(format!(
            "{} row seeds for {} prompts",
            row_seeds.len(),
            prompts.len()
        )));
    }
    run(
        model,
        prompts,
        params,
        Sampler::with_row_seeds(params.clone(), row_seeds)?,
    )
}

fn run(
    model: &Qwen3,
    prompts: &[Vec<i64>],
    params: &SamplingParams,
    mut sampler: Sampler,
) -> Result<Vec<Generation>> {
    if prompts.iter().any(Vec::is_empty) {
        return Err(ModelError::Input(
            "every prompt needs at least one token".into(),
        ));
    }
    let mut out: Vec<Generation> = prompts
        .iter()
        .map(|_| Generation {
            tokens: Vec::new(),
            logprobs: Vec::new(),
            model_logprobs: Vec::new(),
            finish_reason: FinishReason::Length,
        })
        .collect();
    if prompts.is_empty() || params.max_new_tokens == 0 {
        return Ok(out);
    }
    let _guard = tch::no_grad_guard();
    let device = model.device();
    let (ids, mask) = left_pad(prompts, 0);
    let padded = prompts.iter().any(|p| p.len() != prompts[0].len());
    let mut cache = KvCache::new(model.config().num_hidden_layers as usize);
    let hidden = model.forward_hidden(
        &ids.to_device(device),
        padded.then(|| mask.to_device(device)).as_ref(),
        None,
        Some(&mut cache),
    )?;
    // Left padding puts every row's last real token in the last column.
    let mut logits = model.lm_head(&hidden.select(1, -1));
    let mut done = vec![false; prompts.len()];
    for step in 0..params.max_new_tokens {
        let s = sampler.sample(&logits)?;
        for (row, g) in out.iter_mut().enumerate() {
            if done[row] {
                continue;
            }
            g.tokens.push(s.tokens[row]);
            g.logprobs.push(s.logprobs[row]);
            g.model_logprobs.push(s.model_logprobs[row]);
            if params.stop_token_ids.contains(&s.tokens[row]) {
                g.finish_reason = FinishReason::Stop;
                done[row] = true;
            }
        }
        if done.iter().all(|&d| d) || step + 1 == params.max_new_tokens {
            break;
        }
        // Finished rows keep decoding their last token; nothing reads it.
        let next = Tensor::from_slice(&s.tokens)
            .view([-1, 1])
            .to_device(device);
        let hidden = model.forward_hidden(&next, None, None, Some(&mut cache))?;
        logits = model.lm_head(&hidden.select(1, 0));
    }
    Ok(out)
}
