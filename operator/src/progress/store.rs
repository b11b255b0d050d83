//! What workers reported, per pipeline and phase, and the rules for merging a
//! report in.
//!
//! [`apply_report`] is pure: it validates a report against the phase's state
//! and either merges it or says why not ([`Rejection`]). A rejected report
//! leaves the state untouched, so a bad, repeated or stale report does no harm.
//! [`ProgressStore`] shares the states between the gRPC service (which
//! applies reports) and the reconciler (which reads [`ProgressStore::snapshot`]
//! and writes status).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tau2_api::bench::{Domain, Split};
use tau2_api::crd::{CheckpointRecord, DomainPassRates, EvalResults, PassRates, PhaseProgress};
use tau2_api::phases::PhaseName;
use tau2_api::progress::{self as proto, ProgressReport, progress_report::Event};
use tokio::sync::mpsc;

use super::PipelineKey;
use crate::metrics::Metrics;

/// At most this many metrics in one step report.
pub const MAX_METRICS: usize = 64;
/// At most this many bytes in a metric name.
pub const MAX_METRIC_NAME_LEN: usize = 64;
/// At most this many per-domain rates in one results report.
pub const MAX_DOMAINS: usize = 16;
/// At most this many bytes in a checkpoint path.
pub const MAX_PATH_LEN: usize = 512;
/// Longer `Finished` messages are cut to this many bytes (not rejected: the
/// end of a phase must not be lost over a long error text).
pub const MAX_MESSAGE_LEN: usize = 1024;
/// Checkpoints kept per phase (status keeps the most recent 100 overall).
pub const MAX_CHECKPOINTS: usize = 100;
/// Steps and tasks beyond this are nonsense (and would not fit status' i32/i64).
pub const MAX_STEPS: u64 = 1 << 40;
pub const MAX_TASKS: u32 = 1_000_000;
/// Reports stamped further in the future than this are rejected.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(600);
/// 2020-01-01T00:00:00Z: earlier stamps come from a worker without a clock.
pub const MIN_UNIX_MILLIS: i64 = 1_577_836_800_000;

/// Why a report was not merged. [`Rejection::reason`] is its metric label.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Rejection {
    #[error("unknown phase {0:?}: expected sft, rft, grpo or eval")]
    UnknownPhase(String),
    #[error("attempt must be 1 or more")]
    ZeroAttempt,
    #[error("attempt {got} is older than the phase's attempt {current}")]
    StaleAttempt { got: u32, current: u32 },
    #[error("sequence number {got} is not after {last}: already seen")]
    OldSequence { got: u64, last: u64 },
    #[error("the report carries no event")]
    NoEvent,
    #[error("timestamp {0} ms is before 2020 or too far in the future")]
    BadTimestamp(i64),
    #[error("step {step} / total {total}: total must be 1..={MAX_STEPS} and step at most total")]
    BadStep { step: u64, total: u64 },
    #[error("{0} metrics; at most {MAX_METRICS}")]
    TooManyMetrics(usize),
    #[error("metric name {0:?} must be 1..={MAX_METRIC_NAME_LEN} of [A-Za-z0-9_.:/-]")]
    BadMetricName(String),
    #[error("checkpoint path {0:?} must be relative, without `..`, at most {MAX_PATH_LEN} bytes")]
    BadCheckpointPath(String),
    #[error("checkpoint step {0} is beyond {MAX_STEPS}")]
    BadCheckpointStep(u64),
    #[error("results are only accepted from the eval phase")]
    ResultsOutsideEval,
    #[error("invalid results: {0}")]
    BadResults(String),
}

impl Rejection {
    /// A short, fixed label for metrics (bounded cardinality).
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::UnknownPhase(_) => "unknown_phase",
            Rejection::ZeroAttempt => "zero_attempt",
            Rejection::StaleAttempt { .. } => "stale_attempt",
            Rejection::OldSequence { .. } => "old_sequence",
            Rejection::NoEvent => "no_event",
            Rejection::BadTimestamp(_) => "bad_timestamp",
            Rejection::BadStep { .. } => "bad_step",
            Rejection::TooManyMetrics(_) => "too_many_metrics",
            Rejection::BadMetricName(_) => "bad_metric_name",
            Rejection::BadCheckpointPath(_) => "bad_checkpoint_path",
            Rejection::BadCheckpointStep(_) => "bad_checkpoint_step",
            Rejection::ResultsOutsideEval => "results_outside_eval",
            Rejection::BadResults(_) => "bad_results",
        }
    }

    /// Every reason label, for metrics that should show zeros.
    pub const REASONS: [&'static str; 13] = [
        "unknown_phase",
        "zero_attempt",
        "stale_attempt",
        "old_sequence",
        "no_event",
        "bad_timestamp",
        "bad_step",
        "too_many_metrics",
        "bad_metric_name",
        "bad_checkpoint_path",
        "bad_checkpoint_step",
        "results_outside_eval",
        "bad_results",
    ];
}

