//! The worker's command line, run as the operator's pods will run it.

use std::process::Command;

fn worker() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tau2-worker"))
}

fn write_config(dir: &std::path::Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("phase.json");
    std::fs::write(&path, text).expect("temp dir is writable");
    path
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tau2-worker-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

const VALID: &str = r#"{
  "pipeline": {"namespace": "ml", "name": "recipe", "uid": "0c6a"},
  "attempt": 2,
  "seed": 42,
  "model": {"base": "/data/model/base", "init": "/data/ckpt/sft/final", "dtype": "bfloat16"},
  "data": {"dir": "/opt/tau2", "version": "Recipe337326e", "domains": ["airline", "retail"],
           "trainSplit": "train", "evalSplit": "test"},
  "outputDir": "/data/ckpt/grpo",
  "params": {"grpo": {"steps": 21}}
}"#;

#[test]
fn a_valid_config_is_described_with_its_defaults_filled_in() {
    let dir = temp_dir("valid");
    let out = worker()
        .args(["check-config", "--config"])
        .arg(write_config(&dir, VALID))
        .output()
        .expect("worker runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("grpo for ml/recipe (attempt 2): /data/ckpt/sft/final -> /data/ckpt/grpo"),
        "{stdout}"
    );
    // Unset hyper-parameters take the recipe's values.
    assert!(
        stdout.contains(r#""steps":21"#) && stdout.contains(r#""klCoef":0.01"#),
        "{stdout}"
    );
}

#[test]
fn a_bad_config_fails_with_the_file_and_the_problem() {
    let dir = temp_dir("bad");
    let path = write_config(&dir, &VALID.replace("\"grpo\"", "\"ppo\""));
    let out = worker()
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .expect("worker runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&path.display().to_string()) && stderr.contains("unknown variant `ppo`"),
        "{stderr}"
    );

    let missing = dir.join("missing.json");
    let out = worker()
        .args(["check-config", "--config"])
        .arg(&missing)
        .output()
        .expect("worker runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read phase configuration"));
}

#[test]
fn the_config_schema_is_json_schema_of_the_phase_job() {
    let out = worker().arg("config-schema").output().expect("worker runs");
    assert!(out.status.success());
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(schema["title"], "PhaseJob");
    assert!(schema["properties"]["params"].is_object());
}
