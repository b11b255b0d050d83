//! Rollout throughput on the tiny random Qwen3 with the real Qwen3 tokenizer,
//! mock domain, scripted user: episodes/s and generated tokens/s, one
//! episode at a time against batched lock-step rounds.
//!
//!     TAU2_QWEN3_TOKENIZER_DIR=$(tests/fixtures/qwen3-tokenizer.sh) \
//!         cargo bench -p tau2-train --bench rollout
//!
//! TAU2_BENCH_DEVICE=cuda runs it on the GPU.

use std::path::PathBuf;

use tau2_api::bench::{DataVersion, Domain};
use tau2_bench::data::DataDir;
use tau2_bench::domains::LoadedDomain;
use tau2_bench::orchestrator::Limits;
use tau2_chat::ChatTokenizer;
use tau2_model::init;
use tau2_model::tch::{Device, Kind};
use tau2_train::policy::{ModelGenerator, PolicyConfig};
use tau2_train::rollout::{RolloutConfig, RolloutJob, UserSimulator, run_rollouts, runtime};

const TEMPLATE_2507: &str = tau2_chat::QWEN3_INSTRUCT_2507_TEMPLATE;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Some(dir) = std::env::var_os("TAU2_QWEN3_TOKENIZER_DIR").filter(|d| !d.is_empty()) else {
        eprintln!("skipped: set TAU2_QWEN3_TOKENIZER_DIR=$(tests/fixtures/qwen3-tokenizer.sh)");
        return Ok(());
    };
    let device = match std::env::var("TAU2_BENCH_DEVICE").as_deref() {
        Ok("cuda") => Device::Cuda(0),
        _ => {
            tau2_model::tch::set_num_threads(1);
            Device::Cpu
        }
    };
    let chat = ChatTokenizer::from_dir(PathBuf::from(dir))?.with_template(TEMPLATE_2507)?;
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/tau2");
    let mock = LoadedDomain::load(
        &DataDir::new(data, DataVersion::Recipe337326e),
        Domain::Mock,
    )?;
    let model = init::random_model(
        init::tiny_config(chat.vocab_size() as i64, true),
        7,
        0.02,
        device,
        Kind::Float,
    )?;
    let tasks: Vec<_> = mock.tasks.tasks.iter().collect();
    let jobs = RolloutJob::per_task(&mock, &tasks, 4);
    let policy = PolicyConfig {
        temperature: 1.0,
        top_p: 1.0,
        top_k: 0,
        max_new_tokens: 32,
        max_context: 4096,
    };
    let rt = runtime()?;
    println!(
        "tiny Qwen3 (hidden 64, 2 layers, vocab {}), {device:?}, mock domain, {} episodes, {} new tokens per turn",
        chat.vocab_size(),
        jobs.len(),
        policy.max_new_tokens
    );
    for concurrency in [1, 8, 36] {
        let config = RolloutConfig {
            policy: policy.clone(),
            limits: Limits::default(),
            concurrency,
            seed: 1,
        };
        let mut generator = ModelGenerator::new(&model, &chat, &policy)?;
        let (_, stats) = run_rollouts(
            &rt,
            &jobs,
            &chat,
            &mut generator,
            &UserSimulator::Scripted,
            &config,
            None,
        )?;
        println!(
            "concurrency {concurrency:>2}: {:>6.2} episodes/s  {:>7.0} generated tokens/s  ({} batches, mean batch {:.1}, {:.1} s)",
            stats.episodes_per_second,
            stats.generated_tokens_per_second,
            stats.batches,
            stats.mean_batch,
            stats.seconds
        );
    }
    Ok(())
}
