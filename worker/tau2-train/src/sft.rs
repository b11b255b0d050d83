//! Supervised fine-tuning (recipe §3): conversations rendered with the
//! model's chat template, loss on assistant tokens only, token-mean NLL over
//! each optimizer step's batch (slime's `--calculate-per-token-loss`: the
//! sum over all micro-batches divided by the step's total number of loss
//! tokens, so long conversations are not under-weighted), logits only at
//! loss positions.
//!
//! Data: JSON lines, one conversation each, as `{"messages": [...],
//! "tools": [...]}` or slime's `{"prompt": [...]}` (the recipe's
//! `--input-key prompt`); messages in OpenAI's chat shape. Conversations the
//! template cannot encode, that are longer than the limit, or that have no
//! assistant token are skipped and counted, never fatal; a line that is not
//! a JSON object with a message list is bad data and stops the phase.
//!
//! Order: each epoch is a seeded permutation of the examples; step `s`
//! takes the next `batch_size` of epoch `s / steps_per_epoch` (the last
//! batch of an epoch may be smaller). The order is a pure function of
//! (seed, step), which is what makes a resumed run identical to an
//! uninterrupted one.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;
use serde_json::Value;
use tau2_api::phases::{LrSchedule, RftParams, SftParams};
use tau2_chat::{ChatTokenizer, Message, RenderOptions};
use tau2_model::Qwen3;
use tau2_model::rng::Rng;
use tch::Kind;

use crate::batch::{Sequence, micro_batches, pad};
use crate::checkpoint::{Checkpoints, StepRecord, TrainState};
use crate::error::{Result, TrainError};
use crate::optim::{AdamW, AdamWConfig};
use crate::progress::Observer;
use crate::run;
use crate::schedule::Schedule;
use crate::trajectory::Trajectory;

