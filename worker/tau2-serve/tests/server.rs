//! The server as clients see it: a tiny random Qwen3 with the real Qwen3
//! tokenizer (`TAU2_QWEN3_TOKENIZER_DIR`, fetched by tests/setup.sh), served
//! on a local port, called over HTTP, and by the official `openai` Python
//! package (`TAU2_OPENAI_PYTHON`, from tests/reference/openai/setup.sh).

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Value, json};
use tau2_chat::ChatTokenizer;
use tau2_model::init::{ChatFiles, Size, write_chat_model};
use tau2_model::qwen3::Qwen3;
use tau2_serve::engine::Engine;
use tau2_serve::server::{ServerState, serve};

const NEEDS_TOKENIZER: &str = "needs TAU2_QWEN3_TOKENIZER_DIR: run tests/run.sh";

struct Running {
    base: String,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// Serves a fresh tiny model as `tiny` with the given context length.
async fn start(context_len: usize) -> Running {
    tch::set_num_threads(1);
    let tokenizer_dir =
        PathBuf::from(std::env::var("TAU2_QWEN3_TOKENIZER_DIR").expect(NEEDS_TOKENIZER));
    let dir = tempfile::tempdir().expect("temp dir");
    let tokenizer = ChatTokenizer::from_dir(&tokenizer_dir).expect("tokenizer");
    let stops: Vec<i64> = ["<|im_end|>", "<|endoftext|>"]
        .iter()
        .filter_map(|t| tokenizer.token_to_id(t))
        .map(i64::from)
        .collect();
    let files = ChatFiles {
        tokenizer_dir: &tokenizer_dir,
        chat_template: tau2_chat::QWEN3_INSTRUCT_2507_TEMPLATE,
        stop_ids: &stops,
        vocab_size: tokenizer.vocab_size(),
    };
    write_chat_model(dir.path(), Size::Tiny, true, 7, &files).expect("model");
    let model = Qwen3::load(dir.path(), tch::Device::Cpu, None).expect("loads");
    let state = Arc::new(ServerState {
        engine: Engine::start(model, 8),
        tokenizer: ChatTokenizer::from_dir(dir.path()).expect("model tokenizer"),
        model_name: "tiny".into(),
        context_len,
        default_max_tokens: 16,
        created: 1,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}/v1", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, state, async {
        let _ = stopped.await;
    }));
    Running {
        base,
        _dir: dir,
        _stop: stop,
    }
}

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

