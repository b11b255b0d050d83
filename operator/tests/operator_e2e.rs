//! The whole operator end to end on the real control plane: `app::run`
//! in-process (controller, gRPC progress service and HTTP on 127.0.0.1
//! ports, leader election), a fake worker that streams its phase's reports
//! with the token from the pipeline's Secret, kwok ending the pods when the
//! test says so, and the status and `/metrics` that follow.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tau2_api::crd::{PhaseState, PipelinePhase, Tau2Pipeline};
use tau2_api::progress::progress_client::ProgressClient;
use tau2_api::progress::progress_report::Event;
use tau2_api::progress::{
    Checkpoint, Finished, PassRates, ProgressReport, ReportAck, Results, Step,
};
use tonic::Code;

/// A worker of one phase attempt of `p`, holding `token`.
struct Worker {
    endpoint: String,
    token: String,
    namespace: String,
    pipeline: String,
    uid: String,
    phase: &'static str,
    attempt: u32,
}

impl Worker {
    async fn send(&self, events: Vec<Event>) -> Result<ReportAck, tonic::Status> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let reports: Vec<ProgressReport> = events
            .into_iter()
            .zip(1u64..)
            .map(|(event, seq)| ProgressReport {
                namespace: self.namespace.clone(),
                pipeline: self.pipeline.clone(),
                pipeline_uid: self.uid.clone(),
                phase: self.phase.into(),
                attempt: self.attempt,
                seq,
                unix_millis: now,
                event: Some(event),
            })
            .collect();
        let mut client = ProgressClient::connect(self.endpoint.clone())
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let mut request = tonic::Request::new(tokio_stream::iter(reports));
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", self.token)
                .parse()
                .map_err(|_| tonic::Status::internal("header"))?,
        );
        Ok(client.report(request).await?.into_inner())
    }
}

/// What a phase pod finds in its mounted Secret.
async fn token(client: &Client, ns: &str, pipeline: &str) -> String {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(s) = secrets
            .get_opt(&tau2_operator::tokens::secret_name(pipeline))
            .await
            .expect("secrets readable")
        {
            let data = s.data.expect("token data");
            return String::from_utf8(data[tau2_operator::tokens::TOKEN_KEY].0.clone())
                .expect("utf-8 token");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no token Secret for {pipeline}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Lets kwok end the pod successfully (its stage skips pods with the label).
async fn complete(client: &Client, ns: &str, pod: &Pod) {
    Api::<Pod>::namespaced(client.clone(), ns)
        .patch(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"labels": {"tau2.dev/test-outcome": null}}})),
        )
        .await
        .expect("pod label removed");
}

fn rates(domain: &str, pass_at_k: f64) -> PassRates {
    PassRates {
        domain: domain.into(),
        tasks: 20,
        pass_at1: 0.36,
        pass_at1_unbiased: 0.36,
        pass_at_k,
        pass_at_k_unbiased: pass_at_k,
        pass_hat_k: 0.2,
        average_reward: 0.45,
    }
}

fn steps(total: u64) -> Vec<Event> {
    (1..=total)
        .map(|step| {
            Event::Step(Step {
                step,
                total_steps: total,
                metrics: [
                    ("loss".to_owned(), 1.0 / step as f64),
                    ("tokens_per_second".to_owned(), 9000.0),
                ]
                .into(),
            })
        })
        .collect()
}

fn finished() -> Event {
    Event::Finished(Finished {
        succeeded: true,
        message: String::new(),
    })
}

