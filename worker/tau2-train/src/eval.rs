//! The eval phase: N samples of every task of the evaluation split, pass@k
//! and pass^k per domain and overall, a results file and the trajectories.
//!
//! Episodes that could not run or be scored (a user endpoint that stays
//! down, an evaluator failure) count as failures with reward 0, as the
//! recipe's harness counts an aborted attempt, and are counted in
//! `errors` so that a broken run is visible; context overflows score 0 as
//! described in `crate::policy`.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tau2_api::bench::{Domain, Split};
use tau2_bench::data::DataDir;
use tau2_bench::domains::LoadedDomain;
use tau2_bench::evaluator::NlJudge;
use tau2_bench::task::Task;
use tau2_chat::ChatTokenizer;

use crate::passk::{EvalResults, PassKError, TaskSamples};
use crate::policy::{AgentStats, Generator};
use crate::rollout::{
    EpisodeOutcome, RolloutConfig, RolloutError, RolloutJob, RolloutStats, UserSimulator,
    run_rollouts,
};
use crate::trajectory::Trajectory;

/// File names in the output directory.
pub const RESULTS_FILE: &str = "results.json";
pub const TRAJECTORIES_FILE: &str = "trajectories.jsonl";

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("invalid evaluation settings: {0}")]
    Config(String),
    #[error("loading the {domain} domain: {source}")]
    Data {
        domain: Domain,
        source: tau2_bench::data::DataError,
    },
    #[error("the {domain} domain: {message}")]
    Split { domain: Domain, message: String },
    #[error(transparent)]
    Rollout(#[from] RolloutError),
    #[error(transparent)]
    PassK(#[from] PassKError),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Loads each domain once.
pub fn load_domains(data: &DataDir, domains: &[Domain]) -> Result<Vec<LoadedDomain>, EvalError> {
    if domains.is_empty() {
        return Err(EvalError::Config("no domains to evaluate".into()));
    }
    domains
        .iter()
        .map(|&domain| {
            LoadedDomain::load(data, domain).map_err(|source| EvalError::Data { domain, source })
        })
        .collect()
}

/// A domain's tasks of `split`, the first `max` of them when given.
pub fn split_tasks(
    loaded: &LoadedDomain,
    split: Split,
    max: Option<usize>,
) -> Result<Vec<&Task>, EvalError> {
    let mut tasks = loaded
        .tasks
        .split(split)
        .map_err(|message| EvalError::Split {
            domain: loaded.domain,
            message,
        })?;
    if let Some(max) = max {
        tasks.truncate(max);
    }
    if tasks.is_empty() {
        return Err(EvalError::Split {
            domain: loaded.domain,
            message: format!("the {split} split has no tasks"),
        });
    }
    Ok(tasks)
}

/// What to evaluate.
#[derive(Clone, Debug)]
pub struct EvalSpec {
    pub split: Split,
    pub samples_per_task: u32,
    pub k: u32,
    pub max_tasks_per_domain: Option<usize>,
    pub rollout: RolloutConfig,
}

impl EvalSpec {
    pub fn validate(&self) -> Result<(), EvalError> {
        check_counts(i64::from(self.samples_per_task), i64::from(self.k))
    }
}

/// Samples per task at least 1, and k between 1 and the samples.
pub fn check_counts(samples_per_task: i64, k: i64) -> Result<(), EvalError> {
    if samples_per_task < 1 {
        return Err(EvalError::Config(format!(
            "samplesPerTask must be at least 1, got {samples_per_task}"
        )));
    }
    if k < 1 || k > samples_per_task {
        return Err(EvalError::Config(format!(
            "k must be between 1 and samplesPerTask ({samples_per_task}), got {k}"
        )));
    }
    Ok(())
}

/// One episode in the results file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EpisodeSummary {
    pub domain: Domain,
    pub task_id: String,
    pub sample: u32,
    pub reward: f64,
    pub success: bool,
    pub termination: String,
    pub valid: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub agent: AgentStats,
}

/// The machine-readable results of an evaluation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EvalReport {
    pub results: EvalResults,
    /// Episodes that could not run or be scored (counted as failures).
    pub errors: usize,
    /// Episodes ended by the context limit (counted as failures).
    pub context_overflows: usize,
    pub rollout: RolloutStats,
    pub episodes: Vec<EpisodeSummary>,
}

