//! `tau2-worker sft`: supervised fine-tuning, one phase of a pipeline.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use tau2_api::job::{Dtype, ENV_PHASE_CONFIG, PhaseJob, PhaseParams, PhaseSummary};
use tau2_bench::data::DataDir;
use tau2_chat::ChatTokenizer;
use tau2_model::Qwen3;
use tau2_train::checkpoint::{Checkpoints, StepRecord};
use tau2_train::demos::{GOLD_DATASET, gold_records, write_records};
use tau2_train::progress::write_json_atomic;
use tau2_train::sft::{self, SftConfig};

use super::hub;
use super::phase::{self, Bars, RunOptions};

/// The conversations an SFT phase trained on, kept in its output directory
/// (RFT merges them with its kept episodes when `mergeSftDataset` is set).
pub const SFT_DATA_FILE: &str = "sft_data.jsonl";

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
    /// Tokenizer directory for a `builtin://tiny` base (default: $TAU2_QWEN3_TOKENIZER_DIR).
    #[arg(long)]
    tokenizer_dir: Option<PathBuf>,
}

/// A dataset URI as a local file: `file:///...` or a plain path as it is,
/// `hf://datasets/...` downloaded into the Hub cache beside `output_dir`.
fn dataset_path(uri: &str, output_dir: &Path, bars: bool) -> anyhow::Result<PathBuf> {
    if let Some(p) = uri.strip_prefix("file://") {
        return Ok(PathBuf::from(p));
    }
    if uri.starts_with(hub::HF_SCHEME) {
        return hub::download_dataset(uri, &hub::cache_beside(output_dir), bars);
    }
    if uri.contains("://") {
        bail!(
            "dataset {uri}: the worker reads file://, hf://datasets/ and {GOLD_DATASET} datasets; \
             pass --data <file.jsonl>"
        );
    }
    Ok(PathBuf::from(uri))
}

pub fn run(args: SftArgs) -> anyhow::Result<()> {
    let mut job = PhaseJob::read(&args.config)?;
    if let Some(out) = args.output {
        job.output_dir = out;
    }
    if let Some(init) = args.init {
        job.model.init = init;
    }
    if let Some(n) = args.threads {
        tch::set_num_threads(n);
    }
    let opts = RunOptions {
        bars: false,
        tokenizer_dir: args.tokenizer_dir,
    };
    let summary = phase::conclude(run_job(&job, args.data.as_deref(), &opts))?;
    println!("{}", phase::summary_json(&summary));
    Ok(())
}

/// The compute dtype: bf16/f16 on GPU as configured (fp32 master weights
/// live in the optimizer); f32 on CPU.
pub fn compute_kind(device: tch::Device, dtype: Dtype) -> tch::Kind {
    match (device, dtype) {
        (tch::Device::Cpu, _) | (_, Dtype::Float32) => tch::Kind::Float,
        (_, Dtype::Float16) => tch::Kind::Half,
        (_, Dtype::Bfloat16) => tch::Kind::BFloat16,
    }
}

/// Writes the configured dataset into `<output>/sft_data.jsonl` (generating
/// the gold demonstrations for `builtin://gold`) and returns that path.
fn materialise_dataset(
    job: &PhaseJob,
    dataset: &str,
    data: Option<&Path>,
    bars: bool,
) -> anyhow::Result<PathBuf> {
    let target = job.output_dir.join(SFT_DATA_FILE);
    match data {
        Some(p) => {
            std::fs::copy(p, &target)
                .with_context(|| format!("reading the dataset {}", p.display()))?;
        }
        None if dataset == GOLD_DATASET => {
            let dir = DataDir::new(&job.data.dir, job.data.version);
            let domains = tau2_train::eval::load_domains(&dir, &job.data.domains)?;
            let rt = tau2_train::rollout::runtime()?;
            let demos = gold_records(&rt, &domains, job.data.train_split)?;
            if !demos.unsolved.is_empty() {
                eprintln!(
                    "sft: {} task(s) without a successful gold episode left out: {}",
                    demos.unsolved.len(),
                    demos.unsolved.join(", ")
                );
            }
            if demos.records.is_empty() {
                bail!(
                    "{GOLD_DATASET}: no task of the {} split has a successful gold episode",
                    job.data.train_split
                );
            }
            write_records(&target, &demos.records)?;
        }
        None => {
            let p = dataset_path(dataset, &job.output_dir, bars)?;
            std::fs::copy(&p, &target)
                .with_context(|| format!("reading the dataset {}", p.display()))?;
        }
    }
    Ok(target)
}