#[tokio::test]
#[ignore = "needs a control plane: run tests/run.sh"]
async fn reports_from_a_phase_worker_reach_status_and_metrics() -> TestResult {
    let (client, ns) = with_crd("e2e").await;
    checkpoint_claim(&client, &ns).await;
    let app = App::start(&client, &ns, "op-e2e", None).await;
    app.ready(30).await;

    // SFT, then eval; the pods keep running until the test ends them.
    let run = json!({"metadata": {"labels": {"tau2.dev/test-outcome": "run"}},
        "spec": {"phases": {"rft": {"enabled": false}, "grpo": {"enabled": false}}}});
    let p = create(&client, &ns, "recipe", run.clone()).await;
    let other = create(&client, &ns, "other", run).await;
    let sft_pod = scheduled_pod(&client, &ns, "recipe", "sft", 60).await;
    assert_eq!(
        sft_pod
            .labels()
            .get("tau2.dev/pipeline")
            .map(String::as_str),
        Some("recipe")
    );

    let worker = |phase, token: &str, p: &Tau2Pipeline| Worker {
        endpoint: format!("http://{}", app.grpc),
        token: token.to_owned(),
        namespace: ns.clone(),
        pipeline: p.name_any(),
        uid: p.uid().expect("uid"),
        phase,
        attempt: 1,
    };
    let recipe_token = token(&client, &ns, "recipe").await;
    let other_token = token(&client, &ns, "other").await;

    // The SFT worker: steps, a checkpoint on the way, the final one, done.
    let mut events = steps(5);
    events.insert(
        3,
        Event::Checkpoint(Checkpoint {
            step: 3,
            path: "sft/step-3".into(),
            r#final: false,
        }),
    );
    events.push(Event::Checkpoint(Checkpoint {
        step: 5,
        path: "sft/final".into(),
        r#final: true,
    }));
    events.push(finished());
    let n = events.len() as u64;
    let ack = worker("sft", &recipe_token, &p).send(events).await?;
    assert_eq!((ack.accepted, ack.rejected), (n, 0));

    let running = wait_for(&client, &ns, "recipe", 30, "SFT progress in status", |p| {
        p.status.as_ref().is_some_and(|s| {
            s.phases
                .as_ref()
                .and_then(|ph| ph.sft.as_ref())
                .and_then(|r| r.progress.as_ref())
                .is_some_and(|pr| pr.step == 5)
                && s.checkpoints.iter().any(|c| c.path == "sft/final")
        })
    })
    .await;
    let st = running.status.expect("status");
    let sft = st.phases.as_ref().and_then(|p| p.sft.clone()).expect("sft");
    let progress = sft.progress.expect("progress");
    assert_eq!((progress.step, progress.total_steps), (5, 5));
    assert_eq!(progress.metrics["loss"], 0.2);
    assert_eq!(progress.metrics["tokensPerSecond"], 9000.0);
    assert_eq!(sft.final_checkpoint.as_deref(), Some("sft/final"));
    assert!(
        st.checkpoints
            .iter()
            .any(|c| c.path == "sft/step-3" && !c.r#final)
    );
    assert_eq!(st.progress.as_deref(), Some("5/5"));

    // Another pipeline's token opens nothing of this one.
    let forged = Worker {
        token: other_token.clone(),
        ..worker("sft", &recipe_token, &p)
    };
    let refused = forged.send(steps(1)).await.expect_err("a foreign token");
    assert_eq!(refused.code(), Code::Unauthenticated);
    let ack = worker("sft", &other_token, &other).send(steps(2)).await?;
    assert_eq!(ack.accepted, 2, "its own token opens the other pipeline");

    // The Job completes; eval starts from SFT's final checkpoint and reports pass@k.
    complete(&client, &ns, &sft_pod).await;
    let eval_pod = scheduled_pod(&client, &ns, "recipe", "eval", 60).await;
    let mut events = steps(8);
    events.push(Event::Results(Results {
        split: "test".into(),
        k: 4,
        samples_per_task: 4,
        overall: Some(rates("", 0.59)),
        domains: vec![rates("airline", 0.55), rates("retail", 0.6)],
    }));
    events.push(finished());
    let ack = worker("eval", &recipe_token, &p).send(events).await?;
    assert_eq!(ack.rejected, 0);
    wait_for(&client, &ns, "recipe", 30, "eval results in status", |p| {
        p.status.as_ref().is_some_and(|s| s.results.is_some())
    })
    .await;

    // /metrics: the pipeline's series and the operator's own.
    let text = http_get(app.http, "/metrics").await?;
    let series = |name: &str, labels: &[&str]| {
        text.lines()
            .any(|l| l.starts_with(&format!("{name}{{")) && labels.iter().all(|x| l.contains(x)))
    };
    let recipe = "pipeline=\"recipe\"";
    let in_ns = format!("namespace=\"{ns}\"");
    assert!(
        series("tau2_pipeline_step", &[recipe, &in_ns, "phase=\"sft\""]),
        "{text}"
    );
    assert!(
        series("tau2_pipeline_loss", &[recipe, "phase=\"sft\""]),
        "{text}"
    );
    assert!(
        series("tau2_pipeline_pass_at_k", &[recipe, "domain=\"all\""]),
        "{text}"
    );
    assert!(
        series("tau2_pipeline_pass_at_k", &[recipe, "domain=\"airline\""]),
        "{text}"
    );
    assert!(text.contains("tau2_operator_leader 1"), "{text}");
    let successes = text
        .lines()
        .find_map(|l| l.strip_prefix("tau2_operator_reconciles_total{result=\"success\"} "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(successes > 0.0, "{text}");
    assert!(text.contains("tau2_operator_reconcile_duration_seconds_count"));
    assert!(
        series("tau2_operator_pipelines", &["phase=\"Running\""]),
        "{text}"
    );
    assert!(
        text.contains("tau2_operator_progress_reports_rejected_total{reason=\"token_mismatch\"} 1"),
        "{text}"
    );

    // Eval ends: the pipeline succeeds and keeps what was reported.
    complete(&client, &ns, &eval_pod).await;
    let done = wait_for(&client, &ns, "recipe", 60, "Succeeded", |p| {
        phase(p) == PipelinePhase::Succeeded
    })
    .await;
    let st = done.status.expect("status");
    let results = st.results.expect("results");
    assert_eq!((results.k, results.overall.pass_at_k), (4, 0.59));
    assert_eq!(results.domains.len(), 2);
    let eval = st
        .phases
        .as_ref()
        .and_then(|p| p.eval.clone())
        .expect("eval");
    assert_eq!(eval.state, PhaseState::Succeeded);
    assert_eq!(eval.progress.map(|p| p.step), Some(8));

    // Deleting the pipeline forgets its series.
    Api::<Tau2Pipeline>::namespaced(client.clone(), &ns)
        .delete("recipe", &Default::default())
        .await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let text = http_get(app.http, "/metrics").await?;
        if !text.contains("pipeline=\"recipe\"") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "series of a deleted pipeline stay: {text}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    app.stop().await?;
    delete_namespace(&client, &ns).await;
    Ok(())
}
