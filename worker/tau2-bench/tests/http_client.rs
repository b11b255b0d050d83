//! The OpenAI-compatible client against a local HTTP server that behaves
//! like vLLM/OpenAI: tool calls, transient failures, refused credentials.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};
use tau2_bench::chat::{ChatError, ChatMessage, ChatModel, Sampling};
use tau2_bench::http::{EndpointConfig, OpenAiClient};

#[derive(Clone, Default)]
struct Server {
    calls: Arc<AtomicUsize>,
    last_body: Arc<std::sync::Mutex<Value>>,
}

/// Fails twice with 503, then answers with a tool call; rejects a wrong key.
async fn completions(
    State(s): State<Server>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let n = s.calls.fetch_add(1, Ordering::SeqCst);
    if let Ok(mut last) = s.last_body.lock() {
        *last = body.clone();
    }
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if auth != "Bearer good-key" {
        return (
            StatusCode::UNAUTHORIZED,
            Json(
                json!({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}),
            ),
        );
    }
    if body["model"] == "flaky" && n < 2 {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": {"message": "overloaded"}})),
        );
    }
    if body["model"] == "broken-args" {
        return (
            StatusCode::OK,
            Json(
                json!({"choices": [{"message": {"role": "assistant", "content": null,
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "toggle_airplane_mode", "arguments": "{not json"}}]}}]}),
            ),
        );
    }
    (
        StatusCode::OK,
        Json(json!({
            "choices": [{"message": {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_7", "type": "function", "function": {"name": "check_status_bar", "arguments": "{\"verbose\": true}"}}
            ]}}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 3}
        })),
    )
}

async fn serve() -> (String, Server) {
    let state = Server::default();
    let app = axum::Router::new()
        .route("/v1/chat/completions", post(completions))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/v1"), state)
}

fn client(base: &str, model: &str, key: &str) -> OpenAiClient {
    let mut cfg = EndpointConfig::new(base, model);
    cfg.api_key = Some(key.into());
    cfg.initial_backoff = Duration::from_millis(10);
    cfg.max_retries = 3;
    OpenAiClient::new(cfg).expect("client builds")
}

#[tokio::test]
async fn retries_transient_failures_and_parses_tool_calls() {
    let (base, server) = serve().await;
    let tools = vec![
        json!({"type": "function", "function": {"name": "check_status_bar", "parameters": {}}}),
    ];
    let reply = client(&base, "flaky", "good-key")
        .complete(
            &[
                ChatMessage::System("s".into()),
                ChatMessage::User("hi".into()),
            ],
            &tools,
            &Sampling {
                temperature: 0.7,
                ..Default::default()
            },
        )
        .await
        .expect("succeeds on the third attempt");
    assert_eq!(server.calls.load(Ordering::SeqCst), 3);
    assert_eq!(reply.tool_calls.len(), 1);
    assert_eq!(reply.tool_calls[0].name, "check_status_bar");
    assert_eq!(
        reply.tool_calls[0].arguments.get("verbose"),
        Some(&json!(true))
    );
    let body = server
        .last_body
        .lock()
        .map(|b| b.clone())
        .unwrap_or_default();
    assert_eq!(body["temperature"], json!(0.7));
    assert_eq!(
        body["messages"][1],
        json!({"role": "user", "content": "hi"})
    );
    assert_eq!(body["tools"], Value::Array(tools));
}

#[tokio::test]
async fn bad_credentials_fail_at_once_with_the_servers_message() {
    let (base, server) = serve().await;
    let err = client(&base, "any", "wrong")
        .complete(&[ChatMessage::User("hi".into())], &[], &Sampling::default())
        .await;
    match err {
        Err(ChatError::Auth(msg)) => assert!(msg.contains("Incorrect API key provided"), "{msg}"),
        other => panic!("expected an auth error, got {other:?}"),
    }
    assert_eq!(server.calls.load(Ordering::SeqCst), 1, "no retries on 401");
}

#[tokio::test]
async fn malformed_tool_arguments_are_an_error_not_a_panic() {
    let (base, _server) = serve().await;
    let err = client(&base, "broken-args", "good-key")
        .complete(&[ChatMessage::User("hi".into())], &[], &Sampling::default())
        .await;
    assert!(
        matches!(err, Err(ChatError::Malformed(ref m)) if m.contains("toggle_airplane_mode")),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_endpoint_that_stays_down_reports_the_attempts() {
    let err = client("http://127.0.0.1:9/v1", "any", "good-key")
        .complete(&[ChatMessage::User("hi".into())], &[], &Sampling::default())
        .await;
    assert!(
        matches!(err, Err(ChatError::Unavailable { attempts: 4, .. })),
        "{err:?}"
    );
}
