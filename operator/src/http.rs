//! The operator's plain HTTP endpoints: `/metrics` for Prometheus, `/healthz`
//! (the process serves requests: liveness) and `/readyz` (the controller's
//! caches are synced and it can reach the API server: readiness).

use std::future::Future;
use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::metrics::Metrics;

/// What the endpoints read.
#[derive(Clone)]
pub struct HttpState {
    pub metrics: Metrics,
    /// Set to true by the controller once its caches are synced.
    pub ready: watch::Receiver<bool>,
}

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("HTTP server: {0}")]
    Serve(std::io::Error),
}

/// The routes, for serving or for testing without a socket.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

/// Serves on `addr` until `shutdown` completes.
pub async fn serve(
    addr: SocketAddr,
    state: HttpState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), HttpError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| HttpError::Bind { addr, source })?;
    serve_on(listener, state, shutdown).await
}

/// Serves on a bound listener (e.g. port 0 in tests) until `shutdown` completes.
pub async fn serve_on(
    listener: TcpListener,
    state: HttpState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), HttpError> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(HttpError::Serve)
}

async fn metrics(State(state): State<HttpState>) -> Response {
    match state.metrics.encode() {
        Ok(text) => ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], text).into_response(),
        Err(error) => {
            tracing::error!(%error, "encoding metrics");
            (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response()
        }
    }
}

async fn readyz(State(state): State<HttpState>) -> (StatusCode, &'static str) {
    if *state.ready.borrow() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced yet")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    async fn get(
        router: Router,
        path: &str,
    ) -> Result<(StatusCode, String), Box<dyn std::error::Error>> {
        let response = router
            .oneshot(Request::get(path).body(Body::empty())?)
            .await?;
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await?;
        Ok((status, String::from_utf8(body.to_vec())?))
    }

    #[tokio::test]
    async fn endpoints_answer() -> TestResult {
        let metrics = Metrics::new()?;
        metrics.set_leader(true);
        let (ready_tx, ready) = watch::channel(false);
        let router = router(HttpState { metrics, ready });
        assert_eq!(get(router.clone(), "/healthz").await?.0, StatusCode::OK);
        assert_eq!(
            get(router.clone(), "/readyz").await?.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        ready_tx.send(true)?;
        assert_eq!(get(router.clone(), "/readyz").await?.0, StatusCode::OK);
        let (status, text) = get(router, "/metrics").await?;
        assert_eq!(status, StatusCode::OK);
        assert!(text.contains("tau2_operator_leader 1"), "{text}");
        Ok(())
    }
}
