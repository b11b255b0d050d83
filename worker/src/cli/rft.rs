//! `tau2-worker rft`: rejection-sampling fine-tuning (cookbook §4). Samples
//! N episodes per training task with the initial checkpoint, keeps the
//! successes and the best qualifying failures (`rft_kept.jsonl`: sampled ids
//! with policy masks), then fine-tunes on exactly those ids, merged with the
//! SFT phase's conversations when `mergeSftDataset` is set, starting from the
//! weights `retrainFrom` names (the base model by default, as the recipe's
//! script does), and writes `final/`.
//!
//! Resumption: a finished selection (`rft_selection.json`, written last) is
//! reused instead of sampling again, and the retrain resumes from its latest
//! checkpoint, so a restarted attempt continues the same run.
//!
//! Merging: the SFT phase keeps its conversations as `sft_data.jsonl` in its
//! output directory, the parent of its `final/` (this phase's `init` when
//! RFT follows SFT). Without that file the retrain uses the kept episodes
//! only, and says so.

use anyhow::{Context, bail};
use tau2_api::job::{PhaseJob, PhaseSummary};
use tau2_api::phases::{PhaseName, RetrainFrom, RftParams};
use tau2_chat::ChatTokenizer;
use tau2_model::Qwen3;
use tau2_train::checkpoint::{Checkpoints, StepRecord};
use tau2_train::eval::load_domains;
use tau2_train::policy::{ModelGenerator, PolicyConfig};
use tau2_train::progress::write_json_atomic;
use tau2_train::rft::sample_and_select;
use tau2_train::rft::{KEPT_FILE, SELECTION_FILE, read_jsonl};
use tau2_train::rollout::{RolloutConfig, runtime};
use tau2_train::sft::{self, SftConfig};

use super::rollout_args::{self as common, RolloutArgs};

#[derive(clap::Args)]
pub struct RftArgs {
    #[command(flatten)]
    pub rollout: RolloutArgs,
    /// Episodes per training task (overrides the configuration).
    #[arg(long)]
    pub samples: Option<i32>,
    /// Split to sample from (without --config).
    #[arg(long, value_parser = common::parse_split, default_value = "train")]
    pub split: tau2_api::bench::Split,
}

fn params(args: &RftArgs, job: Option<&PhaseJob>) -> RftParams {
    let mut params = match job.map(|j| &j.params) {
        Some(tau2_api::job::PhaseParams::Rft(p)) => p.clone(),
        _ => RftParams::default(),
    };
    if let Some(n) = args.samples {
        params.samples_per_task = n;
    }
    common::override_rollout(&args.rollout, &mut params.rollout);
    params
}

pub fn run(args: RftArgs) -> anyhow::Result<()> {
    let job = common::read_job(&args.rollout, PhaseName::Rft)?;
    let summary = super::phase::conclude(run_inner(&args, job.as_ref()))?;
    if job.is_some() {
        println!("{}", super::phase::summary_json(&summary));
    }
    Ok(())
}

fn run_inner(args: &RftArgs, job: Option<&PhaseJob>) -> anyhow::Result<PhaseSummary> {
    if let Some(j) = job {
        common::ensure_model(&args.rollout, j)?;
    }
    let params = params(args, job);
    let out = common::output(&args.rollout, job)?;
    common::prepare_output(&out)?;
    let kept = if out.join(SELECTION_FILE).is_file() {
        let kept = read_jsonl(&out.join(KEPT_FILE))?;
        eprintln!(
            "rft: reusing the selection in {} ({} kept episodes)",
            out.display(),
            kept.len()
        );
        kept
    } else {
        sample(args, job, &params, &out)?
    };
    let Some(job) = job else {
        println!("(without --config the retrain is not run: give --config <phase.json>)");
        return Ok(PhaseSummary {
            succeeded: true,
            final_checkpoint: None,
            step: None,
            message: Some(format!("{} episodes kept", kept.len())),
            results: None,
        });
    };
    retrain(args, job, &params, &out, &kept)
}

