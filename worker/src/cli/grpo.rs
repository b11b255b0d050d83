//! `tau2-worker grpo`: GRPO (cookbook §5) on real tau2 episodes. Each step
//! samples P training tasks × G episodes with the current weights against
//! the configured user simulator (an LLM endpoint, or the scripted user),
//! scores them with the evaluator, and takes one optimizer step; the KL
//! reference is the initial checkpoint, frozen. Checkpoints every
//! `saveEverySteps` (weights, optimizer, curriculum state) and resumes from
//! the latest on restart; writes `results.json` and `final/`.

use anyhow::{Context, bail};
use tau2_api::job::{PhaseJob, PhaseParams, PhaseSummary};
use tau2_api::phases::{GrpoParams, PhaseName};
use tau2_train::checkpoint::{Checkpoints, StepRecord};
use tau2_train::episodes::EpisodeRollouts;
use tau2_train::eval::load_domains;
use tau2_train::grpo::{self, GrpoConfig};
use tau2_train::policy::PolicyConfig;
use tau2_train::progress::write_json_atomic;
use tau2_train::rollout::{RolloutConfig, runtime};

use super::rollout_args::{self as common, RolloutArgs};

#[derive(clap::Args)]
pub struct GrpoArgs {
    #[command(flatten)]
    pub rollout: RolloutArgs,
    /// Optimizer steps (overrides the configuration).
    #[arg(long)]
    pub steps: Option<i32>,
    /// Tasks per step (overrides the configuration).
    #[arg(long)]
    pub tasks_per_step: Option<i32>,
    /// Episodes per task, the group size (overrides the configuration).
    #[arg(long)]
    pub samples: Option<i32>,
}

fn params(args: &GrpoArgs, job: &PhaseJob) -> anyhow::Result<GrpoParams> {
    let PhaseParams::Grpo(p) = &job.params else {
        bail!("the configuration is for {}, not grpo", job.phase());
    };
    let mut p = p.clone();
    if let Some(v) = args.steps {
        p.steps = v;
    }
    if let Some(v) = args.tasks_per_step {
        p.tasks_per_step = v;
    }
    if let Some(v) = args.samples {
        p.samples_per_task = v;
    }
    common::override_rollout(&args.rollout, &mut p.rollout);
    Ok(p)
}

pub fn run(args: GrpoArgs) -> anyhow::Result<()> {
    let job = common::read_job(&args.rollout, PhaseName::Grpo)?
        .context("grpo needs --config <phase.json> (the operator's PhaseJob)")?;
    let summary = super::phase::conclude(run_inner(&args, &job))?;
    println!("{}", super::phase::summary_json(&summary));
    Ok(())
}

fn run_inner(args: &GrpoArgs, job: &PhaseJob) -> anyhow::Result<PhaseSummary> {
    common::ensure_model(&args.rollout, job)?;
    let params = params(args, job)?;
    let attempt = super::phase::attempt(job)?;
    let out = common::output(&args.rollout, Some(job))?;
    common::prepare_output(&out)?;
    let (data, domains) = common::data(&args.rollout, Some(job));
    let loaded_domains = load_domains(&data, &domains)?;
    let user = common::user_simulator(&args.rollout, Some(job), &data)?;
    let loaded = common::load_model(&args.rollout, Some(job))?;
    let cfg = GrpoConfig::from_params(&params, common::seed(&args.rollout, Some(job)))?;
    // The frozen KL reference: the initial checkpoint.
    let reference = if cfg.loss.kl_coef > 0.0 {
        Some(common::load_model(&args.rollout, Some(job))?.model)
    } else {
        None
    };
    let policy = PolicyConfig::from_rollout(&params.rollout, loaded.max_context)?;
    let rollout = RolloutConfig {
        policy,
        limits: common::limits(&params.rollout)?,
        concurrency: args.rollout.concurrency,
        seed: cfg.seed,
    };
    let rt = runtime()?;
    let mut source = EpisodeRollouts::new(&rt, &loaded_domains, &loaded.chat, &user, rollout);
    let tasks = source.tasks(job.data.train_split)?;
    let init = args
        .rollout
        .model
        .clone()
        .unwrap_or_else(|| job.model.init.clone());
    let checkpoints = Checkpoints::open(&out, cfg.keep_last)?.with_side_files_from(Some(init));
    let mut rjob = job.clone();
    rjob.output_dir = out.clone();
    let mut reporter = super::phase::reporter(&rjob)?;
    eprintln!(
        "grpo (attempt {attempt}): {} steps of {} tasks x {} samples over {} training tasks",
        cfg.steps,
        cfg.tasks_per_step,
        cfg.samples_per_task,
        tasks.len()
    );
    let outcome = grpo::train(
        &loaded.model,
        reference.as_ref(),
        &tasks,
        &mut source,
        &cfg,
        &checkpoints,
        &mut reporter,
    );
    let result = match outcome {
        Ok(o) => {
            let mean = |k: &str| {
                let v: Vec<f64> = o
                    .history
                    .iter()
                    .filter_map(|h| h.metrics.get(k).copied())
                    .collect();
                (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
            };
            let (first_reward, last_reward) = StepRecord::first_and_last(&o.history, "reward");
            let summary = serde_json::json!({
                "phase": "grpo",
                "attempt": attempt,
                "steps": o.steps,
                "resumedFrom": o.resumed_from,
                "finalCheckpoint": o.final_dir,
                "meanReward": mean("reward"),
                "meanShapedReward": mean("shaped_reward"),
                "firstStepReward": first_reward,
                "lastStepReward": last_reward,
                "history": o.history,
            });
            write_json_atomic(&out.join("results.json"), &summary)?;
            reporter.finished(true, &format!("{} steps", o.steps));
            Ok(PhaseSummary {
                succeeded: true,
                final_checkpoint: Some(super::phase::final_rel(&out)),
                step: i64::try_from(o.steps).ok(),
                message: Some(format!(
                    "grpo: {} steps, mean reward {:.3}, mean shaped reward {:.3}",
                    o.steps,
                    mean("reward").unwrap_or(0.0),
                    mean("shaped_reward").unwrap_or(0.0)
                )),
                results: None,
            })
        }
        Err(e) => {
            reporter.finished(false, &e.to_string());
            Err(anyhow::anyhow!("grpo failed: {e}"))
        }
    };
    super::phase::close(reporter, "grpo");
    result
}
