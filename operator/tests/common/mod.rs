//! Helpers for tests against the real control plane that `tests/run.sh`
//! starts (`tests/control-plane/cluster.sh`); they read `KUBECONFIG`.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::DynamicObject;
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client, CustomResourceExt};
use serde_json::json;
use tau2_api::crd::{PipelinePhase, Tau2Pipeline};

pub type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// Marks a test that needs the control plane.
pub const NEEDS_CLUSTER: &str = "needs a control plane: run tests/run.sh";

pub async fn client() -> Client {
    Client::try_default()
        .await
        .expect("KUBECONFIG must point at the test control plane (tests/run.sh sets it)")
}

/// Installs the CRD from `crds/` (the committed file, as users apply it) and
/// waits until it is established. Idempotent: server-side apply.
pub async fn install_crd(client: &Client) -> CustomResourceDefinition {
    let path = tau2_operator::crdgen::crd_path(&repo_root());
    let text = std::fs::read_to_string(&path).expect("crds/ holds the CRD");
    let crd: CustomResourceDefinition = serde_saphyr::from_str(&text).expect("the CRD file parses");
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = Tau2Pipeline::crd_name();
    api.patch(
        name,
        &PatchParams::apply("tau2-tests").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("the API server accepts the CRD");
    let established = await_condition(api.clone(), name, conditions::is_crd_established());
    tokio::time::timeout(Duration::from_secs(30), established)
        .await
        .expect("the CRD is established within 30 s")
        .expect("watching the CRD works");
    api.get(name).await.expect("the CRD can be read back")
}

/// A client, the CRD installed, and a fresh namespace for one test.
pub async fn with_crd(prefix: &str) -> (Client, String) {
    let client = client().await;
    install_crd(&client).await;
    let ns = namespace(&client, prefix).await;
    (client, ns)
}

/// A fresh namespace for one test, so tests can run in parallel.
pub async fn namespace(client: &Client, prefix: &str) -> String {
    let name = format!("{prefix}-{}-{}", std::process::id(), next_id());
    let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))
        .expect("valid namespace");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace created");
    name
}

pub async fn delete_namespace(client: &Client, name: &str) {
    let _ = Api::<Namespace>::all(client.clone())
        .delete(name, &DeleteParams::background())
        .await;
}

fn next_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

pub fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("operator/ is inside the repository")
        .to_owned()
}

/// A minimal valid pipeline: the three required fields, everything else defaulted.
pub fn minimal_pipeline(name: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "tau2.dev/v1alpha1",
        "kind": "Tau2Pipeline",
        "metadata": {"name": name},
        "spec": {
            "model": {"uri": "hf://Qwen/Qwen3-4B-Instruct-2507"},
            "userSimulator": {"endpoint": "http://user-sim:30001/v1", "model": "Qwen/Qwen3-4B-Instruct-2507"},
            "storage": {"existingClaim": "checkpoints"}
        }
    })
}

/// Merges `patch` into `base` (JSON merge patch semantics: null deletes).
pub fn merge(base: &mut serde_json::Value, patch: &serde_json::Value) {
    match (base, patch) {
        (serde_json::Value::Object(b), serde_json::Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    b.remove(k);
                } else {
                    merge(b.entry(k.clone()).or_insert(serde_json::Value::Null), v);
                }
            }
        }
        (b, p) => *b = p.clone(),
    }
}

/// A bound claim `checkpoints` for the pipelines of `ns` (the scheduler
/// places no pod whose claim is unbound).
pub async fn checkpoint_claim(client: &Client, ns: &str) {
    let pv: PersistentVolume = serde_json::from_value(json!({
        "metadata": {"name": format!("{ns}-checkpoints")},
        "spec": {
            "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany"],
            "storageClassName": "manual", "hostPath": {"path": "/tmp/tau2-test"},
            "claimRef": {"namespace": ns, "name": "checkpoints"}
        }
    }))
    .expect("a PV");
    let _ = Api::<PersistentVolume>::all(client.clone())
        .create(&PostParams::default(), &pv)
        .await;
    let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": "checkpoints"},
        "spec": {
            "accessModes": ["ReadWriteMany"], "storageClassName": "manual",
            "volumeName": format!("{ns}-checkpoints"), "resources": {"requests": {"storage": "1Gi"}}
        }
    }))
    .expect("a PVC");
    Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &pvc)
        .await
        .expect("claim created");
}

pub async fn create(
    client: &Client,
    ns: &str,
    name: &str,
    patch: serde_json::Value,
) -> Tau2Pipeline {
    let mut body = minimal_pipeline(name);
    merge(&mut body, &patch);
    let obj: DynamicObject = serde_json::from_value(body).expect("an object");
    let api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        ns,
        &kube::core::ApiResource::erase::<Tau2Pipeline>(&()),
    );
    let created = api
        .create(&PostParams::default(), &obj)
        .await
        .expect("pipeline created");
    serde_json::from_value(serde_json::to_value(created).expect("json")).expect("a Tau2Pipeline")
}

