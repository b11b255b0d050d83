//! The Helm chart `charts/tau2-operator` and `manifests/install.yaml`:
//! versions follow the workspace; `helm lint --strict`; the schema rejects
//! typos by name; the RBAC equals `operator/rbac.yaml`; install.yaml is what
//! `scripts/render-manifests.sh` renders; the default and the all-options
//! renders pass the API server's dry run (with a minimal ServiceMonitor CRD
//! of our own, `tests/fixtures/servicemonitor-crd.yaml`, since the test
//! control plane has no Prometheus Operator); and `helm install`, `upgrade`,
//! `test` and `uninstall` work on the test control plane, where kwok plays
//! the pods (no container runs: the test pod's command runs for real in
//! operator/tests/rbac.rs).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Service, ServiceAccount};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

fn read_yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_chart_follows_the_workspace_version() {
    let version = env!("CARGO_PKG_VERSION");
    let chart = read_yaml(&chart_dir().join("Chart.yaml"));
    assert_eq!(chart["version"], version, "Chart.yaml version");
    assert_eq!(chart["appVersion"], version, "Chart.yaml appVersion");
    let values = read_yaml(&chart_dir().join("values.yaml"));
    assert_eq!(
        values["workerImage"],
        format!("ghcr.io/tau2-operator/tau2-worker:{version}-cuda"),
        "values.yaml workerImage follows the version"
    );
    assert_eq!(
        values["image"]["tag"], "",
        "image.tag defaults to appVersion"
    );
}

#[test]
fn the_readme_documents_every_value() {
    fn leaves(prefix: &str, value: &Value, out: &mut Vec<String>) {
        match value.as_object() {
            // Maps the user fills (labels, selectors, resources) end the walk.
            Some(map)
                if !map.is_empty() && !prefix.ends_with("Selector") && prefix != "resources" =>
            {
                for (k, v) in map {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    leaves(&key, v, out);
                }
            }
            _ => out.push(prefix.to_owned()),
        }
    }
    let values = read_yaml(&chart_dir().join("values.yaml"));
    let mut keys = Vec::new();
    leaves("", &values, &mut keys);
    let readme =
        std::fs::read_to_string(chart_dir().join("README.md")).expect("the chart's README");
    let missing: Vec<_> = keys
        .iter()
        .filter(|k| !readme.contains(&format!("| `{k}` |")))
        .collect();
    assert!(
        missing.is_empty(),
        "values missing from the README's table: {missing:?}"
    );
}

#[test]
#[ignore = "needs helm (tests/control-plane/build.sh): run tests/run.sh"]
fn helm_lint_strict_passes() {
    let chart = chart_dir();
    run_ok(Command::new("helm").args(["lint", "--strict"]).arg(&chart));
    let dir = TempDir::new("lint");
    let values = all_options_values(&dir, "team-a", "monitoring");
    run_ok(
        Command::new("helm")
            .args(["lint", "--strict", "--namespace", "tau2-system"])
            .arg(&chart)
            .arg("--values")
            .arg(values),
    );
}

#[test]
#[ignore = "needs helm (tests/control-plane/build.sh): run tests/run.sh"]
fn the_values_schema_rejects_typos_by_name() {
    let cases = [
        (
            "replicaCont=3",
            "at '': additional properties 'replicaCont' not allowed",
        ),
        (
            "metrics.serviceMonitor.enabeld=true",
            "at '/metrics/serviceMonitor': additional properties 'enabeld' not allowed",
        ),
        ("image.tg=latest", "additional properties 'tg' not allowed"),
        ("replicaCount=two", "at '/replicaCount'"),
        (
            "leaderElection.enabled=false",
            "leaderElection.enabled=false runs the controller in every replica",
        ),
    ];
    for (set, message) in cases {
        let out = Command::new("helm")
            .args(["template", "t"])
            .arg(chart_dir())
            .args(["--set", set])
            .output()
            .expect("helm runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "--set {set} was accepted");
        assert!(
            stderr.contains(message),
            "--set {set}: expected {message:?} in:\n{stderr}"
        );
    }
}

#[test]
#[ignore = "needs helm (tests/control-plane/build.sh): run tests/run.sh"]
fn the_charts_rbac_is_operator_rbac_yaml() {
    let text = std::fs::read_to_string(repo_root().join("operator/rbac.yaml"))
        .expect("operator/rbac.yaml");
    let documented = yaml_objects(&text);
    let rendered = yaml_objects(&helm_template(&chart_dir(), "t", "tau2-system", &[]));
    let cluster_role = |objects: &[Value]| only_of_kind::<ClusterRole>(objects, "ClusterRole");
    let role = |objects: &[Value]| only_of_kind::<Role>(objects, "Role");
    assert_eq!(
        cluster_role(&rendered).rules,
        cluster_role(&documented).rules,
        "the chart's ClusterRole (templates/rbac.yaml) differs from operator/rbac.yaml"
    );
    assert_eq!(
        role(&rendered).rules,
        role(&documented).rules,
        "the chart's Role (templates/rbac.yaml) differs from operator/rbac.yaml"
    );
}

#[test]
#[ignore = "needs helm (tests/control-plane/build.sh): run tests/run.sh"]
fn install_yaml_is_up_to_date() {
    let rendered = run_ok(
        Command::new(repo_root().join("scripts/render-manifests.sh"))
            .arg("--stdout")
            .env("HELM", "helm"),
    );
    let path = repo_root().join("manifests/install.yaml");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == rendered,
        "{} is stale: run scripts/render-manifests.sh and commit the result",
        path.display()
    );
    let objects = yaml_objects(&committed);
    let kinds: Vec<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
    for kind in [
        "Namespace",
        "CustomResourceDefinition",
        "Deployment",
        "ClusterRole",
    ] {
        assert!(
            kinds.contains(&kind),
            "install.yaml has no {kind}: {kinds:?}"
        );
    }
    assert!(!kinds.contains(&"Pod"), "the helm test pod stays out");
}

