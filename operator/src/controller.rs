//! The Kubernetes layer: watches, observes a pipeline's objects, calls the
//! pure [`reconcile::plan`](crate::reconcile::plan) and carries the plan out
//! with server-side apply (field manager `tau2-operator`).
//!
//! RBAC it needs, least privilege: `operator/rbac.yaml`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Config as ControllerConfig};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as Finalized, finalizer};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tau2_api::crd::{ClaimRetention, Tau2Pipeline, Tau2PipelineStatus};
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::reconcile::build::{self, ANNOTATION_SUSPENDED_BY_PIPELINE, LABEL_MANAGED_BY, MANAGER};
use crate::reconcile::progress_view::ProgressSource;
use crate::reconcile::{self, Apply, Observed, Plan, Settings};

/// Removed once the pipeline's Jobs (and a claim with `whenDeleted: Delete`)
/// are gone, and the progress service and metrics forgot it.
pub const FINALIZER: &str = "tau2.dev/cleanup";
pub const FIELD_MANAGER: &str = "tau2-operator";
/// Reconcile at least this often, to catch anything a watch missed.
const RESYNC: Duration = Duration::from_secs(300);
/// How often the cache of pipelines is summed up for metrics and compared
/// with the progress store (see [`Hooks::pipelines`], [`ProgressSource::retain`]).
pub const HOUSEKEEPING: Duration = Duration::from_secs(5);

/// Called around reconciles; the metrics module implements it.
pub trait Hooks: Send + Sync {
    /// A reconcile succeeded; `status` is the one it started from.
    fn reconciled(&self, _p: &Tau2Pipeline, _status: &Tau2PipelineStatus, _took: Duration) {}
    /// A reconcile failed.
    fn failed(&self, _p: &Tau2Pipeline, _error: &Error, _took: Duration) {}
    /// The finalizer cleaned up after a deleted pipeline.
    fn deleted(&self, _p: &Tau2Pipeline) {}
    /// Every pipeline in the controller's cache, every [`HOUSEKEEPING`]
    /// period while leading (none once the controller stops).
    fn pipelines(&self, _all: &[Arc<Tau2Pipeline>]) {}
}

/// No metrics.
pub struct NoHooks;
impl Hooks for NoHooks {}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub settings: Settings,
    pub progress: Arc<dyn ProgressSource>,
    pub hooks: Arc<dyn Hooks>,
    /// True while the controller runs with its caches synced (readiness).
    pub synced: watch::Sender<bool>,
    /// Consecutive failures per pipeline, for per-object exponential backoff
    /// (kube-runtime's error_policy has none, kube-rs/kube#1916).
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    /// `instance` names this replica in events (the pod name).
    pub fn new(client: Client, settings: Settings, instance: &str) -> Self {
        let reporter = Reporter {
            controller: MANAGER.into(),
            instance: Some(instance.into()),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            settings,
            progress: Arc::new(reconcile::progress_view::NoProgress),
            hooks: Arc::new(NoHooks),
            synced: watch::Sender::new(false),
            failures: Mutex::default(),
        }
    }

    /// Plugs in the progress service's store (issue 6, item 4).
    pub fn with_progress(mut self, progress: Arc<dyn ProgressSource>) -> Self {
        self.progress = progress;
        self
    }

    /// Plugs in metrics (issue 6, item 5).
    pub fn with_hooks(mut self, hooks: Arc<dyn Hooks>) -> Self {
        self.hooks = hooks;
        self
    }

    fn failure_count(&self, key: &str, failed: bool) -> u32 {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failed {
            let n = map.entry(key.to_string()).or_insert(0);
            *n = n.saturating_add(1);
            *n
        } else {
            map.remove(key);
            0
        }
    }
}

fn key(p: &Tau2Pipeline) -> String {
    format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any())
}

