//! The decision logic: given a pipeline and what exists for it, what should
//! exist and what its status is. [`plan`] is pure (no client, the clock passed
//! in), so every transition is unit-tested from YAML fixtures; `controller`
//! observes, calls it and carries the [`Plan`] out.
//!
//! Failures are retried as *operator-managed attempts*: each attempt is its
//! own Job `<pipeline>-<phase>-<attempt>` with `backoffLimit: 0`, and the
//! operator waits `retry_backoff * 2^(attempt-1)` (capped) before the next.
//! Compared with one Job with a native backoffLimit: the attempt number is
//! known when the Job is made, so it reaches the worker (`TAU2_ATTEMPT`, the
//! PhaseJob) and the progress service can reject reports of a stale attempt;
//! each failed attempt keeps its pod, so the status quotes its exact reason
//! (OOMKilled, exit code, message); the backoff is ours to set (the Job
//! controller's is fixed at 10 s doubling); and a pod stuck on an image pull
//! can be given up on as one failed attempt, which a Job never does itself.

pub mod build;
pub mod pods;
pub mod progress_view;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use serde::Deserialize;
use tau2_api::crd::{
    CheckpointRecord, EvalResults, PhaseProgress, PhaseState, PhaseStatus, PipelinePhase,
    Tau2Pipeline, Tau2PipelineStatus,
};
use tau2_api::job::PhaseSummary;
use tau2_api::phases::PhaseName;

use self::build::{ANNOTATION_SUSPENDED_BY_PIPELINE, LABEL_ATTEMPT, LABEL_PHASE};
use self::pods::{JobOutcome, PodState, condition_reason};
use self::progress_view::PipelineProgress;

pub const COND_RUNNING: &str = "Running";
pub const COND_SUSPENDED: &str = "Suspended";
pub const COND_SUCCEEDED: &str = "Succeeded";
pub const COND_FAILED: &str = "Failed";
/// The status keeps this many checkpoint records.
pub const MAX_CHECKPOINTS: usize = 100;

/// Operator-wide settings the plan depends on.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The worker image when `spec.worker.image` is unset.
    pub default_image: String,
    /// The progress service's gRPC address for workers, if it runs.
    pub progress_endpoint: Option<String>,
    /// Wait before the first retry; doubles with each further failure.
    pub retry_backoff: Duration,
    pub max_retry_backoff: Duration,
    /// How long a pod may wait on an image pull or a missing Secret before
    /// its attempt counts as failed.
    pub blocked_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            default_image: "ghcr.io/tau2-operator/tau2-worker:latest".into(),
            progress_endpoint: None,
            retry_backoff: Duration::from_secs(10),
            max_retry_backoff: Duration::from_secs(600),
            blocked_timeout: Duration::from_secs(600),
        }
    }
}

/// What exists for a pipeline.
#[derive(Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct Observed {
    /// The pipeline's Jobs (by label).
    pub jobs: Vec<Job>,
    /// Their pods.
    pub pods: Vec<Pod>,
    /// Names of the pipeline's ConfigMaps.
    pub config_maps: Vec<String>,
    /// Whether the progress token Secret exists.
    pub token_secret: bool,
    /// Whether the claim from `storage.volumeClaimTemplate` exists.
    pub claim: bool,
    pub progress: Option<PipelineProgress>,
}

/// An object to create or update with server-side apply, in this order.
#[derive(Clone, Debug, PartialEq)]
pub enum Apply {
    Claim(Box<PersistentVolumeClaim>),
    ConfigMap(Box<ConfigMap>),
    Job(Box<Job>),
}

/// Set `spec.suspend` of an existing Job.
#[derive(Clone, Debug, PartialEq)]
pub struct Suspension {
    pub job: String,
    pub suspend: bool,
}

/// A Kubernetes event about the pipeline.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedEvent {
    pub warning: bool,
    pub reason: String,
    pub note: String,
    pub action: String,
}

/// What to do.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub apply: Vec<Apply>,
    /// Create the progress token Secret (never re-applied: its token is random).
    pub create_token_secret: bool,
    pub suspensions: Vec<Suspension>,
    pub status: Tau2PipelineStatus,
    pub events: Vec<PlannedEvent>,
    /// Reconcile again after this long at the latest (a backoff or a TTL ends).
    pub requeue_after: Option<Duration>,
    /// `ttlSecondsAfterFinished` has passed: delete the pipeline.
    pub delete_pipeline: bool,
}

