//! Training and generation throughput, ours vs PyTorch/transformers, side by
//! side on the same random checkpoint, thread count and workload:
//!
//! * train: forward + backward + AdamW step on `batch x seq` random ids,
//!   loss on every next-token position; tokens/s = batch * seq / median step.
//! * generate: greedy, `gen_batch` prompts of `prompt` tokens, exactly
//!   `new_tokens` new tokens each; tokens/s = generated tokens / median run
//!   (transformers: `model.generate`).
//!
//! Run: `TAU2_MODEL_REFERENCE_PYTHON=$(tests/reference/model/setup.sh) cargo bench -p tau2-model --bench throughput`
//! (without the variable only our side runs). `TAU2_BENCH_THREADS` sets the
//! intra-op threads for both (default 1: on a shared 2-core machine 1 thread
//! beats 2). Figures only; nothing is asserted.

#[path = "../tests/support/reference.rs"]
mod reference;

use std::path::Path;
use std::time::Instant;

use serde_json::json;
use tau2_model::checkpoint::{SaveOptions, save};
use tau2_model::generate::{SamplingParams, generate};
use tau2_model::init::{config, random_model};
use tau2_model::tch::nn::OptimizerConfig;
use tau2_model::tch::{Device, Kind, Tensor, nn};
use tau2_model::{Qwen3, Qwen3Config, Result};

struct Workload {
    batch: i64,
    seq: i64,
    gen_batch: usize,
    prompt: usize,
    new_tokens: usize,
    steps: usize,
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn ours(model: &Qwen3, w: &Workload) -> Result<(f64, f64)> {
    let vocab = model.config().vocab_size;
    let mut opt = nn::AdamW::default().build(model.var_store(), 1e-4)?;
    let ids = Tensor::randint(vocab, [w.batch, w.seq], (Kind::Int64, Device::Cpu));
    let targets = Tensor::ones([w.batch, w.seq], (Kind::Int64, Device::Cpu));
    let mut times = Vec::new();
    for i in 0..w.steps + 2 {
        let start = Instant::now();
        let loss = model.sft_loss(&ids, None, &targets)?;
        opt.zero_grad();
        loss.backward();
        opt.step();
        if i >= 2 {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    let train = (w.batch * w.seq) as f64 / median(times);

    let prompts: Vec<Vec<i64>> = (0..w.gen_batch)
        .map(|r| {
            (0..w.prompt)
                .map(|i| ((r * 131 + i * 17) as i64) % vocab)
                .collect()
        })
        .collect();
    let params = SamplingParams {
        temperature: 0.0,
        max_new_tokens: w.new_tokens,
        ..Default::default()
    };
    let mut times = Vec::new();
    for i in 0..(w.steps / 2).max(1) + 1 {
        let start = Instant::now();
        let out = generate(model, &prompts, &params)?;
        assert!(out.iter().all(|g| g.tokens.len() == w.new_tokens));
        if i >= 1 {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    Ok((train, (w.gen_batch * w.new_tokens) as f64 / median(times)))
}

fn theirs(dir: &Path, w: &Workload, threads: i32) -> Option<(f64, f64)> {
    let spec = json!({"threads": threads, "batch": w.batch, "seq": w.seq, "gen_batch": w.gen_batch,
                      "prompt": w.prompt, "new_tokens": w.new_tokens, "steps": w.steps});
    let v = reference::bench("bench", dir, &spec)?;
    Some((
        v["train_tokens_per_s"].as_f64()?,
        v["generate_tokens_per_s"].as_f64()?,
    ))
}

fn main() -> Result<()> {
    let threads: i32 = std::env::var("TAU2_BENCH_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    tau2_model::tch::set_num_threads(threads);
    tau2_model::tch::manual_seed(0);
    let cases: [(&str, Qwen3Config, Workload); 2] = [
        (
            "tiny (h64 L2 vocab1000)",
            config(1000, 64, 128, 2, 4, 2, 16, true),
            Workload {
                batch: 8,
                seq: 128,
                gen_batch: 8,
                prompt: 16,
                new_tokens: 32,
                steps: 6,
            },
        ),
        (
            "small (h256 L4 vocab8192)",
            config(8192, 256, 768, 4, 8, 4, 32, true),
            Workload {
                batch: 8,
                seq: 128,
                gen_batch: 8,
                prompt: 32,
                new_tokens: 32,
                steps: 4,
            },
        ),
    ];
    println!(
        "threads: {threads}; train = fwd+bwd+AdamW, tokens/s; generate = greedy, new tokens/s"
    );
    println!(
        "{:<28} {:>12} {:>12} {:>8} | {:>12} {:>14} {:>8}",
        "config", "train ours", "train torch", "ratio", "gen ours", "gen transf.", "ratio"
    );
    for (name, cfg, w) in cases {
        let dir = tempfile::tempdir().map_err(|e| tau2_model::ModelError::Input(e.to_string()))?;
        let model = random_model(cfg, 1, 0.02, Device::Cpu, Kind::Float)?;
        save(&model, dir.path(), &SaveOptions::default())?;
        let (train, gen_) = ours(&model, &w)?;
        let (ttrain, tgen) = theirs(dir.path(), &w, threads).unwrap_or((f64::NAN, f64::NAN));
        println!(
            "{name:<28} {train:>12.0} {ttrain:>12.0} {:>8.2} | {gen_:>12.0} {tgen:>14.0} {:>8.2}",
            train / ttrain,
            gen_ / tgen
        );
    }
    Ok(())
}