pub async fn reconcile(p: Arc<Tau2Pipeline>, ctx: Arc<Context>) -> Result<Action> {
    let ns = p
        .namespace()
        .ok_or_else(|| Error::InvalidObject("a Tau2Pipeline without a namespace".into()))?;
    let api: Api<Tau2Pipeline> = Api::namespaced(ctx.client.clone(), &ns);
    let started = Instant::now();
    let action = finalizer(&api, FINALIZER, p.clone(), |event| async {
        match event {
            Finalized::Apply(p) => apply(&p, &ctx).await,
            Finalized::Cleanup(p) => cleanup(&p, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    let action = match action {
        Ok(action) => action,
        Err(error) => {
            ctx.hooks.failed(&p, &error, started.elapsed());
            return Err(error);
        }
    };
    ctx.failure_count(&key(&p), false);
    ctx.hooks.reconciled(
        &p,
        p.status.as_ref().unwrap_or(&Tau2PipelineStatus::default()),
        started.elapsed(),
    );
    Ok(action)
}

/// Backs off per pipeline: 1 s, 2 s, 4 s... up to 5 minutes.
pub fn error_policy(p: Arc<Tau2Pipeline>, error: &Error, ctx: Arc<Context>) -> Action {
    let n = ctx.failure_count(&key(&p), true);
    let delay = Duration::from_secs(1u64 << n.min(9).saturating_sub(1)).min(RESYNC);
    tracing::warn!(pipeline = %key(&p), error = %error, kind = error.metric_label(), retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// Lists what exists for the pipeline. Reads go to the API server, not a
/// cache: a restarted operator must see every Job before deciding to make one.
pub async fn observe(p: &Tau2Pipeline, ctx: &Context) -> Result<Observed> {
    let ns = p.namespace().unwrap_or_default();
    let name = p.name_any();
    let client = &ctx.client;
    let lp = ListParams::default().labels(&build::selector(&name));
    let jobs = Api::<Job>::namespaced(client.clone(), &ns)
        .list(&lp)
        .await
        .map_err(Error::kube("list jobs"))?
        .items;
    let pods = Api::<Pod>::namespaced(client.clone(), &ns)
        .list(&lp)
        .await
        .map_err(Error::kube("list pods"))?
        .items;
    let config_maps = Api::<ConfigMap>::namespaced(client.clone(), &ns)
        .list_metadata(&lp)
        .await
        .map_err(Error::kube("list configmaps"))?
        .items
        .into_iter()
        .map(|c| c.name_any())
        .collect();
    let token_secret = Api::<Secret>::namespaced(client.clone(), &ns)
        .get_metadata_opt(&crate::tokens::secret_name(&name))
        .await
        .map_err(Error::kube("get secret"))?
        .is_some();
    let claim = match p.spec.storage.volume_claim_template {
        Some(_) => Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns)
            .get_metadata_opt(&build::claim_name(&name))
            .await
            .map_err(Error::kube("get persistentvolumeclaim"))?
            .is_some(),
        None => false,
    };
    let progress = ctx
        .progress
        .snapshot(&ns, &name, &p.uid().unwrap_or_default());
    Ok(Observed {
        jobs,
        pods,
        config_maps,
        token_secret,
        claim,
        progress,
    })
}

async fn apply(p: &Tau2Pipeline, ctx: &Context) -> Result<Action> {
    let observed = observe(p, ctx).await?;
    let plan = reconcile::plan(p, &observed, &ctx.settings, Timestamp::now());
    execute(p, plan, ctx).await
}

/// Carries a plan out: children first, then the status, then events.
pub async fn execute(p: &Tau2Pipeline, plan: Plan, ctx: &Context) -> Result<Action> {
    let ns = p.namespace().unwrap_or_default();
    let client = &ctx.client;
    let ssa = PatchParams::apply(FIELD_MANAGER).force();
    if plan.create_token_secret {
        let secret = crate::tokens::build_secret(p)?;
        match Api::<Secret>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &secret)
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(Error::kube("create secret")(e)),
        }
    }
    for object in &plan.apply {
        match object {
            Apply::Claim(c) => {
                Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns)
                    .patch(&c.name_any(), &ssa, &Patch::Apply(c))
                    .await
                    .map_err(Error::kube("apply persistentvolumeclaim"))?;
            }
            Apply::ConfigMap(c) => {
                Api::<ConfigMap>::namespaced(client.clone(), &ns)
                    .patch(&c.name_any(), &ssa, &Patch::Apply(c))
                    .await
                    .map_err(Error::kube("apply configmap"))?;
            }
            Apply::Job(j) => {
                Api::<Job>::namespaced(client.clone(), &ns)
                    .patch(&j.name_any(), &ssa, &Patch::Apply(j))
                    .await
                    .map_err(Error::kube("apply job"))?;
            }
        }
    }
    let jobs = Api::<Job>::namespaced(client.clone(), &ns);
    for s in &plan.suspensions {
        let annotation = if s.suspend {
            json!("true")
        } else {
            json!(null)
        };
        let patch = json!({
            "metadata": {"annotations": {ANNOTATION_SUSPENDED_BY_PIPELINE: annotation}},
            "spec": {"suspend": s.suspend},
        });
        jobs.patch(&s.job, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(Error::kube("suspend job"))?;
    }
    let pipelines = Api::<Tau2Pipeline>::namespaced(client.clone(), &ns);
    if p.status.as_ref() != Some(&plan.status) {
        let patch = json!({
            "apiVersion": "tau2.dev/v1alpha1",
            "kind": "Tau2Pipeline",
            "status": plan.status,
        });
        pipelines
            .patch_status(&p.name_any(), &ssa, &Patch::Apply(&patch))
            .await
            .map_err(Error::kube("apply status"))?;
    }
    let reference = p.object_ref(&());
    for e in &plan.events {
        let event = KubeEvent {
            type_: if e.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: e.reason.chars().take(128).collect(),
            note: Some(e.note.chars().take(1024).collect()),
            action: e.action.clone(),
            secondary: None,
        };
        // Events are for people; losing one must not fail the reconcile.
        if let Err(error) = ctx.recorder.publish(&event, &reference).await {
            tracing::warn!(pipeline = %key(p), %error, "cannot publish event");
        }
    }
    if plan.delete_pipeline {
        tracing::info!(pipeline = %key(p), "ttlSecondsAfterFinished passed; deleting the pipeline");
        match pipelines
            .delete(&p.name_any(), &DeleteParams::background())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(Error::kube("delete pipeline")(e)),
        }
        return Ok(Action::await_change());
    }
    Ok(Action::requeue(
        plan.requeue_after.unwrap_or(RESYNC).min(RESYNC),
    ))
}

/// Deletes what owner references would delete only eventually (the Jobs,
/// so GPUs free up now) or never (nothing owns a retained claim; a claim with
/// `whenDeleted: Delete` goes), and tells the progress store and metrics.
async fn cleanup(p: &Tau2Pipeline, ctx: &Context) -> Result<Action> {
    let ns = p.namespace().unwrap_or_default();
    let name = p.name_any();
    let client = &ctx.client;
    let lp = ListParams::default().labels(&build::selector(&name));
    Api::<Job>::namespaced(client.clone(), &ns)
        .delete_collection(&DeleteParams::background(), &lp)
        .await
        .map_err(Error::kube("delete jobs"))?;
    let delete_claim = p
        .spec
        .storage
        .volume_claim_template
        .as_ref()
        .is_some_and(|t| t.when_deleted == ClaimRetention::Delete);
    if delete_claim {
        match Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns)
            .delete(&build::claim_name(&name), &DeleteParams::background())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(Error::kube("delete persistentvolumeclaim")(e)),
        }
    }
    ctx.progress
        .forget(&ns, &name, &p.uid().unwrap_or_default());
    ctx.hooks.deleted(p);
    let event = KubeEvent {
        type_: EventType::Normal,
        reason: "Deleted".into(),
        note: Some(format!(
            "Deleted the Jobs{}",
            if delete_claim {
                " and the checkpoint claim"
            } else {
                ""
            }
        )),
        action: "Cleanup".into(),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&event, &p.object_ref(&())).await {
        tracing::debug!(pipeline = %key(p), %error, "cannot publish event");
    }
    Ok(Action::await_change())
}

