//! Runs `tests/reference/model/model_reference.py` in the reference venv
//! (`TAU2_MODEL_REFERENCE_PYTHON`); shared by the parity tests and the
//! side-by-side benches of tau2-model and tau2-train (`#[path]` module).

use std::path::{Path, PathBuf};
use std::process::Command;

use tau2_model::tch::Tensor;

pub const NEEDS_REFERENCE: &str = "needs transformers: run tests/run.sh, or set \
     TAU2_MODEL_REFERENCE_PYTHON=$(tests/reference/model/setup.sh)";

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/reference/model/model_reference.py")
}

/// `model_reference.py COMMAND --model MODEL --input INPUT --out OUT`;
/// panics unless it succeeds.
#[allow(dead_code)]
pub fn run(command: &str, model: &Path, input: &Path, out: &Path) {
    let python = std::env::var("TAU2_MODEL_REFERENCE_PYTHON")
        .unwrap_or_else(|_| panic!("{NEEDS_REFERENCE}"));
    let status = Command::new(python)
        .arg(script())
        .args([command, "--model"])
        .arg(model)
        .arg("--input")
        .arg(input)
        .arg("--out")
        .arg(out)
        .env("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        .env("HF_HUB_OFFLINE", "1")
        .status()
        .expect("the reference python runs");
    assert!(status.success(), "reference {command} failed");
}

/// A bench command's JSON line (`spec` is written to `model/bench.json`);
/// `None` without the reference venv or when it fails (reported).
#[allow(dead_code)]
pub fn bench(command: &str, model: &Path, spec: &serde_json::Value) -> Option<serde_json::Value> {
    let python = std::env::var("TAU2_MODEL_REFERENCE_PYTHON").ok()?;
    let input = model.join("bench.json");
    std::fs::write(&input, spec.to_string()).ok()?;
    let out = Command::new(python)
        .arg(script())
        .args([command, "--model"])
        .arg(model)
        .arg("--input")
        .arg(&input)
        .env("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "reference {command} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    serde_json::from_slice(out.stdout.trim_ascii()).ok()
}

/// The tensor `name` of a reference output.
#[allow(dead_code)]
pub fn get(tensors: &[(String, Tensor)], name: &str) -> Tensor {
    tensors
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no {name}"))
        .1
        .shallow_clone()
}