impl Plan {
    fn requeue_at(&mut self, at: Timestamp, now: Timestamp) {
        let ms = (at.as_millisecond() - now.as_millisecond()).max(0);
        let after = Duration::from_millis(ms.unsigned_abs()) + Duration::from_millis(100);
        self.requeue_after = Some(self.requeue_after.map_or(after, |d| d.min(after)));
    }
}

/// Where the walk through the phases stopped.
enum Step {
    /// Every enabled phase succeeded.
    Done,
    /// Start this attempt (or re-create its missing Job).
    Create {
        phase: PhaseName,
        attempt: i32,
        init: Option<String>,
    },
    /// The attempt's Job runs (or waits).
    Active {
        phase: PhaseName,
        attempt: i32,
        init: Option<String>,
        job: String,
        suspended: Option<bool>,
        pod: PodState,
        blocked_deadline: Option<Timestamp>,
    },
    /// The attempt failed.
    Failed {
        phase: PhaseName,
        attempt: i32,
        init: Option<String>,
        reason: String,
        message: String,
        at: Timestamp,
        /// The Job to stop (a pod blocked for too long is still there).
        stop: Option<String>,
    },
}

fn job_attempt(p: &Tau2Pipeline, job: &Job) -> Option<(PhaseName, i32)> {
    // A Job of a deleted pipeline of the same name may linger until garbage
    // collection; only the pipeline's own count.
    if let Some(uid) = p.uid() {
        let owned = job
            .owner_references()
            .iter()
            .any(|o| o.uid == uid && o.controller == Some(true));
        if !owned {
            return None;
        }
    }
    let labels = job.labels();
    let phase = serde_json::from_value(labels.get(LABEL_PHASE)?.as_str().into()).ok()?;
    let attempt = labels.get(LABEL_ATTEMPT)?.parse().ok()?;
    Some((phase, attempt))
}

fn backoff(settings: &Settings, failed_attempt: i32) -> Duration {
    let doublings = u32::try_from(failed_attempt.saturating_sub(1))
        .unwrap_or(0)
        .min(20);
    settings
        .retry_backoff
        .saturating_mul(2u32.saturating_pow(doublings))
        .min(settings.max_retry_backoff)
}

fn add(at: Timestamp, d: Duration) -> Timestamp {
    let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    Timestamp::from_millisecond(at.as_millisecond().saturating_add(ms)).unwrap_or(Timestamp::MAX)
}

fn describe(reason: &str, message: &str, exit_code: Option<i32>) -> String {
    let mut s = reason.to_string();
    if let Some(code) = exit_code.filter(|c| *c != 0) {
        s.push_str(&format!(" (exit code {code})"));
    }
    if !message.is_empty() {
        s.push_str(": ");
        s.push_str(message);
    }
    s
}

fn summary(pod: &PodState) -> Option<PhaseSummary> {
    match pod {
        PodState::Succeeded {
            termination_message: Some(m),
        } => serde_json::from_str(m).ok(),
        _ => None,
    }
}