/// A complete checkpoint a worker wrote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointState {
    pub step: u64,
    /// Relative to the pipeline's root on the storage volume (validated).
    pub path: String,
    /// The phase's final checkpoint, which the next phase starts from.
    pub r#final: bool,
    /// The worker's time of the report, in Unix milliseconds.
    pub unix_millis: i64,
}

impl CheckpointState {
    /// The status record of this checkpoint.
    pub fn record(&self, phase: PhaseName) -> CheckpointRecord {
        CheckpointRecord {
            phase,
            step: clamp_i64(self.step),
            path: self.path.clone(),
            time: time_of(self.unix_millis),
            r#final: self.r#final,
        }
    }
}

/// The worker said the phase ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinishedState {
    pub succeeded: bool,
    pub message: String,
}

/// What one phase's worker reported. Per-attempt fields reset when a report of
/// a newer attempt arrives; the checkpoints stay, since the retry resumes from them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PhaseReport {
    /// The attempt the fields below belong to.
    pub attempt: u32,
    /// The last accepted sequence number of that attempt.
    pub last_seq: u64,
    pub step: u64,
    pub total_steps: u64,
    /// The latest step's metrics (finite values only).
    pub metrics: BTreeMap<String, f64>,
    /// Complete checkpoints, oldest first, at most [`MAX_CHECKPOINTS`]; kept across attempts.
    pub checkpoints: Vec<CheckpointState>,
    /// Validated evaluation results, in the status' shape.
    pub results: Option<EvalResults>,
    pub finished: Option<FinishedState>,
    /// The worker's time of the last accepted report, in Unix milliseconds.
    pub reported_unix_millis: i64,
    /// When the operator accepted the last report.
    pub received_at: Option<SystemTime>,
}

impl PhaseReport {
    /// The newest complete checkpoint (of any attempt).
    pub fn latest_checkpoint(&self) -> Option<&CheckpointState> {
        self.checkpoints.last()
    }

    /// The phase's final checkpoint, once written.
    pub fn final_checkpoint(&self) -> Option<&CheckpointState> {
        self.checkpoints.iter().rev().find(|c| c.r#final)
    }

    /// The status' `progress` of this phase, once a step was reported.
    pub fn progress(&self) -> Option<PhaseProgress> {
        (self.total_steps > 0).then(|| PhaseProgress {
            step: clamp_i64(self.step),
            total_steps: clamp_i64(self.total_steps),
            metrics: self.metrics.clone(),
            last_update_time: time_of(self.reported_unix_millis),
        })
    }
}

/// Everything reported for one pipeline.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PipelineProgress {
    pub phases: BTreeMap<PhaseName, PhaseReport>,
}

impl PipelineProgress {
    pub fn phase(&self, phase: PhaseName) -> Option<&PhaseReport> {
        self.phases.get(&phase)
    }
}

/// What an accepted report changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Change {
    pub phase: PhaseName,
    /// The report started a newer attempt (per-attempt fields were reset).
    pub new_attempt: bool,
    pub kind: ChangeKind,
    /// Non-finite metric values left out of a step report.
    pub dropped_metrics: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    Step,
    Checkpoint,
    Results,
    Finished,
}

/// A report's event after validation, ready to merge.
enum Valid {
    Step {
        step: u64,
        total: u64,
        metrics: BTreeMap<String, f64>,
        dropped: usize,
    },
    Checkpoint(CheckpointState),
    Results(EvalResults),
    Finished(FinishedState),
}