#[tokio::test]
#[ignore = "needs a control plane and helm: run tests/run.sh"]
async fn default_and_all_options_renders_pass_the_api_servers_dry_run() -> TestResult {
    let (client, ns) = with_crd("helm-dry").await;
    enforce_restricted(&client, &ns).await;
    let dashboards_ns = namespace(&client, "helm-dash").await;
    install_service_monitor_crd(&client).await;
    let release = ns.clone();

    // Defaults, CRD included: nothing optional is rendered.
    let text = helm_template(&chart_dir(), &release, &ns, &["--include-crds"]);
    let objects = yaml_objects(&text);
    let found = kinds(&objects);
    for kind in ["ServiceMonitor", "NetworkPolicy"] {
        assert!(!found.contains(&kind), "{kind} is off by default");
    }
    assert_eq!(
        found.iter().filter(|k| **k == "ConfigMap").count(),
        dashboard_files(&chart_dir()).len(),
        "one ConfigMap per dashboards/*.json"
    );
    dry_run(&text);

    // Everything on, with two extra dashboards in a copy of the chart.
    let dir = TempDir::new("all");
    let chart = dir.path.join("tau2-operator");
    copy_dir(&chart_dir(), &chart);
    std::fs::create_dir_all(chart.join("dashboards"))?;
    for name in ["zz-test-a", "zz-test-b"] {
        std::fs::write(
            chart.join("dashboards").join(format!("{name}.json")),
            format!("{{\n  \"title\": \"{name}\",\n  \"panels\": []\n}}\n"),
        )?;
    }
    let values = all_options_values(&dir, &ns, &dashboards_ns);
    let values = values.to_string_lossy();
    let text = helm_template(&chart, &release, &ns, &["--values", &values]);
    let objects = yaml_objects(&text);
    let found = kinds(&objects);
    for kind in ["ServiceMonitor", "NetworkPolicy", "PodDisruptionBudget"] {
        assert!(found.contains(&kind), "{kind} is rendered: {found:?}");
    }
    let dashboards: Vec<ConfigMap> = objects
        .iter()
        .filter(|o| o["kind"] == "ConfigMap")
        .map(|o| serde_json::from_value(o.clone()).expect("a ConfigMap"))
        .collect();
    assert_eq!(dashboards.len(), dashboard_files(&chart).len());
    let test_a = dashboards
        .iter()
        .find(|c| c.name_any().ends_with("-dashboard-zz-test-a"))
        .expect("the dashboard zz-test-a");
    assert_eq!(test_a.namespace().as_deref(), Some(dashboards_ns.as_str()));
    assert_eq!(
        test_a.labels().get("tau2_dashboards").map(String::as_str),
        Some("yes")
    );
    let json = test_a
        .data
        .as_ref()
        .and_then(|d| d.get("zz-test-a.json"))
        .expect("the JSON under its file name");
    assert_eq!(
        serde_json::from_str::<Value>(json)?["title"],
        "zz-test-a",
        "the file's content"
    );
    let deployment: Deployment = only_of_kind(&objects, "Deployment");
    let env = container_env(&deployment);
    assert_eq!(env("TAU2_WATCH_NAMESPACE").as_deref(), Some(ns.as_str()));
    assert_eq!(env("RUST_LOG").as_deref(), Some("debug"));
    assert_eq!(
        env("TAU2_WORKER_IMAGE").as_deref(),
        Some("registry.example/tau2-worker:dev-cpu")
    );
    dry_run(&text);

    delete_namespace(&client, &dashboards_ns).await;
    delete_namespace(&client, &ns).await;
    Ok(())
}

