//! Scale benchmark (not a timed test): N pipelines (default 500,
//! `TAU2_SCALE_PIPELINES`) against the real operator binary on the test
//! control plane (`tests/control-plane/cluster.sh`, kwok fake GPU nodes).
//!
//! ```text
//! dir=$(tests/control-plane/cluster.sh up) && . "$dir/env"
//! cargo bench -p tau2-operator --bench scale
//! tests/control-plane/cluster.sh down "$dir"
//! ```
//!
//! It installs the CRD from `crds/`, starts `tau2-operator run` as a child
//! process (one replica, `--leader-elect=false`, watching a fresh namespace,
//! gRPC and HTTP on free 127.0.0.1 ports, all other flags at their defaults),
//! creates the pipelines concurrently (`TAU2_SCALE_CONCURRENCY` requests in
//! flight, default 32) while watching Jobs, and prints:
//!
//! - create → first Job latency per pipeline (p50, p90, p99, max), measured
//!   from the API server's answer to the create to the Job's arrival on the
//!   benchmark's own watch;
//! - the whole run (first create → last first Job) and reconciles per second
//!   over it, from the operator's `tau2_operator_reconciles_total`;
//! - the operator's peak resident memory (`VmHWM` in `/proc/<pid>/status`)
//!   and CPU time;
//! - the API server's view: Jobs in the namespace, which must be exactly one
//!   per pipeline;
//! - API requests per pipeline from create to first Job, by verb and
//!   resource, from the API server's `apiserver_request_total` (every client's:
//!   the operator's, and the Job controller's, scheduler's and kwok's on the
//!   operator's objects; the benchmark's own are its creates and one watch).
//!
//! Then `TAU2_SCALE_SUCCEED` pipelines (default 16, one GPU each: the fake
//! nodes' capacity) with a bound claim run to `Succeeded` (kwok ends their
//! pods successfully), and it prints create → Succeeded (p50, p99) and the API
//! requests per pipeline over that run, the same way.
//!
//! Then it deletes the namespace (the operator's finalizer runs for every
//! pipeline) and stops the operator with SIGTERM. Pods are not waited for:
//! the pipelines name a checkpoint claim that does not exist, so their pods
//! stay Pending and no fake GPU capacity is needed; `tau2.dev/test-outcome=run`
//! keeps kwok from ending any pod that does get placed. The operator's log is
//! written to a file in the temporary directory (its path is printed).

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail};
use common::http_get;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, DynamicObject};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tau2_api::crd::Tau2Pipeline;
use tau2_operator::reconcile::build::{LABEL_MANAGED_BY, LABEL_PIPELINE, MANAGER};

/// How long all first Jobs may take before the benchmark gives up.
const RUN_TIMEOUT: Duration = Duration::from_secs(900);
/// How long the operator may take to clean up after the namespace's deletion.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(300);

fn main() -> Result<()> {
    if std::env::var_os("KUBECONFIG").is_none() {
        println!(
            "scale: KUBECONFIG is not set; nothing to measure. Start the test control plane first:\n\
             \n  dir=$(tests/control-plane/cluster.sh up) && . \"$dir/env\"\n  \
             cargo bench -p tau2-operator --bench scale\n  \
             tests/control-plane/cluster.sh down \"$dir\""
        );
        return Ok(());
    }
    let pipelines = env_number("TAU2_SCALE_PIPELINES", 500)?;
    let succeed = env_number("TAU2_SCALE_SUCCEED", 16)?;
    let concurrency = env_number("TAU2_SCALE_CONCURRENCY", 32)?.max(1);
    // Two threads: the machine the benchmark was written on has two cores,
    // shared with the control plane and the operator.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(run(pipelines, succeed, concurrency))
}

fn env_number(name: &str, default: usize) -> Result<usize> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .with_context(|| format!("{name}={v} is not a number")),
        Err(_) => Ok(default),
    }
}

