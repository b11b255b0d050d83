//! `hf://` sources: a base model (`hf://<org>/<repo>[@<revision>]`) and an
//! SFT dataset file (`hf://datasets/<org>/<name>[@<revision>]/<file>`) from
//! the Hugging Face Hub, or the mirror `HF_ENDPOINT` names, with the token in
//! `HF_TOKEN` (the operator sets it from `model.hfTokenSecretRef`).
//!
//! Files go through hf-hub's cache in `.hf-cache` beside the phase
//! directories on the checkpoint volume: a retried attempt finds what an
//! earlier one fetched (and resumes a partial file) instead of downloading it
//! again. A model is fetched whole into a temporary sibling of the base
//! directory and renamed into place, so a killed download never leaves a
//! half model that looks complete.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use hf_hub::api::Progress;
use hf_hub::api::sync::{Api, ApiBuilder, ApiError};
use hf_hub::{Cache, Repo, RepoType};
use indicatif::{ProgressBar, ProgressStyle};
use tau2_api::job::ENV_HF_TOKEN;

/// The scheme of Hub sources.
pub const HF_SCHEME: &str = "hf://";
/// The Hub's address, for mirrors and tests (as in huggingface_hub).
pub const ENV_HF_ENDPOINT: &str = "HF_ENDPOINT";
/// The public Hub.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";
/// hf-hub's cache, beside the phase directories on the checkpoint volume.
pub const CACHE_DIR: &str = ".hf-cache";

const CONFIG: &str = "config.json";
const INDEX: &str = "model.safetensors.index.json";
const SINGLE: &str = "model.safetensors";
/// What a checkpoint cannot load without, besides its weights.
const REQUIRED: [&str; 3] = [CONFIG, "tokenizer.json", "tokenizer_config.json"];
/// Read when the repository has them (stop tokens, a chat template that
/// overrides the tokenizer config's).
const OPTIONAL: [&str; 2] = ["generation_config.json", "chat_template.jinja"];
/// How often a download without progress bars logs how far it is.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// A repository at a revision, parsed from an `hf://` URI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubRef {
    pub repo_id: String,
    /// The branch, tag or commit asked for (`main` when the URI names none).
    pub revision: String,
    pub dataset: bool,
    /// The file, for a dataset URI.
    pub file: Option<String>,
}

impl HubRef {
    fn kind(&self) -> RepoType {
        if self.dataset {
            RepoType::Dataset
        } else {
            RepoType::Model
        }
    }

    fn at(&self, revision: &str) -> Repo {
        Repo::with_revision(self.repo_id.clone(), self.kind(), revision.to_string())
    }
}

/// Splits `name[@revision]`.
fn split_revision(name: &str) -> (&str, &str) {
    name.split_once('@').unwrap_or((name, "main"))
}

/// Parses `hf://<org>/<repo>[@<revision>]`.
pub fn parse_model(uri: &str) -> anyhow::Result<HubRef> {
    let rest = uri
        .strip_prefix(HF_SCHEME)
        .with_context(|| format!("{uri} is not an {HF_SCHEME} URI"))?;
    let (id, revision) = split_revision(rest);
    match id.split_once('/') {
        Some((org, repo))
            if !org.is_empty()
                && !repo.is_empty()
                && !repo.contains('/')
                && !revision.is_empty() =>
        {
            Ok(HubRef {
                repo_id: id.to_string(),
                revision: revision.to_string(),
                dataset: false,
                file: None,
            })
        }
        _ => bail!("{uri}: a Hub model is hf://<org>/<repo>[@<revision>]"),
    }
}