/// Decides what should exist for `p` and what its status is.
pub fn plan(p: &Tau2Pipeline, observed: &Observed, settings: &Settings, now: Timestamp) -> Plan {
    let name = p.name_any();
    let old = p.status.clone().unwrap_or_default();
    let mut st = old.clone();
    st.observed_generation = p.metadata.generation;
    merge_progress(&mut st, observed.progress.as_ref());
    let mut plan = Plan::default();

    if old.phase.is_terminal() {
        // Terminal stays terminal: nothing is (re)created, only the TTL runs.
        ttl(p, &mut st, &mut plan, now);
        plan.status = st;
        return plan;
    }

    plan.create_token_secret = !observed.token_secret;
    if !observed.claim
        && let Some(claim) = build::claim(p)
    {
        plan.apply.push(Apply::Claim(Box::new(claim)));
    }

    let jobs: Vec<(PhaseName, i32, &Job)> = observed
        .jobs
        .iter()
        .filter_map(|j| job_attempt(p, j).map(|(ph, a)| (ph, a, j)))
        .collect();
    let step = walk(p, &mut st, &jobs, observed, settings, now);
    let token_secret = crate::tokens::secret_name(&name);
    let suspend = p.spec.suspend;
    let generation = p.metadata.generation;

    let mut conds = Conditions {
        list: std::mem::take(&mut st.conditions),
        generation,
        now,
    };
    let create =
        |plan: &mut Plan, st: &mut Tau2PipelineStatus, phase, attempt, init: Option<String>| {
            let config = build::phase_job(p, phase, attempt, init.as_deref(), settings);
            match build::config_map(p, phase, attempt, &config) {
                Ok(cm) => plan.apply.push(Apply::ConfigMap(Box::new(cm))),
                // A PhaseJob always serialises; should it not, the Job's pod
                // waits on its ConfigMap and the status shows that.
                Err(e) => tracing::error!(error = %e, "cannot serialise the phase configuration"),
            }
            let job = build::job(p, phase, attempt, suspend, &token_secret, settings);
            let job_name = job.name_any();
            plan.apply.push(Apply::Job(Box::new(job)));
            plan.events.push(PlannedEvent {
                warning: false,
                reason: "JobCreated".into(),
                note: format!("Created Job {job_name} for phase {phase}, attempt {attempt}"),
                action: "CreateJob".into(),
            });
            st.start_time.get_or_insert(Time(now));
            let rec = phase_rec(st, phase);
            rec.state = PhaseState::Running;
            rec.attempts = attempt;
            rec.job_name = Some(job_name);
            if attempt == 1 || rec.start_time.is_none() {
                rec.start_time = Some(Time(now));
            }
            rec.completion_time = None;
            st.current_phase = Some(phase);
        };

    match step {
        Step::Done => {
            let done: Vec<&str> = p.spec.phases.enabled_phases().map(|p| p.as_str()).collect();
            st.phase = PipelinePhase::Succeeded;
            st.completion_time = Some(Time(now));
            st.current_phase = p.spec.phases.enabled_phases().last();
            let msg = format!("phases {} succeeded", done.join(", "));
            conds.set(COND_SUCCEEDED, true, "AllPhasesSucceeded", &msg);
            conds.set(COND_FAILED, false, "AllPhasesSucceeded", &msg);
            conds.set(COND_RUNNING, false, "Succeeded", &msg);
            conds.set(COND_SUSPENDED, false, "Succeeded", &msg);
            ttl(p, &mut st, &mut plan, now);
        }
        Step::Create {
            phase,
            attempt,
            init,
        } => {
            create(&mut plan, &mut st, phase, attempt, init);
            let msg = format!("created the Job of phase {phase}, attempt {attempt}");
            waiting(&mut st, &mut conds, suspend, "JobCreated", &msg);
        }
        Step::Active {
            phase,
            attempt,
            init,
            job,
            suspended,
            pod,
            blocked_deadline,
        } => {
            st.current_phase = Some(phase);
            if !observed.config_maps.contains(&job) {
                // Deleted by hand: the configuration is a function of the
                // (frozen) spec, so it can be made again as it was.
                let config = build::phase_job(p, phase, attempt, init.as_deref(), settings);
                if let Ok(cm) = build::config_map(p, phase, attempt, &config) {
                    plan.apply.push(Apply::ConfigMap(Box::new(cm)));
                }
            }
            let by_pipeline = suspended == Some(true);
            let job_suspended = suspended.is_some();
            if suspend {
                if !job_suspended {
                    plan.suspensions.push(Suspension {
                        job: job.clone(),
                        suspend: true,
                    });
                }
                waiting(&mut st, &mut conds, true, "", "");
            } else if job_suspended && by_pipeline {
                plan.suspensions.push(Suspension {
                    job: job.clone(),
                    suspend: false,
                });
                let msg = format!("resuming Job {job} from its latest checkpoint");
                waiting(&mut st, &mut conds, false, "Resuming", &msg);
            } else if job_suspended {
                let msg = format!(
                    "Job {job} is suspended, waiting for admission by its queue (Kueue) or for someone to resume it"
                );
                waiting(&mut st, &mut conds, false, "JobSuspended", &msg);
            } else {
                let (reason, what) = match &pod {
                    PodState::Running | PodState::Succeeded { .. } => {
                        ("PodRunning".to_string(), format!("Job {job} is running"))
                    }
                    PodState::Starting { reason, message } => {
                        let r = if reason.is_empty() {
                            "PodStarting"
                        } else {
                            reason
                        };
                        (r.to_string(), describe(r, message, None))
                    }
                    PodState::Blocked(b) => {
                        (b.reason.clone(), describe(&b.reason, &b.message, None))
                    }
                    // The Job controller marks the Job Failed next.
                    PodState::Failed(t) => (
                        t.reason.clone(),
                        describe(&t.reason, &t.message, t.exit_code),
                    ),
                };
                let msg = format!("phase {phase}, attempt {attempt}: {what}");
                let blocked = matches!(pod, PodState::Blocked(_));
                phase_rec(&mut st, phase).message = blocked.then(|| msg.clone());
                if matches!(pod, PodState::Running | PodState::Succeeded { .. }) {
                    st.phase = PipelinePhase::Running;
                    conds.set(COND_RUNNING, true, &reason, &msg);
                    conds.set(
                        COND_SUSPENDED,
                        false,
                        "NotSuspended",
                        "spec.suspend is not set",
                    );
                } else {
                    waiting(&mut st, &mut conds, false, &reason, &msg);
                }
            }
            if let Some(deadline) = blocked_deadline {
                plan.requeue_at(deadline, now);
            }
        }
        Step::Failed {
            phase,
            attempt,
            init,
            reason,
            message,
            at,
            stop,
        } => {
            st.current_phase = Some(phase);
            if let Some(job) = stop {
                plan.suspensions.push(Suspension { job, suspend: true });
            }
            let what = describe(&reason, &message, None);
            let limit = p.spec.phases.backoff_limit(phase);
            if attempt <= limit {
                let retry_at = add(at, backoff(settings, attempt));
                phase_rec(&mut st, phase).message =
                    Some(format!("attempt {attempt} failed: {what}"));
                if now >= retry_at {
                    create(&mut plan, &mut st, phase, attempt + 1, init);
                    let msg = format!(
                        "phase {phase}: attempt {attempt} failed ({what}); started attempt {} of {}, resuming from the latest checkpoint",
                        attempt + 1,
                        limit + 1
                    );
                    waiting(&mut st, &mut conds, suspend, "Retrying", &msg);
                } else {
                    plan.requeue_at(retry_at, now);
                    let secs = (retry_at.as_second() - now.as_second()).max(1);
                    let msg = format!(
                        "phase {phase}: attempt {attempt} of {} failed ({what}); retrying in {secs}s",
                        limit + 1
                    );
                    waiting(&mut st, &mut conds, suspend, "BackOff", &msg);
                }
            } else {
                let msg = format!(
                    "phase {phase} failed after {attempt} attempt{}: {what}",
                    if attempt == 1 { "" } else { "s" }
                );
                let rec = phase_rec(&mut st, phase);
                rec.state = PhaseState::Failed;
                rec.completion_time = Some(Time(at));
                rec.message = Some(msg.clone());
                st.phase = PipelinePhase::Failed;
                st.completion_time = Some(Time(now));
                let r = condition_reason(&reason);
                conds.set(COND_FAILED, true, &r, &msg);
                conds.set(COND_SUCCEEDED, false, &r, &msg);
                conds.set(COND_RUNNING, false, &r, &msg);
                conds.set(COND_SUSPENDED, false, "Failed", &msg);
                ttl(p, &mut st, &mut plan, now);
            }
        }
    }
    if !matches!(st.phase, PipelinePhase::Succeeded | PipelinePhase::Failed) {
        conds.set(
            COND_SUCCEEDED,
            false,
            "NotFinished",
            "the pipeline has not finished",
        );
        conds.set(
            COND_FAILED,
            false,
            "NotFinished",
            "the pipeline has not failed",
        );
    }
    st.conditions = conds.list;
    st.progress = st
        .current_phase
        .and_then(|ph| st.phases.as_ref()?.get(ph)?.progress.as_ref())
        .map(|pr| format!("{}/{}", pr.step, pr.total_steps));
    plan.events.extend(transitions(&old, &st));
    plan.status = st;
    plan
}

