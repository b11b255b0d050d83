//! The gRPC `Progress` service: workers stream their reports here.
//!
//! Each call must carry `authorization: Bearer <token>`; every report in the
//! stream is authorized against the pipeline it names ([`crate::tokens`]),
//! then validated and merged into the [`ProgressStore`]. A report that fails
//! validation, or a stale or repeated one, is counted as rejected and the
//! stream goes on; the reply counts accepted and rejected reports. A report
//! with the wrong token ends the call with `UNAUTHENTICATED` (the client
//! learns nothing more; the log and metrics say why).
//!
//! High availability: every replica serves this port, but only the leader
//! keeps the store the reconciler writes status from. A replica that is not
//! the leader (or stops being it mid-stream) answers `UNAVAILABLE` ("not the
//! leader"), which gRPC clients treat as retryable: the worker reconnects (a
//! new connection, so the Service may route it elsewhere) with backoff and
//! re-sends from its oldest unacknowledged report; the new leader's empty store
//! accepts them, repeats are ignored by sequence number. Routing the Service
//! to the leader only (a label the leader sets on its pod) avoids the retries.
//!
//! Limits: messages over [`ServiceConfig::max_message_bytes`] end the call
//! (`OUT_OF_RANGE`/`RESOURCE_EXHAUSTED` from tonic), more than
//! [`ServiceConfig::max_streams`] open calls get `RESOURCE_EXHAUSTED`, and
//! HTTP/2 keep-alives close connections of vanished workers.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tau2_api::progress::progress_server::{Progress, ProgressServer};
use tau2_api::progress::{ProgressReport, ReportAck};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status, Streaming};

use super::ProgressStore;
use crate::metrics::Metrics;
use crate::tokens::{self, TokenRegistry};

/// The service's limits.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// Largest accepted report, encoded.
    pub max_message_bytes: usize,
    /// Progress calls open at once (one per running phase attempt is normal).
    pub max_streams: usize,
    /// How long a call waits for the token Secrets' first list after startup.
    pub registry_wait: Duration,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            max_message_bytes: 64 * 1024,
            max_streams: 4096,
            registry_wait: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// The `Progress` service; clone it freely (all state is shared).
#[derive(Clone)]
pub struct ProgressService {
    store: ProgressStore,
    tokens: TokenRegistry,
    metrics: Metrics,
    leader: watch::Receiver<bool>,
    streams: Arc<Semaphore>,
    config: ServiceConfig,
}

impl ProgressService {
    /// `leader` is true while this replica holds the leader lease.
    pub fn new(
        store: ProgressStore,
        tokens: TokenRegistry,
        metrics: Metrics,
        leader: watch::Receiver<bool>,
        config: ServiceConfig,
    ) -> ProgressService {
        ProgressService {
            store,
            tokens,
            metrics,
            leader,
            streams: Arc::new(Semaphore::new(config.max_streams)),
            config,
        }
    }

    /// The tonic service with the message size limit applied.
    pub fn into_server(self) -> ProgressServer<ProgressService> {
        let max = self.config.max_message_bytes;
        ProgressServer::new(self)
            .max_decoding_message_size(max)
            .max_encoding_message_size(max)
    }

    /// Serves on `addr` until `shutdown` completes.
    pub async fn serve(
        self,
        addr: SocketAddr,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServiceError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServiceError::Bind { addr, source })?;
        self.serve_on(listener, shutdown).await
    }

    /// Serves on a bound listener (e.g. port 0 in tests) until `shutdown` completes.
    pub async fn serve_on(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServiceError> {
        tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            // Per connection; a worker needs one stream.
            .max_concurrent_streams(Some(16))
            .add_service(self.into_server())
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
            .await?;
        Ok(())
    }

    fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    fn not_leader(&self) -> Status {
        self.metrics.report_rejected("not_leader");
        Status::unavailable("not the leader")
    }
}

fn unauthenticated() -> Status {
    Status::unauthenticated("a valid progress token of the reported pipeline is required")
}

#[tonic::async_trait]
impl Progress for ProgressService {
    async fn report(
        &self,
        request: Request<Streaming<ProgressReport>>,
    ) -> Result<Response<ReportAck>, Status> {
        if !self.is_leader() {
            return Err(self.not_leader());
        }
        let Ok(_permit) = self.streams.clone().try_acquire_owned() else {
            return Err(Status::resource_exhausted("too many progress streams"));
        };
        let _open = self.metrics.stream_opened();

        // Non-ASCII header values count as malformed.
        let authorization = match request.metadata().get("authorization") {
            Some(value) => Some(value.to_str().map_err(|_| {
                self.metrics
                    .report_rejected(tokens::AuthError::MalformedHeader.reason());
                unauthenticated()
            })?),
            None => None,
        };
        // Refuse a call without a usable header before reading anything.
        if let Err(error) = tokens::parse_bearer(authorization) {
            tracing::info!(%error, "progress call refused");
            self.metrics.report_rejected(error.reason());
            return Err(unauthenticated());
        }
        let authorization = authorization.map(str::to_owned);
        if !self.tokens.ready_within(self.config.registry_wait).await {
            return Err(Status::unavailable("progress tokens are not loaded yet"));
        }

        let mut stream = request.into_inner();
        let mut ack = ReportAck::default();
        while let Some(report) = stream.message().await? {
            if !self.is_leader() {
                return Err(self.not_leader());
            }
            let key = match tokens::authorize(&self.tokens, authorization.as_deref(), &report) {
                Ok(key) => key,
                Err(error) => {
                    tracing::warn!(%error, namespace = %report.namespace, pipeline = %report.pipeline,
                        "progress report refused");
                    self.metrics.report_rejected(error.reason());
                    return Err(unauthenticated());
                }
            };
            match self.store.apply(&key, &report) {
                Ok(change) => {
                    ack.accepted += 1;
                    self.metrics.report_accepted(change.dropped_metrics);
                }
                Err(rejection) => {
                    tracing::debug!(%key, %rejection, seq = report.seq, "progress report rejected");
                    ack.rejected += 1;
                    self.metrics.report_rejected(rejection.reason());
                }
            }
        }
        Ok(Response::new(ack))
    }
}