/// Validates `report` against `state` and merges it in, or says why not
/// (leaving `state` untouched). `now` bounds the report's timestamp.
///
/// Non-finite metric values (a diverged loss) are dropped from the report, not
/// rejected: the step still counts, and status JSON cannot carry NaN anyway.
pub fn apply_report(
    state: &mut PipelineProgress,
    report: &ProgressReport,
    now: SystemTime,
) -> Result<Change, Rejection> {
    let phase = parse_phase(&report.phase)?;
    if report.attempt == 0 {
        return Err(Rejection::ZeroAttempt);
    }
    check_timestamp(report.unix_millis, now)?;
    let valid = validate_event(phase, report)?;

    let current = state.phases.get(&phase);
    let new_attempt = match current {
        Some(cur) if report.attempt < cur.attempt => {
            return Err(Rejection::StaleAttempt {
                got: report.attempt,
                current: cur.attempt,
            });
        }
        Some(cur) if report.attempt == cur.attempt && report.seq <= cur.last_seq => {
            return Err(Rejection::OldSequence {
                got: report.seq,
                last: cur.last_seq,
            });
        }
        Some(cur) => report.attempt > cur.attempt,
        None => true,
    };

    let entry = state.phases.entry(phase).or_default();
    if new_attempt {
        // A retry starts over, except for the checkpoints it resumes from.
        *entry = PhaseReport {
            attempt: report.attempt,
            checkpoints: std::mem::take(&mut entry.checkpoints),
            ..PhaseReport::default()
        };
    }
    entry.last_seq = report.seq;
    entry.reported_unix_millis = report.unix_millis;
    entry.received_at = Some(now);
    let mut dropped_metrics = 0;
    let kind = match valid {
        Valid::Step {
            step,
            total,
            metrics,
            dropped,
        } => {
            entry.step = step;
            entry.total_steps = total;
            entry.metrics = metrics;
            dropped_metrics = dropped;
            ChangeKind::Step
        }
        Valid::Checkpoint(checkpoint) => {
            // The same directory written again (a resumed attempt) replaces the old record.
            entry.checkpoints.retain(|c| c.path != checkpoint.path);
            entry.checkpoints.push(checkpoint);
            let excess = entry.checkpoints.len().saturating_sub(MAX_CHECKPOINTS);
            entry.checkpoints.drain(..excess);
            ChangeKind::Checkpoint
        }
        Valid::Results(results) => {
            entry.results = Some(results);
            ChangeKind::Results
        }
        Valid::Finished(finished) => {
            entry.finished = Some(finished);
            ChangeKind::Finished
        }
    };
    Ok(Change {
        phase,
        new_attempt,
        kind,
        dropped_metrics,
    })
}

fn parse_phase(name: &str) -> Result<PhaseName, Rejection> {
    PhaseName::ALL
        .into_iter()
        .find(|p| p.as_str() == name)
        .ok_or_else(|| Rejection::UnknownPhase(truncate(name, 64)))
}

fn check_timestamp(unix_millis: i64, now: SystemTime) -> Result<(), Rejection> {
    let now_millis = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let skew = i64::try_from(MAX_CLOCK_SKEW.as_millis()).unwrap_or(i64::MAX);
    if unix_millis < MIN_UNIX_MILLIS || unix_millis > now_millis.saturating_add(skew) {
        return Err(Rejection::BadTimestamp(unix_millis));
    }
    Ok(())
}

fn validate_event(phase: PhaseName, report: &ProgressReport) -> Result<Valid, Rejection> {
    match &report.event {
        None => Err(Rejection::NoEvent),
        Some(Event::Step(step)) => validate_step(step),
        Some(Event::Checkpoint(c)) => {
            if !is_safe_relative_path(&c.path) {
                return Err(Rejection::BadCheckpointPath(truncate(&c.path, 128)));
            }
            if c.step > MAX_STEPS {
                return Err(Rejection::BadCheckpointStep(c.step));
            }
            Ok(Valid::Checkpoint(CheckpointState {
                step: c.step,
                path: c.path.clone(),
                r#final: c.r#final,
                unix_millis: report.unix_millis,
            }))
        }
        Some(Event::Results(results)) => {
            if phase != PhaseName::Eval {
                return Err(Rejection::ResultsOutsideEval);
            }
            validate_results(results)
                .map(Valid::Results)
                .map_err(|why| Rejection::BadResults(why.to_owned()))
        }
        Some(Event::Finished(f)) => Ok(Valid::Finished(FinishedState {
            succeeded: f.succeeded,
            message: truncate(&f.message, MAX_MESSAGE_LEN),
        })),
    }
}

