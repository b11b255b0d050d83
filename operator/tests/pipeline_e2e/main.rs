//! The whole system end to end on the real control plane, without Docker:
//! `tau2-operator run` as a process, a kubelet of the test's own
//! ([`kubelet`]) running the real `tau2-worker` for each phase pod, the tiny
//! pipeline (manifests/examples/tiny-pipeline.yaml, scaled down) training
//! and evaluating through SFT, RFT, GRPO and eval to `Succeeded`, and a real
//! Prometheus scraping the operator meanwhile, against which every panel
//! query of every dashboard must return data.
//!
//! The worker binary: `TAU2_E2E_WORKER` if set, else `cargo build --release
//! -p tau2-worker` into the same target directory (a release build, like
//! scripts/local-pipeline.sh, keeps the run short; and the release profile's
//! build lock is not the one `cargo test` holds). Storage: a hostPath
//! PersistentVolume of a storage class of the test's own, which the
//! controller-manager binds to the claim the operator creates from the
//! pipeline's `volumeClaimTemplate` (no provisioner needed, and the
//! operator's claim path is the one exercised).

#[path = "../common/mod.rs"]
mod common;
mod dashboards;
mod kubelet;
mod prometheus;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail};
use common::{http_get, install_crd, merge, repo_root};
use k8s_openapi::api::core::v1::PersistentVolume;
use kube::api::{DeleteParams, PostParams};
use kube::core::{ApiResource, DynamicObject};
use kube::{Api, Client};
use serde_json::json;
use tau2_api::crd::{PhaseState, PipelinePhase, Tau2Pipeline};
use tau2_api::phases::PhaseName;

const PIPELINE: &str = "tiny";
/// The whole run, generously: about 3 minutes on 2 cores.
const RUN_TIMEOUT: Duration = Duration::from_secs(1200);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a control plane: run tests/run.sh"]
async fn the_tiny_pipeline_trains_and_evaluates_and_every_dashboard_query_has_data() -> Result<()> {
    common::init_tracing();
    let client = common::client().await;
    install_crd(&client).await;
    let ns = common::namespace(&client, "e2e-pipeline").await;
    let dir = std::env::temp_dir().join(format!("tau2-e2e-{ns}"));
    std::fs::create_dir_all(&dir)?;
    eprintln!("pipeline e2e: namespace {ns}, files in {}", dir.display());

    let image = image()?;
    let mut operator = Operator::start(&ns, &dir)?;
    operator.ready(Duration::from_secs(60)).await?;
    let mut prom =
        prometheus::Prometheus::start(operator.http, free_port()?, &dir.join("prometheus")).await?;
    let started = unix_now();
    let node = format!("tau2-e2e-{}", std::process::id());
    let kubelet = kubelet::Kubelet::start(&client, &node, image, &dir).await?;
    let volume = dir.join("volumes").join("checkpoints");
    let class = format!("{ns}-local");
    create_volume(&client, &ns, &class, &volume).await?;

    let run = Instant::now();
    create_pipeline(&client, &ns, &node, &class).await?;
    let done = wait_until_finished(&client, &ns, &kubelet).await;
    let took = run.elapsed();
    eprintln!("pipeline e2e: the pipeline ended in {took:?}");
    let outcome = match done {
        Ok(p) => check(&p, &volume, &ns).await,
        Err(e) => Err(e),
    };
    // Let Prometheus scrape the final state before reading the dashboards.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let checked = match outcome {
        Ok(()) => check_dashboards(&prom, &ns, started, unix_now()).await,
        Err(e) => Err(e),
    };

    prom.stop();
    kubelet.stop(&client).await;
    operator.stop()?;
    common::delete_namespace(&client, &ns).await;
    let _ = Api::<PersistentVolume>::all(client.clone())
        .delete(&format!("{ns}-checkpoints"), &DeleteParams::default())
        .await;
    let n = checked?;
    eprintln!("pipeline e2e: Succeeded in {took:?}; {n} dashboard queries returned data");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// What the worker image would hold, from this machine.
fn image() -> Result<kubelet::Image> {
    let libtorch = std::env::var_os("LIBTORCH")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".libtorch/torch"));
    let libtorch = libtorch
        .canonicalize()
        .with_context(|| format!("libtorch at {}", libtorch.display()))?
        .parent()
        .context("libtorch's directory")?
        .to_owned();
    let tokenizer = match std::env::var_os("TAU2_QWEN3_TOKENIZER_DIR") {
        Some(d) => PathBuf::from(d),
        None => fixture("qwen3-tokenizer.sh")?,
    };
    Ok(kubelet::Image {
        worker: worker_binary()?,
        libtorch,
        tau2_data: fixture("tau2-data.sh")?,
        tokenizer,
    })
}

