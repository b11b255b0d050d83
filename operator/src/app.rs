//! The whole operator in one process (`tau2-operator run`): the progress
//! token watch, the gRPC progress service, the HTTP endpoints, leader
//! election, and the controller while this replica leads.
//!
//! How the parts meet:
//!
//! - The [`ProgressStore`] is the controller's
//!   [`ProgressSource`](crate::reconcile::progress_view::ProgressSource)
//!   (`crate::progress::source`); the keys it sends when reports arrive become
//!   the controller's `reconcile_on` triggers ([`triggers`]), debounced by
//!   [`RunSettings::debounce`], which rate-limits status writes. Every reconcile
//!   takes a snapshot, which re-arms the key. The finalizer forgets a deleted
//!   pipeline; while leading, pipelines no longer in the controller's cache are
//!   dropped every few seconds; when this replica stops leading it drops all.
//! - [`Metrics`] are the controller's hooks (reconciles, errors by kind,
//!   durations, pipelines by phase from the controller's cache) and follow
//!   the leader flag (`tau2_operator_leader`).
//!
//! **Routing reports to the leader.** Only the leader keeps the store the
//! status is written from, so reports must reach it. A Service with
//! connection-level balancing (kube-proxy) picks a backend per TCP connection,
//! and a gRPC channel keeps its connection across calls: a worker that
//! retries on its channel after `UNAVAILABLE` from a standby would reach the
//! same standby forever. So the leader labels its own pod
//! [`LEADER_LABEL`]`=true` (removed when it stops leading and at shutdown) and
//! the progress Service selects that label: new connections only reach the
//! leader. A standby still answers `UNAVAILABLE` if one reaches it (during a
//! failover, before the labels move); the worker then opens a new connection,
//! which the Service routes to the new leader.
//!
//! **Readiness.** `/readyz` is OK once the token Secrets' first list arrived
//! (the client and RBAC work) and, on the leader, once the controller's cache
//! of pipelines synced. A standby is ready: it has nothing more to sync, and a
//! rollout must not wait for a replica that cannot lead until the old leader
//! goes. Readiness does not route reports: the leader label does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt;
use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client};
use serde_json::json;
use tau2_api::crd::Tau2Pipeline;
use tokio::net::TcpListener;
use tokio::sync::{Mutex, mpsc, watch};

use crate::controller::{self, Context, RunSettings};
use crate::http::{self, HttpState};
use crate::leader::{self, LeaderSettings};
use crate::metrics::Metrics;
use crate::progress::{PipelineKey, ProgressService, ProgressStore, ServiceConfig};
use crate::reconcile::Settings;
use crate::tokens::TokenRegistry;

/// The label the leader sets on its own pod; the progress Service selects it.
pub const LEADER_LABEL: &str = "tau2.dev/leader";

/// Everything `run` needs besides the client and the listeners.
#[derive(Clone, Debug)]
pub struct Config {
    pub settings: Settings,
    pub run: RunSettings,
    /// This replica's name in events and in the Lease.
    pub identity: String,
    /// Elect a leader on this Lease; `None` leads unconditionally (one replica).
    pub election: Option<LeaderSettings>,
    /// This replica's pod (namespace, name), labelled [`LEADER_LABEL`] while it leads.
    pub leader_pod: Option<(String, String)>,
    pub service: ServiceConfig,
    /// At shutdown, how long open progress streams and HTTP requests may take.
    pub shutdown_grace: Duration,
}

/// The stream factory for [`controller::run_while_leading`]: each leader term
/// reads the store's keys as reconcile requests. One receiver serves every
/// term; a term's stream holds it only while it runs.
pub fn triggers(
    keys: mpsc::UnboundedReceiver<PipelineKey>,
) -> impl Fn() -> BoxStream<'static, ObjectRef<Tau2Pipeline>> + Send + Sync + 'static {
    let keys = Arc::new(Mutex::new(keys));
    move || {
        futures::stream::unfold(keys.clone(), |keys| async move {
            let key = keys.lock().await.recv().await?;
            Some((ObjectRef::new(&key.name).within(&key.namespace), keys))
        })
        .boxed()
    }
}