fn validate_step(step: &proto::Step) -> Result<Valid, Rejection> {
    if step.total_steps == 0 || step.total_steps > MAX_STEPS || step.step > step.total_steps {
        return Err(Rejection::BadStep {
            step: step.step,
            total: step.total_steps,
        });
    }
    if step.metrics.len() > MAX_METRICS {
        return Err(Rejection::TooManyMetrics(step.metrics.len()));
    }
    if let Some(bad) = step.metrics.keys().find(|n| !is_metric_name(n)) {
        return Err(Rejection::BadMetricName(truncate(bad, 128)));
    }
    let metrics: BTreeMap<String, f64> = step
        .metrics
        .iter()
        .filter(|(_, v)| v.is_finite())
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    Ok(Valid::Step {
        step: step.step,
        total: step.total_steps,
        dropped: step.metrics.len() - metrics.len(),
        metrics,
    })
}

fn is_metric_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_METRIC_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:/-".contains(&b))
}

/// Relative, no `..` or empty components, no backslashes or control characters:
/// the reconciler joins it to the volume root and hands it to the next phase.
fn is_safe_relative_path(path: &str) -> bool {
    !path.is_empty()
        && path.len() <= MAX_PATH_LEN
        && !path.starts_with('/')
        && !path.contains('\\')
        && !path.chars().any(char::is_control)
        && path
            .trim_end_matches('/')
            .split('/')
            .all(|c| !c.is_empty() && c != "..")
}

fn validate_results(r: &proto::Results) -> Result<EvalResults, &'static str> {
    const SPLITS: [Split; 5] = [
        Split::Train,
        Split::Test,
        Split::Base,
        Split::Small,
        Split::Full,
    ];
    let split = SPLITS
        .into_iter()
        .find(|s| s.as_str() == r.split)
        .ok_or("unknown split")?;
    if r.samples_per_task == 0 || r.samples_per_task > MAX_TASKS {
        return Err("samples_per_task must be 1 or more");
    }
    if r.k == 0 || r.k > r.samples_per_task {
        return Err("k must be between 1 and samples_per_task");
    }
    let overall = r.overall.as_ref().ok_or("no overall rates")?;
    if !overall.domain.is_empty() {
        return Err("the overall rates name a domain");
    }
    let overall = validate_rates(overall)?;
    if r.domains.len() > MAX_DOMAINS {
        return Err("too many domains");
    }
    let mut domains: Vec<DomainPassRates> = Vec::with_capacity(r.domains.len());
    for rates in &r.domains {
        let domain = Domain::ALL
            .into_iter()
            .find(|d| d.as_str() == rates.domain)
            .ok_or("unknown domain")?;
        if domains.iter().any(|d| d.domain == domain) {
            return Err("a domain appears twice");
        }
        domains.push(DomainPassRates {
            domain,
            rates: validate_rates(rates)?,
        });
    }
    Ok(EvalResults {
        split,
        k: bounded(r.k),
        samples_per_task: bounded(r.samples_per_task),
        overall,
        domains,
    })
}

/// A count already checked to be at most [`MAX_TASKS`], as the status' i32.
fn bounded(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn validate_rates(r: &proto::PassRates) -> Result<PassRates, &'static str> {
    if r.tasks == 0 || r.tasks > MAX_TASKS {
        return Err("tasks must be 1 or more");
    }
    let rates = [
        r.pass_at1,
        r.pass_at1_unbiased,
        r.pass_at_k,
        r.pass_at_k_unbiased,
        r.pass_hat_k,
        r.average_reward,
    ];
    if !rates.iter().all(|x| (0.0..=1.0).contains(x)) {
        return Err("a rate is outside [0, 1]");
    }
    Ok(PassRates {
        tasks: bounded(r.tasks),
        pass_at1: r.pass_at1,
        pass_at1_unbiased: r.pass_at1_unbiased,
        pass_at_k: r.pass_at_k,
        pass_at_k_unbiased: r.pass_at_k_unbiased,
        pass_hat_k: r.pass_hat_k,
        average_reward: r.average_reward,
    })
}

/// Cuts `s` to at most `max` bytes, at a character boundary.
fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

fn clamp_i64(x: u64) -> i64 {
    i64::try_from(x).unwrap_or(i64::MAX)
}

