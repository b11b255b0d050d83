//! `hf://` sources through the binary, against a local server that speaks
//! the part of the Hub's API hf-hub uses (`/api/{models,datasets}/<repo>/revision/<rev>`
//! and `[datasets/]<repo>/resolve/<rev>/<file>` with range requests, `etag`
//! and `x-repo-commit`, weights redirected to a storage path with
//! `x-linked-etag` as the Hub does), found through `HF_ENDPOINT`: the tiny model is
//! downloaded once, loads and trains on a Hub dataset, a retried attempt
//! fetches nothing again, a sharded checkpoint brings every shard, and a
//! gated repository, a missing revision or .bin-only weights fail with a
//! message that says what to do. They need the real Qwen3 tokenizer
//! (TAU2_QWEN3_TOKENIZER_DIR; without it they print a notice and pass).

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

const TOKEN: &str = "hf_test_token";

fn worker() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tau2-worker"));
    c.env("OMP_NUM_THREADS", "1")
        .env_remove("TAU2_TERMINATION_MESSAGE_PATH")
        .env_remove("TAU2_PROGRESS_ENDPOINT")
        .env_remove("TAU2_ATTEMPT")
        .env_remove("HF_TOKEN")
        .env_remove("HF_HOME");
    for proxy in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        c.env_remove(proxy);
    }
    c
}

fn tokenizer() -> Option<PathBuf> {
    let dir = std::env::var_os("TAU2_QWEN3_TOKENIZER_DIR").filter(|d| !d.is_empty());
    if dir.is_none() {
        eprintln!("skipped: TAU2_QWEN3_TOKENIZER_DIR is not set");
    }
    dir.map(PathBuf::from)
}

/// A repository on the fake Hub: one commit, its files, maybe a token.
struct FakeRepo {
    sha: String,
    files: BTreeMap<String, Arc<Vec<u8>>>,
    token: Option<&'static str>,
}

#[derive(Default)]
struct FakeHub {
    /// Keyed by `models/<org>/<name>` or `datasets/<org>/<name>`.
    repos: HashMap<String, FakeRepo>,
    requests: Mutex<Vec<String>>,
}

impl FakeHub {
    fn add(
        &mut self,
        key: &str,
        dir_or_files: BTreeMap<String, Vec<u8>>,
        token: Option<&'static str>,
    ) {
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        dir_or_files.hash(&mut h);
        let sha = format!("{:040x}", u128::from(h.finish()));
        let files = dir_or_files
            .into_iter()
            .map(|(k, v)| (k, Arc::new(v)))
            .collect();
        self.repos
            .insert(key.to_string(), FakeRepo { sha, files, token });
    }
}

fn files_of(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .expect("model dir")
        .map(|e| {
            let e = e.expect("entry");
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).expect("file"),
            )
        })
        .collect()
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        [
            ("x-error-code", code.to_string()),
            ("x-error-message", message.to_string()),
        ],
        message.to_string(),
    )
        .into_response()
}

/// The repository's key (`models/<org>/<name>`) and the rest of the path.
fn split_repo(path: &str, dataset: bool) -> Option<(String, &str)> {
    let mut parts = path.splitn(3, '/');
    let (org, name, rest) = (parts.next()?, parts.next()?, parts.next()?);
    let kind = if dataset { "datasets" } else { "models" };
    Some((format!("{kind}/{org}/{name}"), rest))
}

