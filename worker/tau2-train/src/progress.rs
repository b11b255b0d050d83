//! Progress reports to the operator, and the local record of them.
//!
//! Training is synchronous (libtorch), so the gRPC client runs on its own
//! thread with a single-threaded tokio runtime. The trainer only enqueues:
//! it never waits on the network. Each report gets the next sequence number
//! when it is produced; the sender delivers everything pending, in sequence
//! order, in one short `Report` stream and forgets it once the stream is
//! acknowledged. On failure (endpoint down, connection reset) it retries
//! with exponential backoff; resending is safe because the operator ignores
//! sequence numbers it has already seen. The queue stays bounded: a new
//! step report replaces an undelivered older one (only the latest step
//! matters for the status), while checkpoint, results and finished events
//! are few and never dropped.
//!
//! Every report is also appended to `progress.jsonl` in the output
//! directory, so nothing is lost even if the endpoint never comes back.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use tau2_api::job::PhaseJob;
use tau2_api::progress::progress_client::ProgressClient;
use tau2_api::progress::progress_report::Event;
use tau2_api::progress::{Checkpoint, Finished, ProgressReport, Results, Step};
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

use crate::error::{Result, TrainError};

/// Environment variable with the progress service address (overrides the config).
pub const ENV_ENDPOINT: &str = "TAU2_PROGRESS_ENDPOINT";
/// Environment variable with the pipeline's bearer token (overrides the config's token file).
pub const ENV_TOKEN: &str = "TAU2_PROGRESS_TOKEN";
/// Environment variable with the Job attempt (overrides the config).
pub const ENV_ATTEMPT: &str = "TAU2_ATTEMPT";

/// What a training loop tells the outside world.
pub trait Observer {
    fn step(&mut self, step: u64, total: u64, metrics: &BTreeMap<String, f64>);
    fn checkpoint(&mut self, step: u64, path: &str, is_final: bool);
}

/// Reports nowhere.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Observer for NoProgress {
    fn step(&mut self, _: u64, _: u64, _: &BTreeMap<String, f64>) {}
    fn checkpoint(&mut self, _: u64, _: &str, _: bool) {}
}

/// Who is reporting.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    pub namespace: String,
    pub pipeline: String,
    pub pipeline_uid: String,
    pub phase: String,
    pub attempt: u32,
}

#[derive(Clone, Debug)]
pub struct ReporterConfig {
    pub identity: Identity,
    /// gRPC address (`http://host:port`); `None` keeps reports local.
    pub endpoint: Option<String>,
    pub token: Option<String>,
    /// Local JSON-lines record of every report.
    pub log_path: Option<PathBuf>,
    /// First retry delay; doubles up to `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}

impl ReporterConfig {
    /// From a phase job, with the environment overriding endpoint, token
    /// and attempt (the operator sets them in the pod).
    pub fn from_job(job: &PhaseJob) -> Result<Self> {
        let endpoint = std::env::var(ENV_ENDPOINT)
            .ok()
            .filter(|s| !s.is_empty())
            .or_else(|| job.progress.as_ref().map(|p| p.address.clone()));
        let token = match std::env::var(ENV_TOKEN).ok().filter(|s| !s.is_empty()) {
            Some(t) => Some(t),
            None => match &job.progress {
                Some(p) if endpoint.is_some() => Some(
                    std::fs::read_to_string(&p.token_file)
                        .map_err(|e| TrainError::io(&p.token_file, e))?
                        .trim()
                        .to_string(),
                ),
                _ => None,
            },
        };
        let attempt = match std::env::var(ENV_ATTEMPT) {
            Ok(a) => a
                .trim()
                .parse()
                .map_err(|_| TrainError::Config(format!("{ENV_ATTEMPT}={a:?} is not a number")))?,
            Err(_) => u32::try_from(job.attempt.max(1)).unwrap_or(1),
        };
        Ok(Self {
            identity: Identity {
                namespace: job.pipeline.namespace.clone(),
                pipeline: job.pipeline.name.clone(),
                pipeline_uid: job.pipeline.uid.clone(),
                phase: job.phase().as_str().to_string(),
                attempt,
            },
            endpoint,
            token,
            log_path: Some(job.output_dir.join("progress.jsonl")),
            min_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
        })
    }

