//! The phase contract every phase honours (api/src/job.rs): the base model
//! created or checked before anything loads, resumption from the latest
//! complete checkpoint in the output directory (the trainers do it on every
//! attempt; `TAU2_ATTEMPT` is logged and reported), progress to the
//! operator when `TAU2_PROGRESS_ENDPOINT` is set, and a [`PhaseSummary`] of
//! at most 4 KiB written to `TAU2_TERMINATION_MESSAGE_PATH` when set, also
//! when the phase fails.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use tau2_api::job::{ENV_TERMINATION_MESSAGE_PATH, PhaseJob, PhaseSummary};
use tau2_train::progress::{Observer, Reporter, ReporterConfig};

/// The source of the embedded tiny model.
pub const BUILTIN_TINY: &str = "builtin://tiny";
/// Where `builtin://tiny` finds the Qwen3 tokenizer when no flag names it.
pub const ENV_TOKENIZER_DIR: &str = "TAU2_QWEN3_TOKENIZER_DIR";
/// Kubernetes keeps at most this many bytes of a termination message.
pub const SUMMARY_LIMIT: usize = 4096;

/// How a phase runs besides its configuration.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Show progress bars (the local pipeline).
    pub bars: bool,
    /// The tokenizer for `builtin://tiny` (else `TAU2_QWEN3_TOKENIZER_DIR`).
    pub tokenizer_dir: Option<PathBuf>,
}

/// Creates the base model when the configuration says where it comes from
/// and it is not there yet: `builtin://tiny` writes the tiny random Qwen3
/// with the real tokenizer; `hf://` downloads the checkpoint from the Hub
/// (through a cache on the checkpoint volume, so a retry does not fetch again).
pub fn ensure_base(job: &PhaseJob, opts: &RunOptions) -> anyhow::Result<()> {
    let base = &job.model.base;
    let present = base.join("config.json").is_file();
    match job.model.source.as_deref() {
        _ if present => {}
        Some(BUILTIN_TINY) => {
            let tok = opts
                .tokenizer_dir
                .clone()
                .or_else(|| std::env::var_os(ENV_TOKENIZER_DIR).map(PathBuf::from))
                .with_context(|| {
                    format!(
                        "{BUILTIN_TINY} needs the Qwen3 tokenizer: set {ENV_TOKENIZER_DIR} to a directory \
                         with tokenizer.json and tokenizer_config.json"
                    )
                })?;
            build_atomically(base, |tmp| {
                super::init_model::create(
                    &tok,
                    tmp,
                    tau2_model::init::Size::Tiny,
                    true,
                    job.seed as u64,
                )
                .map(|_| ())
            })?;
            eprintln!(
                "created the tiny model ({BUILTIN_TINY}) in {}",
                base.display()
            );
        }
        Some(uri) if uri.starts_with(super::hub::HF_SCHEME) => {
            super::hub::download_model(uri, base, opts.bars)?;
        }
        Some(other) => bail!(
            "the base model {other} is not in {}: this worker creates {BUILTIN_TINY} and \
             downloads hf://<org>/<repo>[@<revision>]; put other models there first",
            base.display()
        ),
        None => {}
    }
    if !job.model.init.join("config.json").is_file() {
        bail!(
            "the initial checkpoint {} has no config.json (is the previous phase finished?)",
            job.model.init.display()
        );
    }
    Ok(())
}

/// Fills a temporary sibling of `dir` with `fill` and renames it into
/// place, so a crash never leaves half a model that looks complete.
pub fn build_atomically(
    dir: &Path,
    fill: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let tmp = dir.with_extension("partial");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
    }
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    fill(&tmp)?;
    std::fs::rename(&tmp, dir).with_context(|| format!("moving the model to {}", dir.display()))?;
    if let Some(parent) = dir.parent() {
        // The rename itself survives a node crash only once the directory is synced.
        let _ = std::fs::File::open(parent).and_then(|d| d.sync_all());
    }
    Ok(())
}

/// The attempt, from `TAU2_ATTEMPT` or the configuration.
pub fn attempt(job: &PhaseJob) -> anyhow::Result<u32> {
    match std::env::var(tau2_api::job::ENV_ATTEMPT) {
        Ok(a) => a
            .trim()
            .parse()
            .with_context(|| format!("{}={a:?} is not a number", tau2_api::job::ENV_ATTEMPT)),
        Err(_) => Ok(u32::try_from(job.attempt.max(1)).unwrap_or(1)),
    }
}

/// `<output dir name>/final`: the final checkpoint relative to the pipeline root.
pub fn final_rel(out: &Path) -> String {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!("{name}/final")
}

/// Eval results in the shape of the pipeline status' `results` (no
/// definitions, no pass^k curve: they do not fit a termination message).
pub fn status_results(r: &tau2_train::passk::EvalResults) -> Value {
    let rates = |p: &tau2_train::passk::PassRates| {
        json!({"tasks": p.tasks, "passAt1": p.pass_at1, "passAt1Unbiased": p.pass_at1_unbiased,
               "passAtK": p.pass_at_k, "passAtKUnbiased": p.pass_at_k_unbiased,
               "passHatK": p.pass_hat_k, "averageReward": p.average_reward})
    };
    let domains: Vec<Value> = r
        .domains
        .iter()
        .map(|d| {
            let mut v = rates(&d.rates);
            if let Some(o) = v.as_object_mut() {
                o.insert("domain".into(), json!(d.domain));
            }
            v
        })
        .collect();
    json!({"split": r.split, "k": r.k, "samplesPerTask": r.samples_per_task,
           "overall": rates(&r.overall), "domains": domains})
}

