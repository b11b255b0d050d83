//! SFT training tokens/s on a tiny random Qwen3 (CPU, or the GPU when
//! present): forward, backward and AdamW over 16 conversations per step.
//! Run: `cargo bench -p tau2-train --bench train_throughput`; env
//! `TAU2_BENCH_VOCAB` (default 4096), `TAU2_BENCH_THREADS` (default 1).

use std::time::Instant;

use tau2_model::init::{random_model, tiny_config};
use tau2_train::batch::Sequence;
use tau2_train::checkpoint::Checkpoints;
use tau2_train::optim::AdamWConfig;
use tau2_train::progress::NoProgress;
use tau2_train::sft::{self, SftConfig};
use tch::{Device, Kind};

fn env(name: &str, default: i64) -> i64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let vocab = env("TAU2_BENCH_VOCAB", 4096);
    tch::set_num_threads(env("TAU2_BENCH_THREADS", 1) as i32);
    let device = Device::cuda_if_available();
    let model = random_model(tiny_config(vocab, true), 1, 0.02, device, Kind::Float)?;
    // 64 conversations of 128 tokens, loss on the last quarter.
    let data: Vec<Sequence> = (0..64u32)
        .map(|i| Sequence {
            ids: (0..128u32)
                .map(|j| (i * 131 + j * 7) % vocab as u32)
                .collect(),
            mask: (0..128).map(|j| j >= 96).collect(),
        })
        .collect();
    let cfg = SftConfig {
        phase: "sft".into(),
        epochs: 2,
        batch_size: 16,
        max_tokens_per_micro_batch: 4096,
        save_every_steps: 1_000_000,
        keep_last: 1,
        seed: 1,
        adamw: AdamWConfig {
            beta1: 0.9,
            beta2: 0.98,
            eps: 1e-8,
            weight_decay: 0.01,
            max_grad_norm: 1.0,
        },
        schedule: tau2_api::phases::LrSchedule::Cosine,
        learning_rate: 1e-4,
        warmup_ratio: 0.05,
        stop_after_steps: None,
    };
    let dir = tempfile::tempdir()?;
    let ck = Checkpoints::open(dir.path(), 1)?;
    let t = Instant::now();
    let out = sft::train(&model, &data, &cfg, &ck, &mut NoProgress)?;
    println!(
        "sft tiny (hidden 64, 2 layers, vocab {vocab}, {device:?}, {} threads): {:.0} tokens/s over {} steps ({:.1}s incl. final save)",
        tch::get_num_threads(),
        out.tokens_per_second,
        out.steps,
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