/// Sets the status of a pipeline whose current attempt is not running:
/// Suspended, or Pending with the Running condition saying why.
fn waiting(
    st: &mut Tau2PipelineStatus,
    conds: &mut Conditions,
    suspended: bool,
    reason: &str,
    message: &str,
) {
    if suspended {
        st.phase = PipelinePhase::Suspended;
        let msg = "spec.suspend is set: the current phase's Job is suspended and resumes from its latest checkpoint";
        conds.set(COND_SUSPENDED, true, "SuspendedBySpec", msg);
        conds.set(COND_RUNNING, false, "Suspended", msg);
    } else {
        st.phase = PipelinePhase::Pending;
        conds.set(COND_RUNNING, false, &condition_reason(reason), message);
        conds.set(
            COND_SUSPENDED,
            false,
            "NotSuspended",
            "spec.suspend is not set",
        );
    }
}

fn phase_rec(st: &mut Tau2PipelineStatus, phase: PhaseName) -> &mut PhaseStatus {
    st.phases
        .get_or_insert_with(Default::default)
        .get_mut(phase)
        .get_or_insert_with(Default::default)
}

/// Walks the enabled phases in order, recording finished ones, up to the
/// first that needs something.
fn walk(
    p: &Tau2Pipeline,
    st: &mut Tau2PipelineStatus,
    jobs: &[(PhaseName, i32, &Job)],
    observed: &Observed,
    settings: &Settings,
    now: Timestamp,
) -> Step {
    let name = p.name_any();
    let mut init: Option<String> = None;
    for phase in PhaseName::ALL {
        if !p.spec.phases.enabled(phase) {
            let rec = phase_rec(st, phase);
            rec.state = PhaseState::Skipped;
            continue;
        }
        let rec = phase_rec(st, phase);
        // The status remembers finished phases, so a Job deleted afterwards
        // (by hand or a TTL) never makes a phase run again.
        if rec.state == PhaseState::Succeeded {
            init = Some(
                rec.final_checkpoint
                    .clone()
                    .unwrap_or_else(|| build::final_checkpoint(phase)),
            );
            continue;
        }
        let latest = jobs
            .iter()
            .filter(|(ph, ..)| *ph == phase)
            .map(|(_, a, _)| *a)
            .max()
            .unwrap_or(0);
        let attempt = rec.attempts.max(latest);
        if attempt == 0 {
            return Step::Create {
                phase,
                attempt: 1,
                init,
            };
        }
        let job_name = build::attempt_name(&name, phase, attempt);
        rec.attempts = attempt;
        rec.job_name = Some(job_name.clone());
        rec.state = PhaseState::Running;
        let Some((_, _, job)) = jobs.iter().find(|(ph, a, _)| *ph == phase && *a == attempt) else {
            // Recorded but missing: same name, so applying it again is what a
            // restarted operator does too, and never makes a duplicate.
            return Step::Create {
                phase,
                attempt,
                init,
            };
        };
        let pods: Vec<&Pod> = observed
            .pods
            .iter()
            .filter(|pod| {
                let l = pod.labels();
                l.get("batch.kubernetes.io/job-name").or(l.get("job-name")) == Some(&job_name)
            })
            .collect();
        let pod = pods::pod_state(&pods);
        match pods::job_outcome(job) {
            Some(JobOutcome::Complete { at }) => {
                let summary = summary(&pod);
                rec.state = PhaseState::Succeeded;
                rec.completion_time = Some(Time(at.unwrap_or(now)));
                rec.message = None;
                let ckpt = rec
                    .final_checkpoint
                    .clone()
                    .or_else(|| summary.as_ref().and_then(|s| s.final_checkpoint.clone()))
                    .unwrap_or_else(|| build::final_checkpoint(phase));
                rec.final_checkpoint = Some(ckpt.clone());
                if !st.checkpoints.iter().any(|c| c.path == ckpt) {
                    push_checkpoint(
                        st,
                        CheckpointRecord {
                            phase,
                            step: summary.as_ref().and_then(|s| s.step).unwrap_or(0),
                            path: ckpt.clone(),
                            time: Some(Time(at.unwrap_or(now))),
                            r#final: true,
                        },
                    );
                }
                // Results lost with a progress report come back from the
                // pod's termination message.
                if phase == PhaseName::Eval
                    && st.results.is_none()
                    && let Some(results) = summary
                        .and_then(|s| s.results)
                        .and_then(|r| serde_json::from_value::<EvalResults>(r).ok())
                {
                    st.results = Some(results);
                }
                init = Some(ckpt);
            }
            Some(JobOutcome::Failed {
                reason,
                message,
                at,
            }) => {
                let (reason, message) = match pod {
                    PodState::Failed(t) => {
                        (t.reason.clone(), describe_tail(&t.message, t.exit_code))
                    }
                    _ => (reason, message),
                };
                return Step::Failed {
                    phase,
                    attempt,
                    init,
                    reason,
                    message,
                    at: at.unwrap_or(now),
                    stop: None,
                };
            }
            None => {
                let suspended = job
                    .spec
                    .as_ref()
                    .and_then(|s| s.suspend)
                    .filter(|s| *s)
                    .map(|_| {
                        job.annotations()
                            .get(ANNOTATION_SUSPENDED_BY_PIPELINE)
                            .is_some_and(|v| v == "true")
                    });
                let mut blocked_deadline = None;
                if let PodState::Blocked(b) = &pod
                    && !b.may_clear()
                    && suspended.is_none()
                {
                    let deadline = add(b.since.unwrap_or(now), settings.blocked_timeout);
                    if now >= deadline {
                        return Step::Failed {
                            phase,
                            attempt,
                            init,
                            reason: b.reason.clone(),
                            message: format!(
                                "{} (the pod waited more than {}s)",
                                b.message,
                                settings.blocked_timeout.as_secs()
                            ),
                            at: now,
                            stop: Some(job_name),
                        };
                    }
                    blocked_deadline = Some(deadline);
                }
                return Step::Active {
                    phase,
                    attempt,
                    init,
                    job: job_name,
                    suspended,
                    pod,
                    blocked_deadline,
                };
            }
        }
    }
    Step::Done
}