    pub fn local(identity: Identity, log_path: Option<PathBuf>) -> Self {
        Self {
            identity,
            endpoint: None,
            token: None,
            log_path,
            min_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
        }
    }
}

#[derive(Default)]
struct Queue {
    pending: BTreeMap<u64, ProgressReport>,
    /// Sequence number of the undelivered step report, if any.
    step_seq: Option<u64>,
    closed: bool,
    /// Give up delivering (close deadline passed).
    abandon: bool,
    delivered: u64,
    failures: u64,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding the lock leaves plain data behind; keep going.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// How delivery went when the reporter closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub delivered: u64,
    /// Reports not delivered (they are in the local log).
    pub undelivered: usize,
    pub failed_attempts: u64,
}

/// Sends reports in the background; see the module docs.
pub struct Reporter {
    identity: Identity,
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
    seq: u64,
    log: Option<(PathBuf, File)>,
}

impl std::fmt::Debug for Reporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reporter")
            .field("identity", &self.identity)
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

fn unix_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Reporter {
    pub fn start(cfg: ReporterConfig) -> Result<Self> {
        let log = match &cfg.log_path {
            Some(path) => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
                }
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| TrainError::io(path, e))?;
                Some((path.clone(), f))
            }
            None => None,
        };
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
        });
        let thread = match cfg.endpoint.clone() {
            Some(endpoint) => {
                let shared = shared.clone();
                let token = cfg.token.clone();
                let (lo, hi) = (cfg.min_backoff, cfg.max_backoff);
                Some(
                    std::thread::Builder::new()
                        .name("progress".into())
                        .spawn(move || sender(shared, endpoint, token, lo, hi))
                        .map_err(|e| TrainError::io("progress thread", e))?,
                )
            }
            None => None,
        };
        Ok(Self {
            identity: cfg.identity,
            shared,
            thread,
            seq: 0,
            log,
        })
    }

    fn emit(&mut self, event: Event, local: serde_json::Value) {
        self.seq += 1;
        let report = ProgressReport {
            namespace: self.identity.namespace.clone(),
            pipeline: self.identity.pipeline.clone(),
            pipeline_uid: self.identity.pipeline_uid.clone(),
            phase: self.identity.phase.clone(),
            attempt: self.identity.attempt,
            seq: self.seq,
            unix_millis: unix_millis(),
            event: Some(event),
        };
        if let Some((path, f)) = &mut self.log {
            let line = json!({"seq": report.seq, "unixMillis": report.unix_millis,
                              "phase": report.phase, "attempt": report.attempt, "event": local});
            if let Err(e) = writeln!(f, "{line}").and_then(|_| f.flush()) {
                tracing::warn!(path = %path.display(), error = %e, "cannot append to the progress log");
            }
        }
        if self.thread.is_none() {
            return;
        }
        let is_step = matches!(report.event, Some(Event::Step(_)));
        let mut q = self.shared.lock();
        if is_step && let Some(old) = q.step_seq.take() {
            q.pending.remove(&old);
        }
        if is_step {
            q.step_seq = Some(report.seq);
        }
        q.pending.insert(report.seq, report);
        drop(q);
        self.shared.wake.notify_all();
    }

    pub fn results(&mut self, results: Results) {
        let local = json!({"type": "results", "split": results.split, "k": results.k,
                           "samplesPerTask": results.samples_per_task});
        self.emit(Event::Results(results), local);
    }

    pub fn finished(&mut self, succeeded: bool, message: &str) {
        let local = json!({"type": "finished", "succeeded": succeeded, "message": message});
        self.emit(
            Event::Finished(Finished {
                succeeded,
                message: message.to_string(),
            }),
            local,
        );
    }

    /// Reports still waiting for delivery.
    pub fn pending(&self) -> usize {
        self.shared.lock().pending.len()
    }

    /// Waits up to `timeout` for pending reports to be delivered, then stops
    /// the sender.
    pub fn close(mut self, timeout: Duration) -> Delivery {
        self.shutdown(timeout)
    }

    fn shutdown(&mut self, timeout: Duration) -> Delivery {
        let deadline = Instant::now() + timeout;
        {
            let mut q = self.shared.lock();
            q.closed = true;
            self.shared.wake.notify_all();
            while !q.pending.is_empty() && self.thread.is_some() {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                q = self
                    .shared
                    .wake
                    .wait_timeout(q, deadline - now)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
            q.abandon = true;
        }
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let q = self.shared.lock();
        Delivery {
            delivered: q.delivered,
            undelivered: q.pending.len(),
            failed_attempts: q.failures,
        }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.shutdown(Duration::ZERO);
        }
    }
}

