//! The container images (`images/`) and the kind e2e script must agree with
//! the repository, since no test here can build them (no Docker engine): the
//! libtorch the tests use, the Rust version, the worker's default paths and
//! user, pinned base images, the build context, and clean shell scripts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

const OPERATOR: &str = "images/operator/Dockerfile";
const WORKER: &str = "images/worker/Dockerfile";

/// `name==version` pins in a text (a requirements file or a pip command line).
fn pins(text: &str) -> BTreeMap<String, String> {
    text.split(|c: char| c.is_whitespace() || c == '\\')
        .filter_map(|word| word.split_once("=="))
        .map(|(name, version)| (name.to_lowercase(), version.to_string()))
        .collect()
}

/// The default of `ARG name=...` in a Dockerfile.
fn arg(dockerfile: &str, name: &str) -> String {
    let text = read(dockerfile);
    let prefix = format!("ARG {name}=");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("{dockerfile} has no ARG {name} with a default"))
        .to_string()
}

fn version(v: &str) -> Vec<u32> {
    v.split('.')
        .map(|p| p.parse().unwrap_or_else(|_| panic!("bad version {v}")))
        .collect()
}

#[test]
fn worker_libtorch_is_the_one_the_tests_use() {
    let script = pins(&read("tests/install-libtorch.sh"));
    let cpu = pins(&read("images/worker/requirements-cpu.txt"));
    let cuda = pins(&read("images/worker/requirements-cuda.txt"));
    assert!(
        script.contains_key("torch"),
        "no torch==... in tests/install-libtorch.sh"
    );
    // The CPU image ships exactly the test suite's install, the CUDA image the
    // same torch and CUDA runtime.
    assert_eq!(
        cpu, script,
        "images/worker/requirements-cpu.txt must pin what tests/install-libtorch.sh installs"
    );
    for name in script.keys() {
        assert_eq!(
            cuda.get(name),
            script.get(name),
            "{name}: images/worker/requirements-cuda.txt differs from tests/install-libtorch.sh"
        );
    }
    // tch 0.26 builds against exactly one libtorch.
    let lock = read("Cargo.lock");
    assert!(
        lock.contains("name = \"tch\"\nversion = \"0.26."),
        "tch is no longer 0.26: update torch in tests/install-libtorch.sh and images/worker/requirements-*.txt"
    );
    assert_eq!(script["torch"], "2.13.0", "tch 0.26 needs torch 2.13.0");
}

#[test]
fn worker_wheels_are_pinned_by_hash() {
    for file in [
        "images/worker/requirements-cpu.txt",
        "images/worker/requirements-cuda.txt",
    ] {
        let text = read(file);
        let body: String = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n")
            .replace("\\\n", " ");
        for line in body.lines().filter(|l| !l.trim().is_empty()) {
            let hash = line
                .split_once("--hash=sha256:")
                .map(|(_, h)| h.trim())
                .unwrap_or_else(|| panic!("{file}: no --hash=sha256: on `{line}`"));
            assert!(
                line.contains("==")
                    && hash.len() == 64
                    && hash.chars().all(|c| c.is_ascii_hexdigit()),
                "{file}: `{line}` is not name==version --hash=sha256:<64 hex>"
            );
        }
    }
}

#[test]
fn cuda_base_matches_the_wheels_cuda() {
    let cuda_version = arg(WORKER, "CUDA_VERSION");
    let runtime = &pins(&read("images/worker/requirements-cuda.txt"))["nvidia-cuda-runtime"];
    assert_eq!(
        version(&cuda_version)[..2],
        version(runtime)[..2],
        "CUDA_VERSION {cuda_version} in {WORKER} is not the CUDA of the torch wheels (nvidia-cuda-runtime {runtime})"
    );
    let image = arg(WORKER, "CUDA_IMAGE");
    assert!(
        image.starts_with("nvidia/cuda:${CUDA_VERSION}-"),
        "CUDA_IMAGE must be nvidia/cuda:${{CUDA_VERSION}}-...: {image}"
    );
    assert_eq!(
        arg(WORKER, "TORCH_REQUIREMENTS"),
        "images/worker/requirements-cuda.txt"
    );
}

#[test]
fn rust_image_is_the_same_and_new_enough() {
    let image = arg(OPERATOR, "RUST_IMAGE");
    assert_eq!(
        image,
        arg(WORKER, "RUST_IMAGE"),
        "both images build with one Rust"
    );
    let tag = image
        .strip_prefix("rust:")
        .and_then(|t| t.split('-').next())
        .unwrap_or_else(|| panic!("RUST_IMAGE is not rust:<version>-...: {image}"));
    let manifest = read("Cargo.toml");
    let msrv = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .expect("rust-version in Cargo.toml")
        .trim_matches('"');
    let (have, need) = (version(tag), version(msrv));
    assert!(
        have[..2] >= need[..2],
        "RUST_IMAGE {tag} is older than the workspace's rust-version {msrv}"
    );
    if let Some(file) = ["rust-toolchain.toml", "rust-toolchain"]
        .iter()
        .find(|f| root().join(f).exists())
    {
        let toolchain = read(file);
        assert!(
            toolchain.contains(tag),
            "RUST_IMAGE {tag} differs from {file}"
        );
    }
}