fn describe_tail(message: &str, exit_code: Option<i32>) -> String {
    match exit_code.filter(|c| *c != 0) {
        Some(code) if message.is_empty() => format!("exit code {code}"),
        Some(code) => format!("exit code {code}: {message}"),
        None => message.to_string(),
    }
}

fn ttl(p: &Tau2Pipeline, st: &mut Tau2PipelineStatus, plan: &mut Plan, now: Timestamp) {
    let (Some(ttl), Some(done)) = (
        p.spec.ttl_seconds_after_finished,
        st.completion_time.as_ref(),
    ) else {
        return;
    };
    let deadline = add(done.0, Duration::from_secs(u64::try_from(ttl).unwrap_or(0)));
    if now >= deadline {
        plan.delete_pipeline = true;
    } else {
        plan.requeue_at(deadline, now);
    }
}

/// The conditions, with `lastTransitionTime` kept while a status stays the same.
struct Conditions {
    list: Vec<Condition>,
    generation: Option<i64>,
    now: Timestamp,
}

impl Conditions {
    fn set(&mut self, type_: &str, status: bool, reason: &str, message: &str) {
        let status = if status { "True" } else { "False" }.to_string();
        let reason = if reason.is_empty() {
            "Unknown".to_string()
        } else {
            condition_reason(reason)
        };
        let mut message = message.to_string();
        if message.len() > 32_000 {
            let mut end = 32_000;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
        }
        let last_transition_time = self
            .list
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .map_or(Time(self.now), |c| c.last_transition_time.clone());
        let cond = Condition {
            type_: type_.to_string(),
            status,
            reason,
            message,
            last_transition_time,
            observed_generation: self.generation,
        };
        match self.list.iter_mut().find(|c| c.type_ == type_) {
            Some(c) => *c = cond,
            None => self.list.push(cond),
        }
    }
}