/// How to run SFT (from [`SftParams`] plus run-level settings).
#[derive(Clone, Debug, PartialEq)]
pub struct SftConfig {
    /// "sft", or "rft" when training on filtered trajectories.
    pub phase: String,
    pub epochs: u32,
    /// Conversations per optimizer step.
    pub batch_size: usize,
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

impl SftConfig {
    pub fn from_params(p: &SftParams, seed: u64) -> Result<Self> {
        let positive = crate::error::positive;
        Ok(Self {
            phase: "sft".into(),
            epochs: positive("epochs", p.epochs)? as u32,
            batch_size: positive("batchSize", p.batch_size)?,
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

impl SftConfig {
    /// RFT's retrain: its own epochs, batch, checkpoint interval and optimizer.
    pub fn from_rft_params(p: &RftParams, seed: u64) -> Result<Self> {
        let as_sft = SftParams {
            epochs: p.epochs,
            batch_size: p.batch_size,
            max_tokens_per_micro_batch: p.max_tokens_per_micro_batch,
            save_every_steps: p.save_every_steps,
            ..SftParams::default()
        };
        Ok(Self {
            phase: "rft".into(),
            adamw: AdamWConfig::from(&p.optimizer),
            schedule: p.optimizer.schedule,
            learning_rate: p.optimizer.learning_rate,
            warmup_ratio: p.optimizer.warmup_ratio,
            ..Self::from_params(&as_sft, seed)?
        })
    }
}

/// Why conversations were left out.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Skipped {
    /// The chat template or tokenizer could not encode it.
    pub unencodable: usize,
    pub too_long: usize,
    /// No assistant token to train on.
    pub no_targets: usize,
    /// The first few reasons, for the logs.
    pub examples: Vec<String>,
}

impl Skipped {
    pub fn total(&self) -> usize {
        self.unencodable + self.too_long + self.no_targets
    }

    fn note(&mut self, what: String) {
        if self.examples.len() < 5 {
            self.examples.push(what);
        }
    }
}

/// Encoded training data.
#[derive(Clone, Debug, Default)]
pub struct SftData {
    pub sequences: Vec<Sequence>,
    pub skipped: Skipped,
    /// Records read (kept + skipped).
    pub records: usize,
}

impl SftData {
    fn add(&mut self, seq: Sequence, max_len: usize, what: impl FnOnce() -> String) {
        self.records += 1;
        if seq.len() > max_len {
            self.skipped.too_long += 1;
            let w = what();
            self.skipped
                .note(format!("{w}: {} tokens > {max_len}", seq.len()));
        } else if seq.targets() == 0 {
            self.skipped.no_targets += 1;
            let w = what();
            self.skipped.note(format!("{w}: no assistant tokens"));
        } else {
            self.sequences.push(seq);
        }
    }
}

/// A record's messages and tool schemas.
pub fn parse_record(value: Value) -> std::result::Result<(Vec<Message>, Vec<Value>), String> {
    let Value::Object(mut obj) = value else {
        return Err("not a JSON object".into());
    };
    let messages = obj
        .remove("messages")
        .or_else(|| obj.remove("prompt"))
        .ok_or("no \"messages\" (or \"prompt\") list")?;
    let messages: Vec<Message> =
        serde_json::from_value(messages).map_err(|e| format!("invalid messages: {e}"))?;
    let tools = match obj.remove("tools") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(t)) => t,
        Some(_) => return Err("\"tools\" is not a list".into()),
    };
    Ok((messages, tools))
}

/// Reads and encodes a JSON-lines dataset.
pub fn load_jsonl(path: &Path, tokenizer: &ChatTokenizer, max_len: usize) -> Result<SftData> {
    let file = std::fs::File::open(path).map_err(|e| TrainError::io(path, e))?;
    let mut data = SftData::default();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| TrainError::io(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |message: String| TrainError::Data {
            path: path.to_path_buf(),
            line: i + 1,
            message,
        };
        let value: Value = serde_json::from_str(&line).map_err(|e| bad(e.to_string()))?;
        let (messages, tools) = parse_record(value).map_err(bad)?;
        let options = if tools.is_empty() {
            RenderOptions::default()
        } else {
            RenderOptions::with_tools(tools)
        };
        match tokenizer.encode_sft(&messages, &options) {
            Ok(m) => data.add(
                Sequence {
                    ids: m.ids,
                    mask: m.mask,
                },
                max_len,
                || format!("line {}", i + 1),
            ),
            Err(e) => {
                data.records += 1;
                data.skipped.unencodable += 1;
                data.skipped.note(format!("line {}: {e}", i + 1));
            }
        }
    }
    Ok(data)
}

/// Training sequences from sampled episodes: their exact ids, trained on
/// the tokens the policy generated (RFT: no re-tokenization).
pub fn from_trajectories(trajectories: &[Trajectory], max_len: usize) -> SftData {
    let mut data = SftData::default();
    for t in trajectories {
        if t.ids.len() != t.policy_mask.len() {
            data.records += 1;
            data.skipped.unencodable += 1;
            data.skipped.note(format!(
                "{}#{}: {} ids but {} mask entries",
                t.task_id,
                t.sample,
                t.ids.len(),
                t.policy_mask.len()
            ));
            continue;
        }
        data.add(
            Sequence {
                ids: t.ids.clone(),
                mask: t.policy_mask.clone(),
            },
            max_len,
            || format!("{}#{}", t.task_id, t.sample),
        );
    }
    data
}

/// What a (possibly resumed) run did.
#[derive(Clone, Debug)]
pub struct SftOutcome {
    /// `None` when stopped early by `stop_after_steps`.
    pub final_dir: Option<PathBuf>,
    pub steps: u64,
    pub total_steps: u64,
    pub resumed_from: Option<u64>,
    /// Every step's deterministic metrics (including steps before a resume).
    pub history: Vec<StepRecord>,
    /// Training tokens (prompt + completion) per second over this process's steps.
    pub tokens_per_second: f64,
}

/// The permutation of `n` examples for `epoch` (Fisher-Yates, own RNG).
fn permutation(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut rng = Rng::new(seed ^ (epoch.wrapping_add(1)).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut p: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        p.swap(i, j);
    }
    p
}

/// One step's forward and backward over `batch` (indices into `data`),
/// gradients left in the optimizer's accumulators: the token-mean NLL over
/// all the batch's target tokens, accumulated micro-batch by micro-batch.
/// Returns the loss and the tokens forwarded (padding excluded).
pub fn accumulate_gradients(
    model: &Qwen3,
    data: &[Sequence],
    lengths: &[usize],
    batch: &[usize],
    max_tokens_per_micro_batch: usize,
    optimizer: &mut AdamW,
) -> Result<(f64, usize)> {
    let loss_tokens: usize = batch.iter().map(|i| data[*i].targets()).sum();
    let (mut loss_sum, mut tokens) = (0.0, 0);
    for mb in micro_batches(lengths, batch, max_tokens_per_micro_batch) {
        let seqs: Vec<&Sequence> = mb.iter().map(|i| &data[*i]).collect();
        let p = pad(&seqs, 0, model.device());
        let attention = p.padded.then_some(&p.attention);
        let logp = model.target_logprobs(&p.ids, attention, &p.targets, 1.0)?;
        let loss = -logp.sum(Kind::Float) / loss_tokens.max(1) as f64;
        loss.backward();
        optimizer.accumulate();
        loss_sum += loss.double_value(&[]);
        tokens += p.tokens;
    }
    Ok((loss_sum, tokens))
}

/// Trains `model` on `data`, resuming from the latest checkpoint in
/// `checkpoints`, and writes `final/`.
pub fn train(
    model: &Qwen3,
    data: &[Sequence],
    cfg: &SftConfig,
    checkpoints: &Checkpoints,
    observer: &mut dyn Observer,
) -> Result<SftOutcome> {
    if data.is_empty() {
        return Err(TrainError::Config("no training conversations".into()));
    }
    let n = data.len();
    let per_epoch = n.div_ceil(cfg.batch_size) as u64;
    let total = per_epoch * u64::from(cfg.epochs);
    let schedule = Schedule::new(cfg.schedule, cfg.learning_rate, cfg.warmup_ratio, total);
    let mut optimizer = AdamW::new(model, cfg.adamw)?;
    let fresh = TrainState {
        phase: cfg.phase.clone(),
        total_steps: total,
        seed: cfg.seed,
        ..TrainState::default()
    };
    let (mut state, resumed_from) = run::begin(model, &mut optimizer, checkpoints, fresh)?;
    let lengths: Vec<usize> = data.iter().map(Sequence::len).collect();
    let mut order: Option<(u64, Vec<usize>)> = None;
    let (mut tokens_done, started) = (0usize, Instant::now());
    while state.step < total {
        if cfg.stop_after_steps == Some(state.step) {
            return Ok(SftOutcome {
                final_dir: None,
                steps: state.step,
                total_steps: total,
                resumed_from,
                history: state.history,
                tokens_per_second: tokens_done as f64 / started.elapsed().as_secs_f64(),
            });
        }
        let t0 = Instant::now();
        let epoch = state.step / per_epoch;
        let within = (state.step % per_epoch) as usize;
        if order.as_ref().is_none_or(|(e, _)| *e != epoch) {
            order = Some((epoch, permutation(n, cfg.seed, epoch)));
        }
        let perm = order.as_ref().map(|(_, p)| p.as_slice()).unwrap_or(&[]);
        let batch = &perm[within * cfg.batch_size..((within + 1) * cfg.batch_size).min(n)];
        let loss_tokens: usize = batch.iter().map(|i| data[*i].targets()).sum();
        let (loss_sum, tokens) = accumulate_gradients(
            model,
            data,
            &lengths,
            batch,
            cfg.max_tokens_per_micro_batch,
            &mut optimizer,
        )?;
        let lr = schedule.lr(state.step);
        let stats = optimizer.step(lr);
        state.step += 1;
        state.data_position += batch.len() as u64;
        tokens_done += tokens;
        let secs = t0.elapsed().as_secs_f64();
        let metrics = BTreeMap::from([
            ("loss".to_string(), loss_sum),
            ("lr".to_string(), lr),
            ("grad_norm".to_string(), stats.grad_norm),
            ("loss_tokens".to_string(), loss_tokens as f64),
            ("epoch".to_string(), epoch as f64),
        ]);
        let timing = BTreeMap::from([
            ("tokens_per_second".to_string(), tokens as f64 / secs),
            ("step_seconds".to_string(), secs),
        ]);
        tracing::info!(step = state.step, total, loss = loss_sum, lr, "sft step");
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
    Ok(SftOutcome {
        final_dir: Some(final_dir),
        steps: state.step,
        total_steps: total,
        resumed_from,
        history: state.history,
        tokens_per_second: tokens_done as f64 / started.elapsed().as_secs_f64().max(1e-9),
    })
}

/// RFT's retraining step: SFT on the kept trajectories' exact ids.
pub fn train_on_trajectories(
    model: &Qwen3,
    trajectories: &[Trajectory],
    max_len: usize,
    cfg: &SftConfig,
    checkpoints: &Checkpoints,
    observer: &mut dyn Observer,
) -> Result<(SftOutcome, Skipped)> {
    let data = from_trajectories(trajectories, max_len);
    if data.skipped.total() > 0 {
        tracing::warn!(skipped = ?data.skipped, "trajectories left out of RFT training");
    }
    let outcome = train(model, &data.sequences, cfg, checkpoints, observer)?;
    Ok((outcome, data.skipped))
}
