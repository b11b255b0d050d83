//! Training checkpoints that survive being killed at any moment.
//!
//! Layout of a phase's output directory:
//!
//! ```text
//! <out>/checkpoints/step-00000010/   model (HF: config.json, *.safetensors, tokenizer files),
//!                                    optimizer.safetensors, trainer_state.json, MANIFEST.json
//! <out>/checkpoints/.tmp-...         a save in progress (or killed): never loaded, removed on start
//! <out>/final/                       the phase's result, an HF directory the next phase loads
//! ```
//!
//! A save writes everything into a temporary directory, fsyncs every file,
//! writes `MANIFEST.json` (sha256 and size of every other file) last,
//! fsyncs the directory and renames it into place, then fsyncs the parent.
//! A checkpoint counts only if its manifest parses and every file matches
//! it, so a partial copy, a truncated file or a flipped bit makes the
//! loader fall back to the next older checkpoint instead of loading it.
//!
//! `final/` holds the weights and trainer state but no optimizer state: the
//! next phase restarts its optimizer (the recipe's `--no-load-optim`), and a
//! phase restarted after finishing only needs to know it is done.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tau2_model::{Qwen3, SaveOptions};

use crate::error::{Result, TrainError};
use crate::optim::AdamW;

pub const MANIFEST: &str = "MANIFEST.json";
pub const STATE_FILE: &str = "trainer_state.json";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
const STEP_PREFIX: &str = "step-";
const TMP_PREFIX: &str = ".tmp-";

/// Metrics of one optimizer step, kept in the trainer state so a resumed
/// run reports the same history as an uninterrupted one.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct StepRecord {
    pub step: u64,
    pub metrics: BTreeMap<String, f64>,
}

impl StepRecord {
    /// `key` of the first and of the last step of `history` (for summaries).
    pub fn first_and_last(history: &[StepRecord], key: &str) -> (Option<f64>, Option<f64>) {
        let at = |r: Option<&StepRecord>| r.and_then(|r| r.metrics.get(key)).copied();
        (at(history.first()), at(history.last()))
    }
}

/// Everything besides tensors needed to continue exactly where a run
/// stopped.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct TrainState {
    pub phase: String,
    /// Steps completed (also the scheduler's position).
    pub step: u64,
    /// Optimizer updates completed (Adam's bias correction), where a step
    /// makes more than one (GRPO reusing a rollout); absent: `step`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optimizer_steps: Option<u64>,
    pub total_steps: u64,
    pub seed: u64,
    /// Examples (SFT) or tasks (GRPO) consumed so far.
    pub data_position: u64,
    /// The state of the phase's own RNG, when it keeps one between steps.
    #[serde(default)]
    pub rng_state: Option<u64>,
    pub history: Vec<StepRecord>,
    /// Phase-specific state (e.g. GRPO's curriculum counters).
    #[serde(default)]
    pub extra: serde_json::Value,
    /// True in `final/`.
    #[serde(default)]
    pub finished: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct FileEntry {
    pub sha256: String,
    pub bytes: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Manifest {
    pub version: u32,
    pub step: u64,
    /// Relative path -> checksum, for every file but the manifest.
    pub files: BTreeMap<String, FileEntry>,
}

/// The checkpoints of one phase's output directory.
#[derive(Clone, Debug)]
pub struct Checkpoints {
    out: PathBuf,
    keep_last: usize,
    save_options: SaveOptions,
}

/// A verified checkpoint.
#[derive(Clone, Debug)]
pub struct Found {
    pub dir: PathBuf,
    pub state: TrainState,
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| TrainError::io(dir, e))
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = File::create(path).map_err(|e| TrainError::io(path, e))?;
    f.write_all(bytes).map_err(|e| TrainError::io(path, e))?;
    f.sync_all().map_err(|e| TrainError::io(path, e))
}

/// sha256 (hex) and size of a file, read in 8 MiB blocks.
fn hash_file(path: &Path) -> Result<FileEntry> {
    let mut f = File::open(path).map_err(|e| TrainError::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 8 << 20];
    let mut bytes = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| TrainError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    let sha256 = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(FileEntry { sha256, bytes })
}

