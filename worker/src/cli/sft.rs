//! `tau2-worker sft`: supervised fine-tuning, one phase of a pipeline.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use tau2_api::job::{Dtype, ENV_PHASE_CONFIG, PhaseJob, PhaseParams};
use tau2_chat::ChatTokenizer;
use tau2_model::Qwen3;
use tau2_train::checkpoint::Checkpoints;
use tau2_train::progress::{Reporter, ReporterConfig, write_json_atomic};
use tau2_train::sft::{self, SftConfig};

#[derive(clap::Args)]
pub struct SftArgs {
    /// The phase configuration (the operator mounts it and sets TAU2_PHASE_CONFIG).
    #[arg(long, env = ENV_PHASE_CONFIG)]
    config: PathBuf,
    /// Use this JSONL file instead of the configuration's dataset.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Override the output directory.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Override the initial checkpoint.
    #[arg(long)]
    init: Option<PathBuf>,
    /// Intra-op threads for libtorch (default: libtorch's choice).
    #[arg(long)]
    threads: Option<i32>,
}

/// A dataset URI the worker can open locally (`file:///...` or a plain path).
fn dataset_path(uri: &str) -> anyhow::Result<PathBuf> {
    if let Some(p) = uri.strip_prefix("file://") {
        return Ok(PathBuf::from(p));
    }
    if uri.contains("://") {
        bail!(
            "dataset {uri}: only file:// datasets can be read by the worker itself; pass --data <file.jsonl>"
        );
    }
    Ok(PathBuf::from(uri))
}

pub fn run(args: SftArgs) -> anyhow::Result<()> {
    let mut job = PhaseJob::read(&args.config)?;
    let PhaseParams::Sft(params) = &job.params else {
        bail!(
            "{} is a {} configuration, not sft",
            args.config.display(),
            job.phase()
        );
    };
    let params = params.clone();
    if let Some(out) = args.output {
        job.output_dir = out;
    }
    if let Some(init) = args.init {
        job.model.init = init;
    }
    if let Some(n) = args.threads {
        tch::set_num_threads(n);
    }
    let data_path = match args.data {
        Some(p) => p,
        None => dataset_path(&params.dataset)?,
    };
    let device = tch::Device::cuda_if_available();
    // bf16 compute on GPU (fp32 master weights live in the optimizer); f32 on CPU.
    let kind = match (device, job.model.dtype) {
        (tch::Device::Cpu, _) | (_, Dtype::Float32) => tch::Kind::Float,
        (_, Dtype::Float16) => tch::Kind::Half,
        (_, Dtype::Bfloat16) => tch::Kind::BFloat16,
    };
    let init = &job.model.init;
    let model = Qwen3::load(init, device, Some(kind))
        .with_context(|| format!("loading the initial checkpoint {}", init.display()))?;
    let tokenizer = ChatTokenizer::from_dir(init)
        .with_context(|| format!("loading the tokenizer of {}", init.display()))?;
    let max_len = usize::try_from(params.max_sequence_length).unwrap_or(usize::MAX);
    let data = sft::load_jsonl(&data_path, &tokenizer, max_len)?;
    tracing::info!(kept = data.sequences.len(), skipped = ?data.skipped, "dataset");
    eprintln!(
        "sft: {} conversations ({} skipped: {} unencodable, {} too long, {} without assistant tokens)",
        data.sequences.len(),
        data.skipped.total(),
        data.skipped.unencodable,
        data.skipped.too_long,
        data.skipped.no_targets
    );
    let cfg = SftConfig::from_params(&params, job.seed as u64)?;
    std::fs::create_dir_all(&job.output_dir)
        .with_context(|| format!("creating {}", job.output_dir.display()))?;
    let checkpoints =
        Checkpoints::open(&job.output_dir, cfg.keep_last)?.with_side_files_from(Some(init.clone()));
    let mut reporter = Reporter::start(ReporterConfig::from_job(&job)?)?;
    let outcome = sft::train(&model, &data.sequences, &cfg, &checkpoints, &mut reporter);
    let result = match &outcome {
        Ok(o) => {
            let summary = serde_json::json!({
                "phase": "sft",
                "steps": o.steps,
                "totalSteps": o.total_steps,
                "resumedFrom": o.resumed_from,
                "finalCheckpoint": o.final_dir,
                "finalLoss": o.history.last().and_then(|h| h.metrics.get("loss")),
                "conversations": data.sequences.len(),
                "skipped": data.skipped,
                "tokensPerSecond": o.tokens_per_second,
                "history": o.history,
            });
            write_json_atomic(&job.output_dir.join("results.json"), &summary)?;
            reporter.finished(true, &format!("{} steps", o.steps));
            Ok(())
        }
        Err(e) => {
            reporter.finished(false, &e.to_string());
            Err(anyhow::anyhow!("sft failed: {e}"))
        }
    };
    let delivery = reporter.close(Duration::from_secs(30));
    if delivery.undelivered > 0 {
        eprintln!(
            "sft: {} progress report(s) not delivered (they are in progress.jsonl)",
            delivery.undelivered
        );
    }
    result
}