/// How the controller runs.
#[derive(Clone, Debug)]
pub struct RunSettings {
    /// Watch one namespace, or all.
    pub namespace: Option<String>,
    /// Reconciles of one pipeline are at most this frequent, which also
    /// rate-limits its status writes when progress reports stream in.
    pub debounce: Duration,
    /// Pipelines reconciled at once.
    pub concurrency: u16,
}

impl Default for RunSettings {
    fn default() -> Self {
        Self {
            namespace: None,
            debounce: Duration::from_secs(1),
            concurrency: 16,
        }
    }
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs the controller until `shutdown` resolves. `triggers` requests a
/// reconcile of a pipeline (the progress service sends one when a report
/// arrives; the debounce turns a burst into one status write).
pub async fn run(
    ctx: Arc<Context>,
    settings: RunSettings,
    triggers: impl Stream<Item = ObjectRef<Tau2Pipeline>> + Send + 'static,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<()> {
    let client = ctx.client.clone();
    let ns = settings.namespace.as_deref();
    let pipelines: Api<Tau2Pipeline> = api(&client, ns);
    // Fail early, with a clear error, if the CRD is missing or RBAC forbids it.
    pipelines
        .list(&ListParams::default().limit(1))
        .await
        .map_err(Error::kube("list tau2pipelines (is the CRD installed?)"))?;
    // Only our own children are watched and cached.
    let ours = watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={MANAGER}"));
    let controller = Controller::new(pipelines, watcher::Config::default().any_semantic());
    let housekeeping = tokio::spawn(housekeeping(controller.store(), ctx.clone()));
    controller
        .with_config(
            ControllerConfig::default()
                .debounce(settings.debounce)
                .concurrency(settings.concurrency),
        )
        .owns(api::<Job>(&client, ns), ours.clone())
        .owns(api::<ConfigMap>(&client, ns), ours.clone())
        .owns(api::<Secret>(&client, ns), ours.clone())
        .watches(api::<Pod>(&client, ns), ours, |pod| {
            let pipeline = pod.labels().get(build::LABEL_PIPELINE)?;
            Some(ObjectRef::new(pipeline).within(&pod.namespace()?))
        })
        .reconcile_on(triggers)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|result| async move {
            match result {
                Ok((obj, _)) => tracing::debug!(pipeline = %obj, "reconciled"),
                Err(error) => tracing::debug!(%error, "controller"),
            }
        })
        .await;
    housekeeping.abort();
    ctx.synced.send_replace(false);
    ctx.hooks.pipelines(&[]);
    Ok(())
}

