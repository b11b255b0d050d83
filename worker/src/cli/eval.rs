//! `tau2-worker eval`: N samples of every evaluation task with the model,
//! pass@k and pass^k per domain and overall; writes `results.json` and
//! `trajectories.jsonl` into the output directory and prints a table.
//! Scored episodes are logged to `episodes.jsonl` as they finish, so a
//! killed evaluation resumes where it stopped (`tau2_train::eval`).

use std::io::IsTerminal;

use anyhow::Context;
use tau2_api::bench::Split;
use tau2_api::job::{PhaseJob, PhaseSummary};
use tau2_api::phases::{EvalParams, PhaseName};
use tau2_train::eval::{EvalSpec, check_counts, load_domains, run_eval, write_outputs};
use tau2_train::policy::{ModelGenerator, PolicyConfig};
use tau2_train::progress::{NoProgress, Observer};
use tau2_train::rollout::{RolloutConfig, runtime};

use super::phase::Bars;
use super::rollout_args::{self as common, RolloutArgs};

#[derive(clap::Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub rollout: RolloutArgs,
    /// Split to evaluate (without --config).
    #[arg(long, value_parser = common::parse_split, default_value = "test")]
    pub split: Split,
    /// Samples per task (overrides the configuration).
    #[arg(long)]
    pub samples: Option<i32>,
    /// The k of pass@k and pass^k (overrides the configuration).
    #[arg(long)]
    pub k: Option<i32>,
    /// Only the first N tasks of each domain.
    #[arg(long)]
    pub max_tasks_per_domain: Option<usize>,
}

fn params(args: &EvalArgs, job: Option<&PhaseJob>) -> EvalParams {
    let mut params = match job.map(|j| &j.params) {
        Some(tau2_api::job::PhaseParams::Eval(p)) => p.clone(),
        _ => EvalParams::default(),
    };
    if let Some(n) = args.samples {
        params.samples_per_task = n;
    }
    if let Some(k) = args.k {
        params.k = k;
    }
    common::override_rollout(&args.rollout, &mut params.rollout);
    params
}

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    let job = common::read_job(&args.rollout, PhaseName::Eval)?;
    let summary = super::phase::conclude(run_inner(&args, job.as_ref()))?;
    if job.is_some() {
        println!("{}", super::phase::summary_json(&summary));
    }
    Ok(())
}

fn run_inner(args: &EvalArgs, job: Option<&PhaseJob>) -> anyhow::Result<PhaseSummary> {
    if let Some(j) = job {
        common::ensure_model(&args.rollout, j)?;
    }
    let params = params(args, job);
    check_counts(i64::from(params.samples_per_task), i64::from(params.k))?;
    let (data, domains) = common::data(&args.rollout, job);
    let split = job.map_or(args.split, |j| j.data.eval_split);
    let max_tasks = args.max_tasks_per_domain.or_else(|| {
        job.and_then(|j| j.data.max_eval_tasks_per_domain)
            .and_then(|m| usize::try_from(m).ok())
    });
    let out = common::output(&args.rollout, job)?;
    common::prepare_output(&out)?;
    let loaded_domains = load_domains(&data, &domains)?;
    let user = common::user_simulator(&args.rollout, job, &data)?;
    let loaded = common::load_model(&args.rollout, job)?;
    let policy = PolicyConfig::from_rollout(&params.rollout, loaded.max_context)?;
    let spec = EvalSpec {
        split,
        samples_per_task: u32::try_from(params.samples_per_task)
            .context("samplesPerTask must be positive")?,
        k: u32::try_from(params.k).context("k must be positive")?,
        max_tasks_per_domain: max_tasks,
        rollout: RolloutConfig {
            policy: policy.clone(),
            limits: common::limits(&params.rollout)?,
            concurrency: args.rollout.concurrency,
            seed: common::seed(&args.rollout, job),
        },
    };
    spec.validate()?;
    let mut generator = ModelGenerator::new(&loaded.model, &loaded.chat, &policy)?;
    let rt = runtime()?;
    // The model's identity for the episode log: where its weights come from.
    let model_id = format!("{:?}", loaded.model.source_dir());
    // Episodes are the eval's steps: reported to the operator as they finish.
    let mut reporter = match job {
        Some(j) => {
            let mut job = j.clone();
            job.output_dir = out.clone();
            Some(super::phase::reporter(&job)?)
        }
        None => None,
    };
    let mut quiet = NoProgress;
    let observer: &mut dyn Observer = match &mut reporter {
        Some(r) => r,
        None => &mut quiet,
    };
    let mut bars = Bars::new(observer, "eval", std::io::stderr().is_terminal());
    let evaluated = run_eval(
        &rt,
        &loaded_domains,
        &spec,
        &loaded.chat,
        &mut generator,
        &user,
        None,
        Some((&out, &model_id)),
        &mut bars,
    );
    bars.finish();
    let (report, trajectories) = match evaluated {
        Ok(r) => r,
        Err(e) => {
            if let Some(mut reporter) = reporter {
                reporter.finished(false, &e.to_string());
                super::phase::close(reporter, "eval");
            }
            return Err(e.into());
        }
    };
    write_outputs(&out, &report, &trajectories)?;
    if let Some(mut reporter) = reporter {
        reporter.results((&report.results).into());
        reporter.finished(true, "evaluated");
        super::phase::close(reporter, "eval");
    }
    print!("{}", report.results.table());
    println!(
        "{} episodes ({} errors, {} context overflows), {:.2} episodes/s, {:.0} generated tokens/s -> {}",
        report.episodes.len(),
        report.errors,
        report.context_overflows,
        report.rollout.episodes_per_second,
        report.rollout.generated_tokens_per_second,
        out.display()
    );
    let o = &report.results.overall;
    Ok(PhaseSummary {
        succeeded: true,
        final_checkpoint: None,
        step: None,
        message: Some(format!(
            "eval: {} tasks x {} samples, pass@1 {:.3}, pass@{} {:.3}, average reward {:.3}",
            o.tasks,
            report.results.samples_per_task,
            o.pass_at1,
            report.results.k,
            o.pass_at_k,
            o.average_reward
        )),
        results: Some(super::phase::status_results(&report.results)),
    })
}