/// Polls the pipeline until `check` holds.
pub async fn wait_for(
    client: &Client,
    ns: &str,
    name: &str,
    secs: u64,
    what: &str,
    check: impl Fn(&Tau2Pipeline) -> bool,
) -> Tau2Pipeline {
    let api: Api<Tau2Pipeline> = Api::namespaced(client.clone(), ns);
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let p = api.get(name).await.expect("pipeline readable");
        if check(&p) {
            return p;
        }
        assert!(
            Instant::now() < deadline,
            "{what} not reached in {secs}s; status: {}",
            serde_json::to_string_pretty(&p.status).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub fn phase(p: &Tau2Pipeline) -> PipelinePhase {
    p.status.as_ref().map(|s| s.phase).unwrap_or_default()
}

pub async fn jobs(client: &Client, ns: &str) -> Vec<Job> {
    Api::<Job>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .expect("jobs listed")
        .items
}

/// Logs in the test's output (RUST_LOG, default info).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube=warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Stops a child `tau2-operator run`: SIGTERM, then up to 30 s for a clean
/// exit (its log is at `log`), then SIGKILL.
pub fn terminate(child: &mut std::process::Child, log: &std::path::Path) -> anyhow::Result<()> {
    if child.try_wait()?.is_some() {
        return Ok(());
    }
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Some(code) = child.try_wait()? {
            if !code.success() {
                anyhow::bail!("the operator exited with {code}; see {}", log.display());
            }
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    anyhow::bail!("the operator did not stop within 30 s of SIGTERM")
}

/// A child process killed when dropped (a failed test leaves none behind).
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The whole operator (`tau2-operator run`) running in this process.
pub struct App {
    pub grpc: std::net::SocketAddr,
    pub http: std::net::SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl App {
    /// Starts it with `client`'s identity, reconciling `ns` only, electing a
    /// leader on a Lease in `ns`, gRPC and HTTP on 127.0.0.1 ports of its own,
    /// labelling `leader_pod` (in `ns`) while it leads.
    pub async fn start(client: &Client, ns: &str, identity: &str, leader_pod: Option<&str>) -> App {
        init_tracing();
        let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let (grpc, http) = tau2_operator::app::bind(any, any)
            .await
            .expect("ports to listen on");
        let grpc_addr = grpc.local_addr().expect("gRPC address");
        let http_addr = http.local_addr().expect("HTTP address");
        let config = tau2_operator::app::Config {
            settings: tau2_operator::reconcile::Settings {
                default_image: "tau2-worker:test".into(),
                progress_endpoint: Some(format!("http://{grpc_addr}")),
                retry_backoff: Duration::from_secs(1),
                ..Default::default()
            },
            run: tau2_operator::controller::RunSettings {
                namespace: Some(ns.into()),
                debounce: Duration::from_millis(200),
                concurrency: 4,
            },
            identity: identity.into(),
            election: Some(tau2_operator::leader::LeaderSettings {
                lease_duration: Duration::from_secs(4),
                renew_deadline: Duration::from_secs(2),
                retry_period: Duration::from_millis(500),
                ..tau2_operator::leader::LeaderSettings::new("tau2-operator", ns, identity)
            }),
            leader_pod: leader_pod.map(|pod| (ns.to_owned(), pod.to_owned())),
            service: Default::default(),
            shutdown_grace: Duration::from_secs(2),
        };
        let (stop, rx) = tokio::sync::watch::channel(false);
        let client = client.clone();
        let task = tokio::spawn(tau2_operator::app::run(client, config, grpc, http, rx));
        App {
            grpc: grpc_addr,
            http: http_addr,
            stop,
            task,
        }
    }

    /// Waits until `/readyz` says OK.
    pub async fn ready(&self, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Ok(text) = http_get(self.http, "/readyz").await
                && text.starts_with("HTTP/1.1 200")
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "/readyz not OK in {secs}s: {:?}",
                http_get(self.http, "/readyz").await
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// SIGTERM's path: stops and returns how the run ended.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.stop.send_replace(true);
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .map_err(|_| anyhow::anyhow!("the operator did not stop in 30 s"))?
            .map_err(|e| anyhow::anyhow!("the operator task: {e}"))?
    }
}

/// A GET over plain HTTP/1.1; the whole response, head included.
pub async fn http_get(
    addr: std::net::SocketAddr,
    path: &str,
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: operator\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await?;
    Ok(text)
}

/// Polls until `ns` has a pod of `pipeline`'s `phase` placed on a node.
pub async fn scheduled_pod(
    client: &Client,
    ns: &str,
    pipeline: &str,
    phase: &str,
    secs: u64,
) -> k8s_openapi::api::core::v1::Pod {
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), ns);
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let list = pods
            .list(&ListParams::default().labels(&format!(
                "tau2.dev/pipeline={pipeline},tau2.dev/phase={phase}"
            )))
            .await
            .expect("pods listed");
        if let Some(p) = list
            .items
            .into_iter()
            .find(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some())
        {
            return p;
        }
        assert!(
            Instant::now() < deadline,
            "no {phase} pod was scheduled in {secs}s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The Helm chart's directory.
pub fn chart_dir() -> std::path::PathBuf {
    repo_root().join("charts/tau2-operator")
}

/// Runs a command; its stdout, or a panic with its stderr.
pub fn run_ok(cmd: &mut std::process::Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?} (is it on PATH?): {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `helm template RELEASE CHART --namespace NS ARGS...`: the YAML text.
pub fn helm_template(chart: &std::path::Path, release: &str, ns: &str, args: &[&str]) -> String {
    run_ok(
        std::process::Command::new("helm")
            .args(["template", release])
            .arg(chart)
            .args(["--namespace", ns])
            .args(args),
    )
}

/// The objects of a multi-document YAML text (empty documents dropped).
pub fn yaml_objects(text: &str) -> Vec<serde_json::Value> {
    serde_saphyr::from_multiple::<serde_json::Value>(text)
        .expect("valid YAML")
        .into_iter()
        .filter(|doc| !doc.is_null())
        .collect()
}

/// The one object of `kind` among `objects` (panics on none or several).
pub fn only_of_kind<T: serde::de::DeserializeOwned>(
    objects: &[serde_json::Value],
    kind: &str,
) -> T {
    let found: Vec<_> = objects.iter().filter(|o| o["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "expected one {kind}, found {}", found.len());
    serde_json::from_value(found[0].clone()).unwrap_or_else(|e| panic!("a {kind}: {e}"))
}
