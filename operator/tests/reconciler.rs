//! The reconciler against the real control plane (kube-apiserver, KCM,
//! scheduler, kwok GPU nodes): the controller runs in-process, watching one
//! namespace per test. kwok runs each Job's pod and ends it after a second
//! (succeeded, or failed with the label `tau2.dev/test-outcome=fail`, or kept
//! running with `=run`), so pipelines really move through their phases.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tau2_api::crd::{PhaseState, PipelinePhase, Tau2Pipeline};
use tau2_operator::controller::{self, Context, RunSettings};
use tau2_operator::leader::{self, LeaderSettings};
use tau2_operator::reconcile::Settings;
use tokio::sync::watch;
use tokio::task::JoinHandle;

struct Operator {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    election: Option<tokio::task::AbortHandle>,
}

impl Operator {
    /// Stops gracefully (in-flight reconciles finish, the lease is released).
    async fn stop(self) {
        self.stop.send_replace(true);
        let _ = tokio::time::timeout(Duration::from_secs(20), self.task).await;
    }
}

fn settings() -> Settings {
    Settings {
        default_image: "tau2-worker:test".into(),
        progress_endpoint: Some("http://tau2-operator.tau2-system.svc:9090".into()),
        retry_backoff: Duration::from_secs(1),
        ..Settings::default()
    }
}

fn run_settings(ns: &str) -> RunSettings {
    RunSettings {
        namespace: Some(ns.into()),
        debounce: Duration::from_millis(100),
        concurrency: 4,
    }
}

/// The controller, without leader election.
fn start(client: &Client, ns: &str, instance: &str) -> Operator {
    let ctx = Arc::new(Context::new(client.clone(), settings(), instance));
    let (stop, mut rx) = watch::channel(false);
    let ns = ns.to_string();
    let task = tokio::spawn(async move {
        let end = async move { controller::stopped(&mut rx).await };
        controller::run(ctx, run_settings(&ns), futures::stream::pending(), end)
            .await
            .expect("the controller runs");
    });
    Operator {
        stop,
        task,
        election: None,
    }
}

/// A replica with leader election on a Lease in `ns`, and its leader flag.
async fn start_replica(
    client: &Client,
    ns: &str,
    identity: &str,
) -> (Operator, watch::Receiver<bool>) {
    let (stop, rx) = watch::channel(false);
    let lease = LeaderSettings {
        lease_duration: Duration::from_secs(4),
        renew_deadline: Duration::from_secs(2),
        retry_period: Duration::from_millis(500),
        ..LeaderSettings::new("tau2-operator-test", ns, identity)
    };
    let mut election_stop = rx.clone();
    let (leading, election) = leader::elect(client.clone(), lease, async move {
        controller::stopped(&mut election_stop).await;
    })
    .await
    .expect("leader election starts");
    let ctx = Arc::new(Context::new(client.clone(), settings(), identity));
    let ns = ns.to_string();
    let flag = leading.clone();
    let election_abort = election.abort_handle();
    let task = tokio::spawn(async move {
        controller::run_while_leading(
            ctx,
            run_settings(&ns),
            leading,
            futures::stream::pending,
            rx,
        )
        .await
        .expect("the controller runs");
        let _ = election.await;
    });
    (
        Operator {
            stop,
            task,
            election: Some(election_abort),
        },
        flag,
    )
}

fn condition<'a>(
    p: &'a Tau2Pipeline,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    p.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

fn kubectl_wait(ns: &str, name: &str, condition: &str) -> std::process::Output {
    std::process::Command::new("kubectl")
        .args([
            "wait",
            "-n",
            ns,
            &format!("--for=condition={condition}"),
            &format!("t2p/{name}"),
            "--timeout=60s",
        ])
        .output()
        .expect("kubectl runs (tests/run.sh puts it on PATH)")
}