async fn post(base: &str, body: &str) -> (u16, Value) {
    let r = client()
        .post(format!("{base}/chat/completions"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    (status, r.json().await.expect("JSON body"))
}

fn hello(extra: Value) -> String {
    let mut body = json!({"model": "tiny", "messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 6});
    if let (Some(b), Value::Object(e)) = (body.as_object_mut(), extra) {
        b.extend(e);
    }
    body.to_string()
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs TAU2_QWEN3_TOKENIZER_DIR: run tests/run.sh"]
async fn completions_are_openai_shaped_and_seeded_ones_repeat() {
    let s = start(4096).await;
    let models: Value = client()
        .get(format!("{}/models", s.base))
        .send()
        .await
        .expect("models")
        .json()
        .await
        .expect("JSON");
    assert_eq!(models["data"][0]["id"], "tiny");

    let (status, a) = post(&s.base, &hello(json!({"seed": 11}))).await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["object"], "chat.completion");
    assert_eq!(a["choices"][0]["message"]["role"], "assistant");
    let finish = a["choices"][0]["finish_reason"].as_str().expect("finish");
    assert!(["length", "stop"].contains(&finish), "{a}");
    let completion = a["usage"]["completion_tokens"].as_u64().expect("usage");
    assert!((1..=6).contains(&completion), "{a}");
    assert_eq!(
        a["usage"]["total_tokens"].as_u64(),
        Some(completion + a["usage"]["prompt_tokens"].as_u64().expect("prompt"))
    );
    let (_, b) = post(&s.base, &hello(json!({"seed": 11}))).await;
    assert_eq!(a["choices"], b["choices"], "same seed, same completion");

    // A greedy request ignores seeds and batching: always the same.
    let (_, g1) = post(&s.base, &hello(json!({"temperature": 0}))).await;
    let (_, g2) = post(&s.base, &hello(json!({"temperature": 0, "seed": 5}))).await;
    assert_eq!(g1["choices"][0]["message"], g2["choices"][0]["message"]);
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs TAU2_QWEN3_TOKENIZER_DIR: run tests/run.sh"]
async fn choices_and_concurrent_requests_are_all_answered() {
    let s = start(4096).await;
    let (status, r) = post(&s.base, &hello(json!({"n": 3}))).await;
    assert_eq!(status, 200, "{r}");
    let choices = r["choices"].as_array().expect("choices");
    assert_eq!(choices.len(), 3);
    assert_eq!(
        choices
            .iter()
            .map(|c| c["index"].as_u64())
            .collect::<Vec<_>>(),
        [Some(0), Some(1), Some(2)]
    );
    // Concurrent requests share batches in the engine; each gets its answer.
    let requests: Vec<_> = (0..6)
        .map(|i| {
            let base = s.base.clone();
            tokio::spawn(async move { post(&base, &hello(json!({"max_tokens": 2 + i % 3}))).await })
        })
        .collect();
    for (i, r) in requests.into_iter().enumerate() {
        let (status, body) = r.await.expect("joins");
        assert_eq!(status, 200, "{body}");
        let used = body["usage"]["completion_tokens"].as_u64().expect("usage");
        assert!(
            used <= 2 + i as u64 % 3,
            "request {i} asked for at most {} tokens: {body}",
            2 + i % 3
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs TAU2_QWEN3_TOKENIZER_DIR: run tests/run.sh"]
async fn bad_requests_get_openai_error_bodies() {
    let s = start(64).await;
    let cases = [
        ("{not json", 400, None),
        (&*hello(json!({"model": "gpt-9"})), 404, None),
        (&*hello(json!({"temperature": 5})), 400, Some("temperature")),
        (&*hello(json!({"stream": true})), 400, Some("stream")),
        (
            &*hello(json!({"max_tokens": 1000})),
            400,
            Some("max_tokens"),
        ),
        (
            &*hello(json!({"messages": [{"role": "user"}, {"role": "robot", "content": "x"}]})),
            400,
            Some("messages[1]"),
        ),
    ];
    for (body, want, param) in cases {
        let (status, r) = post(&s.base, body).await;
        assert_eq!(status, want, "{body} -> {r}");
        let error = &r["error"];
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{r}"
        );
        assert!(error["type"].is_string(), "{r}");
        assert_eq!(error["param"].as_str(), param, "{body} -> {r}");
    }
    let long = "word ".repeat(100);
    let (status, r) = post(
        &s.base,
        &hello(json!({"messages": [{"role": "user", "content": long}], "max_tokens": null})),
    )
    .await;
    assert_eq!(status, 400, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("context")),
        "{r}"
    );
    for (method, path, want) in [("GET", "/chat/completions", 405), ("GET", "/nothing", 404)] {
        let r = client()
            .request(method.parse().expect("method"), format!("{}{path}", s.base))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status().as_u16(), want);
        let body: Value = r.json().await.expect("an OpenAI error body");
        assert!(body["error"]["message"].is_string(), "{body}");
    }
}

/// The official OpenAI Python client against the server: listing models, a
/// conversation with tools and tool results, several choices, and the
/// client's own error type for a bad request.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs TAU2_QWEN3_TOKENIZER_DIR and TAU2_OPENAI_PYTHON: run tests/run.sh"]
async fn the_openai_python_client_works_against_the_server() {
    let python = std::env::var("TAU2_OPENAI_PYTHON").expect("TAU2_OPENAI_PYTHON: run tests/run.sh");
    let s = start(4096).await;
    let script = r#"
import json, sys, openai
client = openai.OpenAI(base_url=sys.argv[1], api_key="unused", max_retries=0)
out = {"models": [m.id for m in client.models.list().data]}
tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
r = client.chat.completions.create(model="tiny", n=2, max_tokens=5, seed=3, tools=tools, messages=[
    {"role": "system", "content": "You are helpful."},
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function",
        "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
])
out["choices"] = [{"finish": c.finish_reason, "role": c.message.role, "has_content": c.message.content is not None or bool(c.message.tool_calls)} for c in r.choices]
out["usage"] = r.usage.total_tokens
try:
    client.chat.completions.create(model="tiny", temperature=9, messages=[{"role": "user", "content": "x"}])
except openai.BadRequestError as e:
    out["error"] = {"status": e.status_code, "param": e.body.get("param") if isinstance(e.body, dict) else None}
try:
    client.chat.completions.create(model="other", messages=[{"role": "user", "content": "x"}])
except openai.NotFoundError as e:
    out["not_found"] = e.status_code
print(json.dumps(out))
"#;
    let base = s.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .args(["-c", script, &base])
            .output()
            .expect("python runs")
    })
    .await
    .expect("joins");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).expect("JSON from the script");
    assert_eq!(r["models"], json!(["tiny"]));
    let choices = r["choices"].as_array().expect("choices");
    assert_eq!(choices.len(), 2, "{r}");
    for c in choices {
        assert_eq!(c["role"], "assistant");
        assert!(
            ["length", "stop", "tool_calls"].contains(&c["finish"].as_str().unwrap_or_default()),
            "{r}"
        );
    }
    assert!(r["usage"].as_u64().is_some_and(|u| u > 30), "{r}");
    assert_eq!(r["error"], json!({"status": 400, "param": "temperature"}));
    assert_eq!(r["not_found"], 404);
}
