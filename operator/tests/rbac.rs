//! The Helm chart's RBAC suffices, and grants no more than it says: the
//! whole operator runs as the chart's ServiceAccount, bound by the chart's
//! ClusterRole(Binding) and Role(Binding) as `helm template` renders them (a
//! token from the TokenRequest API, a client with only that bearer token),
//! takes the lease, labels its pod as leader, creates a pipeline's first Job
//! and writes its status; verbs outside the rules are forbidden. The chart's
//! rules equal `operator/rbac.yaml`'s (operator/tests/helm.rs), so this
//! proves that file too. The `helm test` pod's command also runs here,
//! against this operator's /readyz.

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tau2_api::crd::PipelinePhase;

/// The chart's ServiceAccount and RBAC objects for release `release` in `ns`.
struct ChartRbac {
    service_account: ServiceAccount,
    cluster_role: ClusterRole,
    cluster_role_binding: ClusterRoleBinding,
    role: Role,
    role_binding: RoleBinding,
    /// The `helm test` pod's container args.
    test_args: Vec<String>,
}

fn chart_rbac(release: &str, ns: &str) -> ChartRbac {
    let objects = yaml_objects(&helm_template(&chart_dir(), release, ns, &[]));
    let test_pod: Pod = only_of_kind(&objects, "Pod");
    let test_args = test_pod
        .spec
        .and_then(|s| s.containers.into_iter().next())
        .and_then(|c| c.args)
        .expect("the test pod has args");
    ChartRbac {
        service_account: only_of_kind(&objects, "ServiceAccount"),
        cluster_role: only_of_kind(&objects, "ClusterRole"),
        cluster_role_binding: only_of_kind(&objects, "ClusterRoleBinding"),
        role: only_of_kind(&objects, "Role"),
        role_binding: only_of_kind(&objects, "RoleBinding"),
        test_args,
    }
}

/// A client that authenticates as `ns`'s ServiceAccount `sa`, and nothing else.
async fn client_as(admin: &Client, ns: &str, sa: &str) -> Client {
    let request: TokenRequest = serde_json::from_value(json!({
        "spec": {"audiences": [], "expirationSeconds": 3600}
    }))
    .expect("a TokenRequest");
    let issued: TokenRequest = Api::<ServiceAccount>::namespaced(admin.clone(), ns)
        .create_subresource("token", sa, &PostParams::default(), &request)
        .await
        .expect("the TokenRequest API issues a token");
    let token = issued.status.expect("a token").token;
    let mut config = kube::Config::infer().await.expect("KUBECONFIG");
    config.auth_info =
        serde_json::from_value(json!({"token": token})).expect("bearer-token credentials");
    Client::try_from(config).expect("a client")
}

fn forbidden<T: std::fmt::Debug>(result: Result<T, kube::Error>, what: &str) {
    match result {
        Err(kube::Error::Api(e)) if e.code == 403 => {}
        other => panic!("{what}: expected 403 Forbidden, got {other:?}"),
    }
}

