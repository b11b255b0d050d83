//! The objects a phase attempt needs, built from the pipeline alone (pure).
//!
//! Layout inside the worker pod:
//! - `/ckpt`: the pipeline's root on the storage volume (a sub-directory
//!   `<name>-<uid prefix>` of the claim, so pipelines can share a claim and a
//!   re-created pipeline of the same name never resumes a stale run), laid
//!   out as `tau2_api::plan` says (`/ckpt/<phase>/final` chains the phases);
//! - `/etc/tau2/phase.json`: the [`PhaseJob`] from the attempt's ConfigMap;
//! - `/var/run/secrets/tau2/token`: the pipeline's progress token;
//! - `/mnt/pvc/<claim>`: read-only claims named by `pvc://` URIs;
//! - `/tmp`: scratch (the root filesystem is read-only).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimVolumeSource,
    PodSecurityContext, PodSpec, PodTemplateSpec, ResourceRequirements, SeccompProfile,
    SecretKeySelector, SecretVolumeSource, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};
use tau2_api::crd::{ClaimRetention, PullPolicy, Tau2Pipeline};
use tau2_api::job::{
    CONFIG_FILE_NAME, ENV_ATTEMPT, ENV_HF_TOKEN, ENV_PHASE_CONFIG, ENV_PROGRESS_ENDPOINT,
    ENV_PROGRESS_TOKEN, ENV_TERMINATION_MESSAGE_PATH, ENV_USER_SIM_API_KEY, PhaseJob,
    ProgressEndpoint,
};
use tau2_api::phases::PhaseName;
use tau2_api::plan::{self, locate};
use tau2_api::user_sim::SecretKeyRef;

use super::Settings;
use super::pods::WORKER_CONTAINER;

pub const MANAGER: &str = "tau2-operator";
pub const LABEL_PIPELINE: &str = "tau2.dev/pipeline";
pub const LABEL_PHASE: &str = "tau2.dev/phase";
pub const LABEL_ATTEMPT: &str = "tau2.dev/attempt";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Kueue's queue label: passed from the pipeline to its Jobs so Kueue admits them.
pub const LABEL_KUEUE_QUEUE: &str = "kueue.x-k8s.io/queue-name";
/// Set on Jobs that the pipeline's `spec.suspend` suspended, so resuming the
/// pipeline unsuspends only those and leaves Kueue's own suspensions alone.
pub const ANNOTATION_SUSPENDED_BY_PIPELINE: &str = "tau2.dev/suspended-by-pipeline";

pub const CKPT_MOUNT: &str = "/ckpt";
pub const CONFIG_DIR: &str = "/etc/tau2";
pub const TOKEN_DIR: &str = "/var/run/secrets/tau2";
pub const TOKEN_KEY: &str = "token";
pub use tau2_api::plan::PVC_ROOT;
pub const TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";
/// UID and GID of the worker process (the image's non-root user).
pub const WORKER_UID: i64 = 65532;

/// `<pipeline>-<phase>-<attempt>`: the Job and its ConfigMap. The CRD caps
/// pipeline names at 46 characters and backoffLimit at 100, so this stays
/// within 46 + 1 + 4 + 1 + 3 = 55 characters, and the Job's pods (5 more) within 63.
pub fn attempt_name(pipeline: &str, phase: PhaseName, attempt: i32) -> String {
    format!("{pipeline}-{phase}-{attempt}")
}

/// The claim the operator creates from `storage.volumeClaimTemplate`.
pub fn claim_name(pipeline: &str) -> String {
    format!("{pipeline}-checkpoints")
}

/// The pipeline's directory on the storage claim.
pub fn pipeline_root(p: &Tau2Pipeline) -> String {
    let uid = p.uid().unwrap_or_default();
    let short: String = uid.chars().filter(|c| *c != '-').take(8).collect();
    if short.is_empty() {
        p.name_any()
    } else {
        format!("{}-{short}", p.name_any())
    }
}