#[tokio::test]
#[ignore = "needs a control plane: run tests/run.sh"]
async fn a_pipeline_runs_its_phases_in_order_and_succeeds() -> TestResult {
    let (client, ns) = with_crd("rec-happy").await;
    checkpoint_claim(&client, &ns).await;
    let op = start(&client, &ns, "op-a");
    create(&client, &ns, "recipe", json!({})).await;

    // The first Job has the contract's pod, and kwok schedules it on a GPU node.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let deadline = Instant::now() + Duration::from_secs(30);
    let pod = loop {
        let list = pods
            .list(&ListParams::default().labels("tau2.dev/phase=sft"))
            .await?;
        if let Some(p) = list
            .items
            .into_iter()
            .find(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some())
        {
            break p;
        }
        assert!(Instant::now() < deadline, "the SFT pod was not scheduled");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let spec = pod.spec.expect("pod spec");
    assert!(
        spec.node_name
            .as_deref()
            .is_some_and(|n| n.starts_with("gpu-node-"))
    );
    let c = &spec.containers[0];
    assert_eq!(c.image.as_deref(), Some("tau2-worker:test"));
    assert_eq!(
        c.resources
            .as_ref()
            .and_then(|r| r.limits.as_ref())
            .map(|l| l["nvidia.com/gpu"].0.clone()),
        Some("1".into())
    );

    let done = wait_for(&client, &ns, "recipe", 90, "Succeeded", |p| {
        phase(p) == PipelinePhase::Succeeded
    })
    .await;
    let status = done.status.expect("status");
    let phases = status.phases.expect("phase records");
    for rec in [&phases.sft, &phases.rft, &phases.grpo, &phases.eval] {
        let rec = rec.as_ref().expect("a record per phase");
        assert_eq!((rec.state, rec.attempts), (PhaseState::Succeeded, 1));
    }
    assert_eq!(status.observed_generation, done.metadata.generation);
    assert!(
        status
            .checkpoints
            .iter()
            .any(|c| c.path == "grpo/final" && c.r#final)
    );
    // Each phase started from the previous one's final checkpoint.
    let cm = Api::<ConfigMap>::namespaced(client.clone(), &ns)
        .get("recipe-rft-1")
        .await?;
    let config: tau2_api::job::PhaseJob =
        serde_json::from_str(&cm.data.expect("data")["phase.json"])?;
    assert!(
        config.model.init.ends_with("sft/final"),
        "{:?}",
        config.model.init
    );
    let names: Vec<String> = jobs(&client, &ns)
        .await
        .iter()
        .map(|j| j.name_any())
        .collect();
    assert_eq!(names.len(), 4, "{names:?}");

    let out = kubectl_wait(&ns, "recipe", "Succeeded");
    assert!(
        out.status.success(),
        "kubectl wait: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let events = std::process::Command::new("kubectl")
        .args([
            "get",
            "events",
            "-n",
            &ns,
            "-o",
            "jsonpath={.items[*].reason}",
        ])
        .output()?;
    let reasons = String::from_utf8_lossy(&events.stdout).to_string();
    for r in ["JobCreated", "PhaseSucceeded", "PipelineSucceeded"] {
        assert!(reasons.contains(r), "event {r} in {reasons}");
    }
    op.stop().await;
    delete_namespace(&client, &ns).await;
    Ok(())
}

#[tokio::test]
#[ignore = "needs a control plane: run tests/run.sh"]
async fn a_failing_phase_is_retried_then_fails_the_pipeline_with_the_pods_reason() -> TestResult {
    let (client, ns) = with_crd("rec-fail").await;
    checkpoint_claim(&client, &ns).await;
    let op = start(&client, &ns, "op-a");
    create(
        &client,
        &ns,
        "broken",
        json!({"metadata": {"labels": {"tau2.dev/test-outcome": "fail"}}, "spec": {"phases": {"sft": {"backoffLimit": 1}}}}),
    )
    .await;
    let failed = wait_for(&client, &ns, "broken", 60, "Failed", |p| {
        phase(p) == PipelinePhase::Failed
    })
    .await;
    let cond = condition(&failed, "Failed").expect("Failed condition");
    assert_eq!(
        (cond.status.as_str(), cond.reason.as_str()),
        ("True", "Error")
    );
    assert!(
        cond.message.contains("phase sft failed after 2 attempts")
            && cond.message.contains("failed by the test's"),
        "{}",
        cond.message
    );
    let mut names: Vec<String> = jobs(&client, &ns)
        .await
        .iter()
        .map(|j| j.name_any())
        .collect();
    names.sort();
    assert_eq!(names, ["broken-sft-1", "broken-sft-2"]);
    let out = kubectl_wait(&ns, "broken", "Failed");
    assert!(
        out.status.success(),
        "kubectl wait: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Terminal stays terminal: deleting the Jobs brings nothing back.
    Api::<Job>::namespaced(client.clone(), &ns)
        .delete_collection(
            &kube::api::DeleteParams::background(),
            &ListParams::default(),
        )
        .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        jobs(&client, &ns)
            .await
            .iter()
            .all(|j| j.metadata.deletion_timestamp.is_some())
    );
    op.stop().await;
    delete_namespace(&client, &ns).await;
    Ok(())
}

#[tokio::test]
#[ignore = "needs a control plane: run tests/run.sh"]
async fn a_pipeline_asking_for_more_gpus_than_a_node_has_stays_pending_and_says_why() -> TestResult
{
    let (client, ns) = with_crd("rec-unsched").await;
    checkpoint_claim(&client, &ns).await;
    let op = start(&client, &ns, "op-a");
    create(
        &client,
        &ns,
        "huge",
        json!({"spec": {"worker": {"resources": {"gpus": 9}}}}),
    )
    .await;
    // The scheduler's first message may name another obstacle (the claim
    // binding, say) before it settles on the GPUs; wait for that one.
    let p = wait_for(
        &client,
        &ns,
        "huge",
        90,
        "Unschedulable for lack of GPUs",
        |p| {
            condition(p, "Running").is_some_and(|c| {
                c.reason == "Unschedulable" && c.message.contains("Insufficient nvidia.com/gpu")
            })
        },
    )
    .await;
    assert_eq!(phase(&p), PipelinePhase::Pending);
    let msg = &condition(&p, "Running").expect("Running").message;
    assert!(msg.contains("Insufficient nvidia.com/gpu"), "{msg}");
    op.stop().await;
    delete_namespace(&client, &ns).await;
    Ok(())
}

#[tokio::test]
#[ignore = "needs a control plane: run tests/run.sh"]
async fn suspend_suspends_the_job_and_resume_resumes_it() -> TestResult {
    let (client, ns) = with_crd("rec-suspend").await;
    checkpoint_claim(&client, &ns).await;
    let op = start(&client, &ns, "op-a");
    create(
        &client,
        &ns,
        "long",
        json!({"metadata": {"labels": {"tau2.dev/test-outcome": "run"}}}),
    )
    .await;
    wait_for(&client, &ns, "long", 60, "Running", |p| {
        phase(p) == PipelinePhase::Running
    })
    .await;
    let api: Api<Tau2Pipeline> = Api::namespaced(client.clone(), &ns);
    api.patch(
        "long",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"suspend": true}})),
    )
    .await?;
    let p = wait_for(&client, &ns, "long", 30, "Suspended", |p| {
        phase(p) == PipelinePhase::Suspended
    })
    .await;
    assert_eq!(
        condition(&p, "Suspended").map(|c| c.status.as_str()),
        Some("True")
    );
    let job = Api::<Job>::namespaced(client.clone(), &ns)
        .get("long-sft-1")
        .await?;
    assert_eq!(job.spec.and_then(|s| s.suspend), Some(true));
    api.patch(
        "long",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"suspend": false}})),
    )
    .await?;
    wait_for(&client, &ns, "long", 30, "Running again", |p| {
        phase(p) == PipelinePhase::Running
    })
    .await;
    let job = Api::<Job>::namespaced(client.clone(), &ns)
        .get("long-sft-1")
        .await?;
    assert_eq!(job.spec.and_then(|s| s.suspend), Some(false));
    assert_eq!(
        jobs(&client, &ns).await.len(),
        1,
        "resuming reuses the attempt's Job"
    );
    op.stop().await;
    delete_namespace(&client, &ns).await;
    Ok(())
}

