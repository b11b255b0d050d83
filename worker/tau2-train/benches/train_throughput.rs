//! Training throughput, ours vs PyTorch/transformers, side by side on the
//! same random checkpoint, thread count and step:
//!
//! * SFT: 16 conversations of 128 tokens, loss on the last quarter; one
//!   step = `sft::accumulate_gradients` (forward, token-mean NLL, backward)
//!   and the AdamW step.
//! * GRPO: 4 tasks x 4 given rollouts of 96 to 160 tokens with multi-turn
//!   policy masks (no generation); one step = `grpo::accumulate_gradients`
//!   (policy forward with entropy, reference forward, clipped loss with k3
//!   KL and entropy bonus, backward) and the AdamW step.
//!
//! tokens/s = real (unpadded) tokens of a step / median step time after two
//! warm-up steps. PyTorch runs `loss_reference.py train_bench` on the same
//! micro-batches (left-padded the same way).
//!
//! Run: `TAU2_MODEL_REFERENCE_PYTHON=$(tests/reference/model/setup.sh) cargo bench -p tau2-train --bench train_throughput`
//! (without the variable only our side runs). Env: `TAU2_BENCH_THREADS`
//! (default 1: on a shared 2-core machine 1 thread beats 2),
//! `TAU2_BENCH_VOCAB` (the tiny model's vocabulary, default 4096).
//! Figures only; nothing is asserted.

#[path = "../../tau2-model/tests/support/reference.rs"]
mod reference;

use std::path::Path;
use std::time::Instant;

use serde_json::{Value, json};
use tau2_api::bench::Domain;
use tau2_model::checkpoint::{SaveOptions, save};
use tau2_model::init::{config, random_model, tiny_config};
use tau2_model::{Qwen3, Qwen3Config};
use tau2_train::batch::{Sequence, micro_batches};
use tau2_train::grpo::{self, LossConfig};
use tau2_train::optim::{AdamW, AdamWConfig};
use tau2_train::sft;
use tau2_train::trajectory::Trajectory;
use tch::{Device, Kind};

type BoxError = Box<dyn std::error::Error>;

const MICRO_BATCH_TOKENS: usize = 4096;

const LOSS: LossConfig = LossConfig {
    clip_low: 0.2,
    clip_high: 0.28,
    kl_coef: 0.01,
    entropy_coef: 0.001,
    temperature: 1.0,
};

const ADAMW: AdamWConfig = AdamWConfig {
    beta1: 0.9,
    beta2: 0.98,
    eps: 1e-8,
    weight_decay: 0.01,
    max_grad_norm: 1.0,
};

fn env(name: &str, default: i64) -> i64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn ids(seed: u32, len: u32, vocab: u32) -> Vec<u32> {
    (0..len).map(|j| (seed * 131 + j * 7) % vocab).collect()
}

fn sft_data(vocab: u32) -> Vec<Sequence> {
    (0..16u32)
        .map(|i| Sequence {
            ids: ids(i, 128, vocab),
            mask: (0..128).map(|j| j >= 96).collect(),
        })
        .collect()
}

/// 4 groups of 4; a 40-token prompt, then policy turns of 24 and
/// environment turns of 16.
fn rollouts(vocab: u32) -> Vec<Trajectory> {
    (0..16u32)
        .map(|i| {
            let len = 96 + (i * 37) % 65;
            let mask = (0..len).map(|j| j >= 40 && (j - 40) % 40 < 24).collect();
            Trajectory {
                domain: Domain::Mock,
                task_id: (i / 4).to_string(),
                sample: i % 4,
                logprobs: vec![0.0; len as usize],
                ids: ids(i + 100, len, vocab),
                policy_mask: mask,
                reward: f64::from(i % 3 == 0),
                reward_info: None,
                termination: "user_stop".into(),
                valid: true,
                messages: Value::Null,
            }
        })
        .collect()
}

