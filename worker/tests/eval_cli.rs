//! `tau2-worker eval` and `tau2-worker rft` on a tiny random checkpoint with
//! the real Qwen3 tokenizer (TAU2_QWEN3_TOKENIZER_DIR; without it the tests
//! that need it print a notice and pass).

use std::path::{Path, PathBuf};
use std::process::Command;

use tau2_model::init;
use tau2_model::tch::Kind;

fn worker() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tau2-worker"));
    c.env("OMP_NUM_THREADS", "1");
    c
}

fn tokenizer() -> Option<PathBuf> {
    let dir = std::env::var_os("TAU2_QWEN3_TOKENIZER_DIR").filter(|d| !d.is_empty());
    if dir.is_none() {
        eprintln!("skipped: TAU2_QWEN3_TOKENIZER_DIR is not set");
    }
    dir.map(PathBuf::from)
}

fn template() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tau2-chat/templates/qwen3_instruct_2507.jinja")
}

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/tau2")
}

/// A tiny random checkpoint with the Qwen3 vocabulary.
fn checkpoint(dir: &Path) {
    let cfg = init::tiny_config(151669, true);
    init::write_random_checkpoint(dir, cfg, 3, 0.02, Kind::Float).expect("checkpoint written");
}

fn local_args(cmd: &mut Command, model: &Path, tok: &Path, out: &Path) {
    cmd.arg("--model")
        .arg(model)
        .arg("--tokenizer")
        .arg(tok)
        .arg("--chat-template")
        .arg(template())
        .arg("--data")
        .arg(data())
        .args([
            "--domain",
            "mock",
            "--max-new-tokens",
            "6",
            "--device",
            "cpu",
        ])
        .args(["--threads", "1", "--seed", "9"])
        .arg("--output")
        .arg(out);
}

#[test]
fn eval_writes_results_and_prints_the_table() {
    let Some(tok) = tokenizer() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let model = tmp.path().join("model");
    checkpoint(&model);
    let out = tmp.path().join("eval");
    let mut cmd = worker();
    cmd.arg("eval");
    local_args(&mut cmd, &model, &tok, &out);
    let run = cmd
        .args(["--split", "base", "--samples", "2", "--k", "2"])
        .args(["--max-tasks-per-domain", "2"])
        .output()
        .expect("worker runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        stdout.contains("overall") && stdout.contains("pass^2"),
        "{stdout}"
    );
    let results: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("results.json")).expect("results.json"),
    )
    .expect("JSON");
    assert_eq!(results["results"]["overall"]["tasks"], 2);
    assert_eq!(results["results"]["samplesPerTask"], 2);
    assert_eq!(results["episodes"].as_array().map(Vec::len), Some(4));
    let lines = std::fs::read_to_string(out.join("trajectories.jsonl")).expect("jsonl");
    assert_eq!(lines.lines().count(), 4);
}

#[test]
fn rft_writes_the_kept_trajectories() {
    let Some(tok) = tokenizer() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let model = tmp.path().join("model");
    checkpoint(&model);
    let out = tmp.path().join("rft");
    let mut cmd = worker();
    cmd.arg("rft");
    local_args(&mut cmd, &model, &tok, &out);
    let run = cmd
        .args(["--split", "base", "--samples", "1"])
        .output()
        .expect("worker runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(stdout.contains("the retrain is not run"), "{stdout}");
    for file in ["rft_samples.jsonl", "rft_kept.jsonl", "rft_selection.json"] {
        assert!(out.join(file).is_file(), "{file}");
    }
}

#[test]
fn bad_settings_fail_with_a_clear_message() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // A configuration for another phase.
    let config = tmp.path().join("phase.json");
    std::fs::write(
        &config,
        r#"{"pipeline": {"namespace": "ml", "name": "p", "uid": "u"}, "attempt": 1, "seed": 1,
            "model": {"base": "/m", "init": "/m", "dtype": "bfloat16"},
            "data": {"dir": "/opt/tau2", "version": "Recipe337326e", "domains": ["mock"],
                     "trainSplit": "train", "evalSplit": "test"},
            "outputDir": "/tmp/x", "params": {"grpo": {}}}"#,
    )
    .expect("write");
    let run = worker()
        .args(["eval", "--config"])
        .arg(&config)
        .output()
        .expect("worker runs");
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("configures the grpo phase, not eval"),
        "{stderr}"
    );
    // k above the samples.
    let run = worker()
        .args([
            "eval",
            "--samples",
            "2",
            "--k",
            "3",
            "--model",
            "/nonexistent",
        ])
        .arg("--output")
        .arg(tmp.path().join("out"))
        .arg("--data")
        .arg(data())
        .output()
        .expect("worker runs");
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("k must be between 1 and samplesPerTask (2), got 3"),
        "{stderr}"
    );
}
