//! Runs `tests/reference/model/model_reference.py` in the reference venv
//! (`TAU2_MODEL_REFERENCE_PYTHON`); shared by tau2-model's parity test and
//! tau2-train's loss parity test (`#[path]` module).

use std::path::{Path, PathBuf};
use std::process::Command;

use tau2_model::tch::Tensor;

pub const NEEDS_REFERENCE: &str = "needs transformers: run tests/run.sh, or set \
     TAU2_MODEL_REFERENCE_PYTHON=$(tests/reference/model/setup.sh)";

/// `model_reference.py COMMAND --model MODEL --input INPUT --out OUT`;
/// panics unless it succeeds.
pub fn run(command: &str, model: &Path, input: &Path, out: &Path) {
    let python = std::env::var("TAU2_MODEL_REFERENCE_PYTHON")
        .unwrap_or_else(|_| panic!("{NEEDS_REFERENCE}"));
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/reference/model/model_reference.py");
    let status = Command::new(python)
        .arg(script)
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

/// The tensor `name` of a reference output.
pub fn get(tensors: &[(String, Tensor)], name: &str) -> Tensor {
    tensors
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no {name}"))
        .1
        .shallow_clone()
}