async fn serve(
    State(hub): State<Arc<FakeHub>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let path = uri.path().replace("%2F", "/");
    if let Ok(mut r) = hub.requests.lock() {
        r.push(format!("{method} {path}"));
    }
    let path = path.trim_start_matches('/');
    if let Some(p) = path.strip_prefix("cdn/") {
        return cdn(&hub, p, &headers);
    }
    let (repo_path, dataset, api) = if let Some(p) = path.strip_prefix("api/models/") {
        (p, false, true)
    } else if let Some(p) = path.strip_prefix("api/datasets/") {
        (p, true, true)
    } else if let Some(p) = path.strip_prefix("datasets/") {
        (p, true, false)
    } else {
        (path, false, false)
    };
    let Some((key, rest)) = split_repo(repo_path, dataset) else {
        return error(
            StatusCode::NOT_FOUND,
            "RepoNotFound",
            "Repository not found",
        );
    };
    let Some(repo) = hub.repos.get(&key) else {
        return error(
            StatusCode::UNAUTHORIZED,
            "RepoNotFound",
            "Repository not found",
        );
    };
    let (verb, rest) = rest.split_once('/').unwrap_or((rest, ""));
    let (revision, file) = rest.split_once('/').unwrap_or((rest, ""));
    if revision != "main" && revision != repo.sha {
        return error(StatusCode::NOT_FOUND, "RevisionNotFound", "Invalid rev id");
    }
    if api && verb == "revision" {
        let siblings: Vec<Value> = repo.files.keys().map(|f| json!({"rfilename": f})).collect();
        return axum::Json(json!({"id": key, "sha": repo.sha, "siblings": siblings}))
            .into_response();
    }
    if verb != "resolve" {
        return error(StatusCode::NOT_FOUND, "", "not here");
    }
    let authorized = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(|v| v == format!("Bearer {}", repo.token.unwrap_or_default()));
    if repo.token.is_some() && authorized != Some(true) {
        return error(
            StatusCode::UNAUTHORIZED,
            "GatedRepo",
            "Access to this model is restricted. You must have access to it and be authenticated.",
        );
    }
    let Some(bytes) = repo.files.get(file) else {
        return error(StatusCode::NOT_FOUND, "EntryNotFound", "Entry not found");
    };
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    let etag = format!("\"{:016x}{}\"", h.finish(), bytes.len());
    if file.ends_with(".safetensors") {
        // As the Hub does for large (LFS) files: a redirect to a storage host
        // that knows nothing of tokens or commits, the metadata on the redirect.
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        return Response::builder()
            .status(StatusCode::FOUND)
            .header(header::LOCATION, format!("http://{host}/cdn/{key}/{file}"))
            .header("x-linked-etag", etag)
            .header("x-linked-size", bytes.len())
            .header("x-repo-commit", &repo.sha)
            .body(Body::empty())
            .unwrap_or_else(|e| error(StatusCode::INTERNAL_SERVER_ERROR, "", &e.to_string()));
    }
    let builder = Response::builder()
        .header(header::ETAG, etag)
        .header("x-repo-commit", &repo.sha);
    send(builder, bytes, &headers)
}

/// The storage host: `/cdn/<key>/<file>`.
fn cdn(hub: &FakeHub, path: &str, headers: &HeaderMap) -> Response {
    let mut parts = path.splitn(4, '/');
    let key = [parts.next(), parts.next(), parts.next()]
        .map(Option::unwrap_or_default)
        .join("/");
    let file = parts.next().unwrap_or_default();
    match hub.repos.get(&key).and_then(|r| r.files.get(file)) {
        Some(bytes) => send(Response::builder(), bytes, headers),
        None => error(StatusCode::NOT_FOUND, "", "no such object"),
    }
}

/// `bytes`, or the part a `Range: bytes=a-[b]` header asks for.
fn send(builder: axum::http::response::Builder, bytes: &[u8], headers: &HeaderMap) -> Response {
    let size = bytes.len();
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes="))
        .and_then(|v| v.split_once('-'))
        .and_then(|(a, b)| {
            let start: usize = a.parse().ok()?;
            let end: usize = if b.is_empty() {
                size.checked_sub(1)?
            } else {
                b.parse().ok()?
            };
            Some((start, end.min(size.saturating_sub(1))))
        });
    let builder = builder.header(header::ACCEPT_RANGES, "bytes");
    let response = match range {
        Some((start, end)) if start <= end && end < size => builder
            .status(StatusCode::PARTIAL_CONTENT)
            .header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{size}"))
            .body(Body::from(bytes[start..=end].to_vec())),
        _ => builder
            .status(StatusCode::OK)
            .body(Body::from(bytes.to_vec())),
    };
    response.unwrap_or_else(|e| error(StatusCode::INTERNAL_SERVER_ERROR, "", &e.to_string()))
}

