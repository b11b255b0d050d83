//! The progress reporter against a local tonic server: authentication,
//! sequence order, coalesced steps, and delivery after the endpoint was down.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tau2_api::progress::progress_report::Event;
use tau2_api::progress::progress_server::{Progress, ProgressServer};
use tau2_api::progress::{ProgressReport, ReportAck};
use tau2_train::progress::{Identity, Observer, Reporter, ReporterConfig};
use tonic::{Request, Response, Status, Streaming};

#[derive(Clone, Default)]
struct Recorder {
    reports: Arc<Mutex<Vec<ProgressReport>>>,
}

#[tonic::async_trait]
impl Progress for Recorder {
    async fn report(
        &self,
        request: Request<Streaming<ProgressReport>>,
    ) -> Result<Response<ReportAck>, Status> {
        let auth = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if auth.as_deref() != Some("Bearer s3cret") {
            return Err(Status::unauthenticated("bad token"));
        }
        let mut stream = request.into_inner();
        let mut ack = ReportAck::default();
        while let Some(r) = stream.message().await? {
            ack.accepted += 1;
            self.reports.lock().expect("lock").push(r);
        }
        Ok(Response::new(ack))
    }
}

fn serve(rt: &tokio::runtime::Runtime, listener: std::net::TcpListener, rec: Recorder) {
    listener.set_nonblocking(true).expect("nonblocking");
    rt.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let _ = tonic::transport::Server::builder()
            .add_service(ProgressServer::new(rec))
            .serve_with_incoming(incoming)
            .await;
    });
}

fn config(addr: &str, log: std::path::PathBuf) -> ReporterConfig {
    let mut cfg = ReporterConfig::local(
        Identity {
            namespace: "ns".into(),
            pipeline: "p".into(),
            pipeline_uid: "uid".into(),
            phase: "sft".into(),
            attempt: 2,
        },
        Some(log),
    );
    cfg.endpoint = Some(format!("http://{addr}"));
    cfg.token = Some("s3cret".into());
    cfg.min_backoff = Duration::from_millis(50);
    cfg.max_backoff = Duration::from_millis(200);
    cfg
}

#[test]
fn keeps_reporting_while_the_endpoint_is_down_and_delivers_when_it_returns() {
    let rt = tokio::runtime::Runtime::new().expect("rt");
    // Reserve a port, then close it: the endpoint is down at first.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let dir = tempfile::tempdir().expect("tmp");
    let log = dir.path().join("progress.jsonl");
    let mut reporter = Reporter::start(config(&addr, log.clone())).expect("start");
    let metrics = |x: f64| BTreeMap::from([("loss".to_string(), x)]);
    // Training goes on: none of these calls blocks on the network.
    let t0 = std::time::Instant::now();
    for step in 1..=50 {
        reporter.step(step, 100, &metrics(1.0 / step as f64));
        if step == 20 {
            reporter.checkpoint(20, "sft/checkpoints/step-00000020", false);
        }
    }
    assert!(t0.elapsed() < Duration::from_secs(1));
    std::thread::sleep(Duration::from_millis(300));
    // Steps coalesce while undelivered: the checkpoint and the last step remain.
    assert_eq!(reporter.pending(), 2);

    // The endpoint comes up.
    let rec = Recorder::default();
    serve(
        &rt,
        std::net::TcpListener::bind(&addr).expect("rebind"),
        rec.clone(),
    );
    reporter.step(51, 100, &metrics(0.01));
    reporter.checkpoint(100, "sft/final", true);
    reporter.finished(true, "done");
    let delivery = reporter.close(Duration::from_secs(20));
    assert_eq!(delivery.undelivered, 0, "{delivery:?}");
    assert!(delivery.failed_attempts > 0);

    let got = rec.reports.lock().expect("lock").clone();
    let seqs: Vec<u64> = got.iter().map(|r| r.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order: {seqs:?}");
    assert!(got.iter().all(|r| r.namespace == "ns"
        && r.pipeline_uid == "uid"
        && r.attempt == 2
        && r.phase == "sft"));
    let kinds: Vec<String> = got
        .iter()
        .map(|r| match &r.event {
            Some(Event::Step(s)) => format!("step{}", s.step),
            Some(Event::Checkpoint(c)) => {
                format!("ckpt{}{}", c.step, if c.r#final { "f" } else { "" })
            }
            Some(Event::Finished(f)) => format!("finished{}", f.succeeded),
            Some(Event::Results(_)) => "results".into(),
            None => "none".into(),
        })
        .collect();
    assert!(kinds.contains(&"ckpt20".to_string()), "{kinds:?}");
    assert!(kinds.contains(&"ckpt100f".to_string()), "{kinds:?}");
    assert_eq!(
        kinds.last().map(String::as_str),
        Some("finishedtrue"),
        "{kinds:?}"
    );
    // Everything is in the local log, steps included.
    let lines = std::fs::read_to_string(&log).expect("log").lines().count();
    assert_eq!(lines, 54);
}

#[test]
fn a_wrong_token_is_retried_not_fatal_and_reports_stay_local() {
    let rt = tokio::runtime::Runtime::new().expect("rt");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let rec = Recorder::default();
    serve(&rt, listener, rec.clone());
    let dir = tempfile::tempdir().expect("tmp");
    let mut cfg = config(&addr, dir.path().join("progress.jsonl"));
    cfg.token = Some("wrong".into());
    let mut reporter = Reporter::start(cfg).expect("start");
    reporter.finished(false, "boom");
    let delivery = reporter.close(Duration::from_millis(500));
    assert_eq!(delivery.undelivered, 1);
    assert!(rec.reports.lock().expect("lock").is_empty());
}