impl Observer for Reporter {
    fn step(&mut self, step: u64, total: u64, metrics: &BTreeMap<String, f64>) {
        let clean: HashMap<String, f64> = metrics
            .iter()
            .filter(|(_, v)| v.is_finite())
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        let local = json!({"type": "step", "step": step, "totalSteps": total, "metrics": clean});
        self.emit(
            Event::Step(Step {
                step,
                total_steps: total,
                metrics: clean,
            }),
            local,
        );
    }

    fn checkpoint(&mut self, step: u64, path: &str, is_final: bool) {
        let local = json!({"type": "checkpoint", "step": step, "path": path, "final": is_final});
        self.emit(
            Event::Checkpoint(Checkpoint {
                step,
                path: path.to_string(),
                r#final: is_final,
            }),
            local,
        );
    }
}

/// The background sender: deliver, back off on failure, stop when closed
/// and drained (or abandoned).
fn sender(
    shared: Arc<Shared>,
    endpoint: String,
    token: Option<String>,
    min_backoff: Duration,
    max_backoff: Duration,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "progress: cannot start a runtime; reports stay local");
            return;
        }
    };
    let auth = token.and_then(|t| MetadataValue::try_from(format!("Bearer {t}")).ok());
    let mut client: Option<ProgressClient<Channel>> = None;
    let mut backoff = min_backoff;
    loop {
        let batch: Vec<ProgressReport> = {
            let mut q = shared.lock();
            while q.pending.is_empty() && !q.closed && !q.abandon {
                q = shared.wake.wait(q).unwrap_or_else(|e| e.into_inner());
            }
            if q.abandon || (q.closed && q.pending.is_empty()) {
                return;
            }
            q.pending.values().cloned().collect()
        };
        let result = rt.block_on(deliver(
            &mut client,
            &endpoint,
            auth.as_ref(),
            batch.clone(),
        ));
        let mut q = shared.lock();
        match result {
            Ok(()) => {
                for r in &batch {
                    if q.pending.remove(&r.seq).is_some() {
                        q.delivered += 1;
                    }
                    if q.step_seq == Some(r.seq) {
                        q.step_seq = None;
                    }
                }
                backoff = min_backoff;
                drop(q);
                shared.wake.notify_all();
            }
            Err(e) => {
                q.failures += 1;
                tracing::debug!(error = %e, ?backoff, "progress: delivery failed; retrying");
                client = None;
                // Sleep, but wake at once if the reporter gives up.
                let deadline = Instant::now() + backoff;
                while !q.abandon {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    q = shared
                        .wake
                        .wait_timeout(q, deadline - now)
                        .map(|(g, _)| g)
                        .unwrap_or_else(|e| e.into_inner().0);
                }
                backoff = (backoff * 2).min(max_backoff);
            }
        }
    }
}

async fn deliver(
    client: &mut Option<ProgressClient<Channel>>,
    endpoint: &str,
    auth: Option<&MetadataValue<tonic::metadata::Ascii>>,
    batch: Vec<ProgressReport>,
) -> std::result::Result<(), String> {
    if client.is_none() {
        let ep = tonic::transport::Endpoint::from_shared(endpoint.to_string())
            .map_err(|e| e.to_string())?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30));
        *client = Some(ProgressClient::new(
            ep.connect().await.map_err(|e| e.to_string())?,
        ));
    }
    let Some(c) = client.as_mut() else {
        return Err("no client".into());
    };
    let mut request = tonic::Request::new(tokio_stream::iter(batch));
    if let Some(auth) = auth {
        request.metadata_mut().insert("authorization", auth.clone());
    }
    let ack = c.report(request).await.map_err(|s| s.to_string())?;
    let ack = ack.into_inner();
    if ack.rejected > 0 {
        // Refused on purpose (stale attempt, ...); resending would not help.
        tracing::warn!(
            rejected = ack.rejected,
            "progress: the operator rejected reports"
        );
    }
    Ok(())
}

/// Writes a JSON file atomically (temp file, fsync, rename).
pub fn write_json_atomic(path: &Path, value: &serde_json::Value) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    let mut text = serde_json::to_vec_pretty(value).map_err(|source| TrainError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    text.push(b'\n');
    let mut f = File::create(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
    f.write_all(&text).map_err(|e| TrainError::io(&tmp, e))?;
    f.sync_all().map_err(|e| TrainError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| TrainError::io(path, e))?;
    if let Some(dir) = path.parent() {
        let _ = File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}