async fn run(n: usize, succeed: usize, concurrency: usize) -> Result<()> {
    let client = Client::try_default()
        .await
        .context("connecting to the API server named by KUBECONFIG")?;
    common::install_crd(&client).await;
    let ns = format!(
        "tau2-scale-{}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    );
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}}))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .context("creating the namespace")?;

    let mut operator = Operator::start(&ns)?;
    println!(
        "scale: {n} pipelines in namespace {ns}, {concurrency} creates in flight; operator pid {}, log {}",
        operator.pid(),
        operator.log.display()
    );
    let outcome = measure(&client, &ns, n, concurrency, &mut operator).await;
    let lifecycle = match outcome {
        Ok(_) => run_to_success(&client, &ns, succeed, &mut operator).await,
        Err(_) => Ok(()),
    };
    let cleanup = cleanup(&client, &ns, &mut operator).await;
    let _ = Api::<k8s_openapi::api::core::v1::PersistentVolume>::all(client.clone())
        .delete(&format!("{ns}-checkpoints"), &DeleteParams::background())
        .await;
    let stopped = operator.stop();
    let report = outcome?;
    lifecycle?;
    cleanup?;
    stopped?;
    if !report.jobs_ok {
        bail!("the API server does not hold exactly one Job per pipeline");
    }
    Ok(())
}

struct Report {
    jobs_ok: bool,
}

