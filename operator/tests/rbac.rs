//! `operator/rbac.yaml` suffices, and grants no more than it says: the whole
//! operator runs as a ServiceAccount bound to exactly its ClusterRole and
//! Role (a token from the TokenRequest API, a client with only that bearer
//! token), takes the lease, labels its pod as leader, creates a pipeline's
//! first Job and writes its status; verbs outside the rules are forbidden.

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

/// The ClusterRole and the Role of `operator/rbac.yaml`.
fn rbac_yaml() -> (ClusterRole, Role) {
    let text = std::fs::read_to_string(repo_root().join("operator/rbac.yaml"))
        .expect("operator/rbac.yaml");
    let mut cluster_role = None;
    let mut role = None;
    for doc in serde_saphyr::from_multiple::<serde_json::Value>(&text).expect("YAML") {
        match doc["kind"].as_str() {
            Some("ClusterRole") => cluster_role = serde_json::from_value(doc).ok(),
            Some("Role") => role = serde_json::from_value(doc).ok(),
            other => panic!("unexpected {other:?} in rbac.yaml"),
        }
    }
    (cluster_role.expect("a ClusterRole"), role.expect("a Role"))
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
#[ignore = "needs a control plane: run tests/run.sh"]
async fn the_operator_runs_with_exactly_its_rbac_and_nothing_more() -> TestResult {
    let (admin, ns) = with_crd("rbac").await;
    checkpoint_claim(&admin, &ns).await;
    let ssa = PatchParams::apply("tau2-tests").force();

    // The rules, as users apply them; the Role goes into the test namespace.
    let (cluster_role, mut role) = rbac_yaml();
    let cr_name = cluster_role.name_any();
    Api::<ClusterRole>::all(admin.clone())
        .patch(&cr_name, &ssa, &Patch::Apply(&cluster_role))
        .await?;
    role.metadata.namespace = Some(ns.clone());
    Api::<Role>::namespaced(admin.clone(), &ns)
        .patch(&role.name_any(), &ssa, &Patch::Apply(&role))
        .await?;
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "tau2-operator"}}))?;
    Api::<ServiceAccount>::namespaced(admin.clone(), &ns)
        .create(&PostParams::default(), &sa)
        .await?;
    let subject = json!([{"kind": "ServiceAccount", "name": "tau2-operator", "namespace": ns}]);
    let binding_name = format!("tau2-operator-{ns}");
    let crb: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": binding_name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cr_name},
        "subjects": subject,
    }))?;
    Api::<ClusterRoleBinding>::all(admin.clone())
        .create(&PostParams::default(), &crb)
        .await?;
    let rb: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "tau2-operator-leader-election"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role.name_any()},
        "subjects": subject,
    }))?;
    Api::<RoleBinding>::namespaced(admin.clone(), &ns)
        .create(&PostParams::default(), &rb)
        .await?;

    // The operator's own pod, to be labelled leader.
    let me: Pod = serde_json::from_value(json!({
        "metadata": {"name": "tau2-operator-0"},
        "spec": {"containers": [{"name": "operator", "image": "tau2-operator:test"}]}
    }))?;
    let pods: Api<Pod> = Api::namespaced(admin.clone(), &ns);
    pods.create(&PostParams::default(), &me).await?;

    let operator = client_as(&admin, &ns, "tau2-operator").await;
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
    delete_namespace(&admin, &ns).await;
    Ok(())
}