/// While the controller runs: says when its cache of pipelines is synced,
/// and every [`HOUSEKEEPING`] period hands the cache to the metrics and drops
/// progress of pipelines that are gone (a deletion this replica missed).
async fn housekeeping(store: Store<Tau2Pipeline>, ctx: Arc<Context>) {
    // kube-runtime's readiness wakes only one of several waiters (the
    // controller waits too), so poll it.
    loop {
        match tokio::time::timeout(Duration::from_millis(250), store.wait_until_ready()).await {
            Ok(Ok(())) => break,
            Ok(Err(_)) => return,
            Err(_) => {}
        }
    }
    tracing::info!("the controller's cache of pipelines is synced");
    ctx.synced.send_replace(true);
    let mut tick = tokio::time::interval(HOUSEKEEPING);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let all = store.state();
        ctx.hooks.pipelines(&all);
        ctx.progress.retain(&|ns, name, uid| {
            store
                .get(&ObjectRef::new(name).within(ns))
                .is_some_and(|p| p.metadata.uid.as_deref() == Some(uid))
        });
    }
}

/// Runs the controller while this replica leads: started when it becomes
/// leader, stopped (after in-flight reconciles) when it stops leading, until
/// `shutdown` says true. `triggers` makes a fresh trigger stream per term.
pub async fn run_while_leading<S, F>(
    ctx: Arc<Context>,
    settings: RunSettings,
    mut leader: watch::Receiver<bool>,
    triggers: F,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()>
where
    S: Stream<Item = ObjectRef<Tau2Pipeline>> + Send + 'static,
    F: Fn() -> S,
{
    loop {
        tokio::select! {
            leading = crate::leader::until_leading(&mut leader) => {
                if !leading {
                    return Ok(());
                }
            }
            () = stopped(&mut shutdown) => return Ok(()),
        }
        tracing::info!("leading: starting the controller");
        let mut demoted = leader.clone();
        let mut stop = shutdown.clone();
        let end = async move {
            tokio::select! {
                () = crate::leader::until_not_leading(&mut demoted) => {}
                () = stopped(&mut stop) => {}
            }
        };
        run(ctx.clone(), settings.clone(), triggers(), end).await?;
        // Reports that arrive while another replica leads go there; what is
        // kept here would be stale by the next term.
        ctx.progress.retain(&|_, _, _| false);
        tracing::info!("controller stopped");
        if *shutdown.borrow() {
            return Ok(());
        }
    }
}

/// Resolves once `shutdown` says true (or its sender is gone).
pub async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}
