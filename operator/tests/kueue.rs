//! Kueue admitting pipelines on the real control plane: the Kueue controller
//! manager built from its Go module (`tests/control-plane/kueue.sh`), its
//! ClusterQueue `tau2-gpu` with a quota of 4 `nvidia.com/gpu`
//! (`tests/control-plane/kueue/queues.yaml`), a LocalQueue in the test's
//! namespace, and the operator in-process. kwok keeps the admitted pods running
//! (`tau2.dev/test-outcome=run`) until the test ends one, so the quota stays
//! used until then.

mod common;

use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use tau2_api::crd::{PipelinePhase, Tau2Pipeline};

const LOCAL_QUEUE: &str = "gpu";
const CLUSTER_QUEUE: &str = "tau2-gpu";

/// Kueue on the cluster of `$TAU2_CLUSTER_DIR`, for one test: started by
/// `kueue.sh up`, stopped by `kueue.sh down` when dropped (a failed test too).
struct Kueue {
    cluster: String,
}

impl Kueue {
    fn start() -> Kueue {
        let cluster = std::env::var("TAU2_CLUSTER_DIR")
            .expect("TAU2_CLUSTER_DIR names the cluster of tests/control-plane/cluster.sh up");
        run_ok(std::process::Command::new(script()).args(["up", &cluster]));
        Kueue { cluster }
    }
}

impl Drop for Kueue {
    fn drop(&mut self) {
        let _ = std::process::Command::new(script())
            .args(["down", &self.cluster])
            .status();
    }
}

fn script() -> std::path::PathBuf {
    repo_root().join("tests/control-plane/kueue.sh")
}

fn kueue_api(client: &Client, ns: &str, kind: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("kueue.x-k8s.io", "v1beta2", kind);
    Api::namespaced_with(client.clone(), ns, &ApiResource::from_gvk(&gvk))
}

async fn local_queue(client: &Client, ns: &str) {
    let lq: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "LocalQueue",
        "metadata": {"name": LOCAL_QUEUE},
        "spec": {"clusterQueue": CLUSTER_QUEUE}
    }))
    .expect("a LocalQueue");
    kueue_api(client, ns, "LocalQueue")
        .create(&PostParams::default(), &lq)
        .await
        .expect("LocalQueue created");
}

/// A pipeline in the LocalQueue whose pods ask for `gpus` and keep running.
async fn queued_pipeline(client: &Client, ns: &str, name: &str, gpus: u32) -> Tau2Pipeline {
    let patch = json!({
        "metadata": {"labels": {"kueue.x-k8s.io/queue-name": LOCAL_QUEUE, "tau2.dev/test-outcome": "run"}},
        "spec": {"worker": {"resources": {"gpus": gpus}}}
    });
    create(client, ns, name, patch).await
}

/// Polls until `pick` finds something, or panics saying `what`.
async fn poll<T, F, Fut>(secs: u64, what: &str, mut pick: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(found) = pick().await {
            return found;
        }
        assert!(Instant::now() < deadline, "{what} not seen in {secs}s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The pipeline's first Job, once the operator has created it.
async fn first_job(client: &Client, ns: &str, pipeline: &str) -> Job {
    let api: Api<Job> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().labels(&format!("tau2.dev/pipeline={pipeline}"));
    poll(30, &format!("a Job of {pipeline}"), || async {
        let list = api.list(&lp).await.expect("jobs listed");
        list.items.into_iter().next()
    })
    .await
}

fn suspended(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.suspend) == Some(true)
}

async fn job_now(client: &Client, ns: &str, job: &Job) -> Job {
    Api::<Job>::namespaced(client.clone(), ns)
        .get(&job.name_any())
        .await
        .expect("job readable")
}

fn condition<'a>(wl: &'a DynamicObject, type_: &str) -> Option<&'a Value> {
    wl.data["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

fn has_condition(wl: &DynamicObject, type_: &str, status: &str) -> bool {
    condition(wl, type_).is_some_and(|c| c["status"] == status)
}

/// Kueue's Workload for `job` (owned by it), once `check` holds for it.
async fn workload(
    client: &Client,
    ns: &str,
    job: &Job,
    what: &str,
    check: impl Fn(&DynamicObject) -> bool,
) -> DynamicObject {
    let api = kueue_api(client, ns, "Workload");
    let uid = job.uid().expect("job uid");
    poll(60, what, || async {
        let list = api
            .list(&ListParams::default())
            .await
            .expect("workloads listed");
        list.items
            .into_iter()
            .find(|wl| wl.owner_references().iter().any(|o| o.uid == uid) && check(wl))
    })
    .await
}

async fn pods_of(client: &Client, ns: &str, pipeline: &str) -> Vec<Pod> {
    Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&format!("tau2.dev/pipeline={pipeline}")))
        .await
        .expect("pods listed")
        .items
}