fn time_of(unix_millis: i64) -> Option<Time> {
    Timestamp::from_millisecond(unix_millis).ok().map(Time)
}

struct Entry {
    progress: PipelineProgress,
    /// A notification is queued and the reconciler has not taken a snapshot since.
    notified: bool,
}

/// The progress of every pipeline, shared by the service and the reconciler.
///
/// Each accepted report queues the pipeline's key on the channel from
/// [`ProgressStore::new`] so the controller reconciles it; while one is queued
/// and no [`snapshot`](Self::snapshot) was taken, further reports queue
/// nothing, so the channel holds at most one key per pipeline however fast
/// workers report.
#[derive(Clone)]
pub struct ProgressStore {
    inner: Arc<RwLock<HashMap<PipelineKey, Entry>>>,
    changed: mpsc::UnboundedSender<PipelineKey>,
    metrics: Option<Metrics>,
}

impl ProgressStore {
    /// A store, and the keys of pipelines whose progress changed.
    pub fn new() -> (ProgressStore, mpsc::UnboundedReceiver<PipelineKey>) {
        let (changed, rx) = mpsc::unbounded_channel();
        let store = ProgressStore {
            inner: Arc::default(),
            changed,
            metrics: None,
        };
        (store, rx)
    }

    /// Also keep the per-pipeline training metrics up to date (and remove
    /// them in [`forget`](Self::forget)).
    pub fn with_metrics(mut self, metrics: Metrics) -> ProgressStore {
        self.metrics = Some(metrics);
        self
    }

    /// Validates and merges one report of an authorized pipeline.
    pub fn apply(&self, key: &PipelineKey, report: &ProgressReport) -> Result<Change, Rejection> {
        self.apply_at(key, report, SystemTime::now())
    }

    /// [`apply`](Self::apply) at a given time (for tests).
    pub fn apply_at(
        &self,
        key: &PipelineKey,
        report: &ProgressReport,
        now: SystemTime,
    ) -> Result<Change, Rejection> {
        let mut map = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let mut fresh = false;
        let entry = map.entry(key.clone()).or_insert_with(|| {
            fresh = true;
            Entry {
                progress: PipelineProgress::default(),
                notified: false,
            }
        });
        let result = apply_report(&mut entry.progress, report, now);
        let change = match result {
            Ok(change) => change,
            Err(rejection) => {
                if fresh {
                    // A rejected first report must not leave an entry behind.
                    map.remove(key);
                }
                return Err(rejection);
            }
        };
        if let (Some(metrics), Some(phase)) = (&self.metrics, entry.progress.phase(change.phase)) {
            metrics.observe_phase(key, change.phase, phase);
        }
        if !entry.notified {
            entry.notified = true;
            // A closed receiver means the controller stopped; nothing to tell.
            let _ = self.changed.send(key.clone());
        }
        Ok(change)
    }

    /// A copy of the pipeline's progress; re-arms its change notification.
    pub fn snapshot(&self, key: &PipelineKey) -> Option<PipelineProgress> {
        let mut map = self.inner.write().unwrap_or_else(|e| e.into_inner());
        map.get_mut(key).map(|entry| {
            entry.notified = false;
            entry.progress.clone()
        })
    }

    /// Drops everything about a deleted pipeline, its metric series included.
    pub fn forget(&self, key: &PipelineKey) {
        let mut map = self.inner.write().unwrap_or_else(|e| e.into_inner());
        map.remove(key);
        if let Some(metrics) = &self.metrics {
            metrics.forget_pipeline(key);
        }
    }

    /// Forgets every pipeline `keep` says no to, e.g. those no longer in the
    /// controller's cache (a deletion missed while this replica was not the leader).
    pub fn retain(&self, keep: impl Fn(&PipelineKey) -> bool) {
        let mut map = self.inner.write().unwrap_or_else(|e| e.into_inner());
        map.retain(|key, _| {
            let kept = keep(key);
            if let (false, Some(metrics)) = (kept, &self.metrics) {
                metrics.forget_pipeline(key);
            }
            kept
        });
    }

    /// The pipelines the store knows.
    pub fn keys(&self) -> Vec<PipelineKey> {
        let map = self.inner.read().unwrap_or_else(|e| e.into_inner());
        map.keys().cloned().collect()
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
