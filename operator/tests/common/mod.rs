//! Helpers for tests against the real control plane that `tests/run.sh`
//! starts (`tests/control-plane/cluster.sh`); they read `KUBECONFIG`.

#![allow(dead_code)]

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client, CustomResourceExt};
use tau2_api::crd::Tau2Pipeline;

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