/// Events for what changed between two statuses.
fn transitions(old: &Tau2PipelineStatus, new: &Tau2PipelineStatus) -> Vec<PlannedEvent> {
    let mut events = Vec::new();
    let mut push = |warning: bool, reason: &str, note: String, action: &str| {
        events.push(PlannedEvent {
            warning,
            reason: reason.into(),
            note,
            action: action.into(),
        })
    };
    for phase in PhaseName::ALL {
        let before = old.phases.as_ref().and_then(|p| p.get(phase));
        let Some(after) = new.phases.as_ref().and_then(|p| p.get(phase)) else {
            continue;
        };
        let was = before.map(|b| b.state);
        if was != Some(after.state) {
            match after.state {
                PhaseState::Succeeded => push(
                    false,
                    "PhaseSucceeded",
                    format!(
                        "Phase {phase} succeeded; final checkpoint {}",
                        after.final_checkpoint.as_deref().unwrap_or("-")
                    ),
                    "CompletePhase",
                ),
                PhaseState::Failed => push(
                    true,
                    "PhaseFailed",
                    after.message.clone().unwrap_or_default(),
                    "FailPhase",
                ),
                _ => {}
            }
        }
        let failed_attempt = after
            .message
            .as_deref()
            .filter(|m| m.starts_with("attempt "));
        if let Some(m) = failed_attempt
            && before.and_then(|b| b.message.as_deref()) != Some(m)
        {
            push(
                true,
                "AttemptFailed",
                format!("Phase {phase}: {m}"),
                "Retry",
            );
        }
    }
    let cond = |s: &Tau2PipelineStatus| {
        s.conditions
            .iter()
            .find(|c| c.type_ == COND_RUNNING)
            .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
    };
    if let Some((status, reason, message)) = cond(new)
        && cond(old).map(|(s, r, _)| (s, r)) != Some((status.clone(), reason.clone()))
    {
        let warning = status == "False" && BLOCKED_REASONS.contains(&reason.as_str());
        if warning || status == "True" {
            push(warning, &reason, message, "Observe");
        }
    }
    if old.phase != new.phase {
        let (warning, reason) = match (old.phase, new.phase) {
            (_, PipelinePhase::Failed) => (true, "PipelineFailed"),
            (_, PipelinePhase::Succeeded) => (false, "PipelineSucceeded"),
            (_, PipelinePhase::Suspended) => (false, "PipelineSuspended"),
            (PipelinePhase::Suspended, _) => (false, "PipelineResumed"),
            (_, PipelinePhase::Running) => (false, "PipelineRunning"),
            (_, PipelinePhase::Pending) => (false, "PipelinePending"),
        };
        let note = new
            .conditions
            .iter()
            .find(|c| {
                c.type_ == format!("{:?}", new.phase)
                    || (new.phase == PipelinePhase::Pending && c.type_ == COND_RUNNING)
            })
            .map_or_else(|| format!("{:?}", new.phase), |c| c.message.clone());
        push(warning, reason, note, "Transition");
    }
    events
}