pub use tau2_api::plan::final_checkpoint;

/// Labels that select everything of one pipeline.
pub fn selector(pipeline: &str) -> String {
    format!("{LABEL_PIPELINE}={pipeline},{LABEL_MANAGED_BY}={MANAGER}")
}

/// Labels of a phase attempt's Job, pod and ConfigMap: the recommended
/// app.kubernetes.io set, ours, and the pipeline's own labels (so a Kueue
/// queue name, team labels or test outcomes reach the pods).
pub fn labels(p: &Tau2Pipeline, phase: PhaseName, attempt: i32) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = p
        .labels()
        .iter()
        .filter(|(k, _)| !k.starts_with("app.kubernetes.io/"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, v) in [
        ("app.kubernetes.io/name", "tau2-worker".to_string()),
        ("app.kubernetes.io/instance", p.name_any()),
        ("app.kubernetes.io/component", phase.to_string()),
        ("app.kubernetes.io/part-of", "tau2".to_string()),
        (LABEL_MANAGED_BY, MANAGER.to_string()),
        (LABEL_PIPELINE, p.name_any()),
        (LABEL_PHASE, phase.to_string()),
        (LABEL_ATTEMPT, attempt.to_string()),
    ] {
        labels.insert(k.to_string(), v);
    }
    labels
}

fn owner(p: &Tau2Pipeline) -> Option<Vec<OwnerReference>> {
    p.controller_owner_ref(&()).map(|o| vec![o])
}

fn meta(p: &Tau2Pipeline, name: String, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: p.namespace(),
        labels: Some(labels),
        owner_references: owner(p),
        ..ObjectMeta::default()
    }
}

/// Claims the pod mounts read-only for `pvc://` inputs, in a stable order.
fn input_claims(p: &Tau2Pipeline) -> BTreeSet<String> {
    [
        Some(p.spec.model.uri.as_str()),
        Some(p.spec.tau2.data_uri.as_str()),
        p.spec
            .phases
            .sft
            .enabled
            .then_some(p.spec.phases.sft.params.dataset.as_str()),
    ]
    .into_iter()
    .flatten()
    .filter_map(|u| locate(u).and_then(|l| l.claim))
    .collect()
}

pub use tau2_api::plan::user_simulator;

pub use tau2_api::plan::resources;

/// The configuration of one attempt; `init` is the checkpoint it starts from,
/// relative to the pipeline root, or `None` for the base model.
pub fn phase_job(
    p: &Tau2Pipeline,
    phase: PhaseName,
    attempt: i32,
    init: Option<&str>,
    settings: &Settings,
) -> PhaseJob {
    let progress = settings
        .progress_endpoint
        .as_ref()
        .map(|address| ProgressEndpoint {
            address: address.clone(),
            token_file: PathBuf::from(TOKEN_DIR).join(TOKEN_KEY),
        });
    plan::phase_job(p, phase, attempt, Path::new(CKPT_MOUNT), init, progress)
}

pub fn config_map(
    p: &Tau2Pipeline,
    phase: PhaseName,
    attempt: i32,
    job: &PhaseJob,
) -> Result<ConfigMap, serde_json::Error> {
    let name = attempt_name(&p.name_any(), phase, attempt);
    Ok(ConfigMap {
        metadata: meta(p, name, labels(p, phase, attempt)),
        data: Some(BTreeMap::from([(
            CONFIG_FILE_NAME.to_string(),
            serde_json::to_string_pretty(job)?,
        )])),
        ..ConfigMap::default()
    })
}