/// The SFT phase of `job` (data from `data` if given).
pub fn run_job(
    job: &PhaseJob,
    data: Option<&Path>,
    opts: &RunOptions,
) -> anyhow::Result<PhaseSummary> {
    let PhaseParams::Sft(params) = &job.params else {
        bail!("the configuration is for {}, not sft", job.phase());
    };
    let attempt = phase::attempt(job)?;
    phase::ensure_base(job, opts)?;
    std::fs::create_dir_all(&job.output_dir)
        .with_context(|| format!("creating {}", job.output_dir.display()))?;
    let data_path = materialise_dataset(job, &params.dataset, data, opts.bars)?;
    let device = tch::Device::cuda_if_available();
    let kind = compute_kind(device, job.model.dtype);
    let init = &job.model.init;
    let model = Qwen3::load(init, device, Some(kind))
        .with_context(|| format!("loading the initial checkpoint {}", init.display()))?;
    let tokenizer = ChatTokenizer::from_dir(init)
        .with_context(|| format!("loading the tokenizer of {}", init.display()))?;
    let max_len = usize::try_from(params.max_sequence_length).unwrap_or(usize::MAX);
    let data = sft::load_jsonl(&data_path, &tokenizer, max_len)?;
    tracing::info!(kept = data.sequences.len(), skipped = ?data.skipped, attempt, "dataset");
    eprintln!(
        "sft (attempt {attempt}): {} conversations ({} skipped: {} unencodable, {} too long, {} without assistant tokens)",
        data.sequences.len(),
        data.skipped.total(),
        data.skipped.unencodable,
        data.skipped.too_long,
        data.skipped.no_targets
    );
    if data.sequences.is_empty() {
        bail!("{}: no usable training conversation", data_path.display());
    }
    let cfg = SftConfig::from_params(params, job.seed as u64)?;
    let checkpoints =
        Checkpoints::open(&job.output_dir, cfg.keep_last)?.with_side_files_from(Some(init.clone()));
    let mut reporter = phase::reporter(job)?;
    let outcome = {
        let mut bars = Bars::new(&mut reporter, "sft", opts.bars);
        let o = sft::train(&model, &data.sequences, &cfg, &checkpoints, &mut bars);
        bars.finish();
        o
    };
    let result = match outcome {
        Ok(o) => {
            let (first, last) = StepRecord::first_and_last(&o.history, "loss");
            let summary = serde_json::json!({
                "phase": "sft",
                "attempt": attempt,
                "steps": o.steps,
                "totalSteps": o.total_steps,
                "resumedFrom": o.resumed_from,
                "finalCheckpoint": o.final_dir,
                "firstLoss": first,
                "finalLoss": last,
                "conversations": data.sequences.len(),
                "skipped": data.skipped,
                "tokensPerSecond": o.tokens_per_second,
                "history": o.history,
            });
            write_json_atomic(&job.output_dir.join("results.json"), &summary)?;
            reporter.finished(true, &format!("{} steps", o.steps));
            Ok(PhaseSummary {
                succeeded: true,
                final_checkpoint: Some(phase::final_rel(&job.output_dir)),
                step: i64::try_from(o.steps).ok(),
                message: Some(format!(
                    "sft: {} steps, loss {} -> {}{}",
                    o.steps,
                    first.map_or("?".into(), |l| format!("{l:.4}")),
                    last.map_or("?".into(), |l| format!("{l:.4}")),
                    o.resumed_from
                        .map_or(String::new(), |s| format!(", resumed from step {s}"))
                )),
                results: None,
            })
        }
        Err(e) => {
            reporter.finished(false, &e.to_string());
            Err(anyhow::anyhow!("sft failed: {e}"))
        }
    };
    phase::close(reporter, "sft");
    result
}