/// What a waiting pipeline's status must say: Pending, not running because
/// its Job is suspended by its queue.
fn says_queued(p: &Tau2Pipeline) -> bool {
    p.status.as_ref().is_some_and(|s| {
        s.phase == PipelinePhase::Pending
            && s.conditions
                .iter()
                .any(|c| c.type_ == "Running" && c.status == "False" && c.reason == "JobSuspended")
    })
}

/// Asserts that `pipeline` waits: Job suspended, no pod, status queued.
async fn assert_waiting(client: &Client, ns: &str, pipeline: &str, job: &Job) {
    assert!(
        suspended(&job_now(client, ns, job).await),
        "{pipeline}'s Job runs before Kueue admitted it"
    );
    assert!(
        pods_of(client, ns, pipeline).await.is_empty(),
        "{pipeline} has pods before Kueue admitted it"
    );
    wait_for(client, ns, pipeline, 30, "a queued status", says_queued).await;
}

#[tokio::test]
#[ignore = "needs a control plane and Kueue: run tests/run.sh"]
async fn kueue_admits_queued_pipelines_within_the_gpu_quota_and_holds_the_rest() -> TestResult {
    let kueue = Kueue::start();
    let (client, ns) = with_crd("kueue").await;
    checkpoint_claim(&client, &ns).await;
    let app = App::start(&client, &ns, "op-kueue", None).await;
    app.ready(30).await;

    // Before its LocalQueue exists, a queued pipeline's Job is created
    // suspended and stays so: Kueue made its Workload and cannot admit it.
    queued_pipeline(&client, &ns, "first", 3).await;
    let first = first_job(&client, &ns, "first").await;
    assert!(suspended(&first), "a queued Job is created suspended");
    let held = workload(
        &client,
        &ns,
        &first,
        "first's Workload, inadmissible",
        |wl| has_condition(wl, "QuotaReserved", "False"),
    )
    .await;
    assert!(!has_condition(&held, "Admitted", "True"));
    assert_waiting(&client, &ns, "first", &first).await;

    // With the LocalQueue, 3 of the 4 GPUs: admitted, unsuspended, running.
    local_queue(&client, &ns).await;
    workload(&client, &ns, &first, "first's Workload admitted", |wl| {
        has_condition(wl, "Admitted", "True")
    })
    .await;
    poll(30, "first's Job unsuspended", || async {
        (!suspended(&job_now(&client, &ns, &first).await)).then_some(())
    })
    .await;
    let pod = scheduled_pod(&client, &ns, "first", &phase_of(&first), 60).await;
    wait_for(&client, &ns, "first", 30, "first running", |p| {
        phase(p) == PipelinePhase::Running
    })
    .await;

    // 2 more GPUs exceed the quota left (1): the second pipeline waits.
    queued_pipeline(&client, &ns, "second", 2).await;
    let second = first_job(&client, &ns, "second").await;
    assert!(suspended(&second), "a queued Job is created suspended");
    let pending = workload(
        &client,
        &ns,
        &second,
        "second's Workload, over quota",
        |wl| has_condition(wl, "QuotaReserved", "False"),
    )
    .await;
    let why = condition(&pending, "QuotaReserved").map(|c| c["message"].to_string());
    assert!(
        why.as_deref().is_some_and(|m| m.contains("nvidia.com/gpu")),
        "second waits for GPU quota: {why:?}"
    );
    assert!(!has_condition(&pending, "Admitted", "True"));
    assert_waiting(&client, &ns, "second", &second).await;

    // The first pipeline's pod ends: its quota returns and the second is admitted.
    Api::<Pod>::namespaced(client.clone(), &ns)
        .patch(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"labels": {"tau2.dev/test-outcome": null}}})),
        )
        .await?;
    workload(&client, &ns, &second, "second's Workload admitted", |wl| {
        has_condition(wl, "Admitted", "True")
    })
    .await;
    poll(30, "second's Job unsuspended", || async {
        (!suspended(&job_now(&client, &ns, &second).await)).then_some(())
    })
    .await;

    app.stop().await?;
    delete_namespace(&client, &ns).await;
    drop(kueue);
    Ok(())
}

/// The phase label of a Job the operator made.
fn phase_of(job: &Job) -> String {
    job.labels()
        .get("tau2.dev/phase")
        .cloned()
        .expect("the operator labels its Jobs with their phase")
}