/// A directory a tests/fixtures script prints (it fetches it once).
fn fixture(script: &str) -> Result<PathBuf> {
    let path = repo_root().join("tests/fixtures").join(script);
    let out = Command::new(&path)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", path.display()))?;
    if !out.status.success() {
        bail!("{} failed ({})", path.display(), out.status);
    }
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

/// `TAU2_E2E_WORKER`, else a release build of tau2-worker in this target directory.
fn worker_binary() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("TAU2_E2E_WORKER") {
        return Ok(PathBuf::from(bin));
    }
    // target/<profile>/tau2-operator -> target
    let target = Path::new(env!("CARGO_BIN_EXE_tau2-operator"))
        .ancestors()
        .nth(2)
        .context("the target directory")?
        .to_owned();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!(
        "pipeline e2e: cargo build --release -p tau2-worker (target {})",
        target.display()
    );
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "-p",
            "tau2-worker",
            "--bin",
            "tau2-worker",
        ])
        .arg("--manifest-path")
        .arg(repo_root().join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .status()
        .context("running cargo")?;
    if !status.success() {
        bail!("building tau2-worker failed ({status})");
    }
    Ok(target.join("release").join("tau2-worker"))
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// `tau2-operator run` as a child process, electing itself leader on a Lease
/// in the test namespace.
struct Operator {
    child: common::KillOnDrop,
    http: SocketAddr,
    log: PathBuf,
}

impl Operator {
    fn start(ns: &str, dir: &Path) -> Result<Operator> {
        let grpc = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let http = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let log = dir.join("operator.log");
        let out = std::fs::File::create(&log)?;
        let child = Command::new(env!("CARGO_BIN_EXE_tau2-operator"))
            .args(["run", "--namespace", ns, "--lease-namespace", ns])
            .args([
                "--pod-name",
                "tau2-e2e-operator",
                "--label-leader-pod=false",
            ])
            .args(["--worker-image", "tau2-worker:e2e"])
            .args(["--retry-backoff-seconds", "2"])
            .args(["--grpc-addr", &grpc.to_string()])
            .args(["--http-addr", &http.to_string()])
            .args(["--progress-endpoint", &format!("http://{grpc}")])
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info,kube=warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("starting tau2-operator run")?;
        Ok(Operator {
            child: common::KillOnDrop(child),
            http,
            log,
        })
    }

    async fn ready(&mut self, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(text) = http_get(self.http, "/readyz").await
                && text.starts_with("HTTP/1.1 200")
            {
                return Ok(());
            }
            if let Some(code) = self.child.0.try_wait()? {
                bail!("the operator exited ({code}); see {}", self.log.display());
            }
            if Instant::now() > deadline {
                bail!(
                    "the operator was not ready in {limit:?}; see {}",
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn stop(&mut self) -> Result<()> {
        common::terminate(&mut self.child.0, &self.log)
    }
}

/// A hostPath volume of the test's storage class: the controller-manager
/// binds it to the claim the operator creates.
async fn create_volume(client: &Client, ns: &str, class: &str, path: &Path) -> Result<()> {
    std::fs::create_dir_all(path)?;
    let pv: PersistentVolume = serde_json::from_value(json!({
        "metadata": {"name": format!("{ns}-checkpoints")},
        "spec": {
            "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
            "storageClassName": class, "persistentVolumeReclaimPolicy": "Retain",
            "hostPath": {"path": path.display().to_string(), "type": "Directory"}
        }
    }))?;
    Api::<PersistentVolume>::all(client.clone())
        .create(&PostParams::default(), &pv)
        .await
        .context("creating the checkpoint volume")?;
    Ok(())
}

/// The tiny example, scaled down to a few minutes on 2 cores, on the test's
/// node and storage class.
async fn create_pipeline(client: &Client, ns: &str, node: &str, class: &str) -> Result<()> {
    let path = repo_root().join("manifests/examples/tiny-pipeline.yaml");
    let mut body: serde_json::Value = serde_saphyr::from_str(&std::fs::read_to_string(&path)?)
        .with_context(|| format!("parsing {}", path.display()))?;
    merge(
        &mut body,
        &json!({
            "metadata": {"name": PIPELINE, "namespace": ns},
            "spec": {
                "storage": {"volumeClaimTemplate": {"spec": {"storageClassName": class}}},
                "worker": {
                    "nodeSelector": {"kubernetes.io/hostname": node},
                    "resources": {"gpus": 0, "cpu": "1", "memory": "2Gi"}
                },
                // Fewer, shorter episodes than the example: every phase
                // still runs for real, in a few minutes on 2 cores.
                "tau2": {"maxEvalTasksPerDomain": 4},
                "phases": {
                    "sft": {"epochs": 2},
                    "rft": {"samplesPerTask": 1, "epochs": 1, "rollout": {"maxNewTokens": 64, "maxSteps": 16}},
                    "grpo": {"steps": 2, "tasksPerStep": 2, "saveEverySteps": 1,
                             "rollout": {"maxNewTokens": 64, "maxSteps": 16}},
                    "eval": {"samplesPerTask": 2, "k": 2, "rollout": {"maxNewTokens": 64, "maxSteps": 16}},
                }
            }
        }),
    );
    let obj: DynamicObject = serde_json::from_value(body)?;
    Api::<DynamicObject>::namespaced_with(
        client.clone(),
        ns,
        &ApiResource::erase::<Tau2Pipeline>(&()),
    )
    .create(&PostParams::default(), &obj)
    .await
    .context("creating the pipeline")?;
    Ok(())
}

/// Waits for Succeeded; Failed or the timeout end it with the status and
/// the logs of the pods that ran.
async fn wait_until_finished(
    client: &Client,
    ns: &str,
    kubelet: &kubelet::Kubelet,
) -> Result<Tau2Pipeline> {
    let api: Api<Tau2Pipeline> = Api::namespaced(client.clone(), ns);
    let deadline = Instant::now() + RUN_TIMEOUT;
    let mut last = String::new();
    loop {
        let p = api.get(PIPELINE).await?;
        let st = p.status.clone().unwrap_or_default();
        let now = format!("{:?} {:?} {:?}", st.phase, st.current_phase, st.progress);
        if now != last {
            eprintln!("pipeline e2e: {now}");
            last = now;
        }
        let failed = st.phase == PipelinePhase::Failed;
        if st.phase == PipelinePhase::Succeeded {
            return Ok(p);
        }
        if failed || Instant::now() > deadline {
            let mut logs = String::new();
            for (pod, code, log) in kubelet.ran.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(30).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                logs.push_str(&format!("\n--- {pod} exited {code}:\n{}", tail.join("\n")));
            }
            bail!(
                "the pipeline {} ; status: {}{logs}",
                if failed {
                    "failed"
                } else {
                    "did not finish in time"
                },
                serde_json::to_string_pretty(&st)?
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Every phase succeeded with its final checkpoint in status and on the
/// volume, and the eval results are in status.
async fn check(p: &Tau2Pipeline, volume: &Path, ns: &str) -> Result<()> {
    let st = p.status.clone().context("status")?;
    let phases = st.phases.clone().context("phase records")?;
    let root = volume.join(tau2_operator::reconcile::build::pipeline_root(p));
    for phase in PhaseName::ALL {
        let rec = phases
            .get(phase)
            .with_context(|| format!("no {phase} record"))?;
        if rec.state != PhaseState::Succeeded {
            bail!("{phase} is {:?}: {:?}", rec.state, rec.message);
        }
        let final_ckpt = format!("{phase}/final");
        if rec.final_checkpoint.as_deref() != Some(final_ckpt.as_str()) {
            bail!("{phase} ended with {:?}", rec.final_checkpoint);
        }
        if !st
            .checkpoints
            .iter()
            .any(|c| c.path == final_ckpt && c.r#final && c.phase == phase)
        {
            bail!(
                "{final_ckpt} is not in status.checkpoints: {:?}",
                st.checkpoints
            );
        }
        // Eval writes results, not a model; the trained phases leave one.
        if phase != PhaseName::Eval && !root.join(&final_ckpt).join("config.json").is_file() {
            bail!("no model in {}", root.join(&final_ckpt).display());
        }
    }
    let results = st.results.clone().context("no results in status")?;
    eprintln!(
        "pipeline e2e: {ns}/{PIPELINE} pass@1 {:.3} pass@{} {:.3} pass^k {:.3} over {} tasks",
        results.overall.pass_at1,
        results.k,
        results.overall.pass_at_k,
        results.overall.pass_hat_k,
        results.overall.tasks
    );
    if results.k != 2 || results.overall.tasks == 0 {
        bail!("unexpected results: {results:?}");
    }
    for r in [
        results.overall.pass_at1,
        results.overall.pass_at_k,
        results.overall.pass_hat_k,
    ] {
        if !(0.0..=1.0).contains(&r) {
            bail!("a rate outside [0, 1]: {results:?}");
        }
    }
    if !results.domains.iter().any(|d| d.domain.as_str() == "mock") {
        bail!("no mock domain in the results: {results:?}");
    }
    Ok(())
}

async fn check_dashboards(
    prom: &prometheus::Prometheus,
    ns: &str,
    start: f64,
    end: f64,
) -> Result<usize> {
    let up = prom
        .query_range("up{job=\"tau2-operator\"} == 1", start, end, "5s")
        .await?;
    if up.is_empty() {
        bail!("Prometheus never scraped the operator");
    }
    let dir = repo_root().join("charts/tau2-operator/dashboards");
    let pinned = BTreeMap::from([
        ("namespace".to_owned(), ns.to_owned()),
        ("pipeline".to_owned(), PIPELINE.to_owned()),
    ]);
    let vars = dashboards::variables(&dir, &pinned, prom, start, end).await?;
    let range = format!("{}s", (end - start).ceil());
    let queries = dashboards::queries(&dir, &vars, &range)?;
    let empty = dashboards::empty(prom, &queries, start, end).await?;
    if !empty.is_empty() {
        bail!(
            "{} of {} dashboard queries returned no data:\n{}",
            empty.len(),
            queries.len(),
            empty.join("\n")
        );
    }
    Ok(queries.len())
}