async fn measure(
    client: &Client,
    ns: &str,
    n: usize,
    concurrency: usize,
    operator: &mut Operator,
) -> Result<Report> {
    operator.ready(Duration::from_secs(60)).await?;
    let before = operator.metrics().await?;
    let requests_before = ApiRequests::scrape(client).await?;

    // Jobs as the benchmark's watch sees them arrive: the first per pipeline.
    let first_job: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let seen_jobs: Arc<Mutex<HashSet<String>>> = Arc::default();
    let (synced_tx, synced_rx) = tokio::sync::oneshot::channel();
    let watch = tokio::spawn(watch_jobs(
        Api::namespaced(client.clone(), ns),
        first_job.clone(),
        seen_jobs.clone(),
        synced_tx,
    ));
    synced_rx
        .await
        .context("the Job watch ended before its first list")?;

    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), ns, &ApiResource::erase::<Tau2Pipeline>(&()));
    let started = Instant::now();
    let created: Vec<(String, Instant, Duration)> = futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            async move {
                let name = format!("p{i:05}");
                let body: DynamicObject = serde_json::from_value(pipeline(&name))?;
                let sent = Instant::now();
                api.create(&PostParams::default(), &body)
                    .await
                    .with_context(|| format!("creating pipeline {name}"))?;
                let acked = Instant::now();
                anyhow::Ok((name, acked, acked - sent))
            }
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    let creates_took = started.elapsed();
    println!(
        "scale: {n} pipelines created in {} ({:.0}/s)",
        secs(creates_took),
        n as f64 / creates_took.as_secs_f64()
    );

    // Wait for every pipeline's first Job.
    let deadline = started + RUN_TIMEOUT;
    let mut last_print = Instant::now();
    loop {
        let have = lock(&first_job).len();
        if have >= n {
            break;
        }
        if Instant::now() > deadline {
            watch.abort();
            bail!("only {have} of {n} pipelines had a Job after {RUN_TIMEOUT:?}");
        }
        if let Some(code) = operator.exited()? {
            bail!("the operator exited ({code}) with {have} of {n} Jobs created");
        }
        if last_print.elapsed() > Duration::from_secs(10) {
            println!(
                "scale: {have}/{n} first Jobs after {}",
                secs(started.elapsed())
            );
            last_print = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = operator.metrics().await?;
    let requests = ApiRequests::scrape(client).await?.since(&requests_before);
    let first_job = lock(&first_job).clone();
    let last_job = first_job.values().max().copied().unwrap_or(started);
    let window = last_job.saturating_duration_since(started);

    // Let the operator settle (status writes after the Jobs, pods Pending),
    // then read its totals and memory.
    let settled = settle(operator, Duration::from_secs(60)).await?;
    let memory = operator.memory()?;
    watch.abort();

    let mut latencies: Vec<Duration> = created
        .iter()
        .filter_map(|(name, acked, _)| {
            first_job
                .get(name)
                .map(|job| job.saturating_duration_since(*acked))
        })
        .collect();
    latencies.sort();
    let mut create_calls: Vec<Duration> = created.iter().map(|c| c.2).collect();
    create_calls.sort();

    // The API server's view.
    let jobs = Api::<Job>::namespaced(client.clone(), ns)
        .list_metadata(&ListParams::default().labels(&format!("{LABEL_MANAGED_BY}={MANAGER}")))
        .await
        .context("listing Jobs")?
        .items;
    let mut per_pipeline: BTreeMap<String, usize> = BTreeMap::new();
    for j in &jobs {
        let p = j.labels().get(LABEL_PIPELINE).cloned().unwrap_or_default();
        *per_pipeline.entry(p).or_default() += 1;
    }
    let duplicated: Vec<_> = per_pipeline.iter().filter(|(_, c)| **c > 1).collect();
    let watched = lock(&seen_jobs).len();
    let jobs_ok = jobs.len() == n && per_pipeline.len() == n && duplicated.is_empty();

    let reconciles = after.reconciles() - before.reconciles();
    println!();
    println!("scale: results ({n} pipelines)");
    println!(
        "  create -> first Job   p50 {}  p90 {}  p99 {}  max {}",
        secs(percentile(&latencies, 0.50)),
        secs(percentile(&latencies, 0.90)),
        secs(percentile(&latencies, 0.99)),
        secs(percentile(&latencies, 1.0)),
    );
    println!(
        "  create call           p50 {}  p99 {}  (all {n} created in {})",
        secs(percentile(&create_calls, 0.50)),
        secs(percentile(&create_calls, 0.99)),
        secs(creates_took)
    );
    println!(
        "  run                   {} from the first create to the last first Job",
        secs(window)
    );
    println!(
        "  reconciles            {reconciles:.0} in the run = {:.1}/s ({:.0} errors); mean reconcile {}",
        reconciles / window.as_secs_f64().max(1e-3),
        after.errors - before.errors,
        secs(Duration::from_secs_f64(
            ((after.duration_sum - before.duration_sum)
                / (after.duration_count - before.duration_count).max(1.0))
            .max(0.0)
        )),
    );
    println!(
        "  after settling        {:.0} reconciles in all ({:.1} per pipeline), quiet after {}",
        settled.metrics.reconciles() - before.reconciles(),
        (settled.metrics.reconciles() - before.reconciles()) / n.max(1) as f64,
        secs(settled.at.saturating_duration_since(started)),
    );
    println!(
        "  operator memory       peak RSS (VmHWM) {:.1} MiB, RSS now {:.1} MiB, idle before the run {:.1} MiB; CPU {}",
        memory.peak_kib as f64 / 1024.0,
        memory.rss_kib as f64 / 1024.0,
        operator.idle_rss_kib as f64 / 1024.0,
        secs(memory.cpu),
    );
    println!(
        "  API server            {} Jobs for {} pipelines, {} with more than one{}; the watch saw {watched}: {}",
        jobs.len(),
        per_pipeline.len(),
        duplicated.len(),
        if duplicated.is_empty() {
            String::new()
        } else {
            format!(" ({duplicated:?})")
        },
        if jobs_ok { "OK" } else { "MISMATCH" }
    );
    requests.print("create -> first Job", n);
    println!();
    Ok(Report { jobs_ok })
}

/// Records when each Job is first seen, by its pipeline label.
async fn watch_jobs(
    api: Api<Job>,
    first_job: Arc<Mutex<HashMap<String, Instant>>>,
    seen: Arc<Mutex<HashSet<String>>>,
    synced: tokio::sync::oneshot::Sender<()>,
) {
    let mut synced = Some(synced);
    let config = watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={MANAGER}"));
    let mut events = watcher(api, config).boxed();
    while let Some(event) = events.next().await {
        let job = match event {
            Ok(watcher::Event::InitDone) => {
                if let Some(tx) = synced.take() {
                    let _ = tx.send(());
                }
                continue;
            }
            Ok(watcher::Event::Apply(job) | watcher::Event::InitApply(job)) => job,
            Ok(_) => continue,
            Err(error) => {
                eprintln!("scale: Job watch: {error}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let now = Instant::now();
        if lock(&seen).insert(job.name_any())
            && let Some(p) = job.labels().get(LABEL_PIPELINE)
        {
            lock(&first_job).entry(p.clone()).or_insert(now);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A minimal pipeline (every phase defaulted); its pods stay Pending on the
/// missing claim, or keep running if placed (`tau2.dev/test-outcome=run`).
fn pipeline(name: &str) -> serde_json::Value {
    let mut p = common::minimal_pipeline(name);
    common::merge(
        &mut p,
        &json!({
            "metadata": {"labels": {"tau2.dev/test-outcome": "run"}},
            "spec": {"storage": {"existingClaim": "missing"}}
        }),
    );
    p
}

/// Runs `m` pipelines to `Succeeded` on the claim `checkpoints` (kwok ends
/// each pod successfully) and prints create → Succeeded and the API requests.
async fn run_to_success(
    client: &Client,
    ns: &str,
    m: usize,
    operator: &mut Operator,
) -> Result<()> {
    if m == 0 {
        return Ok(());
    }
    common::checkpoint_claim(client, ns).await;
    let succeeded: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let (synced_tx, synced_rx) = tokio::sync::oneshot::channel();
    let watch = tokio::spawn(watch_succeeded(
        Api::namespaced(client.clone(), ns),
        succeeded.clone(),
        synced_tx,
    ));
    synced_rx
        .await
        .context("the pipeline watch ended before its first list")?;
    let before = ApiRequests::scrape(client).await?;
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), ns, &ApiResource::erase::<Tau2Pipeline>(&()));
    let mut created = Vec::with_capacity(m);
    for i in 0..m {
        let name = format!("s{i:03}");
        let body: DynamicObject = serde_json::from_value(common::minimal_pipeline(&name))?;
        api.create(&PostParams::default(), &body)
            .await
            .with_context(|| format!("creating pipeline {name}"))?;
        created.push((name, Instant::now()));
    }
    let deadline = Instant::now() + RUN_TIMEOUT;
    while lock(&succeeded).len() < m {
        if Instant::now() > deadline {
            watch.abort();
            bail!(
                "only {} of {m} pipelines Succeeded after {RUN_TIMEOUT:?}",
                lock(&succeeded).len()
            );
        }
        if let Some(code) = operator.exited()? {
            bail!("the operator exited ({code}) before every pipeline Succeeded");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let requests = ApiRequests::scrape(client).await?.since(&before);
    watch.abort();
    let done = lock(&succeeded).clone();
    let mut latencies: Vec<Duration> = created
        .iter()
        .filter_map(|(name, acked)| done.get(name).map(|t| t.saturating_duration_since(*acked)))
        .collect();
    latencies.sort();
    let memory = operator.memory()?;
    println!("scale: results ({m} pipelines run to Succeeded)");
    println!(
        "  create -> Succeeded   p50 {}  p99 {}",
        secs(percentile(&latencies, 0.50)),
        secs(percentile(&latencies, 0.99)),
    );
    println!(
        "  operator              peak RSS (VmHWM) {:.1} MiB, CPU {} (whole benchmark so far)",
        memory.peak_kib as f64 / 1024.0,
        secs(memory.cpu),
    );
    requests.print("create -> Succeeded", m);
    println!();
    Ok(())
}

/// Records when each pipeline is first seen `Succeeded`.
async fn watch_succeeded(
    api: Api<Tau2Pipeline>,
    succeeded: Arc<Mutex<HashMap<String, Instant>>>,
    synced: tokio::sync::oneshot::Sender<()>,
) {
    let mut synced = Some(synced);
    let mut events = watcher(api, watcher::Config::default()).boxed();
    while let Some(event) = events.next().await {
        let p = match event {
            Ok(watcher::Event::InitDone) => {
                if let Some(tx) = synced.take() {
                    let _ = tx.send(());
                }
                continue;
            }
            Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => p,
            Ok(_) => continue,
            Err(error) => {
                eprintln!("scale: pipeline watch: {error}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        if common::phase(&p) == tau2_api::crd::PipelinePhase::Succeeded {
            lock(&succeeded)
                .entry(p.name_any())
                .or_insert_with(Instant::now);
        }
    }
}

/// The resources whose requests the benchmark reports: the operator's
/// objects (and the Leases and Events it writes).
const RESOURCES: &[&str] = &[
    "tau2pipelines",
    "jobs",
    "pods",
    "configmaps",
    "secrets",
    "persistentvolumeclaims",
    "events",
    "leases",
];

/// `apiserver_request_total` summed over codes, by (verb, resource, subresource).
#[derive(Default)]
struct ApiRequests(BTreeMap<(String, String, String), f64>);

impl ApiRequests {
    async fn scrape(client: &Client) -> Result<ApiRequests> {
        let request = axum::http::Request::get("/metrics")
            .body(Vec::new())
            .context("building the /metrics request")?;
        let text = client
            .request_text(request)
            .await
            .context("reading the API server's /metrics")?;
        Ok(Self::parse(&text))
    }

    fn parse(text: &str) -> ApiRequests {
        let mut all = ApiRequests::default();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
                continue;
            };
            let Some((labels, value)) = rest.rsplit_once("} ") else {
                continue;
            };
            let Ok(value) = value.trim().parse::<f64>() else {
                continue;
            };
            let label = |key: &str| {
                labels
                    .split(',')
                    .find_map(|kv| kv.strip_prefix(key)?.strip_prefix("=\""))
                    .map(|v| v.trim_end_matches('"').to_owned())
                    .unwrap_or_default()
            };
            let key = (label("verb"), label("resource"), label("subresource"));
            if RESOURCES.contains(&key.1.as_str()) {
                *all.0.entry(key).or_default() += value;
            }
        }
        all
    }

    fn since(&self, before: &ApiRequests) -> ApiRequests {
        let mut delta = ApiRequests::default();
        for (key, value) in &self.0 {
            let d = value - before.0.get(key).copied().unwrap_or(0.0);
            if d > 0.0 {
                delta.0.insert(key.clone(), d);
            }
        }
        delta
    }

    fn print(&self, what: &str, n: usize) {
        let n = n.max(1) as f64;
        let total: f64 = self.0.values().sum();
        println!(
            "  API requests {what}: {:.1} per pipeline (apiserver_request_total, all clients)",
            total / n
        );
        for ((verb, resource, sub), count) in &self.0 {
            let resource = if sub.is_empty() {
                resource.clone()
            } else {
                format!("{resource}/{sub}")
            };
            println!(
                "    {verb:<8} {resource:<28} {:>8.2} per pipeline ({count:.0})",
                count / n
            );
        }
    }
}

struct Settled {
    metrics: Scrape,
    at: Instant,
}

/// Waits until the reconcile counter has not moved for 3 s (at most `limit`).
async fn settle(operator: &Operator, limit: Duration) -> Result<Settled> {
    let deadline = Instant::now() + limit;
    let mut last = operator.metrics().await?;
    let mut changed = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = operator.metrics().await?;
        if now.reconciles() != last.reconciles() {
            changed = Instant::now();
            last = now;
        } else if changed.elapsed() >= Duration::from_secs(3) || Instant::now() > deadline {
            return Ok(Settled {
                metrics: now,
                at: changed,
            });
        }
    }
}

/// Deletes the namespace and waits for the operator's finalizer to let every
/// pipeline go; strips the finalizers of any left after [`CLEANUP_TIMEOUT`].
async fn cleanup(client: &Client, ns: &str, operator: &mut Operator) -> Result<()> {
    let started = Instant::now();
    Api::<Namespace>::all(client.clone())
        .delete(ns, &DeleteParams::background())
        .await
        .context("deleting the namespace")?;
    let api: Api<Tau2Pipeline> = Api::namespaced(client.clone(), ns);
    loop {
        let left = api
            .list_metadata(&ListParams::default())
            .await
            .context("listing pipelines")?
            .items;
        if left.is_empty() {
            println!(
                "scale: namespace deleted; the operator let every pipeline go in {}",
                secs(started.elapsed())
            );
            return Ok(());
        }
        if started.elapsed() > CLEANUP_TIMEOUT || operator.exited()?.is_some() {
            eprintln!(
                "scale: {} pipelines still there after {}; removing their finalizers",
                left.len(),
                secs(started.elapsed())
            );
            let patch = json!({"metadata": {"finalizers": null}});
            for p in &left {
                let _ = api
                    .patch(
                        &p.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await;
            }
            bail!("the operator did not clean up {} pipelines", left.len());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// `tau2-operator run` as a child process.
struct Operator {
    child: common::KillOnDrop,
    http: SocketAddr,
    log: PathBuf,
    idle_rss_kib: u64,
}

impl Operator {
    fn start(ns: &str) -> Result<Operator> {
        let grpc = free_port()?;
        let http = free_port()?;
        let log = std::env::temp_dir().join(format!("{ns}-operator.log"));
        let out =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(env!("CARGO_BIN_EXE_tau2-operator"))
            .args(["run", "--namespace", ns, "--leader-elect=false"])
            .args(["--label-leader-pod=false", "--pod-name", "tau2-scale"])
            .args(["--worker-image", "tau2-worker:scale"])
            .args(["--grpc-addr", &grpc.to_string()])
            .args(["--http-addr", &http.to_string()])
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info,kube=warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(out.try_clone().context("log file")?)
            .stderr(out)
            .spawn()
            .context("starting tau2-operator run")?;
        Ok(Operator {
            child: common::KillOnDrop(child),
            http,
            log,
            idle_rss_kib: 0,
        })
    }

    fn pid(&self) -> u32 {
        self.child.0.id()
    }

    fn exited(&mut self) -> Result<Option<std::process::ExitStatus>> {
        self.child.0.try_wait().context("checking the operator")
    }

    /// Waits for `/readyz`, then notes the idle memory.
    async fn ready(&mut self, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(text) = http_get(self.http, "/readyz").await
                && text.starts_with("HTTP/1.1 200")
            {
                self.idle_rss_kib = self.memory()?.rss_kib;
                return Ok(());
            }
            if let Some(code) = self.exited()? {
                bail!(
                    "the operator exited ({code}) before it was ready; see {}",
                    self.log.display()
                );
            }
            if Instant::now() > deadline {
                bail!("the operator was not ready after {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn metrics(&self) -> Result<Scrape> {
        let text = http_get(self.http, "/metrics")
            .await
            .map_err(|e| anyhow::anyhow!("scraping /metrics: {e}"))?;
        Ok(Scrape::parse(&text))
    }

    fn memory(&self) -> Result<Memory> {
        let pid = self.pid();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .context("reading the operator's /proc status")?;
        let kib = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0)
        };
        // utime and stime, fields 14 and 15, in USER_HZ (100 per second on Linux).
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .context("reading the operator's /proc stat")?;
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let ticks: u64 = [11, 12]
            .iter()
            .filter_map(|&i| fields.get(i).and_then(|v| v.parse::<u64>().ok()))
            .sum();
        Ok(Memory {
            peak_kib: kib("VmHWM:"),
            rss_kib: kib("VmRSS:"),
            cpu: Duration::from_millis(ticks * 10),
        })
    }

    /// SIGTERM, then up to 30 s for a clean exit, then SIGKILL.
    fn stop(&mut self) -> Result<()> {
        common::terminate(&mut self.child.0, &self.log)
    }
}

struct Memory {
    peak_kib: u64,
    rss_kib: u64,
    cpu: Duration,
}

/// The operator's counters that the benchmark reads from `/metrics`.
#[derive(Default)]
struct Scrape {
    successes: f64,
    errors: f64,
    duration_sum: f64,
    duration_count: f64,
}

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let mut s = Scrape::default();
        for line in text.lines() {
            let Some((key, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            match key {
                "tau2_operator_reconciles_total{result=\"success\"}" => s.successes = value,
                "tau2_operator_reconciles_total{result=\"error\"}" => s.errors = value,
                "tau2_operator_reconcile_duration_seconds_sum" => s.duration_sum = value,
                "tau2_operator_reconcile_duration_seconds_count" => s.duration_count = value,
                _ => {}
            }
        }
        s
    }

    fn reconciles(&self) -> f64 {
        self.successes + self.errors
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    listener.local_addr().context("finding a free port")
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn secs(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{:.0} ms", d.as_secs_f64() * 1000.0)
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}
