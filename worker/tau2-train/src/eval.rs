//! The eval phase: N samples of every task of the evaluation split, pass@k
//! and pass^k per domain and overall, a results file and the trajectories.
//!
//! Episodes that could not run or be scored (a user endpoint that stays
//! down, an evaluator failure) count as failures with reward 0, as the
//! recipe's harness counts an aborted attempt, and are counted in
//! `errors` so that a broken run is visible; context overflows score 0 as
//! described in `crate::policy`.
//!
//! Durability: with an output directory, every scored episode is appended
//! to `episodes.jsonl` (fsynced) as soon as it is scored. A restarted
//! evaluation with the same settings (the file's first line is their
//! fingerprint) keeps those episodes and runs only the others; episodes are
//! seeded by their job alone (`crate::rollout`), so the final results are
//! those of an uninterrupted run. A torn last line (a kill mid-write) is
//! dropped and its episode run again.

use std::collections::BTreeMap;
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tau2_api::bench::{Domain, Split};
use tau2_bench::data::DataDir;
use tau2_bench::domains::LoadedDomain;
use tau2_bench::evaluator::NlJudge;
use tau2_bench::task::Task;
use tau2_chat::ChatTokenizer;

use crate::passk::{EvalResults, PassKError, TaskSamples};
use crate::policy::{AgentStats, Generator};
use crate::progress::Observer;
use crate::rollout::{
    EpisodeOutcome, RolloutConfig, RolloutError, RolloutJob, RolloutStats, UserSimulator,
    run_rollouts_with,
};
use crate::trajectory::Trajectory;

/// File names in the output directory.
pub const RESULTS_FILE: &str = "results.json";
pub const TRAJECTORIES_FILE: &str = "trajectories.jsonl";
/// The append-only record of scored episodes (see the module docs).
pub const PROGRESS_FILE: &str = "episodes.jsonl";

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
/// With `progress` (the output directory and an identity of the model),
/// episodes are recorded as they finish and a previous run's are reused
/// (see the module docs). `observer` hears each scored episode as a step
/// (episodes done of all, and the mean reward so far).
#[allow(clippy::too_many_arguments)]
pub fn run_eval(
    runtime: &tokio::runtime::Runtime,
    domains: &[LoadedDomain],
    spec: &EvalSpec,
    chat: &ChatTokenizer,
    generator: &mut dyn Generator,
    user: &UserSimulator,
    judge: Option<&dyn NlJudge>,
    progress: Option<(&Path, &str)>,
    observer: &mut dyn Observer,
) -> Result<(EvalReport, Vec<Trajectory>), EvalError> {
    spec.validate()?;
    let mut jobs = Vec::new();
    for loaded in domains {
        let tasks = split_tasks(loaded, spec.split, spec.max_tasks_per_domain)?;
        jobs.extend(RolloutJob::per_task(loaded, &tasks, spec.samples_per_task));
    }
    let (mut log, done) = match progress {
        Some((dir, model)) => {
            let (log, done) = EpisodeLog::open(dir, &fingerprint(spec, model, &jobs), &jobs)?;
            (Some(log), done)
        }
        None => (None, Vec::new()),
    };
    let reused = done.iter().flatten().count();
    if reused > 0 {
        tracing::info!(
            reused,
            remaining = jobs.len() - reused,
            "resuming the evaluation from recorded episodes"
        );
    }
    let total = jobs.len() as u64;
    let mut finished = reused as u64;
    let mut reward_sum: f64 = done.iter().flatten().map(|o| o.trajectory.reward).sum();
    if reused > 0 {
        observer.step(finished, total, &mean_reward(reward_sum, finished));
    }
    let mut record = |job: usize, outcome: &EpisodeOutcome| {
        if let Some(log) = &mut log {
            log.append(job, outcome).map_err(|e| e.to_string())?;
        }
        finished += 1;
        reward_sum += outcome.trajectory.reward;
        observer.step(finished, total, &mean_reward(reward_sum, finished));
        Ok(())
    };
    let (outcomes, stats) = run_rollouts_with(
        runtime,
        &jobs,
        chat,
        generator,
        user,
        &spec.rollout,
        judge,
        done,
        &mut record,
    )?;
    let report = report(spec, &outcomes, stats)?;
    let trajectories = outcomes.into_iter().map(|o| o.trajectory).collect();
    Ok((report, trajectories))
}