/// Reasons of the Running condition that mean the pipeline is stuck, not starting.
const BLOCKED_REASONS: &[&str] = &[
    "Unschedulable",
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
    "BackOff",
];

fn push_checkpoint(st: &mut Tau2PipelineStatus, record: CheckpointRecord) {
    st.checkpoints.push(record);
    if st.checkpoints.len() > MAX_CHECKPOINTS {
        let extra = st.checkpoints.len() - MAX_CHECKPOINTS;
        st.checkpoints.drain(..extra);
    }
}

/// `tokens_per_second` -> `tokensPerSecond`, the status' spelling.
fn camel(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Folds the progress service's latest reports into the status. Reports of
/// an attempt older than the one recorded are stale and ignored; what the
/// status already holds stays when the service has nothing (e.g. after the
/// operator restarted).
fn merge_progress(st: &mut Tau2PipelineStatus, progress: Option<&PipelineProgress>) {
    let Some(progress) = progress else { return };
    for (phase, view) in &progress.phases {
        let rec = phase_rec(st, *phase);
        if i64::from(view.attempt) < i64::from(rec.attempts) {
            continue;
        }
        // Only a checkpoint or the end reported so far: no step count to show.
        if view.total_steps > 0 {
            rec.progress = Some(PhaseProgress {
                step: i64::try_from(view.step).unwrap_or(i64::MAX),
                total_steps: i64::try_from(view.total_steps).unwrap_or(i64::MAX),
                metrics: view
                    .metrics
                    .iter()
                    .filter(|(_, v)| v.is_finite())
                    .map(|(k, v)| (camel(k), *v))
                    .collect::<BTreeMap<_, _>>(),
                last_update_time: view.updated.clone(),
            });
        }
        if let Some(f) = view.final_checkpoint() {
            rec.final_checkpoint = Some(f.path.clone());
        }
        for c in &view.checkpoints {
            if !st.checkpoints.iter().any(|r| r.path == c.path) {
                push_checkpoint(
                    st,
                    CheckpointRecord {
                        phase: *phase,
                        step: i64::try_from(c.step).unwrap_or(i64::MAX),
                        path: c.path.clone(),
                        time: c.time.clone(),
                        r#final: c.r#final,
                    },
                );
            }
        }
        if *phase == PhaseName::Eval
            && let Some(results) = view.results.clone()
        {
            st.results = Some(results);
        }
    }
}
