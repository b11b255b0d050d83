//! The progress service end to end, without a cluster: a real tonic server on
//! 127.0.0.1 with tokens filled in directly, a real tonic client streaming
//! good, bad, stale and unauthorized reports, then the store and `/metrics`.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::Secret;
use tau2_api::crd::Tau2Pipeline;
use tau2_api::phases::PhaseName;
use tau2_api::progress::progress_client::ProgressClient;
use tau2_api::progress::progress_report::Event;
use tau2_api::progress::{
    Checkpoint, Finished, PassRates, ProgressReport, ReportAck, Results, Step,
};
use tau2_operator::http::{self, HttpState};
use tau2_operator::metrics::Metrics;
use tau2_operator::progress::{PipelineKey, ProgressService, ProgressStore, ServiceConfig};
use tau2_operator::tokens::{self, TokenRegistry};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tonic::{Code, Request, Status};

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn pipeline(name: &str) -> Result<Tau2Pipeline, BoxError> {
    Ok(serde_json::from_value(serde_json::json!({
        "apiVersion": "tau2.dev/v1alpha1",
        "kind": "Tau2Pipeline",
        "metadata": {"name": name, "namespace": "team", "uid": format!("uid-{name}")},
        "spec": {
            "model": {"uri": "builtin://tiny"},
            "userSimulator": {"endpoint": "http://u/v1", "model": "m"},
            "storage": {"existingClaim": "c"}
        }
    }))?)
}

fn token_of(secret: &Secret) -> Result<String, BoxError> {
    let data = secret.data.as_ref().ok_or("secret data")?;
    let bytes = &data.get(tokens::TOKEN_KEY).ok_or("token key")?.0;
    Ok(String::from_utf8(bytes.clone())?)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn report(name: &str, phase: &str, attempt: u32, seq: u64, event: Event) -> ProgressReport {
    ProgressReport {
        namespace: "team".into(),
        pipeline: name.into(),
        pipeline_uid: format!("uid-{name}"),
        phase: phase.into(),
        attempt,
        seq,
        unix_millis: now_ms(),
        event: Some(event),
    }
}

fn step(step: u64, total: u64) -> Event {
    Event::Step(Step {
        step,
        total_steps: total,
        metrics: [
            ("loss".to_owned(), 0.5),
            ("grad_norm_of_layer_17".to_owned(), 3.0),
        ]
        .into(),
    })
}

fn rates(domain: &str) -> PassRates {
    PassRates {
        domain: domain.into(),
        tasks: 20,
        pass_at1: 0.36,
        pass_at1_unbiased: 0.35,
        pass_at_k: 0.59,
        pass_at_k_unbiased: 0.57,
        pass_hat_k: 0.18,
        average_reward: 0.41,
    }
}

struct Harness {
    grpc: SocketAddr,
    http: SocketAddr,
    store: ProgressStore,
    changed: mpsc::UnboundedReceiver<PipelineKey>,
    leader: watch::Sender<bool>,
    token_a: String,
    token_b: String,
    _stop: oneshot::Sender<()>,
}

async fn start(config: ServiceConfig) -> Result<Harness, BoxError> {
    let (a, b) = (pipeline("a")?, pipeline("b")?);
    let (secret_a, secret_b) = (tokens::build_secret(&a)?, tokens::build_secret(&b)?);
    let (token_a, token_b) = (token_of(&secret_a)?, token_of(&secret_b)?);
    let registry = TokenRegistry::from_secrets([secret_a, secret_b]);

    let metrics = Metrics::new()?;
    let (store, changed) = ProgressStore::new();
    let store = store.with_metrics(metrics.clone());
    let (leader, leader_rx) = watch::channel(true);
    let service = ProgressService::new(store.clone(), registry, metrics.clone(), leader_rx, config);

    let (stop, stopped) = oneshot::channel::<()>();
    let stopped = async move {
        let _ = stopped.await;
    };
    let grpc_listener = TcpListener::bind("127.0.0.1:0").await?;
    let grpc = grpc_listener.local_addr()?;
    let http_listener = TcpListener::bind("127.0.0.1:0").await?;
    let http = http_listener.local_addr()?;
    let (ready_tx, ready) = watch::channel(true);
    let (http_stop_tx, http_stop) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = service.serve_on(grpc_listener, stopped).await;
        let _ = http_stop_tx.send(());
        drop(ready_tx);
    });
    tokio::spawn(http::serve_on(
        http_listener,
        HttpState { metrics, ready },
        async move {
            let _ = http_stop.await;
        },
    ));
    Ok(Harness {
        grpc,
        http,
        store,
        changed,
        leader,
        token_a,
        token_b,
        _stop: stop,
    })
}