/// Serves `hub` on a local port until the test process ends; returns the endpoint.
fn start(hub: Arc<FakeHub>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    listener.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            let app = axum::Router::new().fallback(serve).with_state(hub);
            axum::serve(listener, app).await.expect("serve");
        });
    });
    format!("http://{addr}")
}

/// The file requests (the Hub's and the storage host's) since `from`.
fn downloads(hub: &FakeHub, from: usize) -> Vec<String> {
    hub.requests.lock().expect("log")[from..]
        .iter()
        .filter(|r| r.contains("/resolve/") || r.contains(" /cdn/"))
        .cloned()
        .collect()
}

fn request_count(hub: &FakeHub) -> usize {
    hub.requests.lock().expect("log").len()
}

/// Splits a single-file safetensors checkpoint into `model-0000i-of-00002`
/// shards (the first holds the largest tensor) and an index.
fn shard(files: &mut BTreeMap<String, Vec<u8>>) {
    let single = files.remove("model.safetensors").expect("single file");
    let n =
        usize::try_from(u64::from_le_bytes(single[..8].try_into().expect("8 bytes"))).expect("len");
    let header: serde_json::Map<String, Value> =
        serde_json::from_slice(&single[8..8 + n]).expect("header");
    let data = &single[8 + n..];
    let mut tensors: Vec<(String, Value)> = header
        .into_iter()
        .filter(|(k, _)| k != "__metadata__")
        .collect();
    let span = |v: &Value| {
        let o = &v["data_offsets"];
        (
            o[0].as_u64().expect("start") as usize,
            o[1].as_u64().expect("end") as usize,
        )
    };
    tensors.sort_by_key(|(_, v)| {
        let (a, b) = span(v);
        std::cmp::Reverse(b - a)
    });
    let (first, second) = tensors.split_at(1);
    let mut weight_map = serde_json::Map::new();
    for (i, part) in [first, second].into_iter().enumerate() {
        let name = format!("model-{:05}-of-00002.safetensors", i + 1);
        let mut head = serde_json::Map::new();
        let mut body = Vec::new();
        for (k, v) in part {
            let (a, b) = span(v);
            let mut v = v.clone();
            v["data_offsets"] = json!([body.len(), body.len() + (b - a)]);
            body.extend_from_slice(&data[a..b]);
            head.insert(k.clone(), v);
            weight_map.insert(k.clone(), json!(name));
        }
        let mut head = serde_json::to_vec(&head).expect("json");
        while !head.len().is_multiple_of(8) {
            head.push(b' ');
        }
        let mut file = (head.len() as u64).to_le_bytes().to_vec();
        file.extend(head);
        file.extend(body);
        files.insert(name, file);
    }
    files.insert(
        "model.safetensors.index.json".into(),
        serde_json::to_vec(
            &json!({"metadata": {"total_size": data.len()}, "weight_map": weight_map}),
        )
        .expect("json"),
    );
}

/// Two tiny chat conversations, as an SFT dataset file.
fn dataset() -> Vec<u8> {
    let mut text = String::new();
    for (q, a) in [("Hi", "Hello! How can I help?"), ("What is 2+2?", "4")] {
        let record = json!({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]});
        text.push_str(&record.to_string());
        text.push('\n');
    }
    text.into_bytes()
}

/// The SFT dataset every test serves.
const DEMOS: &str = "hf://datasets/test-org/demos/data/sft.jsonl";

/// Adds the [`DEMOS`] dataset to `hub`, serves it, and makes a run
/// directory in `dir`: the hub, its endpoint and the directory.
fn start_with_demos(mut hub: FakeHub, dir: &Path) -> (Arc<FakeHub>, String, PathBuf) {
    hub.add(
        "datasets/test-org/demos",
        BTreeMap::from([("data/sft.jsonl".to_string(), dataset())]),
        None,
    );
    let hub = Arc::new(hub);
    let endpoint = start(hub.clone());
    let root = dir.join("run");
    std::fs::create_dir_all(&root).expect("root");
    (hub, endpoint, root)
}

