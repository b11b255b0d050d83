//! `tau2-worker tau2 …` as users run it.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Json;
use axum::routing::post;
use serde_json::{Value, json};

fn worker() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tau2-worker"));
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/tau2");
    c.env("TAU2_DATA_DIR", data);
    c
}

#[test]
fn lists_domains_and_tasks() {
    let out = worker().args(["tau2", "domains"]).output().expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("mock") && l.contains("9 tasks")),
        "{text}"
    );

    let out = worker()
        .args(["tau2", "tasks", "--domain", "mock", "--split", "base"])
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 9, "{text}");
    assert!(text.lines().any(|l| l.starts_with("create_task_1\t")));

    let out = worker()
        .args(["tau2", "tasks", "--domain", "mock", "--split", "test"])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("domain mock has no split test"));
}

#[test]
fn replays_gold_actions_and_writes_rewards() {
    let out_file = std::env::temp_dir().join(format!("tau2-replay-{}.jsonl", std::process::id()));
    let out = worker()
        .args(["tau2", "replay", "--domain", "mock", "--output"])
        .arg(&out_file)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        summary.contains("mock     9 tasks: 8 with reward 1"),
        "{summary}"
    );
    let lines: Vec<Value> = std::fs::read_to_string(&out_file)
        .expect("written")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(lines.len(), 9);
    assert!(
        lines
            .iter()
            .all(|l| l["reward_info"]["reward"] == l["reward"])
    );
}

/// A chat endpoint that plays a polite agent that never uses tools.
async fn agent_endpoint() -> String {
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        post(|Json(body): Json<Value>| async move {
            let system = body["messages"][0]["content"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let has_tools = body["tools"].as_array().is_some_and(|t| !t.is_empty());
            let reply = if system.contains("<policy>") && has_tools {
                "Happy to help."
            } else {
                "?"
            };
            Json(json!({"choices": [{"message": {"role": "assistant", "content": reply}}]}))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/v1")
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_episodes_of_an_endpoint_agent_against_the_scripted_user() {
    let url = agent_endpoint().await;
    let out_file = std::env::temp_dir().join(format!("tau2-run-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&out_file);
    let out = tokio::task::spawn_blocking(move || {
        let mut cmd = worker();
        cmd.args([
            "tau2",
            "run",
            "--domain",
            "mock",
            "--split",
            "base",
            "--trials",
            "2",
            "--agent-model",
            "test",
        ])
        .args(["--agent-endpoint", &url, "--output"])
        .arg(&out_file);
        (cmd.output().expect("runs"), out_file)
    })
    .await
    .expect("joins");
    let (out, out_file) = out;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let episodes: Vec<Value> = std::fs::read_to_string(&out_file)
        .expect("written")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(episodes.len(), 18, "9 tasks x 2 trials");
    for e in &episodes {
        assert!(e.get("error").is_none(), "{e}");
        assert_eq!(e["termination"], "user_stop", "{e}");
        let replies = e["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["content"] == "Happy to help.")
            .count();
        assert!(replies >= 1, "{e}");
    }
    // A polite agent that does nothing solves only the tasks that need nothing.
    let solved = episodes.iter().filter(|e| e["reward"] == 1.0).count();
    assert!(solved < 18, "{solved}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("18 episodes"));
}

/// A judge endpoint that grades every NL assertion `met`, counting its calls.
async fn judge_endpoint(met: bool, calls: Arc<AtomicUsize>) -> String {
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        post(move |Json(body): Json<Value>| async move {
            let prompt = body["messages"][1]["content"].as_str().unwrap_or_default();
            assert!(prompt.contains("expectedOutcomes"), "{prompt}");
            assert_eq!(body["model"], "judge-model");
            calls.fetch_add(1, Ordering::SeqCst);
            let verdict = json!({"results": [{"expectedOutcome": "all of it", "reasoning": "test", "metExpectation": met}]});
            Json(json!({"choices": [{"message": {"role": "assistant", "content": verdict.to_string()}}]}))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/v1")
}

/// `tau2 replay` of the newest retail data, whose rewards include NL assertions.
async fn replay_latest_retail(judge: Option<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        let mut cmd = worker();
        cmd.args([
            "tau2",
            "replay",
            "--data-version",
            "latest",
            "--domain",
            "retail",
            "--judge-model",
            "judge-model",
        ]);
        if let Some(url) = judge {
            cmd.args(["--judge-endpoint", &url]);
        }
        cmd.output().expect("runs")
    })
    .await
    .expect("joins")
}

/// "retail   114 tasks: N with reward 1, ..." -> N.
fn successes(out: &std::process::Output) -> usize {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .split("tasks: ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no summary in {stdout}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn nl_assertions_are_graded_by_the_configured_judge() {
    let without = replay_latest_retail(None).await;
    assert!(!without.status.success());
    let stderr = String::from_utf8_lossy(&without.stderr);
    assert!(stderr.contains("no judge is configured"), "{stderr}");

    let (yes_calls, no_calls) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let yes = replay_latest_retail(Some(judge_endpoint(true, yes_calls.clone()).await)).await;
    let no = replay_latest_retail(Some(judge_endpoint(false, no_calls.clone()).await)).await;
    let (approved, rejected) = (successes(&yes), successes(&no));
    // Only the tasks that have NL assertions ask the judge (40 of 114).
    assert_eq!(yes_calls.load(Ordering::SeqCst), 40);
    assert_eq!(no_calls.load(Ordering::SeqCst), 40);
    assert!(
        approved > rejected && rejected > 0,
        "approved {approved}, rejected {rejected}"
    );
}