#[tokio::test]
#[ignore = "needs a control plane and helm: run tests/run.sh"]
async fn helm_install_upgrade_test_and_uninstall() -> TestResult {
    let (client, ns) = with_crd("helm-life").await;
    // Pod Security admission then refuses any pod of the chart (the
    // operator's, the test pod) that breaks the restricted standard.
    enforce_restricted(&client, &ns).await;
    let release = ns.clone();
    let helm = |args: &[&str]| {
        run_ok(
            Command::new("helm")
                .args(args)
                .args(["--namespace", &ns, "--timeout", "120s"]),
        )
    };
    let chart = chart_dir();
    let chart = chart.to_string_lossy();
    let fullname = format!("{release}-tau2-operator");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);

    // Install: every object appears and both replicas become ready (kwok
    // reports the pods running and ready).
    helm(&["install", &release, &chart, "--wait"]);
    let d = deployments.get(&fullname).await?;
    assert_eq!(d.status.and_then(|s| s.ready_replicas), Some(2));
    for name in [
        format!("{fullname}-metrics"),
        format!("{fullname}-progress"),
    ] {
        assert!(services.get_opt(&name).await?.is_some(), "Service {name}");
    }
    Api::<ServiceAccount>::namespaced(client.clone(), &ns)
        .get(&fullname)
        .await?;
    Api::<ClusterRole>::all(client.clone())
        .get(&fullname)
        .await?;
    Api::<ClusterRoleBinding>::all(client.clone())
        .get(&fullname)
        .await?;
    Api::<PodDisruptionBudget>::namespaced(client.clone(), &ns)
        .get(&fullname)
        .await?;

    // The progress Service reaches only the pod labelled leader (the
    // operator labels its own pod; no operator runs under kwok, so do it here).
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let selector = "app.kubernetes.io/component=operator";
    let operator_pods = pods.list(&ListParams::default().labels(selector)).await?;
    assert_eq!(operator_pods.items.len(), 2, "two operator pods");
    let leader = operator_pods.items[0].name_any();
    pods.patch(
        &leader,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"tau2.dev/leader": "true"}}})),
    )
    .await?;
    let progress = format!("{fullname}-progress");
    poll(30, "the progress Service selects the leader", || async {
        endpoint_pods(&client, &ns, &progress).await == vec![leader.clone()]
    })
    .await;
    let metrics = format!("{fullname}-metrics");
    poll(30, "the metrics Service selects both replicas", || async {
        endpoint_pods(&client, &ns, &metrics).await.len() == 2
    })
    .await;

    // Upgrade with changed values: the Deployment follows.
    helm(&[
        "upgrade",
        &release,
        &chart,
        "--wait",
        "--reuse-values",
        "--set",
        "replicaCount=3,logLevel=debug",
    ]);
    let d = deployments.get(&fullname).await?;
    assert_eq!(d.spec.as_ref().and_then(|s| s.replicas), Some(3));
    assert_eq!(container_env(&d)("RUST_LOG").as_deref(), Some("debug"));
    assert_eq!(d.status.and_then(|s| s.ready_replicas), Some(3));

    // helm test: the test pod is created and (kwok's stage for test hooks)
    // succeeds; it is deleted on success.
    let out = helm(&["test", &release]);
    assert!(out.contains("Phase:          Succeeded"), "{out}");

    // Uninstall: everything goes, the CRD stays (Helm never deletes crds/).
    helm(&["uninstall", &release, "--wait"]);
    poll(60, "the release's objects are gone", || async {
        deployments
            .get_opt(&fullname)
            .await
            .ok()
            .flatten()
            .is_none()
            && services
                .list(&ListParams::default())
                .await
                .is_ok_and(|l| l.items.is_empty())
            && Api::<ClusterRole>::all(client.clone())
                .get_opt(&fullname)
                .await
                .ok()
                .flatten()
                .is_none()
            && Api::<ClusterRoleBinding>::all(client.clone())
                .get_opt(&fullname)
                .await
                .ok()
                .flatten()
                .is_none()
    })
    .await;
    Api::<CustomResourceDefinition>::all(client.clone())
        .get("tau2pipelines.tau2.dev")
        .await?;
    delete_namespace(&client, &ns).await;
    Ok(())
}

