//! `tau2-worker rft`: RFT's sampling half. Samples N episodes per training
//! task, keeps the successes and the best qualifying failures, and writes
//! them as trajectory JSON lines (`rft_kept.jsonl`: sampled ids with policy
//! masks) for the SFT trainer, which fine-tunes on exactly those ids.
//!
//! Next step (until the SFT trainer's trajectory entry point is wired in
//! here): run the SFT trainer on `rft_kept.jsonl` from the weights named by
//! `retrainFrom` (the base model by default, as the recipe's script does),
//! merged with the SFT dataset when `mergeSftDataset` is set.

use tau2_api::job::PhaseJob;
use tau2_api::phases::{PhaseName, RetrainFrom, RftParams};
use tau2_train::eval::load_domains;
use tau2_train::policy::{ModelGenerator, PolicyConfig};
use tau2_train::rft::sample_and_select;
use tau2_train::rollout::{RolloutConfig, runtime};

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
    let job = job.as_ref();
    let params = params(&args, job);
    let (data, domains) = common::data(&args.rollout, job);
    let split = job.map_or(args.split, |j| j.data.train_split);
    let out = common::output(&args.rollout, job)?;
    common::prepare_output(&out)?;
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
    let (_kept, report) = sample_and_select(
        &rt,
        &loaded_domains,
        split,
        &params,
        &loaded.chat,
        &mut generator,
        &user,
        &rollout,
        None,
        &out,
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
    let from = match params.retrain_from {
        RetrainFrom::Base => "the base model",
        RetrainFrom::Previous => "the sampling checkpoint",
    };
    println!(
        "next: SFT on {} from {from}{}",
        report.kept_file.display(),
        if params.merge_sft_dataset {
            " merged with the SFT dataset"
        } else {
            ""
        }
    );
    Ok(())
}