#[test]
fn base_images_are_pinned_by_digest() {
    for dockerfile in [OPERATOR, WORKER] {
        let text = read(dockerfile);
        let mut stages = Vec::new();
        for line in text.lines().filter(|l| l.starts_with("FROM ")) {
            let words: Vec<&str> = line.split_whitespace().collect();
            let image = words[1];
            if let Some(var) = image.strip_prefix("${").and_then(|v| v.strip_suffix('}')) {
                let default = arg(dockerfile, var);
                let digest = default.rsplit_once("@sha256:").map(|(_, d)| d);
                assert!(
                    digest
                        .is_some_and(|d| d.len() == 64 && d.chars().all(|c| c.is_ascii_hexdigit())),
                    "{dockerfile}: ARG {var}={default} is not pinned by digest"
                );
            } else {
                assert!(
                    stages.contains(&image),
                    "{dockerfile}: `{line}` names neither a pinned ARG nor an earlier stage"
                );
            }
            if let [_, _, as_, name] = words[..] {
                assert!(as_.eq_ignore_ascii_case("AS"));
                stages.push(name);
            }
        }
        assert!(!stages.is_empty() || text.contains("FROM ${"));
    }
}

#[test]
fn worker_image_matches_what_the_operator_and_worker_expect() {
    let text = read(WORKER);
    // The operator runs the worker as this user, with `tau2-worker` as the command.
    let user = format!("USER {0}:{0}", tau2_operator::reconcile::build::WORKER_UID);
    assert_eq!(
        text.matches(&user).count(),
        2,
        "both worker variants must run as {user}"
    );
    assert!(text.contains("/usr/local/bin/tau2-worker"));
    assert!(
        read(OPERATOR).contains(&user),
        "the operator runs as {user}"
    );
    // The data where the CRD's default dataUri and the worker's default --data point.
    let data_uri = tau2_api::crd::Tau2Spec::default().data_uri;
    let data_dir = data_uri.strip_prefix("file://").expect("file:// URI");
    assert!(
        read("worker/src/cli/tau2.rs").contains(&format!("default_value = \"{data_dir}\"")),
        "the worker's default --data is not {data_dir}"
    );
    assert_eq!(
        text.matches(&format!("/out/tau2 {data_dir}\n")).count(),
        2,
        "both worker variants must ship the data at {data_dir}"
    );
    // The tokenizer for builtin://tiny, through the variable the worker reads.
    let tokenizer = "/opt/qwen3-tokenizer";
    assert_eq!(
        text.matches(&format!("ENV TAU2_QWEN3_TOKENIZER_DIR={tokenizer}\n"))
            .count(),
        2
    );
    assert_eq!(
        text.matches(&format!("/out/qwen3-tokenizer {tokenizer}\n"))
            .count(),
        2
    );
    assert!(
        read("worker/src/cli/phase.rs").contains("\"TAU2_QWEN3_TOKENIZER_DIR\""),
        "the worker no longer reads TAU2_QWEN3_TOKENIZER_DIR"
    );
    // Fetched by the test suite's own scripts, not a copy of their logic.
    for script in [
        "tests/fixtures/qwen3-tokenizer.sh",
        "tests/fixtures/tau2-data.sh",
    ] {
        assert!(text.contains(script), "{WORKER} does not run {script}");
    }
}

#[test]
fn build_context_has_what_the_dockerfiles_copy() {
    let ignore = read(".dockerignore");
    for needed in ["**/target", ".libtorch", "**/.venv"] {
        assert!(
            ignore.lines().any(|l| l == needed),
            ".dockerignore must exclude {needed}"
        );
    }
    for dockerfile in [OPERATOR, WORKER] {
        for line in read(dockerfile).lines() {
            let Some(rest) = line.strip_prefix("COPY ") else {
                continue;
            };
            if rest.starts_with("--from") {
                continue;
            }
            let src = rest.split_whitespace().next().expect("COPY source");
            let src = if src == "${TORCH_REQUIREMENTS}" {
                arg(dockerfile, "TORCH_REQUIREMENTS")
            } else {
                src.to_string()
            };
            assert!(
                root().join(&src).exists(),
                "{dockerfile} copies {src}, which does not exist"
            );
        }
    }
}

#[test]
fn kind_node_image_is_the_kubernetes_we_build_for() {
    let script = read("tests/kind/e2e.sh");
    let node = script
        .lines()
        .find_map(|l| l.strip_prefix("NODE_IMAGE="))
        .expect("NODE_IMAGE= in tests/kind/e2e.sh");
    assert!(
        node.contains("@sha256:"),
        "the kind node image must be pinned by digest: {node}"
    );
    let minor = read("Cargo.toml")
        .split("features = [\"v1_")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("k8s-openapi's v1_NN feature in Cargo.toml")
        .to_string();
    assert!(
        node.starts_with(&format!("kindest/node:v1.{minor}.")),
        "kind node image {node} is not Kubernetes 1.{minor} (k8s-openapi's feature)"
    );
}

#[test]
fn shell_scripts_pass_shellcheck() {
    let scripts = [
        "images/build.sh",
        "images/worker/prune-libtorch.sh",
        "tests/kind/e2e.sh",
    ];
    for script in scripts {
        let status = std::process::Command::new("bash")
            .arg("-n")
            .arg(root().join(script))
            .status()
            .expect("running bash -n");
        assert!(status.success(), "bash -n {script} failed");
    }
    let Ok(out) = std::process::Command::new("shellcheck")
        .args(scripts)
        .current_dir(root())
        .output()
    else {
        eprintln!("skipped shellcheck: not installed (tests/setup.sh installs it)");
        return;
    };
    assert!(
        out.status.success(),
        "shellcheck:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
