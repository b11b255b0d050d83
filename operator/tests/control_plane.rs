//! The test control plane itself works as later tests need it: Jobs get pods,
//! the scheduler places GPU pods on the fake GPU nodes, kwok runs them, and a
//! pod asking for more GPUs than any node has stays Pending as unschedulable.

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{ListParams, PostParams};
use kube::runtime::wait::{Condition, await_condition};
use serde_json::json;

fn gpu_job(name: &str, gpus: u32) -> Job {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "worker", "image": "tau2-worker:test",
                            "resources": {"limits": {"nvidia.com/gpu": gpus.to_string()}}}]
        }}}
    }))
    .expect("valid Job")
}

fn job_complete() -> impl Condition<Job> {
    |job: Option<&Job>| {
        job.and_then(|j| j.status.as_ref())
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.type_ == "Complete" && c.status == "True")
            })
    }
}

#[tokio::test]
#[ignore = "needs a control plane: run tests/run.sh"]
async fn gpu_jobs_run_on_fake_gpu_nodes_and_oversized_ones_wait() -> TestResult {
    let client = client().await;
    let ns = namespace(&client, "gpu").await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);

    jobs.create(&PostParams::default(), &gpu_job("fits", 2))
        .await?;
    jobs.create(&PostParams::default(), &gpu_job("too-big", 9))
        .await?;
    tokio::time::timeout(
        Duration::from_secs(60),
        await_condition(jobs.clone(), "fits", job_complete()),
    )
    .await??;

    let fits = pods
        .list(&ListParams::default().labels("job-name=fits"))
        .await?;
    let node = fits.items[0]
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone());
    assert!(
        node.is_some_and(|n| n.starts_with("gpu-node-")),
        "scheduled onto a fake GPU node"
    );

    let unschedulable = |pod: Option<&Pod>| {
        pod.and_then(|p| p.status.as_ref())
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter().any(|c| {
                    c.type_ == "PodScheduled" && c.reason.as_deref() == Some("Unschedulable")
                })
            })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let too_big = loop {
        let list = pods
            .list(&ListParams::default().labels("job-name=too-big"))
            .await?;
        if let Some(pod) = list.items.into_iter().find(|p| unschedulable(Some(p))) {
            break pod;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the 9-GPU pod was never marked unschedulable"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let message = too_big
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .find_map(|c| c.message)
        .unwrap_or_default();
    assert!(message.contains("Insufficient nvidia.com/gpu"), "{message}");
    delete_namespace(&client, &ns).await;
    Ok(())
}