/// Relative paths of the regular files under `dir` (recursively), sorted.
fn list_files(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(|e| TrainError::io(&d, e))? {
            let path = entry.map_err(|e| TrainError::io(&d, e))?.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(rel) = path.strip_prefix(dir) {
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Checks a checkpoint directory against its manifest; says what is wrong.
pub fn verify(dir: &Path) -> Result<(Manifest, TrainState), String> {
    let text =
        std::fs::read_to_string(dir.join(MANIFEST)).map_err(|e| format!("no manifest: {e}"))?;
    let manifest: Manifest =
        serde_json::from_str(&text).map_err(|e| format!("unreadable manifest: {e}"))?;
    let files = list_files(dir).map_err(|e| e.to_string())?;
    for rel in &files {
        if rel != MANIFEST && !manifest.files.contains_key(rel) {
            return Err(format!("{rel} is not in the manifest"));
        }
    }
    for (rel, want) in &manifest.files {
        let got = hash_file(&dir.join(rel)).map_err(|e| format!("{rel}: {e}"))?;
        if got.bytes != want.bytes {
            return Err(format!(
                "{rel}: {} bytes, manifest says {}",
                got.bytes, want.bytes
            ));
        }
        if got.sha256 != want.sha256 {
            return Err(format!("{rel}: checksum mismatch"));
        }
    }
    let state_text = std::fs::read_to_string(dir.join(STATE_FILE))
        .map_err(|e| format!("no {STATE_FILE}: {e}"))?;
    let state: TrainState =
        serde_json::from_str(&state_text).map_err(|e| format!("unreadable {STATE_FILE}: {e}"))?;
    if state.step != manifest.step {
        return Err(format!(
            "state step {} differs from manifest step {}",
            state.step, manifest.step
        ));
    }
    Ok((manifest, state))
}

impl Checkpoints {
    /// Checkpoints under `out`, keeping the newest `keep_last` step
    /// checkpoints (at least 1). Removes temporary directories a killed save
    /// left behind.
    pub fn open(out: impl Into<PathBuf>, keep_last: usize) -> Result<Self> {
        let out = out.into();
        let dir = out.join("checkpoints");
        std::fs::create_dir_all(&dir).map_err(|e| TrainError::io(&dir, e))?;
        for entry in std::fs::read_dir(&dir).map_err(|e| TrainError::io(&dir, e))? {
            let path = entry.map_err(|e| TrainError::io(&dir, e))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with(TMP_PREFIX) {
                tracing::warn!(path = %path.display(), "removing an unfinished checkpoint");
                std::fs::remove_dir_all(&path).map_err(|e| TrainError::io(&path, e))?;
            }
        }
        // A killed final-save may leave these next to final/.
        for entry in std::fs::read_dir(&out).map_err(|e| TrainError::io(&out, e))? {
            let path = entry.map_err(|e| TrainError::io(&out, e))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with(TMP_PREFIX) {
                std::fs::remove_dir_all(&path).map_err(|e| TrainError::io(&path, e))?;
            }
        }
        Ok(Self {
            out,
            keep_last: keep_last.max(1),
            save_options: SaveOptions::default(),
        })
    }

    /// Where model files are copied from on save (tokenizer, generation config).
    pub fn with_side_files_from(mut self, dir: Option<PathBuf>) -> Self {
        self.save_options.copy_files_from = dir;
        self
    }

    pub fn output_dir(&self) -> &Path {
        &self.out
    }

    pub fn steps_dir(&self) -> PathBuf {
        self.out.join("checkpoints")
    }

    pub fn final_dir(&self) -> PathBuf {
        self.out.join("final")
    }

    pub fn step_dir(&self, step: u64) -> PathBuf {
        self.steps_dir().join(format!("{STEP_PREFIX}{step:08}"))
    }

    fn tmp_in(&self, parent: &Path, what: &str) -> PathBuf {
        parent.join(format!("{TMP_PREFIX}{what}-{}", std::process::id()))
    }

    /// Writes model, optimizer state (if given) and trainer state into
    /// `tmp`, then the manifest.
    fn write_into(
        &self,
        tmp: &Path,
        model: &Qwen3,
        optimizer: Option<&AdamW>,
        state: &TrainState,
    ) -> Result<()> {
        if tmp.exists() {
            std::fs::remove_dir_all(tmp).map_err(|e| TrainError::io(tmp, e))?;
        }
        std::fs::create_dir_all(tmp).map_err(|e| TrainError::io(tmp, e))?;
        tau2_model::save(model, tmp, &self.save_options)?;
        if let Some(opt) = optimizer {
            opt.save(&tmp.join(OPTIMIZER_FILE))?;
        }
        let state_json = serde_json::to_vec_pretty(state).map_err(|source| TrainError::Json {
            path: tmp.join(STATE_FILE),
            source,
        })?;
        write_synced(&tmp.join(STATE_FILE), &state_json)?;
        let mut files = BTreeMap::new();
        for rel in list_files(tmp)? {
            let path = tmp.join(&rel);
            // Hash, then make sure the bytes hashed are on disk.
            let entry = hash_file(&path)?;
            File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(|e| TrainError::io(&path, e))?;
            files.insert(rel, entry);
        }
        let manifest = Manifest {
            version: 1,
            step: state.step,
            files,
        };
        let text = serde_json::to_vec_pretty(&manifest).map_err(|source| TrainError::Json {
            path: tmp.join(MANIFEST),
            source,
        })?;
        write_synced(&tmp.join(MANIFEST), &text)?;
        sync_dir(tmp)
    }

    /// Saves a resumable checkpoint of step `state.step`; returns its
    /// directory. Older step checkpoints beyond `keep_last` are removed.
    pub fn save(&self, model: &Qwen3, optimizer: &AdamW, state: &TrainState) -> Result<PathBuf> {
        let parent = self.steps_dir();
        let tmp = self.tmp_in(&parent, &format!("step-{}", state.step));
        let state = TrainState {
            optimizer_steps: (optimizer.steps() != state.step).then_some(optimizer.steps()),
            ..state.clone()
        };
        self.write_into(&tmp, model, Some(optimizer), &state)?;
        let dst = self.step_dir(state.step);
        if dst.exists() {
            // Same step saved before (a resumed run re-saving): replace.
            std::fs::remove_dir_all(&dst).map_err(|e| TrainError::io(&dst, e))?;
        }
        std::fs::rename(&tmp, &dst).map_err(|e| TrainError::io(&dst, e))?;
        sync_dir(&parent)?;
        self.prune()?;
        Ok(dst)
    }

    /// Writes `final/` (weights and state, no optimizer) atomically.
    pub fn save_final(&self, model: &Qwen3, state: &TrainState) -> Result<PathBuf> {
        let tmp = self.tmp_in(&self.out, "final");
        let mut state = state.clone();
        state.finished = true;
        self.write_into(&tmp, model, None, &state)?;
        let dst = self.final_dir();
        if dst.exists() {
            // Move the old one aside first so `final` is never half-written;
            // a crash in between leaves no final/ and the phase redoes it.
            let old = self.tmp_in(&self.out, "final-old");
            std::fs::rename(&dst, &old).map_err(|e| TrainError::io(&dst, e))?;
            std::fs::rename(&tmp, &dst).map_err(|e| TrainError::io(&dst, e))?;
            std::fs::remove_dir_all(&old).map_err(|e| TrainError::io(&old, e))?;
        } else {
            std::fs::rename(&tmp, &dst).map_err(|e| TrainError::io(&dst, e))?;
        }
        sync_dir(&self.out)?;
        Ok(dst)
    }

    /// Step checkpoint directories by step, newest first (not verified).
    fn step_dirs(&self) -> Result<Vec<(u64, PathBuf)>> {
        let dir = self.steps_dir();
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| TrainError::io(&dir, e))? {
            let path = entry.map_err(|e| TrainError::io(&dir, e))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if let Some(step) = name
                .strip_prefix(STEP_PREFIX)
                .and_then(|s| s.parse::<u64>().ok())
            {
                out.push((step, path));
            }
        }
        out.sort_by_key(|e| std::cmp::Reverse(e.0));
        Ok(out)
    }

    fn prune(&self) -> Result<()> {
        for (_, path) in self.step_dirs()?.into_iter().skip(self.keep_last) {
            std::fs::remove_dir_all(&path).map_err(|e| TrainError::io(&path, e))?;
        }
        Ok(())
    }

    /// The newest checkpoint that verifies: `final/` if the phase finished,
    /// else the newest valid step checkpoint. Invalid ones are logged and
    /// skipped (and left for inspection).
    pub fn latest(&self) -> Result<Option<Found>> {
        let mut candidates = self.step_dirs()?;
        let fin = self.final_dir();
        if fin.is_dir() {
            candidates.insert(0, (u64::MAX, fin));
        }
        for (_, dir) in candidates {
            match verify(&dir) {
                Ok((_, state)) => return Ok(Some(Found { dir, state })),
                Err(why) => {
                    tracing::warn!(dir = %dir.display(), %why, "skipping an invalid checkpoint")
                }
            }
        }
        Ok(None)
    }

    /// Loads a verified checkpoint's weights into `model` and its optimizer
    /// state into `optimizer` (when it has one).
    pub fn restore(&self, found: &Found, model: &Qwen3, optimizer: &mut AdamW) -> Result<()> {
        tau2_model::load_weights(model, &found.dir)?;
        let opt = found.dir.join(OPTIMIZER_FILE);
        if opt.is_file() {
            let steps = found.state.optimizer_steps.unwrap_or(found.state.step);
            optimizer.load(&opt, steps)?;
        } else if !found.state.finished {
            return Err(TrainError::checkpoint(&found.dir, "no optimizer state"));
        }
        Ok(())
    }

    /// `dir` relative to the pipeline's root (the output directory's parent),
    /// as progress reports name checkpoints.
    pub fn report_path(&self, dir: &Path) -> String {
        let root = self.out.parent().unwrap_or(&self.out);
        dir.strip_prefix(root)
            .unwrap_or(dir)
            .to_string_lossy()
            .into_owned()
    }
}