/// Parses `hf://datasets/<org>/<name>[@<revision>]/<file>`.
pub fn parse_dataset(uri: &str) -> anyhow::Result<HubRef> {
    let bad = || anyhow!("{uri}: a Hub dataset is hf://datasets/<org>/<name>[@<revision>]/<file>");
    let rest = uri
        .strip_prefix(HF_SCHEME)
        .and_then(|r| r.strip_prefix("datasets/"))
        .ok_or_else(bad)?;
    let mut parts = rest.splitn(3, '/');
    let (Some(org), Some(name), Some(file)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let (name, revision) = split_revision(name);
    if org.is_empty() || name.is_empty() || revision.is_empty() || !safe_relative(file) {
        return Err(bad());
    }
    Ok(HubRef {
        repo_id: format!("{org}/{name}"),
        revision: revision.to_string(),
        dataset: true,
        file: Some(file.to_string()),
    })
}

/// A relative path inside a repository, without `..` or a root.
fn safe_relative(file: &str) -> bool {
    !file.is_empty()
        && Path::new(file)
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
}

/// The Hub cache for a directory on the checkpoint volume: beside it.
pub fn cache_beside(dir: &Path) -> PathBuf {
    dir.parent().unwrap_or(dir).join(CACHE_DIR)
}

/// A client of the Hub or of the mirror in `HF_ENDPOINT`.
struct Hub {
    api: Api,
    cache: Cache,
    endpoint: String,
    token: bool,
    bars: bool,
}

impl Hub {
    fn new(cache_dir: &Path, bars: bool) -> anyhow::Result<Self> {
        std::fs::create_dir_all(cache_dir)
            .with_context(|| format!("creating the Hub cache {}", cache_dir.display()))?;
        let nonempty = |name: &str| {
            std::env::var(name)
                .ok()
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let endpoint = nonempty(ENV_HF_ENDPOINT)
            .map(|e| e.trim_end_matches('/').to_string())
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        let token = nonempty(ENV_HF_TOKEN);
        let cache = Cache::new(cache_dir.to_path_buf());
        let api = ApiBuilder::from_cache(cache.clone())
            .with_endpoint(endpoint.clone())
            // Only the operator's token: never one from a file on the volume.
            .with_token(token.clone())
            .with_progress(false)
            // Resumes an interrupted file with a range request.
            .with_retries(3)
            .with_user_agent("tau2-worker", env!("CARGO_PKG_VERSION"))
            .build()
            .context("creating the Hugging Face Hub client")?;
        Ok(Self {
            api,
            cache,
            endpoint,
            token: token.is_some(),
            bars,
        })
    }

    /// The commit `r.revision` points at and the files there.
    fn resolve(&self, r: &HubRef, uri: &str) -> anyhow::Result<(String, BTreeSet<String>)> {
        let info = self
            .api
            .repo(r.at(&r.revision))
            .info()
            .map_err(|e| self.explain(e, r, uri, None))?;
        let files = info.siblings.into_iter().map(|s| s.rfilename).collect();
        Ok((info.sha, files))
    }

    /// The file at `commit`, from the cache or downloaded into it.
    fn fetch(&self, r: &HubRef, commit: &str, file: &str, uri: &str) -> anyhow::Result<PathBuf> {
        let pinned = r.at(commit);
        if let Some(path) = self.cache.repo(pinned.clone()).get(file) {
            tracing::info!(uri, file, "in the Hub cache");
            return Ok(path);
        }
        let repo = self.api.repo(pinned);
        let progress = FileProgress::new(self.bars);
        let path = repo
            .download_with_progress(file, progress)
            .map_err(|e| self.explain(e, r, uri, Some(file)))?;
        Ok(path)
    }

    /// Turns hf-hub's error into one that says what to do.
    fn explain(&self, e: ApiError, r: &HubRef, uri: &str, file: Option<&str>) -> anyhow::Error {
        let what = file.map_or_else(|| uri.to_string(), |f| format!("{f} of {uri}"));
        let ApiError::RequestError(req) = e else {
            return match e {
                ApiError::MissingHeader(h) => anyhow!(
                    "fetching {what}: {} answered without the {h} header; is {ENV_HF_ENDPOINT} a Hugging Face Hub or mirror?",
                    self.endpoint
                ),
                other => anyhow::Error::new(other).context(format!("fetching {what}")),
            };
        };
        let (status, response) = match *req {
            ureq::Error::Status(status, response) => (status, response),
            ureq::Error::Transport(t) => {
                return anyhow!("fetching {what}: cannot reach {}: {t}", self.endpoint);
            }
        };
        let code = response
            .header("x-error-code")
            .unwrap_or_default()
            .to_string();
        // "HTTP 401: <the Hub's reason>".
        let http = match response.header("x-error-message") {
            Some(m) => format!("HTTP {status}: {m}"),
            None => format!("HTTP {status}"),
        };
        let token_hint = if self.token {
            format!(
                "the token in {ENV_HF_TOKEN} (model.hfTokenSecretRef) has no access to it: accept the repository's \
                 conditions on the Hub with that token's account, or use a token that can read it"
            )
        } else {
            "set model.hfTokenSecretRef to a Secret holding a Hugging Face token that can read it"
                .to_string()
        };
        match (status, code.as_str()) {
            (_, "GatedRepo") => {
                anyhow!("{uri} is a gated repository ({http}): {token_hint}")
            }
            (_, "RevisionNotFound") => anyhow!(
                "{uri}: the revision {:?} does not exist in {} ({http})",
                r.revision,
                r.repo_id
            ),
            (_, "EntryNotFound") => {
                anyhow!("{uri}: {what} does not exist ({http})")
            }
            (401 | 403, _) | (_, "RepoNotFound") => anyhow!(
                "{uri}: repository not found, or private or gated ({http}); check the name, or {token_hint}"
            ),
            (404, _) => anyhow!(
                "{uri}: {what} not found ({http}): check the repository and the revision {:?}",
                r.revision
            ),
            _ => anyhow!("fetching {what} from {}: {http}", self.endpoint),
        }
    }
}

/// The files of a checkpoint in a repository: the required ones, the
/// optional ones it has, and its safetensors weights (the index and every
/// shard it names, or the single file).
fn checkpoint_files(
    hub: &Hub,
    r: &HubRef,
    commit: &str,
    listed: &BTreeSet<String>,
    uri: &str,
) -> anyhow::Result<Vec<String>> {
    let missing: Vec<&str> = REQUIRED
        .iter()
        .copied()
        .filter(|f| !listed.contains(*f))
        .collect();
    if !missing.is_empty() {
        bail!(
            "{uri} is not a checkpoint the worker can load: it has no {}",
            missing.join(", ")
        );
    }
    let mut files: Vec<String> = REQUIRED.iter().map(|f| f.to_string()).collect();
    files.extend(
        OPTIONAL
            .iter()
            .filter(|f| listed.contains(**f))
            .map(|f| f.to_string()),
    );
    if listed.contains(INDEX) {
        let index = hub.fetch(r, commit, INDEX, uri)?;
        let shards = index_shards(&index).with_context(|| format!("{INDEX} of {uri}"))?;
        if let Some(absent) = shards.iter().find(|s| !listed.contains(*s)) {
            bail!("{uri}: {INDEX} names {absent}, which the repository does not have");
        }
        files.push(INDEX.to_string());
        files.extend(shards);
    } else if listed.contains(SINGLE) {
        files.push(SINGLE.to_string());
    } else if listed
        .iter()
        .any(|f| f.ends_with(".bin") || f.ends_with(".pth") || f.ends_with(".pt"))
    {
        bail!(
            "{uri} has PyTorch .bin weights only: .bin only checkpoints are not supported; \
             use a revision with {SINGLE} or {INDEX}"
        );
    } else {
        bail!("{uri} has no safetensors weights ({SINGLE} or {INDEX})");
    }
    Ok(files)
}

/// The shard files a safetensors index names, each once, in order.
fn index_shards(index: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(index)?;
    let v: serde_json::Value = serde_json::from_str(&text)?;
    let map = v["weight_map"]
        .as_object()
        .context("no weight_map object")?;
    let mut shards = BTreeSet::new();
    for file in map.values() {
        let file = file
            .as_str()
            .context("weight_map values must be file names")?;
        // Names come from the network: keep them inside the model directory.
        if !safe_relative(file) || file.contains('/') {
            bail!("weight_map names {file:?}, not a file beside the index");
        }
        shards.insert(file.to_string());
    }
    if shards.is_empty() {
        bail!("weight_map is empty");
    }
    Ok(shards.into_iter().collect())
}

/// Downloads the checkpoint `uri` (`hf://<org>/<repo>[@<revision>]`) into
/// `base` (absent), through the cache beside it.
pub fn download_model(uri: &str, base: &Path, bars: bool) -> anyhow::Result<()> {
    let r = parse_model(uri)?;
    let hub = Hub::new(&cache_beside(base), bars)?;
    let started = Instant::now();
    let (commit, listed) = hub.resolve(&r, uri)?;
    let files = checkpoint_files(&hub, &r, &commit, &listed, uri)?;
    eprintln!(
        "fetching {uri} (commit {commit}, {} files) from {} into {}",
        files.len(),
        hub.endpoint,
        base.display()
    );
    let mut cached = Vec::with_capacity(files.len());
    for file in &files {
        cached.push((file, hub.fetch(&r, &commit, file, uri)?));
    }
    let mut bytes = 0u64;
    super::phase::build_atomically(base, |tmp| {
        std::fs::create_dir_all(tmp).with_context(|| format!("creating {}", tmp.display()))?;
        for (file, from) in &cached {
            bytes += place(from, &tmp.join(file))?;
        }
        Ok(())
    })?;
    eprintln!(
        "fetched {uri}: {} files, {:.1} MiB in {:.0}s",
        files.len(),
        bytes as f64 / (1024.0 * 1024.0),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Links (or, across file systems, copies) a cached file into the model
/// directory and syncs it; returns its size.
fn place(cached: &Path, to: &Path) -> anyhow::Result<u64> {
    // The cache's snapshot entries are symbolic links to its blobs.
    let blob =
        std::fs::canonicalize(cached).with_context(|| format!("resolving {}", cached.display()))?;
    if std::fs::hard_link(&blob, to).is_err() {
        std::fs::copy(&blob, to)
            .with_context(|| format!("copying {} to {}", blob.display(), to.display()))?;
    }
    let f = std::fs::File::open(to).with_context(|| format!("opening {}", to.display()))?;
    f.sync_all()
        .with_context(|| format!("syncing {}", to.display()))?;
    Ok(f.metadata().map(|m| m.len()).unwrap_or(0))
}

/// Downloads the dataset file `uri` (`hf://datasets/...`) into the cache
/// `cache_dir` and returns its path there.
pub fn download_dataset(uri: &str, cache_dir: &Path, bars: bool) -> anyhow::Result<PathBuf> {
    let r = parse_dataset(uri)?;
    let file = r.file.clone().unwrap_or_default();
    let hub = Hub::new(cache_dir, bars)?;
    let (commit, listed) = hub.resolve(&r, uri)?;
    if !listed.contains(&file) {
        bail!(
            "{uri}: the dataset {} has no file {file} at revision {:?}",
            r.repo_id,
            r.revision
        );
    }
    let path = hub.fetch(&r, &commit, &file, uri)?;
    eprintln!("fetched {uri} (commit {commit})");
    Ok(path)
}

/// Download progress: a bar when bars are on, else a log line now and then.
struct FileProgress {
    bar: Option<ProgressBar>,
    show: bool,
    file: String,
    size: usize,
    done: usize,
    logged: Instant,
}

impl FileProgress {
    fn new(show: bool) -> Self {
        Self {
            bar: None,
            show,
            file: String::new(),
            size: 0,
            done: 0,
            logged: Instant::now(),
        }
    }
}

impl Progress for FileProgress {
    // hf-hub calls this again (with an update of the bytes already there)
    // when it resumes a file.
    fn init(&mut self, size: usize, filename: &str) {
        self.size = size;
        self.done = 0;
        self.file = filename.to_string();
        self.logged = Instant::now();
        if self.show {
            let bar = self.bar.get_or_insert_with(|| {
                let b = ProgressBar::new(size as u64);
                if let Ok(style) = ProgressStyle::with_template(
                    "{prefix:>5} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {msg}",
                ) {
                    b.set_style(style.progress_chars("=> "));
                }
                b.set_prefix("hf");
                b
            });
            bar.set_length(size as u64);
            bar.set_position(0);
            bar.set_message(filename.to_string());
        }
        tracing::info!(file = filename, bytes = size, "downloading");
    }

    fn update(&mut self, size: usize) {
        self.done += size;
        if let Some(bar) = &self.bar {
            bar.inc(size as u64);
        } else if self.logged.elapsed() >= LOG_EVERY {
            self.logged = Instant::now();
            tracing::info!(
                file = %self.file,
                done = self.done,
                bytes = self.size,
                "downloading"
            );
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
        tracing::info!(file = %self.file, bytes = self.done, "downloaded");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_uris_parse_with_and_without_a_revision() {
        let r = parse_model("hf://Qwen/Qwen3-4B-Instruct-2507").expect("parses");
        assert_eq!(r.repo_id, "Qwen/Qwen3-4B-Instruct-2507");
        assert_eq!(r.revision, "main");
        assert!(!r.dataset);
        let r = parse_model("hf://org/repo@refs/pr/1").expect("parses");
        assert_eq!(
            (r.repo_id.as_str(), r.revision.as_str()),
            ("org/repo", "refs/pr/1")
        );
        for bad in [
            "hf://org",
            "hf://org/",
            "hf://org/a/b",
            "hf://org/repo@",
            "pvc://c/p",
        ] {
            assert!(parse_model(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dataset_uris_parse_with_a_file_and_an_optional_revision() {
        let r = parse_dataset("hf://datasets/Jarrodbarnes/tau2-sft-seed-v3/seed_sft_v3.jsonl")
            .expect("parses");
        assert_eq!(r.repo_id, "Jarrodbarnes/tau2-sft-seed-v3");
        assert_eq!(r.revision, "main");
        assert_eq!(r.file.as_deref(), Some("seed_sft_v3.jsonl"));
        assert!(r.dataset);
        let r = parse_dataset("hf://datasets/o/n@v2/data/train.jsonl").expect("parses");
        assert_eq!(r.revision, "v2");
        assert_eq!(r.file.as_deref(), Some("data/train.jsonl"));
        for bad in [
            "hf://datasets/o/n",
            "hf://datasets/o/n/",
            "hf://datasets/o/n/../x",
            "hf://o/n/f",
        ] {
            assert!(parse_dataset(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn index_shards_are_unique_and_stay_in_the_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let index = dir.path().join(INDEX);
        std::fs::write(
            &index,
            r#"{"weight_map": {"a": "m-1.safetensors", "b": "m-2.safetensors", "c": "m-1.safetensors"}}"#,
        )
        .expect("written");
        assert_eq!(
            index_shards(&index).expect("shards"),
            ["m-1.safetensors", "m-2.safetensors"]
        );
        std::fs::write(&index, r#"{"weight_map": {"a": "../evil"}}"#).expect("written");
        assert!(index_shards(&index).is_err());
    }
}