/// Times `steps` (after two warm-ups) of `step`, which returns its tokens.
fn time_steps(
    steps: usize,
    mut step: impl FnMut() -> Result<usize, BoxError>,
) -> Result<f64, BoxError> {
    let (mut times, mut tokens) = (Vec::new(), 0);
    for i in 0..steps + 2 {
        let start = Instant::now();
        tokens = step()?;
        if i >= 2 {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    Ok(tokens as f64 / median(times))
}

fn ours(
    dir: &Path,
    data: &[Sequence],
    trajs: &[Trajectory],
    adv: &[f64],
    steps: usize,
) -> Result<(f64, f64), BoxError> {
    let model = Qwen3::load(dir, Device::cuda_if_available(), Some(Kind::Float))?;
    let lengths: Vec<usize> = data.iter().map(Sequence::len).collect();
    let all: Vec<usize> = (0..data.len()).collect();
    let mut opt = AdamW::new(&model, ADAMW)?;
    let sft = time_steps(steps, || {
        let (_, tokens) =
            sft::accumulate_gradients(&model, data, &lengths, &all, MICRO_BATCH_TOKENS, &mut opt)?;
        opt.step(1e-6);
        Ok(tokens)
    })?;
    let model = Qwen3::load(dir, Device::cuda_if_available(), Some(Kind::Float))?;
    let reference = Qwen3::load(dir, Device::cuda_if_available(), Some(Kind::Float))?;
    let mut opt = AdamW::new(&model, ADAMW)?;
    let grpo = time_steps(steps, || {
        let sums = grpo::accumulate_gradients(
            &model,
            Some(&reference),
            trajs,
            adv,
            None,
            &LOSS,
            MICRO_BATCH_TOKENS,
            Some(&mut opt),
        )?;
        opt.step(1e-6);
        Ok(sums.tokens)
    })?;
    Ok((sft, grpo))
}

/// The micro-batches our trainers form, as the reference's input rows.
fn micro_batch_rows(seqs: &[Sequence], extra: impl Fn(usize) -> Value) -> Vec<Vec<Value>> {
    let lengths: Vec<usize> = seqs.iter().map(Sequence::len).collect();
    let all: Vec<usize> = (0..seqs.len()).collect();
    micro_batches(&lengths, &all, MICRO_BATCH_TOKENS)
        .into_iter()
        .map(|mb| {
            mb.into_iter()
                .map(|i| json!({"ids": seqs[i].ids, "mask": seqs[i].mask, "advantage": extra(i)}))
                .collect()
        })
        .collect()
}

fn theirs(
    dir: &Path,
    data: &[Sequence],
    trajs: &[Trajectory],
    adv: &[f64],
    steps: usize,
    threads: i32,
) -> Option<(f64, f64)> {
    let seqs: Vec<Sequence> = trajs
        .iter()
        .map(|t| Sequence {
            ids: t.ids.clone(),
            mask: t.policy_mask.clone(),
        })
        .collect();
    let spec = json!({
        "threads": threads, "steps": steps,
        "sft": {"micro_batches": micro_batch_rows(data, |_| Value::Null)},
        "grpo": {"micro_batches": micro_batch_rows(&seqs, |i| json!(adv[i])), "samples": trajs.len(),
                 "clip_low": LOSS.clip_low, "clip_high": LOSS.clip_high, "kl_coef": LOSS.kl_coef,
                 "entropy_coef": LOSS.entropy_coef, "temperature": LOSS.temperature},
    });
    let v = reference::bench("train_bench", dir, &spec)?;
    Some((
        v["sft_tokens_per_s"].as_f64()?,
        v["grpo_tokens_per_s"].as_f64()?,
    ))
}

fn main() -> Result<(), BoxError> {
    let threads = env("TAU2_BENCH_THREADS", 1) as i32;
    let vocab = env("TAU2_BENCH_VOCAB", 4096);
    tch::set_num_threads(threads);
    let cases: [(String, Qwen3Config, usize); 2] = [
        (
            format!("tiny (h64 L2 vocab{vocab})"),
            tiny_config(vocab, true),
            6,
        ),
        (
            "small (h256 L4 vocab8192)".into(),
            config(8192, 256, 768, 4, 8, 4, 32, true),
            4,
        ),
    ];
    println!(
        "threads: {threads}, {:?}; one step = fwd + bwd + AdamW, tokens/s (unpadded tokens / median step)",
        Device::cuda_if_available()
    );
    println!(
        "{:<28} {:>10} {:>10} {:>6} | {:>10} {:>10} {:>6}",
        "config", "SFT ours", "SFT torch", "ratio", "GRPO ours", "GRPO torch", "ratio"
    );
    for (name, cfg, steps) in cases {
        let v = cfg.vocab_size as u32;
        let dir = tempfile::tempdir()?;
        save(
            &random_model(cfg, 1, 0.02, Device::Cpu, Kind::Float)?,
            dir.path(),
            &SaveOptions::default(),
        )?;
        let data = sft_data(v);
        let trajs = rollouts(v);
        let (_, adv) = grpo::advantages(
            &trajs,
            &Default::default(),
            &tau2_api::phases::Curriculum {
                enabled: false,
                ..Default::default()
            },
            &mut Default::default(),
        );
        let (sft, grpo) = ours(dir.path(), &data, &trajs, &adv, steps)?;
        let (tsft, tgrpo) =
            theirs(dir.path(), &data, &trajs, &adv, steps, threads).unwrap_or((f64::NAN, f64::NAN));
        println!(
            "{name:<28} {sft:>10.0} {tsft:>10.0} {:>6.2} | {grpo:>10.0} {tgrpo:>10.0} {:>6.2}",
            sft / tsft,
            grpo / tgrpo
        );
    }
    Ok(())
}