async fn send(
    addr: SocketAddr,
    token: Option<&str>,
    reports: Vec<ProgressReport>,
) -> Result<Result<ReportAck, Status>, BoxError> {
    let mut client = ProgressClient::connect(format!("http://{addr}")).await?;
    let mut request = Request::new(tokio_stream::iter(reports));
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse()?);
    }
    Ok(client.report(request).await.map(|r| r.into_inner()))
}

async fn http_get(addr: SocketAddr, path: &str) -> Result<String, BoxError> {
    let mut stream = TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: operator\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await?;
    Ok(text)
}

#[tokio::test]
async fn reports_are_authorized_validated_merged_and_counted() -> TestResult {
    let mut h = start(ServiceConfig::default()).await?;
    let results = Results {
        split: "test".into(),
        k: 4,
        samples_per_task: 4,
        overall: Some(rates("")),
        domains: vec![rates("airline"), rates("retail")],
    };
    let reports = vec![
        report("a", "sft", 1, 1, step(1, 10)),
        report("a", "sft", 1, 2, step(11, 10)), // bad: beyond total
        report("a", "sft", 2, 1, step(2, 10)),  // the retry
        report("a", "sft", 1, 3, step(3, 10)),  // stale attempt
        report("a", "sft", 2, 1, step(2, 10)),  // repeated
        report(
            "a",
            "sft",
            2,
            2,
            Event::Checkpoint(Checkpoint {
                step: 10,
                path: "sft/final".into(),
                r#final: true,
            }),
        ),
        report(
            "a",
            "sft",
            2,
            3,
            Event::Checkpoint(Checkpoint {
                step: 10,
                path: "../../etc".into(),
                r#final: true,
            }),
        ), // bad path
        report("a", "eval", 1, 1, Event::Results(results)),
    ];
    let ack = send(h.grpc, Some(&h.token_a), reports).await??;
    assert_eq!((ack.accepted, ack.rejected), (4, 4));

    let key_a = PipelineKey {
        namespace: "team".into(),
        name: "a".into(),
        uid: "uid-a".into(),
    };
    assert_eq!(h.changed.recv().await, Some(key_a.clone()));
    let snap = h.store.snapshot(&key_a).ok_or("a's progress")?;
    let sft = snap.phase(PhaseName::Sft).ok_or("sft")?;
    assert_eq!((sft.attempt, sft.last_seq, sft.step), (2, 2, 2));
    assert_eq!(
        sft.final_checkpoint().map(|c| c.path.as_str()),
        Some("sft/final")
    );
    let eval = snap.phase(PhaseName::Eval).ok_or("eval")?;
    assert_eq!(eval.results.as_ref().map(|r| r.domains.len()), Some(2));

    // b's token does not open a; a missing or made-up token opens nothing.
    for token in [Some(h.token_b.as_str()), None, Some("made-up")] {
        let refused = send(h.grpc, token, vec![report("a", "sft", 2, 9, step(9, 10))]).await?;
        assert_eq!(
            refused.map_err(|s| s.code()),
            Err(Code::Unauthenticated),
            "{token:?}"
        );
    }
    // b's own report goes through.
    let ack = send(
        h.grpc,
        Some(&h.token_b),
        vec![report("b", "sft", 1, 1, step(1, 5))],
    )
    .await??;
    assert_eq!((ack.accepted, ack.rejected), (1, 0));
    // Nothing of the refused reports reached a.
    let sft = h
        .store
        .snapshot(&key_a)
        .and_then(|s| s.phase(PhaseName::Sft).cloned());
    assert_eq!(sft.map(|p| p.step), Some(2));

    // A replica that is not the leader sends workers elsewhere.
    h.leader.send(false)?;
    let refused = send(
        h.grpc,
        Some(&h.token_a),
        vec![report("a", "sft", 2, 9, step(9, 10))],
    )
    .await?;
    assert_eq!(refused.map_err(|s| s.code()), Err(Code::Unavailable));
    h.leader.send(true)?;

    // An oversized message ends its call, and the server goes on.
    let huge = Event::Finished(Finished {
        succeeded: false,
        message: "x".repeat(100 * 1024),
    });
    let refused = send(
        h.grpc,
        Some(&h.token_a),
        vec![report("a", "sft", 2, 10, huge)],
    )
    .await?;
    assert!(refused.is_err());
    let ack = send(
        h.grpc,
        Some(&h.token_a),
        vec![report("a", "sft", 2, 11, step(5, 10))],
    )
    .await??;
    assert_eq!(ack.accepted, 1);

    let text = http_get(h.http, "/metrics").await?;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    for needle in [
        "tau2_operator_progress_reports_accepted_total 6",
        "tau2_operator_progress_reports_rejected_total{reason=\"bad_step\"} 1",
        "tau2_operator_progress_reports_rejected_total{reason=\"stale_attempt\"} 1",
        "tau2_operator_progress_reports_rejected_total{reason=\"old_sequence\"} 1",
        "tau2_operator_progress_reports_rejected_total{reason=\"bad_checkpoint_path\"} 1",
        "tau2_operator_progress_reports_rejected_total{reason=\"token_mismatch\"} 2",
        "tau2_operator_progress_reports_rejected_total{reason=\"missing_token\"} 1",
        "tau2_operator_progress_reports_rejected_total{reason=\"not_leader\"} 1",
        "tau2_operator_progress_streams 0",
        "tau2_pipeline_step{namespace=\"team\",phase=\"sft\",pipeline=\"a\"} 5",
        "tau2_pipeline_attempt{namespace=\"team\",phase=\"sft\",pipeline=\"a\"} 2",
        "tau2_pipeline_loss{namespace=\"team\",phase=\"sft\",pipeline=\"b\"} 0.5",
        "tau2_pipeline_pass_at_k{domain=\"airline\",namespace=\"team\",pipeline=\"a\"} 0.59",
        "tau2_pipeline_pass_at_1{domain=\"all\",namespace=\"team\",pipeline=\"a\"} 0.36",
    ] {
        assert!(text.contains(needle), "{needle} missing from\n{text}");
    }
    assert!(
        !text.contains("grad_norm"),
        "unknown worker metrics stay out"
    );

    h.store.forget(&key_a);
    let text = http_get(h.http, "/metrics").await?;
    assert!(!text.contains("pipeline=\"a\""), "forgotten series go");
    assert!(
        http_get(h.http, "/healthz")
            .await?
            .starts_with("HTTP/1.1 200")
    );
    assert!(
        http_get(h.http, "/readyz")
            .await?
            .starts_with("HTTP/1.1 200")
    );
    Ok(())
}