fn sample(
    args: &RftArgs,
    job: Option<&PhaseJob>,
    params: &RftParams,
    out: &std::path::Path,
) -> anyhow::Result<Vec<tau2_train::trajectory::Trajectory>> {
    let (data, domains) = common::data(&args.rollout, job);
    let split = job.map_or(args.split, |j| j.data.train_split);
    let loaded_domains = load_domains(&data, &domains)?;
    let user = common::user_simulator(&args.rollout, job, &data)?;
    let loaded = common::load_model(&args.rollout, job)?;
    let policy = PolicyConfig::from_rollout(&params.rollout, loaded.max_context)?;
    let rollout = RolloutConfig {
        policy: policy.clone(),
        limits: common::limits(&params.rollout)?,
        concurrency: args.rollout.concurrency,
        seed: common::seed(&args.rollout, job),
    };
    let mut generator = ModelGenerator::new(&loaded.model, &loaded.chat, &policy)?;
    let rt = runtime()?;
    let (kept, report) = sample_and_select(
        &rt,
        &loaded_domains,
        split,
        params,
        &loaded.chat,
        &mut generator,
        &user,
        &rollout,
        None,
        out,
    )?;
    let s = &report.selection;
    println!(
        "{} episodes sampled ({:.1}% successful, {:.2} episodes/s); kept {} ({} successes, {} best partial failures, {} duplicates dropped) -> {}",
        s.sampled,
        100.0 * s.success_rate,
        report.rollout.episodes_per_second,
        s.kept,
        s.kept_successes,
        s.kept_partial,
        s.duplicates_dropped,
        report.kept_file.display()
    );
    Ok(kept)
}

/// SFT on the kept episodes (and the SFT data), from `retrainFrom`'s weights.
fn retrain(
    args: &RftArgs,
    job: &PhaseJob,
    params: &RftParams,
    out: &std::path::Path,
    kept: &[tau2_train::trajectory::Trajectory],
) -> anyhow::Result<PhaseSummary> {
    let from = match params.retrain_from {
        RetrainFrom::Base => &job.model.base,
        RetrainFrom::Previous => &job.model.init,
    };
    let device = match args.rollout.device.as_str() {
        "cpu" => tch::Device::Cpu,
        _ => tch::Device::cuda_if_available(),
    };
    let kind = super::sft::compute_kind(device, job.model.dtype);
    let model = Qwen3::load(from, device, Some(kind))
        .with_context(|| format!("loading {} to retrain", from.display()))?;
    let max_len = model.config().max_position_embeddings.max(1) as usize;
    let mut data = sft::from_trajectories(kept, max_len);
    let kept_sequences = data.sequences.len();
    let mut merged = 0;
    if params.merge_sft_dataset {
        let sft_file = job
            .model
            .init
            .parent()
            .map(|p| p.join(super::sft::SFT_DATA_FILE))
            .filter(|p| p.is_file());
        match sft_file {
            Some(path) => {
                let tokenizer = ChatTokenizer::from_dir(&job.model.init).with_context(|| {
                    format!("loading the tokenizer of {}", job.model.init.display())
                })?;
                let extra = sft::load_jsonl(&path, &tokenizer, max_len)?;
                merged = extra.sequences.len();
                data.sequences.extend(extra.sequences);
            }
            None => eprintln!(
                "rft: mergeSftDataset is set but there is no {} beside {}: training on the kept episodes only",
                super::sft::SFT_DATA_FILE,
                job.model.init.display()
            ),
        }
    }
    if data.sequences.is_empty() {
        bail!(
            "rft: nothing to train on (no episode kept{})",
            if params.merge_sft_dataset {
                " and no SFT data"
            } else {
                ""
            }
        );
    }
    eprintln!(
        "rft: retraining {} on {kept_sequences} kept episodes + {merged} SFT conversations",
        from.display()
    );
    let cfg = SftConfig::from_rft_params(params, job.seed as u64)?;
    let checkpoints =
        Checkpoints::open(out, cfg.keep_last)?.with_side_files_from(Some(job.model.init.clone()));
    let mut rjob = job.clone();
    rjob.output_dir = out.to_path_buf();
    let mut reporter = super::phase::reporter(&rjob)?;
    let outcome = sft::train(&model, &data.sequences, &cfg, &checkpoints, &mut reporter);
    let result = match outcome {
        Ok(o) => {
            let (_, last) = StepRecord::first_and_last(&o.history, "loss");
            let summary = serde_json::json!({
                "phase": "rft",
                "steps": o.steps,
                "resumedFrom": o.resumed_from,
                "finalCheckpoint": o.final_dir,
                "keptEpisodes": kept.len(),
                "trainedKept": kept_sequences,
                "mergedSftConversations": merged,
                "finalLoss": last,
                "history": o.history,
            });
            write_json_atomic(&out.join("results.json"), &summary)?;
            reporter.finished(true, &format!("{} steps", o.steps));
            Ok(PhaseSummary {
                succeeded: true,
                final_checkpoint: Some(super::phase::final_rel(out)),
                step: i64::try_from(o.steps).ok(),
                message: Some(format!(
                    "rft: kept {} episodes; {} steps on {} sequences, final loss {}",
                    kept.len(),
                    o.steps,
                    data.sequences.len(),
                    last.map_or("?".into(), |l| format!("{l:.4}"))
                )),
                results: None,
            })
        }
        Err(e) => {
            reporter.finished(false, &e.to_string());
            Err(anyhow::anyhow!("rft retrain failed: {e}"))
        }
    };
    super::phase::close(reporter, "rft");
    result
}