/// The claim from `storage.volumeClaimTemplate`. With `whenDeleted: Delete`
/// the pipeline owns it (garbage collection deletes it with the pipeline, and
/// the finalizer does so explicitly); with `Retain` it has no owner.
pub fn claim(p: &Tau2Pipeline) -> Option<PersistentVolumeClaim> {
    let template = p.spec.storage.volume_claim_template.as_ref()?;
    let mut metadata = meta(
        p,
        claim_name(&p.name_any()),
        BTreeMap::from([
            (LABEL_PIPELINE.to_string(), p.name_any()),
            (LABEL_MANAGED_BY.to_string(), MANAGER.to_string()),
        ]),
    );
    if template.when_deleted == ClaimRetention::Retain {
        metadata.owner_references = None;
    }
    Some(PersistentVolumeClaim {
        metadata,
        spec: Some(template.spec.clone()),
        status: None,
    })
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

fn secret_env(name: &str, r: &SecretKeyRef) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: r.name.clone(),
                key: r.key.clone(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
    }
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(read_only),
        ..VolumeMount::default()
    }
}

fn volume(name: &str) -> Volume {
    Volume {
        name: name.into(),
        ..Volume::default()
    }
}

fn pull_policy(p: PullPolicy) -> &'static str {
    match p {
        PullPolicy::Always => "Always",
        PullPolicy::IfNotPresent => "IfNotPresent",
        PullPolicy::Never => "Never",
    }
}