/// Samples every task `samples_per_task` times and computes the pass rates.
#[allow(clippy::too_many_arguments)]
pub fn run_eval(
    runtime: &tokio::runtime::Runtime,
    domains: &[LoadedDomain],
    spec: &EvalSpec,
    chat: &ChatTokenizer,
    generator: &mut dyn Generator,
    user: &UserSimulator,
    judge: Option<&dyn NlJudge>,
) -> Result<(EvalReport, Vec<Trajectory>), EvalError> {
    spec.validate()?;
    let mut jobs = Vec::new();
    for loaded in domains {
        let tasks = split_tasks(loaded, spec.split, spec.max_tasks_per_domain)?;
        jobs.extend(RolloutJob::per_task(loaded, &tasks, spec.samples_per_task));
    }
    let (outcomes, stats) =
        run_rollouts(runtime, &jobs, chat, generator, user, &spec.rollout, judge)?;
    let report = report(spec, &outcomes, stats)?;
    let trajectories = outcomes.into_iter().map(|o| o.trajectory).collect();
    Ok((report, trajectories))
}

/// The report of scored episodes (task-major, samples in order).
pub fn report(
    spec: &EvalSpec,
    outcomes: &[EpisodeOutcome],
    rollout: RolloutStats,
) -> Result<EvalReport, EvalError> {
    let mut tasks: Vec<TaskSamples> = Vec::new();
    for o in outcomes {
        let t = &o.trajectory;
        match tasks.last_mut() {
            Some(last) if last.domain == t.domain && last.task_id == t.task_id => {
                last.rewards.push(t.reward)
            }
            _ => tasks.push(TaskSamples {
                domain: t.domain,
                task_id: t.task_id.clone(),
                rewards: vec![t.reward],
            }),
        }
    }
    let results = EvalResults::compute(spec.split, spec.k as usize, &tasks)?;
    let episodes: Vec<EpisodeSummary> = outcomes
        .iter()
        .map(|o| EpisodeSummary {
            domain: o.trajectory.domain,
            task_id: o.trajectory.task_id.clone(),
            sample: o.trajectory.sample,
            reward: o.trajectory.reward,
            success: o.trajectory.is_success(),
            termination: o.trajectory.termination.clone(),
            valid: o.trajectory.valid,
            error: o.error.clone(),
            agent: o.stats.clone(),
        })
        .collect();
    Ok(EvalReport {
        results,
        errors: episodes.iter().filter(|e| e.error.is_some()).count(),
        context_overflows: episodes.iter().filter(|e| e.agent.context_overflow).count(),
        rollout,
        episodes,
    })
}

/// Writes `value` as pretty JSON, through a temporary file and a rename so
/// that a reader never sees half a file.
pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<(), EvalError> {
    let err = |source| EvalError::Write {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_vec_pretty(value).map_err(|e| err(e.into()))?;
    let mut file = std::fs::File::create(&tmp).map_err(err)?;
    file.write_all(&text).map_err(err)?;
    file.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// Writes `results.json` and `trajectories.jsonl` into `dir` (created).
pub fn write_outputs(
    dir: &Path,
    report: &EvalReport,
    trajectories: &[Trajectory],
) -> Result<(), EvalError> {
    std::fs::create_dir_all(dir).map_err(|source| EvalError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    crate::rft::write_jsonl(&dir.join(TRAJECTORIES_FILE), trajectories).map_err(|e| {
        EvalError::Write {
            path: dir.join(TRAJECTORIES_FILE),
            source: std::io::Error::other(e.to_string()),
        }
    })?;
    write_json_atomic(&dir.join(RESULTS_FILE), report)
}