/// The summary as JSON of at most [`SUMMARY_LIMIT`] bytes: the message is
/// shortened first, then the results dropped.
pub fn summary_json(summary: &PhaseSummary) -> String {
    let mut s = summary.clone();
    let text = |s: &PhaseSummary| serde_json::to_string(s).unwrap_or_else(|_| "{}".into());
    let mut out = text(&s);
    while out.len() > SUMMARY_LIMIT {
        match &mut s.message {
            Some(m) if m.len() > 64 => {
                let cut = m
                    .len()
                    .saturating_sub(out.len() - SUMMARY_LIMIT + 8)
                    .max(64);
                let mut end = cut.min(m.len());
                while !m.is_char_boundary(end) {
                    end -= 1;
                }
                m.truncate(end);
                m.push('…');
            }
            _ if s.results.is_some() => s.results = None,
            _ => {
                s.message = None;
                out = text(&s);
                break;
            }
        }
        out = text(&s);
    }
    out
}

/// Writes the summary where the pod's termination message is read from, if set.
pub fn write_summary(summary: &PhaseSummary) -> anyhow::Result<()> {
    let Some(path) = std::env::var_os(ENV_TERMINATION_MESSAGE_PATH).filter(|p| !p.is_empty())
    else {
        return Ok(());
    };
    let path = PathBuf::from(path);
    std::fs::write(&path, summary_json(summary))
        .with_context(|| format!("writing the termination message {}", path.display()))
}

/// Runs a phase body and writes its summary (a failure's too), so the
/// operator learns the outcome even without progress reports.
pub fn conclude(result: anyhow::Result<PhaseSummary>) -> anyhow::Result<PhaseSummary> {
    match result {
        Ok(summary) => {
            write_summary(&summary)?;
            Ok(summary)
        }
        Err(e) => {
            let failed = PhaseSummary {
                succeeded: false,
                final_checkpoint: None,
                step: None,
                message: Some(format!("{e:#}")),
                results: None,
            };
            if let Err(w) = write_summary(&failed) {
                eprintln!("{w:#}");
            }
            Err(e)
        }
    }
}

/// The phase's progress reporter (operator endpoint from the environment or
/// the configuration; always `progress.jsonl` in the output directory).
pub fn reporter(job: &PhaseJob) -> anyhow::Result<Reporter> {
    let mut cfg = ReporterConfig::from_job(job)?;
    cfg.identity.attempt = attempt(job)?;
    Ok(Reporter::start(cfg)?)
}

/// Delivers what is pending and says what could not be.
pub fn close(reporter: Reporter, phase: &str) {
    let delivery = reporter.close(Duration::from_secs(30));
    if delivery.undelivered > 0 {
        eprintln!(
            "{phase}: {} progress report(s) not delivered (they are in progress.jsonl)",
            delivery.undelivered
        );
    }
}

/// An observer that forwards to another and draws a progress bar.
pub struct Bars<'a> {
    inner: &'a mut dyn Observer,
    bar: Option<ProgressBar>,
    phase: String,
}

impl<'a> Bars<'a> {
    pub fn new(inner: &'a mut dyn Observer, phase: &str, show: bool) -> Self {
        Self {
            inner,
            bar: None,
            phase: if show {
                phase.to_string()
            } else {
                String::new()
            },
        }
    }

    fn bar(&mut self, total: u64) -> Option<&ProgressBar> {
        if self.phase.is_empty() {
            return None;
        }
        let phase = self.phase.clone();
        let bar = self.bar.get_or_insert_with(|| {
            let b = ProgressBar::new(total);
            if let Ok(style) =
                ProgressStyle::with_template("{prefix:>5} [{bar:30}] {pos}/{len} {elapsed} {msg}")
            {
                b.set_style(style.progress_chars("=> "));
            }
            b.set_prefix(phase);
            b
        });
        Some(bar)
    }

    pub fn finish(&mut self) {
        if let Some(b) = &self.bar {
            b.finish();
        }
    }
}

impl Observer for Bars<'_> {
    fn step(&mut self, step: u64, total: u64, metrics: &BTreeMap<String, f64>) {
        if let Some(bar) = self.bar(total) {
            bar.set_length(total);
            bar.set_position(step);
            let shown: Vec<String> = ["loss", "reward", "shaped_reward"]
                .iter()
                .filter_map(|k| metrics.get(*k).map(|v| format!("{k} {v:.4}")))
                .collect();
            bar.set_message(shown.join(" "));
        }
        self.inner.step(step, total, metrics);
    }

    fn checkpoint(&mut self, step: u64, path: &str, is_final: bool) {
        self.inner.checkpoint(step, path, is_final);
    }
}