/// The tiny model written by `tau2-worker init-model`.
fn tiny_model(tok: &Path, dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let out = worker()
        .args(["init-model", "--tokenizer"])
        .arg(tok)
        .arg("--out")
        .arg(dir)
        .output()
        .expect("init-model runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    files_of(dir)
}

/// An SFT PhaseJob whose base comes from `source`, run from `root`.
fn sft_job(root: &Path, source: &str, dataset: &str, output: &str) -> PathBuf {
    let base = root.join("base-model");
    let job = json!({
        "pipeline": {"namespace": "test", "name": "t", "uid": "u"},
        "attempt": 1,
        "seed": 7,
        "model": {"base": base, "source": source, "init": base, "dtype": "float32"},
        "data": {"dir": root.join("no-tau2-data"), "version": "Recipe337326e", "domains": ["mock"],
                 "trainSplit": "base", "evalSplit": "base"},
        "outputDir": root.join(output),
        "params": {"sft": {"dataset": dataset, "epochs": 1, "batchSize": 2,
                           "maxTokensPerMicroBatch": 4096,
                           "optimizer": {"learningRate": 1e-3}}},
    });
    let path = root.join(format!("{output}.json"));
    std::fs::write(&path, job.to_string()).expect("config");
    path
}

fn sft(cfg: &Path, endpoint: &str, token: Option<&str>) -> (Output, String) {
    let mut cmd = worker();
    cmd.args(["sft", "--config"])
        .arg(cfg)
        .env("HF_ENDPOINT", endpoint);
    if let Some(t) = token {
        cmd.env("HF_TOKEN", t);
    }
    let out = cmd.output().expect("tau2-worker runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn hub_model_and_dataset_download_once_load_and_train() {
    let Some(tok) = tokenizer() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let tiny = tiny_model(&tok, &dir.path().join("tiny"));
    let expected: Vec<String> = tiny.keys().cloned().collect();
    let mut hub = FakeHub::default();
    let mut repo = tiny.clone();
    // Not part of a checkpoint: never downloaded.
    repo.insert("README.md".into(), b"# tiny".to_vec());
    repo.insert("pytorch_model.bin".into(), b"legacy".to_vec());
    hub.add("models/test-org/tiny", repo, None);
    let (hub, endpoint, root) = start_with_demos(hub, dir.path());
    let dataset_uri = DEMOS;

    let cfg = sft_job(&root, "hf://test-org/tiny@main", dataset_uri, "sft");
    let (out, text) = sft(&cfg, &endpoint, None);
    assert!(out.status.success(), "first attempt:\n{text}");
    assert!(text.contains("fetched hf://test-org/tiny"), "{text}");
    let base = root.join("base-model");
    assert_eq!(names(&base), expected, "exactly the checkpoint's files");
    for (name, bytes) in &tiny {
        assert_eq!(
            &std::fs::read(base.join(name)).expect("file"),
            bytes,
            "{name}"
        );
    }
    assert!(!root.join("base-model.partial").exists());
    assert!(
        root.join("sft/final/model.safetensors").is_file(),
        "trained"
    );
    let first = downloads(&hub, 0);
    for name in tiny.keys().map(String::as_str).chain(["data/sft.jsonl"]) {
        assert!(
            first.iter().any(|r| r.ends_with(&format!("/{name}"))),
            "{name} fetched: {first:?}"
        );
    }
    assert!(
        !first
            .iter()
            .any(|r| r.ends_with(".bin") || r.ends_with(".md")),
        "{first:?}"
    );
    assert!(
        first
            .iter()
            .any(|r| r.starts_with("GET /cdn/") && r.ends_with("/model.safetensors")),
        "the weights came from the storage host: {first:?}"
    );

    // A retry finds the base in place and the dataset in the cache; after a
    // download killed before the base was moved into place, the cache has
    // every file. Neither fetches a file again.
    for (output, lose_base) in [("sft-retry", false), ("sft-again", true)] {
        if lose_base {
            std::fs::remove_dir_all(&base).expect("base removed");
        }
        let mark = request_count(&hub);
        let cfg = sft_job(&root, "hf://test-org/tiny@main", dataset_uri, output);
        let (out, text) = sft(&cfg, &endpoint, None);
        assert!(out.status.success(), "{output}:\n{text}");
        let again = downloads(&hub, mark);
        assert!(again.is_empty(), "{output} downloaded again: {again:?}");
        assert_eq!(names(&base), expected);
    }
}

#[test]
fn a_sharded_checkpoint_downloads_every_shard() {
    let Some(tok) = tokenizer() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut files = tiny_model(&tok, &dir.path().join("tiny"));
    shard(&mut files);
    let mut hub = FakeHub::default();
    hub.add("models/test-org/sharded", files.clone(), None);
    let (_hub, endpoint, root) = start_with_demos(hub, dir.path());
    let cfg = sft_job(&root, "hf://test-org/sharded", DEMOS, "sft");
    let (out, text) = sft(&cfg, &endpoint, None);
    assert!(out.status.success(), "{text}");
    let base = root.join("base-model");
    assert_eq!(names(&base), files.keys().cloned().collect::<Vec<_>>());
    for shard in [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ] {
        assert_eq!(
            std::fs::read(base.join(shard)).expect("shard"),
            files[shard],
            "{shard}"
        );
    }
    assert!(root.join("sft/final/config.json").is_file(), "trained");
}

#[test]
fn gated_missing_and_bin_only_repositories_fail_clearly() {
    let Some(tok) = tokenizer() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let tiny = tiny_model(&tok, &dir.path().join("tiny"));
    let mut hub = FakeHub::default();
    hub.add("models/test-org/gated", tiny.clone(), Some(TOKEN));
    let mut bin_only = tiny.clone();
    bin_only.remove("model.safetensors");
    bin_only.insert("pytorch_model.bin".into(), b"pickle".to_vec());
    hub.add("models/test-org/old", bin_only, None);
    let hub = Arc::new(hub);
    let endpoint = start(hub.clone());
    let dataset = "file:///nonexistent/sft.jsonl";
    let fails = |name: &str, source: &str, token: Option<&str>, says: &[&str]| {
        let root = dir.path().join(name);
        std::fs::create_dir_all(&root).expect("root");
        let cfg = sft_job(&root, source, dataset, "sft");
        let (out, text) = sft(&cfg, &endpoint, token);
        assert!(!out.status.success(), "{name} fails:\n{text}");
        eprintln!("{name}: {}", text.trim());
        for s in says {
            assert!(text.contains(s), "{name}: {s:?} in\n{text}");
        }
        assert!(
            !root.join("base-model/config.json").exists(),
            "{name}: no model"
        );
        root
    };
    let root = fails(
        "gated",
        "hf://test-org/gated",
        None,
        &["gated", "HTTP 401", "set model.hfTokenSecretRef"],
    );
    fails(
        "wrong-token",
        "hf://test-org/gated",
        Some("hf_other"),
        &["gated", "has no access"],
    );
    fails(
        "missing",
        "hf://test-org/nope",
        None,
        &["repository not found", "set model.hfTokenSecretRef"],
    );
    fails(
        "revision",
        "hf://test-org/gated@v9",
        None,
        &["revision \"v9\" does not exist"],
    );
    fails(
        "bin",
        "hf://test-org/old",
        None,
        &[".bin only checkpoints are not supported"],
    );

    // With the token the gated model downloads; the phase then stops at the
    // dataset, after the base is in place.
    let cfg = root.join("sft.json");
    let (out, text) = sft(&cfg, &endpoint, Some(TOKEN));
    assert!(!out.status.success());
    assert!(text.contains("/nonexistent/sft.jsonl"), "{text}");
    assert_eq!(
        names(&root.join("base-model")),
        tiny.keys().cloned().collect::<Vec<_>>()
    );
}