/// Values that turn every option on; `ns` is watched, dashboards go to
/// `dashboards_ns`.
fn all_options_values(dir: &TempDir, ns: &str, dashboards_ns: &str) -> PathBuf {
    let values = json!({
        "image": {"repository": "registry.example/tau2-operator", "tag": "dev", "pullPolicy": "Always"},
        "imagePullSecrets": [{"name": "regcred"}],
        "workerImage": "registry.example/tau2-worker:dev-cpu",
        "replicaCount": 3,
        "watchNamespace": ns,
        "logLevel": "debug",
        "httpPort": 8081,
        "grpcPort": 9091,
        "extraArgs": ["--concurrency=32"],
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": 1, "memory": "512Mi"}},
        "nodeSelector": {"tau2.dev/fake-node": "true"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "operators", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]}]}
        ]}}},
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "tau2-operator"}}}],
        "podAnnotations": {"example.com/team": "ml"},
        "podLabels": {"team": "ml"},
        "serviceAccount": {"create": true, "name": "tau2-op", "annotations": {"example.com/role": "operator"}},
        "podDisruptionBudget": {"enabled": true, "minAvailable": 2},
        "metrics": {"serviceMonitor": {"enabled": true, "interval": "15s", "scrapeTimeout": "5s",
            "labels": {"release": "kube-prometheus-stack"}}},
        "dashboards": {"enabled": true, "labelKey": "tau2_dashboards", "labelValue": "yes",
            "namespace": dashboards_ns, "annotations": {"grafana_folder": "tau2"}},
        "networkPolicy": {"enabled": true,
            "metrics": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}},
            "progress": {"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "Exists"}]}}},
    });
    let path = dir.path.join("all-options.yaml");
    // JSON is YAML.
    std::fs::write(&path, values.to_string()).expect("values written");
    path
}

fn kinds(objects: &[Value]) -> Vec<&str> {
    objects.iter().filter_map(|o| o["kind"].as_str()).collect()
}

fn dashboard_files(chart: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(chart.join("dashboards"))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect()
        })
        .unwrap_or_default()
}

/// The operator container's environment, by name.
fn container_env(d: &Deployment) -> impl Fn(&str) -> Option<String> + '_ {
    move |name| {
        d.spec
            .as_ref()?
            .template
            .spec
            .as_ref()?
            .containers
            .first()?
            .env
            .as_ref()?
            .iter()
            .find(|e| e.name == name)?
            .value
            .clone()
    }
}

/// `kubectl apply --dry-run=server --validate=strict`: the API server
/// admits every object, unknown fields included.
fn dry_run(yaml: &str) {
    let mut child = Command::new("kubectl")
        .args(["apply", "--dry-run=server", "--validate=strict", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl runs (on PATH under tests/run.sh)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(yaml.as_bytes())
        .expect("the manifests reach kubectl");
    let out = child.wait_with_output().expect("kubectl ends");
    assert!(
        out.status.success(),
        "the API server rejected the render:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The minimal ServiceMonitor CRD (our fixture), established.
async fn install_service_monitor_crd(client: &Client) {
    let path = repo_root().join("tests/fixtures/servicemonitor-crd.yaml");
    let crd: CustomResourceDefinition =
        serde_json::from_value(read_yaml(&path)).expect("the fixture is a CRD");
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = crd.name_any();
    api.patch(
        &name,
        &PatchParams::apply("tau2-tests").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("the ServiceMonitor CRD is accepted");
    let established = await_condition(api, &name, conditions::is_crd_established());
    tokio::time::timeout(Duration::from_secs(30), established)
        .await
        .expect("the ServiceMonitor CRD is established within 30 s")
        .expect("watching the CRD works");
}

/// Labels `ns` to enforce the restricted Pod Security Standard.
async fn enforce_restricted(client: &Client, ns: &str) {
    Api::<Namespace>::all(client.clone())
        .patch(
            ns,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
            }}})),
        )
        .await
        .expect("namespace labelled");
}

/// Names of the ready pods behind `service`, sorted.
async fn endpoint_pods(client: &Client, ns: &str, service: &str) -> Vec<String> {
    let slices = Api::<EndpointSlice>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={service}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let mut names: Vec<String> = slices
        .iter()
        .flat_map(|s| s.endpoints.iter().flatten())
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
        .filter_map(|e| e.target_ref.as_ref()?.name.clone())
        .collect();
    names.sort();
    names
}

async fn poll<F, Fut>(secs: u64, what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within {secs}s");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("a directory");
    for entry in std::fs::read_dir(from).expect("readable") {
        let entry = entry.expect("an entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("a file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copied");
        }
    }
}

/// A directory removed on drop.
struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn new(prefix: &str) -> TempDir {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "tau2-helm-{prefix}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("a temporary directory");
        TempDir { path }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