/// The Job of one attempt. `token_secret` names the pipeline's progress token Secret.
pub fn job(
    p: &Tau2Pipeline,
    phase: PhaseName,
    attempt: i32,
    suspend: bool,
    token_secret: &str,
    settings: &Settings,
) -> Job {
    let name = attempt_name(&p.name_any(), phase, attempt);
    let labels = labels(p, phase, attempt);
    let worker = &p.spec.worker;
    let res = resources(p, phase);

    let mut limits = BTreeMap::new();
    let mut requests = BTreeMap::new();
    if res.gpus > 0 {
        limits.insert("nvidia.com/gpu".to_string(), Quantity(res.gpus.to_string()));
    }
    for (key, q) in [("cpu", &res.cpu), ("memory", &res.memory)] {
        if let Some(q) = q {
            limits.insert(key.to_string(), q.clone());
            requests.insert(key.to_string(), q.clone());
        }
    }

    let claim_name = p
        .spec
        .storage
        .existing_claim
        .clone()
        .unwrap_or_else(|| claim_name(&p.name_any()));
    let mut volumes = vec![
        Volume {
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name,
                read_only: Some(false),
            }),
            ..volume("checkpoints")
        },
        Volume {
            config_map: Some(ConfigMapVolumeSource {
                name: name.clone(),
                ..ConfigMapVolumeSource::default()
            }),
            ..volume("config")
        },
        Volume {
            secret: Some(SecretVolumeSource {
                secret_name: Some(token_secret.to_string()),
                ..SecretVolumeSource::default()
            }),
            ..volume("progress-token")
        },
        Volume {
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..volume("tmp")
        },
    ];
    let mut mounts = vec![
        VolumeMount {
            sub_path: Some(pipeline_root(p)),
            ..mount("checkpoints", CKPT_MOUNT, false)
        },
        mount("config", CONFIG_DIR, true),
        mount("progress-token", TOKEN_DIR, true),
        mount("tmp", "/tmp", false),
    ];
    for (i, claim) in input_claims(p).into_iter().enumerate() {
        let vol = format!("input-{i}");
        mounts.push(mount(&vol, &format!("{PVC_ROOT}/{claim}"), true));
        volumes.push(Volume {
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim,
                read_only: Some(true),
            }),
            ..volume(&vol)
        });
    }

    // The user's variables first: ours come later and win, as they are the
    // contract with the worker.
    let mut env_vars = worker.env.clone();
    env_vars.extend([
        env(ENV_PHASE_CONFIG, format!("{CONFIG_DIR}/{CONFIG_FILE_NAME}")),
        env(ENV_ATTEMPT, attempt.to_string()),
        env(ENV_TERMINATION_MESSAGE_PATH, TERMINATION_MESSAGE_PATH),
        env("HOME", "/tmp"),
        EnvVar {
            name: "POD_NAME".into(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.name".into(),
                    api_version: None,
                }),
                ..EnvVarSource::default()
            }),
        },
    ]);
    if let Some(endpoint) = &settings.progress_endpoint {
        env_vars.push(env(ENV_PROGRESS_ENDPOINT, endpoint.clone()));
        env_vars.push(secret_env(
            ENV_PROGRESS_TOKEN,
            &SecretKeyRef {
                name: token_secret.to_string(),
                key: TOKEN_KEY.to_string(),
            },
        ));
    }
    if let Some(key) = user_simulator(p, phase).and_then(|u| u.api_key_secret_ref.as_ref()) {
        env_vars.push(secret_env(ENV_USER_SIM_API_KEY, key));
    }
    if let Some(key) = &p.spec.model.hf_token_secret_ref {
        env_vars.push(secret_env(ENV_HF_TOKEN, key));
    }

    let container = Container {
        name: WORKER_CONTAINER.into(),
        image: Some(
            worker
                .image
                .clone()
                .unwrap_or_else(|| settings.default_image.clone()),
        ),
        image_pull_policy: worker.image_pull_policy.map(|p| pull_policy(p).to_string()),
        command: Some(vec![
            "tau2-worker".into(),
            phase.to_string(),
            "--config".into(),
            format!("{CONFIG_DIR}/{CONFIG_FILE_NAME}"),
        ]),
        env: Some(env_vars),
        resources: Some(ResourceRequirements {
            limits: (!limits.is_empty()).then_some(limits),
            requests: (!requests.is_empty()).then_some(requests),
            ..ResourceRequirements::default()
        }),
        volume_mounts: Some(mounts),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            ..SecurityContext::default()
        }),
        // The worker writes a PhaseSummary here; on a crash without one the
        // log tail becomes the message the failure condition quotes.
        termination_message_path: Some(TERMINATION_MESSAGE_PATH.into()),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Container::default()
    };

    let pod = PodSpec {
        containers: vec![container],
        // Retries are new Jobs (attempts) made by the operator; a container
        // restarted in place would hide an OOMKill from the status.
        restart_policy: Some("Never".into()),
        node_selector: (!worker.node_selector.is_empty()).then(|| worker.node_selector.clone()),
        tolerations: (!worker.tolerations.is_empty()).then(|| worker.tolerations.clone()),
        affinity: worker.affinity.clone(),
        priority_class_name: worker.priority_class_name.clone(),
        service_account_name: worker.service_account_name.clone(),
        // The worker never calls the Kubernetes API.
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        image_pull_secrets: (!worker.image_pull_secrets.is_empty())
            .then(|| worker.image_pull_secrets.clone()),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(WORKER_UID),
            run_as_group: Some(WORKER_UID),
            fs_group: Some(WORKER_UID),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                localhost_profile: None,
            }),
            ..PodSecurityContext::default()
        }),
        volumes: Some(volumes),
        ..PodSpec::default()
    };

    let mut metadata = meta(p, name, labels.clone());
    if suspend {
        metadata.annotations = Some(BTreeMap::from([(
            ANNOTATION_SUSPENDED_BY_PIPELINE.to_string(),
            "true".to_string(),
        )]));
    }
    Job {
        metadata,
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            completions: Some(1),
            parallelism: Some(1),
            // A queued Job starts suspended, as Kueue's Job webhook would make
            // it: only Kueue unsuspends it, once its Workload is admitted, so no
            // pod runs before admission even where that webhook is not installed.
            suspend: Some(suspend || labels.contains_key(LABEL_KUEUE_QUEUE)),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    // Kueue manages the Job; a queue label on its pods would
                    // make Kueue's pod integration queue them a second time.
                    labels: Some(
                        labels
                            .into_iter()
                            .filter(|(k, _)| k != LABEL_KUEUE_QUEUE)
                            .collect(),
                    ),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod),
            },
            ..JobSpec::default()
        }),
        status: None,
    }
}