#[tokio::test]
#[ignore = "needs a control plane: run tests/run.sh"]
async fn deleting_a_pipeline_runs_its_finalizer_and_removes_its_jobs() -> TestResult {
    let (client, ns) = with_crd("rec-delete").await;
    checkpoint_claim(&client, &ns).await;
    let op = start(&client, &ns, "op-a");
    create(
        &client,
        &ns,
        "gone",
        json!({"metadata": {"labels": {"tau2.dev/test-outcome": "run"}}}),
    )
    .await;
    let p = wait_for(&client, &ns, "gone", 60, "Running", |p| {
        phase(p) == PipelinePhase::Running
    })
    .await;
    assert!(p.finalizers().iter().any(|f| f == controller::FINALIZER));
    let api: Api<Tau2Pipeline> = Api::namespaced(client.clone(), &ns);
    api.delete("gone", &Default::default()).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while api.get_opt("gone").await?.is_some() {
        assert!(Instant::now() < deadline, "the pipeline was not deleted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        jobs(&client, &ns)
            .await
            .iter()
            .all(|j| j.metadata.deletion_timestamp.is_some())
    );
    op.stop().await;
    delete_namespace(&client, &ns).await;
    Ok(())
}

#[tokio::test]
#[ignore = "needs a control plane: run tests/run.sh"]
async fn a_restarted_operator_creates_no_duplicate_jobs_and_keeps_the_status() -> TestResult {
    let (client, ns) = with_crd("rec-restart").await;
    checkpoint_claim(&client, &ns).await;
    let op = start(&client, &ns, "op-a");
    create(
        &client,
        &ns,
        "steady",
        json!({"metadata": {"labels": {"tau2.dev/test-outcome": "run"}}}),
    )
    .await;
    let before = wait_for(&client, &ns, "steady", 60, "Running", |p| {
        phase(p) == PipelinePhase::Running
    })
    .await;
    op.stop().await;
    let op = start(&client, &ns, "op-b");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let names: Vec<String> = jobs(&client, &ns)
        .await
        .iter()
        .map(|j| j.name_any())
        .collect();
    assert_eq!(names, ["steady-sft-1"]);
    let after = Api::<Tau2Pipeline>::namespaced(client.clone(), &ns)
        .get("steady")
        .await?;
    let (b, a) = (
        before.status.expect("status"),
        after.status.expect("status"),
    );
    assert_eq!(
        (
            a.phase,
            a.start_time,
            a.phases.clone().and_then(|p| p.sft).map(|s| s.attempts)
        ),
        (b.phase, b.start_time, Some(1))
    );
    op.stop().await;
    delete_namespace(&client, &ns).await;
    Ok(())
}

#[tokio::test]
#[ignore = "needs a control plane: run tests/run.sh"]
async fn only_the_leader_reconciles_and_a_standby_takes_over() -> TestResult {
    let (client, ns) = with_crd("rec-leader").await;
    checkpoint_claim(&client, &ns).await;
    let (a, a_leads) = start_replica(&client, &ns, "replica-a").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (b, b_leads) = start_replica(&client, &ns, "replica-b").await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while !(*a_leads.borrow() || *b_leads.borrow()) {
        assert!(Instant::now() < deadline, "nobody leads");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!(*a_leads.borrow() && *b_leads.borrow()), "two leaders");
    let (leader, standby, standby_leads) = if *a_leads.borrow() {
        (a, b, b_leads)
    } else {
        (b, a, a_leads)
    };

    create(
        &client,
        &ns,
        "first",
        json!({"metadata": {"labels": {"tau2.dev/test-outcome": "run"}}}),
    )
    .await;
    wait_for(&client, &ns, "first", 60, "Running", |p| {
        phase(p) == PipelinePhase::Running
    })
    .await;
    // Only the leader wrote: the events name it, and one Job exists.
    assert_eq!(jobs(&client, &ns).await.len(), 1);

    // Crash the leader: no release, the lease must expire (4 s).
    leader.task.abort();
    if let Some(election) = &leader.election {
        election.abort();
    }
    let crashed = Instant::now();
    let deadline = crashed + Duration::from_secs(15);
    while !*standby_leads.borrow() {
        assert!(Instant::now() < deadline, "the standby did not take over");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = crashed.elapsed();
    assert!(took < Duration::from_secs(10), "takeover took {took:?}");
    create(
        &client,
        &ns,
        "second",
        json!({"metadata": {"labels": {"tau2.dev/test-outcome": "run"}}}),
    )
    .await;
    wait_for(
        &client,
        &ns,
        "second",
        60,
        "Running under the new leader",
        |p| phase(p) == PipelinePhase::Running,
    )
    .await;
    let mut names: Vec<String> = jobs(&client, &ns)
        .await
        .iter()
        .map(|j| j.name_any())
        .collect();
    names.sort();
    assert_eq!(names, ["first-sft-1", "second-sft-1"]);
    standby.stop().await;
    delete_namespace(&client, &ns).await;
    Ok(())
}