fn mean_reward(sum: f64, n: u64) -> BTreeMap<String, f64> {
    BTreeMap::from([("reward".to_string(), sum / n.max(1) as f64)])
}

/// What decides the episodes: the settings, the model and the job list
/// (not the concurrency, which does not change a seeded episode).
fn fingerprint(spec: &EvalSpec, model: &str, jobs: &[RolloutJob<'_>]) -> String {
    let mut h = Sha256::new();
    let r = &spec.rollout;
    h.update(format!(
        "{model}\n{}\n{}\n{:?}\n{:?}\n{}\n",
        spec.samples_per_task, spec.k, r.policy, r.limits, r.seed
    ));
    for j in jobs {
        h.update(format!(
            "{}/{}#{}\n",
            j.domain.domain.as_str(),
            j.task.id,
            j.sample
        ));
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The first line of the progress file.
#[derive(Serialize, Deserialize)]
struct LogHeader {
    fingerprint: String,
}

/// One scored episode in the progress file.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogLine {
    job: usize,
    domain: Domain,
    task_id: String,
    sample: u32,
    reward: f64,
    outcome: EpisodeOutcome,
}

/// The append-only, fsynced record of scored episodes.
struct EpisodeLog {
    path: PathBuf,
    file: std::fs::File,
}

impl EpisodeLog {
    /// Opens `dir/episodes.jsonl`, keeping the episodes of a previous run
    /// with the same `fingerprint` (by job index) and dropping a torn or
    /// unreadable tail; starts it anew otherwise.
    fn open(
        dir: &Path,
        fingerprint: &str,
        jobs: &[RolloutJob<'_>],
    ) -> Result<(Self, Vec<Option<EpisodeOutcome>>), EvalError> {
        let path = dir.join(PROGRESS_FILE);
        let err = |source| EvalError::Write {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(err)?;
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(err(e)),
        };
        let mut done: Vec<Option<EpisodeOutcome>> = vec![None; jobs.len()];
        // Bytes of complete, readable lines from the start.
        let mut keep = 0usize;
        let mut lines = text.split_inclusive(|&b| b == b'\n');
        let header_ok = lines.next().is_some_and(|l| {
            l.ends_with(b"\n")
                && serde_json::from_slice::<LogHeader>(l)
                    .is_ok_and(|h| h.fingerprint == fingerprint)
        });
        if header_ok {
            keep = text.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1);
            for line in lines {
                let parsed = line
                    .ends_with(b"\n")
                    .then(|| serde_json::from_slice::<LogLine>(line).ok())
                    .flatten();
                let Some(l) = parsed else {
                    tracing::warn!(path = %path.display(), "dropping a torn or unreadable tail of the episode log");
                    break;
                };
                let same_job = jobs.get(l.job).is_some_and(|j| {
                    j.domain.domain == l.domain && j.task.id == l.task_id && j.sample == l.sample
                });
                if same_job {
                    done[l.job] = Some(l.outcome);
                }
                keep += line.len();
            }
        } else if !text.is_empty() {
            tracing::warn!(path = %path.display(), "the episode log is from other settings; starting anew");
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&path)
            .map_err(err)?;
        file.set_len(keep as u64).map_err(err)?;
        file.seek(std::io::SeekFrom::End(0)).map_err(err)?;
        if keep == 0 {
            let header = LogHeader {
                fingerprint: fingerprint.to_string(),
            };
            let bytes = serde_json::to_vec(&header).map_err(|e| err(e.into()))?;
            write_line(&mut file, &bytes).map_err(err)?;
        }
        Ok((Self { path, file }, done))
    }

    fn append(&mut self, job: usize, outcome: &EpisodeOutcome) -> Result<(), EvalError> {
        let t = &outcome.trajectory;
        let line = LogLine {
            job,
            domain: t.domain,
            task_id: t.task_id.clone(),
            sample: t.sample,
            reward: t.reward,
            outcome: outcome.clone(),
        };
        let path = &self.path;
        let err = |source| EvalError::Write {
            path: path.clone(),
            source,
        };
        let bytes = serde_json::to_vec(&line).map_err(|e| err(e.into()))?;
        write_line(&mut self.file, &bytes).map_err(err)
    }
}

/// One line, then fsync: a recorded episode survives a kill.
fn write_line(file: &mut std::fs::File, bytes: &[u8]) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(bytes.len() + 1);
    buf.extend_from_slice(bytes);
    buf.push(b'\n');
    file.write_all(&buf)?;
    file.sync_data()
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