/// Runs the operator until `shutdown` says true: serves gRPC on `grpc` and
/// HTTP on `http`, campaigns for the lease and reconciles while leading. At
/// shutdown the controller finishes its reconciles, the lease is released,
/// the leader label removed, and the servers get [`Config::shutdown_grace`].
pub async fn run(
    client: Client,
    config: Config,
    grpc: TcpListener,
    http: TcpListener,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let metrics = Metrics::new().context("creating the metrics")?;
    let (store, keys) = ProgressStore::new();
    let store = store.with_metrics(metrics.clone());
    let (tokens, token_watch) = TokenRegistry::watch(client.clone());
    let token_watch = tokio::spawn(token_watch);

    // Leadership: from the Lease, or always (until shutdown) without election.
    let (leader_rx, election, always) = match &config.election {
        Some(lease) => {
            let mut stop = shutdown.clone();
            let (rx, task) = leader::elect(client.clone(), lease.clone(), async move {
                controller::stopped(&mut stop).await;
            })
            .await
            .context("starting leader election")?;
            (rx, Some(task), None)
        }
        None => {
            let (tx, rx) = watch::channel(true);
            (rx, None, Some(tx))
        }
    };
    let follow = tokio::spawn(follow_leader(
        client.clone(),
        leader_rx.clone(),
        metrics.clone(),
        config.leader_pod.clone(),
    ));

    let ctx = Context::new(client.clone(), config.settings.clone(), &config.identity)
        .with_progress(Arc::new(store.clone()))
        .with_hooks(Arc::new(metrics.clone()));
    let (ready_tx, ready_rx) = watch::channel(false);
    let readiness = tokio::spawn(readiness(
        tokens.clone(),
        leader_rx.clone(),
        ctx.synced.subscribe(),
        ready_tx,
    ));

    let service = ProgressService::new(
        store,
        tokens,
        metrics.clone(),
        leader_rx.clone(),
        config.service.clone(),
    );
    let mut stop = shutdown.clone();
    let grpc_addr = grpc.local_addr().ok();
    let grpc = tokio::spawn(service.serve_on(grpc, async move {
        controller::stopped(&mut stop).await;
    }));
    let mut stop = shutdown.clone();
    let http_addr = http.local_addr().ok();
    let http = tokio::spawn(http::serve_on(
        http,
        HttpState {
            metrics,
            ready: ready_rx,
        },
        async move { controller::stopped(&mut stop).await },
    ));
    tracing::info!(grpc = ?grpc_addr, http = ?http_addr, identity = %config.identity, "operator started");

    let result = controller::run_while_leading(
        Arc::new(ctx),
        config.run.clone(),
        leader_rx,
        triggers(keys),
        shutdown,
    )
    .await;

    // Hand over: release the lease (the election task sends false first, so
    // the label goes and the service refuses reports), then stop serving.
    if let Some(task) = election {
        let _ = task.await;
    }
    if let Some(tx) = always {
        tx.send_replace(false);
    }
    let _ = tokio::time::timeout(config.shutdown_grace, follow).await;
    readiness.abort();
    let grace = config.shutdown_grace;
    let abort = grpc.abort_handle();
    match tokio::time::timeout(grace, grpc).await {
        Ok(Ok(Err(error))) => tracing::warn!(%error, "gRPC server"),
        Ok(_) => {}
        Err(_) => {
            tracing::info!("progress streams still open at shutdown: cut");
            abort.abort();
        }
    }
    let abort = http.abort_handle();
    match tokio::time::timeout(grace, http).await {
        Ok(Ok(Err(error))) => tracing::warn!(%error, "HTTP server"),
        Ok(_) => {}
        Err(_) => abort.abort(),
    }
    token_watch.abort();
    result.map_err(Into::into)
}

/// Keeps the leader gauge and this pod's leader label in line with the
/// leader flag, until the flag's sender goes.
async fn follow_leader(
    client: Client,
    mut leader: watch::Receiver<bool>,
    metrics: Metrics,
    pod: Option<(String, String)>,
) {
    let mut pod = pod;
    loop {
        let leading = *leader.borrow_and_update();
        metrics.set_leader(leading);
        if let Some((ns, name)) = &pod {
            match label_pod(&client, ns, name, leading, &leader).await {
                Labelled::Done => {}
                Labelled::NoPod => {
                    tracing::warn!(namespace = %ns, pod = %name,
                        "this replica's pod does not exist: not labelling it as leader");
                    pod = None;
                }
            }
        }
        if leader.changed().await.is_err() {
            return;
        }
    }
}

enum Labelled {
    Done,
    NoPod,
}

/// Sets or removes [`LEADER_LABEL`] on the pod; retries until it succeeds or
/// the leader flag changes again (the next round applies the new value).
async fn label_pod(
    client: &Client,
    ns: &str,
    name: &str,
    leading: bool,
    leader: &watch::Receiver<bool>,
) -> Labelled {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let value = if leading { json!("true") } else { json!(null) };
    let patch = json!({"metadata": {"labels": {LEADER_LABEL: value}}});
    let mut delay = Duration::from_millis(200);
    loop {
        match pods
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                tracing::info!(pod = %name, leading, "leader label updated");
                return Labelled::Done;
            }
            Err(kube::Error::Api(e)) if e.code == 404 => return Labelled::NoPod,
            Err(error) => {
                tracing::warn!(pod = %name, %error, "cannot update the leader label; retrying");
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
        if leader.has_changed().unwrap_or(true) {
            return Labelled::Done;
        }
    }
}

/// Ready once the token Secrets were listed and, while leading, the
/// controller's cache is synced (see the module's notes).
async fn readiness(
    tokens: TokenRegistry,
    mut leader: watch::Receiver<bool>,
    mut synced: watch::Receiver<bool>,
    ready: watch::Sender<bool>,
) {
    // Short waits: kube-runtime's readiness wakes only one of several
    // waiters (the progress service may wait too), so poll it.
    let mut waited = 0u32;
    while !tokens.ready_within(Duration::from_millis(250)).await {
        waited += 1;
        if waited.is_multiple_of(120) {
            tracing::info!("waiting for the first list of progress token Secrets");
        }
    }
    tracing::info!("progress token Secrets listed");
    loop {
        let leading = *leader.borrow_and_update();
        let is_synced = *synced.borrow_and_update();
        ready.send_replace(!leading || is_synced);
        tokio::select! {
            changed = leader.changed() => if changed.is_err() { return },
            changed = synced.changed() => if changed.is_err() { return },
        }
    }
}

/// Binds the two listeners of `run`.
pub async fn bind(
    grpc: SocketAddr,
    http: SocketAddr,
) -> anyhow::Result<(TcpListener, TcpListener)> {
    let g = TcpListener::bind(grpc)
        .await
        .with_context(|| format!("listening for gRPC on {grpc}"))?;
    let h = TcpListener::bind(http)
        .await
        .with_context(|| format!("listening for HTTP on {http}"))?;
    Ok((g, h))
}
