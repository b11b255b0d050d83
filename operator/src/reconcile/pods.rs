//! What a phase's pod and Job say about the attempt: running, blocked (and
//! why), or finished (and how). Users of other training operators complain
//! that a pod stuck in Pending or ImagePullBackOff, or an OOMKilled one, leaves
//! the job "Running" (volcano#2684, argo-workflows#7457); these functions pull
//! out the reason and message the status then quotes.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use k8s_openapi::jiff::Timestamp;

/// Container waiting reasons that will not clear by themselves soon: the
/// image cannot be pulled, or the container cannot be configured (a missing
/// Secret or ConfigMap key).
const STUCK_WAITING: &[&str] = &[
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// Why a pod is not making progress.
#[derive(Clone, Debug, PartialEq)]
pub struct Blocked {
    /// `Unschedulable`, or the container's waiting reason (`ImagePullBackOff`...).
    pub reason: String,
    pub message: String,
    /// Since when (the pod's creation); a blocked attempt that is not
    /// unschedulable fails after the operator's blocked timeout.
    pub since: Option<Timestamp>,
}

impl Blocked {
    /// The scheduler may still place the pod when capacity frees up (or Kueue
    /// admits more), so being unschedulable never fails an attempt by itself.
    pub fn may_clear(&self) -> bool {
        self.reason == "Unschedulable"
    }
}

/// How a pod ended.
#[derive(Clone, Debug, PartialEq)]
pub struct Terminated {
    /// `OOMKilled`, `Error`, `Evicted`, `DeadlineExceeded`...
    pub reason: String,
    pub message: String,
    pub exit_code: Option<i32>,
}

/// The state of an attempt's pod.
#[derive(Clone, Debug, PartialEq)]
pub enum PodState {
    /// No pod (yet), or it is being created.
    Starting {
        reason: String,
        message: String,
    },
    Blocked(Blocked),
    Running,
    Succeeded {
        termination_message: Option<String>,
    },
    Failed(Terminated),
}

/// Diagnoses the newest of an attempt's pods.
pub fn pod_state(pods: &[&Pod]) -> PodState {
    let Some(pod) = pods
        .iter()
        .max_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0))
    else {
        return PodState::Starting {
            reason: "PodCreating".into(),
            message: "waiting for the Job controller to create the pod".into(),
        };
    };
    let status = pod.status.clone().unwrap_or_default();
    let since = pod.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let container = status
        .container_statuses
        .as_deref()
        .and_then(|c| c.iter().find(|c| c.name == WORKER_CONTAINER).or(c.first()));
    match status.phase.as_deref() {
        Some("Succeeded") => {
            return PodState::Succeeded {
                termination_message: container.and_then(termination_message),
            };
        }
        Some("Failed") => return PodState::Failed(pod_failure(pod, container)),
        _ => {}
    }
    if let Some(cond) = status
        .conditions
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")
    {
        return PodState::Blocked(Blocked {
            reason: cond
                .reason
                .clone()
                .unwrap_or_else(|| "Unschedulable".into()),
            message: cond.message.clone().unwrap_or_default(),
            since,
        });
    }
    if let Some(waiting) = container
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.waiting.as_ref())
    {
        let reason = waiting.reason.clone().unwrap_or_default();
        let message = waiting.message.clone().unwrap_or_default();
        if STUCK_WAITING.contains(&reason.as_str()) {
            return PodState::Blocked(Blocked {
                reason,
                message,
                since,
            });
        }
        return PodState::Starting { reason, message };
    }
    if container
        .and_then(|c| c.state.as_ref())
        .is_some_and(|s| s.running.is_some())
        || status.phase.as_deref() == Some("Running")
    {
        return PodState::Running;
    }
    PodState::Starting {
        reason: "PodPending".into(),
        message: format!(
            "pod {} is pending",
            pod.metadata.name.as_deref().unwrap_or("")
        ),
    }
}

/// The worker container's name in every phase pod.
pub const WORKER_CONTAINER: &str = "worker";

fn termination_message(c: &ContainerStatus) -> Option<String> {
    c.state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .and_then(|t| t.message.clone())
        .filter(|m| !m.trim().is_empty())
}

fn pod_failure(pod: &Pod, container: Option<&ContainerStatus>) -> Terminated {
    let status = pod.status.as_ref();
    let terminated = container
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.terminated.as_ref());
    // The container's reason (OOMKilled) says more than the pod's (none) unless
    // the kubelet failed the pod as a whole (Evicted, DeadlineExceeded).
    let pod_reason = status.and_then(|s| s.reason.clone());
    let reason = pod_reason
        .clone()
        .or_else(|| terminated.and_then(|t| t.reason.clone()))
        .unwrap_or_else(|| "Error".into());
    let message = if pod_reason.is_some() {
        status.and_then(|s| s.message.clone())
    } else {
        terminated.and_then(|t| t.message.clone())
    }
    .map(|m| m.trim().to_string())
    .unwrap_or_default();
    Terminated {
        reason,
        message,
        exit_code: terminated.map(|t| t.exit_code),
    }
}

/// How a Job ended, from its conditions.
#[derive(Clone, Debug, PartialEq)]
pub enum JobOutcome {
    Complete {
        at: Option<Timestamp>,
    },
    Failed {
        reason: String,
        message: String,
        at: Option<Timestamp>,
    },
}

pub fn job_outcome(job: &Job) -> Option<JobOutcome> {
    let status = job.status.as_ref()?;
    let conditions = status.conditions.as_deref().unwrap_or_default();
    let active = |t: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == t && c.status == "True")
    };
    if let Some(c) = active("Complete") {
        let at = status
            .completion_time
            .as_ref()
            .or(c.last_transition_time.as_ref());
        return Some(JobOutcome::Complete {
            at: at.map(|t| t.0),
        });
    }
    // FailureTarget comes first, while the Job's pods are still terminating.
    if let Some(c) = active("Failed").or_else(|| active("FailureTarget")) {
        return Some(JobOutcome::Failed {
            reason: c.reason.clone().unwrap_or_else(|| "Failed".into()),
            message: c.message.clone().unwrap_or_default(),
            at: c.last_transition_time.as_ref().map(|t| t.0),
        });
    }
    None
}

/// Makes a string usable as a condition reason (`^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$`).
pub fn condition_reason(raw: &str) -> String {
    let mut out: String = raw
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ',' | ':'))
        .collect();
    if !out.starts_with(|c: char| c.is_ascii_alphabetic()) {
        out.insert_str(0, "Pod");
    }
    while out.ends_with([',', ':']) {
        out.pop();
    }
    out.truncate(1024);
    out
}