#[tokio::test]
#[ignore = "needs a control plane and helm: run tests/run.sh"]
async fn the_operator_runs_with_exactly_the_charts_rbac_and_nothing_more() -> TestResult {
    let (admin, ns) = with_crd("rbac").await;
    checkpoint_claim(&admin, &ns).await;
    let ssa = PatchParams::apply("tau2-tests").force();

    // The chart's objects, as `helm install` creates them, released into
    // the test namespace (a unique release name, as cluster-scoped names
    // must be).
    let rbac = chart_rbac(&ns, &ns);
    let cluster_role = rbac.cluster_role.clone();
    let cr_name = cluster_role.name_any();
    let binding_name = rbac.cluster_role_binding.name_any();
    let sa_name = rbac.service_account.name_any();
    Api::<ServiceAccount>::namespaced(admin.clone(), &ns)
        .patch(&sa_name, &ssa, &Patch::Apply(&rbac.service_account))
        .await?;
    Api::<ClusterRole>::all(admin.clone())
        .patch(&cr_name, &ssa, &Patch::Apply(&cluster_role))
        .await?;
    Api::<ClusterRoleBinding>::all(admin.clone())
        .patch(
            &binding_name,
            &ssa,
            &Patch::Apply(&rbac.cluster_role_binding),
        )
        .await?;
    Api::<Role>::namespaced(admin.clone(), &ns)
        .patch(&rbac.role.name_any(), &ssa, &Patch::Apply(&rbac.role))
        .await?;
    Api::<RoleBinding>::namespaced(admin.clone(), &ns)
        .patch(
            &rbac.role_binding.name_any(),
            &ssa,
            &Patch::Apply(&rbac.role_binding),
        )
        .await?;

    // The operator's own pod, to be labelled leader.
    let me: Pod = serde_json::from_value(json!({
        "metadata": {"name": "tau2-operator-0"},
        "spec": {"containers": [{"name": "operator", "image": "tau2-operator:test"}]}
    }))?;
    let pods: Api<Pod> = Api::namespaced(admin.clone(), &ns);
    pods.create(&PostParams::default(), &me).await?;

    let operator = client_as(&admin, &ns, &sa_name).await;
    let app = App::start(&operator, &ns, "tau2-operator-0", Some("tau2-operator-0")).await;
    app.ready(60).await;

    // It leads, labels its pod, creates the first Job and writes status.
    create(
        &admin,
        &ns,
        "recipe",
        json!({"metadata": {"labels": {"tau2.dev/test-outcome": "run"}}}),
    )
    .await;
    let p = wait_for(&admin, &ns, "recipe", 60, "the first Job in status", |p| {
        p.status.as_ref().is_some_and(|s| {
            s.phases
                .as_ref()
                .and_then(|ph| ph.sft.as_ref())
                .is_some_and(|r| r.job_name.is_some())
        })
    })
    .await;
    assert!(p.finalizers().iter().any(|f| f == "tau2.dev/cleanup"));
    let jobs = Api::<Job>::namespaced(admin.clone(), &ns)
        .list(&ListParams::default())
        .await?;
    assert_eq!(jobs.items.len(), 1, "one Job");
    wait_for(&admin, &ns, "recipe", 60, "Running", |p| {
        phase(p) == PipelinePhase::Running
    })
    .await;
    // The `helm test` pod's command, run here against this operator (its
    // Service URL pointed at the local port) once the leader's caches
    // synced: the flags parse and /readyz is 200.
    let args: Vec<String> = rbac
        .test_args
        .iter()
        .map(|a| match a.strip_prefix("--url=") {
            Some(url) => {
                let path = url
                    .split_once(".svc:")
                    .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]));
                assert_eq!(path, Some("/readyz"), "the test pod probes /readyz: {url}");
                format!("--url=http://{}/readyz", app.http)
            }
            None => a.clone(),
        })
        .collect();
    // Off the runtime's thread: the operator under test serves on it.
    tokio::task::spawn_blocking(move || {
        run_ok(std::process::Command::new(env!("CARGO_BIN_EXE_tau2-operator")).args(&args))
    })
    .await?;

    let labelled = pods.get("tau2-operator-0").await?;
    assert_eq!(
        labelled.labels().get("tau2.dev/leader").map(String::as_str),
        Some("true")
    );
    let events = Api::<Event>::namespaced(admin.clone(), &ns)
        .list(&ListParams::default())
        .await?;
    assert!(
        events
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("JobCreated")),
        "the operator may publish events"
    );

    // Verbs outside the rules are refused.
    let as_op_pods: Api<Pod> = Api::namespaced(operator.clone(), &ns);
    forbidden(
        as_op_pods.create(&PostParams::default(), &me).await,
        "create a pod",
    );
    forbidden(
        as_op_pods
            .delete("tau2-operator-0", &DeleteParams::default())
            .await,
        "delete a pod",
    );
    forbidden(
        Api::<Secret>::namespaced(operator.clone(), &ns)
            .delete("recipe-progress-token", &DeleteParams::default())
            .await,
        "delete a Secret",
    );
    forbidden(
        Api::<Namespace>::all(operator.clone())
            .list(&ListParams::default())
            .await,
        "list namespaces",
    );
    forbidden(
        Api::<ClusterRole>::all(operator.clone())
            .patch(&cr_name, &ssa, &Patch::Apply(&cluster_role))
            .await,
        "escalate its own ClusterRole",
    );

    // Deletion runs the finalizer with these rights too.
    Api::<tau2_api::crd::Tau2Pipeline>::namespaced(admin.clone(), &ns)
        .delete("recipe", &DeleteParams::default())
        .await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while Api::<tau2_api::crd::Tau2Pipeline>::namespaced(admin.clone(), &ns)
        .get_opt("recipe")
        .await?
        .is_some()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the finalizer did not finish"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Shutdown releases the lease and removes the leader label.
    app.stop().await?;
    let unlabelled = pods.get("tau2-operator-0").await?;
    assert_eq!(unlabelled.labels().get("tau2.dev/leader"), None);

    let _ = Api::<ClusterRoleBinding>::all(admin.clone())
        .delete(&binding_name, &DeleteParams::default())
        .await;
    let _ = Api::<ClusterRole>::all(admin.clone())
        .delete(&cr_name, &DeleteParams::default())
        .await;
    delete_namespace(&admin, &ns).await;
    Ok(())
}