#[tokio::test]
async fn streams_beyond_the_limit_are_refused() -> TestResult {
    let h = start(ServiceConfig {
        max_streams: 1,
        ..ServiceConfig::default()
    })
    .await?;
    // Hold one stream open after its first report.
    let (tx, rx) = mpsc::channel(4);
    tx.send(report("a", "sft", 1, 1, step(1, 10))).await?;
    let mut client = ProgressClient::connect(format!("http://{}", h.grpc)).await?;
    let mut request = Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {}", h.token_a).parse()?);
    let held = tokio::spawn(async move { client.report(request).await });
    let key_a = PipelineKey {
        namespace: "team".into(),
        name: "a".into(),
        uid: "uid-a".into(),
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while h.store.keys().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "first stream not served"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let second = send(
        h.grpc,
        Some(&h.token_b),
        vec![report("b", "sft", 1, 1, step(1, 5))],
    )
    .await?;
    assert_eq!(second.map_err(|s| s.code()), Err(Code::ResourceExhausted));
    drop(tx);
    let ack = held.await??.into_inner();
    assert_eq!((ack.accepted, ack.rejected), (1, 0));
    assert!(h.store.snapshot(&key_a).is_some());
    // The permit is back.
    let ack = send(
        h.grpc,
        Some(&h.token_b),
        vec![report("b", "sft", 1, 1, step(1, 5))],
    )
    .await??;
    assert_eq!(ack.accepted, 1);
    Ok(())
}
