//! `tau2-operator probe --url URL`: a GET that succeeds on HTTP 200. The
//! operator image is distroless (no curl or wget), so the chart's `helm test`
//! pod checks `/readyz` with the operator binary itself. Plain HTTP/1.1 only,
//! which is all the operator serves.

use std::time::Duration;

use axum::http::Uri;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("not a URL: {0}")]
    Url(#[from] axum::http::uri::InvalidUri),
    #[error("only http:// URLs are supported, not {0:?}")]
    Scheme(String),
    #[error("the URL names no host")]
    NoHost,
    #[error("{url}: {source}")]
    Io { url: String, source: std::io::Error },
    #[error("{url}: no answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("{url}: not an HTTP response: {head:?}")]
    Malformed { url: String, head: String },
    #[error("{url}: HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
}

/// GETs `url`; Ok with the body when the status is 200.
pub async fn probe(url: &str, timeout: Duration) -> Result<String, ProbeError> {
    match tokio::time::timeout(timeout, get(url)).await {
        Ok(result) => result,
        Err(_) => Err(ProbeError::Timeout {
            url: url.to_owned(),
            timeout,
        }),
    }
}

async fn get(url: &str) -> Result<String, ProbeError> {
    let uri: Uri = url.parse()?;
    match uri.scheme_str() {
        Some("http") => {}
        other => return Err(ProbeError::Scheme(other.unwrap_or_default().to_owned())),
    }
    let host = uri.host().ok_or(ProbeError::NoHost)?;
    let port = uri.port_u16().unwrap_or(80);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let io = |source| ProbeError::Io {
        url: url.to_owned(),
        source,
    };
    // IPv6 literals come bracketed in URLs but not in socket addresses.
    let mut stream = TcpStream::connect((host.trim_matches(['[', ']']), port))
        .await
        .map_err(io)?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.map_err(io)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.map_err(io)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status_line = head.lines().next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| ProbeError::Malformed {
            url: url.to_owned(),
            head: status_line.to_owned(),
        })?;
    // Bodies here are short ("ok", a reason); chunked framing is not undone.
    let body = body.trim().to_owned();
    if status == 200 {
        Ok(body)
    } else {
        Err(ProbeError::Status {
            url: url.to_owned(),
            status,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::http::StatusCode;
    use axum::routing::get as route;

    async fn serve() -> std::net::SocketAddr {
        let app = Router::new().route("/ok", route(|| async { "ok" })).route(
            "/down",
            route(|| async { (StatusCode::SERVICE_UNAVAILABLE, "not ready") }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let addr = listener.local_addr().expect("an address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    #[tokio::test]
    async fn ok_on_200_and_an_error_naming_the_status_otherwise() {
        let addr = serve().await;
        let t = Duration::from_secs(5);
        assert_eq!(
            probe(&format!("http://{addr}/ok"), t).await.expect("200"),
            "ok"
        );
        let err = probe(&format!("http://{addr}/down"), t)
            .await
            .expect_err("503");
        assert!(err.to_string().ends_with("HTTP 503: not ready"), "{err}");
        let err = probe(&format!("https://{addr}/ok"), t)
            .await
            .expect_err("https");
        assert!(matches!(err, ProbeError::Scheme(_)), "{err}");
    }

    #[tokio::test]
    async fn nothing_listening_is_an_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
        let addr = listener.local_addr().expect("an address");
        drop(listener);
        let err = probe(&format!("http://{addr}/readyz"), Duration::from_secs(5))
            .await
            .expect_err("connection refused");
        assert!(matches!(err, ProbeError::Io { .. }), "{err}");
    }
}
