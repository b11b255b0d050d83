//! `tau2-worker pipeline`: the whole recipe on this machine, for a user
//! without a cluster. It writes one [`PhaseJob`] per phase, exactly as the
//! operator would (base model `builtin://tiny`, each phase's `init` the
//! previous phase's `final/`, the scripted user), and runs each as its own
//! `tau2-worker <phase> --config <file>` process, as a Job would; progress
//! bars follow each phase's `progress.jsonl`. The untrained model is
//! evaluated on the same tasks first, so the final table shows learning
//! side by side.
//!
//! Small defaults for 2 CPU cores: SFT on the gold demonstrations of the
//! mock domain (9 tasks), RFT retraining from the SFT checkpoint (not from
//! the random base, which a few steps could not bring back), a few GRPO
//! steps, and 4 samples per task in eval at temperature 0.3.
//!
//! `tau2-worker run -f` (`run.rs`) builds its steps from a manifest instead
//! and runs them with [`run_all`] and [`report`] too.

use std::io::{BufRead, Seek};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use tau2_api::bench::{DataVersion, Domain, Split};
use tau2_api::job::{DataInput, Dtype, ModelInput, PhaseJob, PhaseParams, PipelineRef};
use tau2_api::phases::{EvalParams, GrpoParams, RetrainFrom, RftParams, SftParams};
use tau2_api::user_sim::UserSimulator;

use super::phase::{BUILTIN_TINY, ENV_TOKENIZER_DIR};

#[derive(clap::Args, Clone)]
pub struct PipelineArgs {
    /// Run here, without a cluster (the only mode; kept for clarity in scripts).
    #[arg(long)]
    pub local: bool,
    /// Where everything goes (base model, one directory per phase).
    #[arg(long, default_value = "tau2-local")]
    pub out: PathBuf,
    /// The Qwen3 tokenizer directory for the tiny model.
    #[arg(long, env = ENV_TOKENIZER_DIR)]
    pub tokenizer_dir: PathBuf,
    /// tau2-bench data directory.
    #[arg(long, env = "TAU2_DATA_DIR", default_value = "/opt/tau2")]
    pub data: PathBuf,
    #[arg(long, value_parser = super::tau2::parse_domain, default_value = "mock")]
    pub domain: Domain,
    /// Split for training and evaluation (mock has only `base`).
    #[arg(long, value_parser = super::tau2::parse_split, default_value = "base")]
    pub split: Split,
    #[arg(long, default_value_t = 0)]
    pub seed: i64,
    /// 50 epochs of the 8 mock demonstrations (100 steps): greedy pass@1 0.78
    /// where 40 epochs (loss 0.39) still leaves the model at the untrained 0.11.
    #[arg(long, default_value_t = 50)]
    pub sft_epochs: i32,
    #[arg(long, default_value_t = 1e-2)]
    pub sft_lr: f64,
    #[arg(long, default_value_t = 2)]
    pub rft_samples: i32,
    #[arg(long, default_value_t = 2)]
    pub rft_epochs: i32,
    #[arg(long, default_value_t = 4)]
    pub grpo_steps: i32,
    #[arg(long, default_value_t = 4)]
    pub grpo_tasks: i32,
    #[arg(long, default_value_t = 2)]
    pub grpo_samples: i32,
    #[arg(long, default_value_t = 4)]
    pub eval_samples: i32,
    /// Sampling temperature of eval (the recipe's 0.8 is hard on a model this small).
    #[arg(long, default_value_t = 0.3)]
    pub eval_temperature: f64,
    /// Most tokens in one assistant turn (all phases).
    #[arg(long, default_value_t = 96)]
    pub max_new_tokens: i32,
    /// Most orchestrator steps per episode.
    #[arg(long, default_value_t = 20)]
    pub max_steps: i32,
    /// Skip the untrained model's evaluation.
    #[arg(long)]
    pub no_baseline: bool,
    /// Only these phases (comma-separated from sft,rft,grpo,eval).
    #[arg(long, value_delimiter = ',', default_value = "sft,rft,grpo,eval")]
    pub phases: Vec<String>,
}

fn base_job(args: &PipelineArgs, out: &Path, init: PathBuf, params: PhaseParams) -> PhaseJob {
    PhaseJob {
        pipeline: PipelineRef {
            namespace: "local".into(),
            name: "local".into(),
            uid: "local".into(),
        },
        attempt: 1,
        seed: args.seed,
        model: ModelInput {
            base: out.join("base-model"),
            source: Some(BUILTIN_TINY.into()),
            init,
            dtype: Dtype::Float32,
        },
        data: DataInput {
            dir: args.data.clone(),
            version: DataVersion::Recipe337326e,
            domains: vec![args.domain],
            train_split: args.split,
            eval_split: args.split,
            max_eval_tasks_per_domain: None,
        },
        user_simulator: Some(UserSimulator::scripted()),
        output_dir: PathBuf::new(),
        params,
        progress: None,
    }
}

/// The phase jobs in order: (name, output dir name, job).
pub fn jobs(args: &PipelineArgs, out: &Path) -> Vec<(String, PhaseJob)> {
    let mut list = Vec::new();
    let base = out.join("base-model");
    let mut init = base.clone();
    let mut push = |name: &str, dir: &str, init: PathBuf, params: PhaseParams| {
        let mut job = base_job(args, out, init, params);
        job.output_dir = out.join(dir);
        list.push((name.to_string(), job));
        out.join(dir).join("final")
    };
    let eval = {
        let mut p = EvalParams {
            samples_per_task: args.eval_samples,
            k: args.eval_samples,
            ..EvalParams::default()
        };
        p.rollout.max_new_tokens = args.max_new_tokens;
        p.rollout.max_steps = args.max_steps;
        p.rollout.temperature = args.eval_temperature;
        p
    };
    if !args.no_baseline {
        push(
            "eval-base",
            "eval-base",
            base.clone(),
            PhaseParams::Eval(eval.clone()),
        );
    }
    let wants = |p: &str| args.phases.iter().any(|x| x == p);
    if wants("sft") {
        let mut p = SftParams {
            dataset: tau2_train::demos::GOLD_DATASET.into(),
            epochs: args.sft_epochs,
            batch_size: 4,
            max_tokens_per_micro_batch: 16384,
            max_sequence_length: 8192,
            save_every_steps: 20,
            ..SftParams::default()
        };
        p.optimizer.learning_rate = args.sft_lr;
        p.optimizer.warmup_ratio = 0.05;
        init = push("sft", "sft", init, PhaseParams::Sft(p));
    }
    if wants("rft") {
        let mut p = RftParams {
            samples_per_task: args.rft_samples,
            retrain_from: RetrainFrom::Previous,
            merge_sft_dataset: true,
            epochs: args.rft_epochs,
            batch_size: 4,
            max_tokens_per_micro_batch: 16384,
            save_every_steps: 20,
            ..RftParams::default()
        };
        p.rollout.max_new_tokens = args.max_new_tokens;
        p.rollout.max_steps = args.max_steps;
        // Continuing from SFT: a gentler step (sftLr / 4 raised the loss).
        p.optimizer.learning_rate = args.sft_lr / 20.0;
        init = push("rft", "rft", init, PhaseParams::Rft(p));
    }
    if wants("grpo") {
        let mut p = GrpoParams {
            steps: args.grpo_steps,
            tasks_per_step: args.grpo_tasks,
            samples_per_task: args.grpo_samples,
            save_every_steps: 2,
            max_tokens_per_micro_batch: 16384,
            ..GrpoParams::default()
        };
        p.rollout.max_new_tokens = args.max_new_tokens;
        p.rollout.max_steps = args.max_steps;
        p.optimizer.learning_rate = 1e-4;
        init = push("grpo", "grpo", init, PhaseParams::Grpo(p));
    }
    if wants("eval") {
        push("eval", "eval", init, PhaseParams::Eval(eval));
    }
    list
}

fn command_of(name: &str) -> &str {
    name.split('-').next().unwrap_or(name)
}

/// Follows `progress.jsonl` for the latest step while the phase runs.
fn follow(path: &Path, pos: &mut u64, bar: &ProgressBar) {
    let Ok(mut f) = std::fs::File::open(path) else {
        return;
    };
    if f.seek(std::io::SeekFrom::Start(*pos)).is_err() {
        return;
    }
    let mut reader = std::io::BufReader::new(f);
    let mut line = String::new();
    while reader.read_line(&mut line).unwrap_or(0) > 0 {
        if !line.ends_with('\n') {
            break;
        }
        *pos += line.len() as u64;
        if let Ok(v) = serde_json::from_str::<Value>(&line) {
            let e = &v["event"];
            if e["type"] == "step" {
                bar.set_length(e["totalSteps"].as_u64().unwrap_or(0));
                bar.set_position(e["step"].as_u64().unwrap_or(0));
                let shown: Vec<String> = ["loss", "reward"]
                    .iter()
                    .filter_map(|k| e["metrics"][*k].as_f64().map(|x| format!("{k} {x:.4}")))
                    .collect();
                bar.set_message(shown.join(" "));
            }
        }
        line.clear();
    }
}

fn run_phase(
    name: &str,
    job: &PhaseJob,
    dir: &Path,
    tokenizer: Option<&Path>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&job.output_dir)
        .with_context(|| format!("creating {}", job.output_dir.display()))?;
    let config = dir.join(format!("{name}.json"));
    std::fs::write(&config, serde_json::to_string_pretty(job)?)
        .with_context(|| format!("writing {}", config.display()))?;
    let log_path = dir.join(format!("{name}.log"));
    let log = std::fs::File::create(&log_path)?;
    let exe = std::env::current_exe().context("locating tau2-worker")?;
    let mut command = Command::new(exe);
    if let Some(tokenizer) = tokenizer {
        command.env(ENV_TOKENIZER_DIR, tokenizer);
    }
    let mut child = command
        .arg(command_of(name))
        .arg("--config")
        .arg(&config)
        .env_remove(tau2_api::job::ENV_TERMINATION_MESSAGE_PATH)
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .spawn()
        .with_context(|| format!("starting the {name} phase"))?;
    let bar = ProgressBar::new(0);
    if let Ok(style) =
        ProgressStyle::with_template("{prefix:>9} {spinner} [{bar:30}] {pos}/{len} {elapsed} {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(name.to_string());
    bar.enable_steady_tick(Duration::from_millis(200));
    let progress = job.output_dir.join("progress.jsonl");
    let mut pos = std::fs::metadata(&progress).map_or(0, |m| m.len());
    let status = loop {
        follow(&progress, &mut pos, &bar);
        if let Some(status) = child.try_wait()? {
            break status;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    follow(&progress, &mut pos, &bar);
    bar.finish();
    if !status.success() {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "the {name} phase failed ({status}); the end of {}:\n{}",
            log_path.display(),
            tail.join("\n")
        );
    }
    Ok(())
}

fn rates(path: &Path) -> Option<Value> {
    let text = std::fs::read_to_string(path).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    Some(v["results"].clone())
}

fn read_value(path: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// What each training phase measured on its way, from the files it wrote
/// (no extra evaluation): SFT's loss, the success rate of RFT's samples
/// (the SFT checkpoint's sampled success on the training tasks), and GRPO's
/// per-step reward (its first step samples the RFT checkpoint).
fn print_phase_signals(out: &Path) {
    let num = |v: &Value| v.as_f64().map_or("?".to_string(), |x| format!("{x:.3}"));
    let mut lines = Vec::new();
    if let Some(r) = read_value(&out.join("sft/results.json")) {
        lines.push(format!(
            "sft        loss {} -> {}",
            num(&r["firstLoss"]),
            num(&r["finalLoss"])
        ));
    }
    if let Some(r) = read_value(&out.join("rft").join(tau2_train::rft::SELECTION_FILE)) {
        let s = &r["selection"];
        let retrain = read_value(&out.join("rft/results.json"))
            .map(|r| format!(", retrain loss -> {}", num(&r["finalLoss"])))
            .unwrap_or_default();
        lines.push(format!(
            "rft        sampled success of the SFT checkpoint {} ({} episodes), kept {}{retrain}",
            num(&s["successRate"]),
            s["sampled"],
            s["kept"]
        ));
    }
    if let Some(r) = read_value(&out.join("grpo/results.json")) {
        lines.push(format!(
            "grpo       reward first step {} -> last step {} (mean {} over {} steps)",
            num(&r["firstStepReward"]),
            num(&r["lastStepReward"]),
            num(&r["meanReward"]),
            r["steps"]
        ));
    }
    if !lines.is_empty() {
        println!("\nphase      what it measured on the training tasks");
        for l in lines {
            println!("{l}");
        }
    }
}

pub fn run(args: PipelineArgs) -> anyhow::Result<()> {
    let out = prepare_out(&args.out)?;
    let started = Instant::now();
    let jobs = jobs(&args, &out);
    let outcomes = run_all(&jobs, &out, Some(&args.tokenizer_dir))?;
    report(&out, &outcomes, started)
}

/// Creates the output directory and returns its absolute path (the phase
/// configurations name absolute paths).
pub fn prepare_out(out: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    out.canonicalize()
        .with_context(|| format!("resolving {}", out.display()))
}

/// What became of one step of a local run.
pub struct Outcome {
    pub name: String,
    /// `Succeeded`, or `Succeeded earlier` for a step a previous run finished.
    pub state: &'static str,
    /// Seconds the step ran (in the run that finished it, when known).
    pub seconds: Option<f64>,
    pub final_checkpoint: Option<PathBuf>,
}

/// Whether a previous run finished this step: a training phase's `final/`
/// or eval's `results.json` is written last, atomically.
fn finished(job: &PhaseJob) -> bool {
    match job.params {
        PhaseParams::Eval(_) => job.output_dir.join("results.json").is_file(),
        _ => job.output_dir.join("final").is_dir(),
    }
}

/// Runs the steps in order, skipping those a previous run finished; an
/// unfinished one resumes from its latest complete checkpoint (the phase
/// commands do that themselves). A step whose configuration differs from the
/// one the directory was made with is refused: its checkpoints belong to
/// another configuration.
pub fn run_all(
    jobs: &[(String, PhaseJob)],
    out: &Path,
    tokenizer: Option<&Path>,
) -> anyhow::Result<Vec<Outcome>> {
    let configs = out.join("configs");
    std::fs::create_dir_all(&configs)?;
    let earlier = previous_seconds(out);
    let mut outcomes = Vec::new();
    for (name, job) in jobs {
        let config = configs.join(format!("{name}.json"));
        if let Ok(old) = PhaseJob::read(&config)
            && old != *job
        {
            bail!(
                "{} was made with another configuration of the {name} phase ({}); \
                 use a new output directory",
                out.display(),
                config.display()
            );
        }
        let final_checkpoint =
            (!matches!(job.params, PhaseParams::Eval(_))).then(|| job.output_dir.join("final"));
        if finished(job) {
            eprintln!("{name}: finished by an earlier run, skipped");
            outcomes.push(Outcome {
                name: name.clone(),
                state: "Succeeded earlier",
                seconds: earlier.get(name).copied(),
                final_checkpoint,
            });
            continue;
        }
        let t = Instant::now();
        run_phase(name, job, &configs, tokenizer)?;
        let seconds = t.elapsed().as_secs_f64();
        eprintln!("{name}: done in {seconds:.0}s");
        outcomes.push(Outcome {
            name: name.clone(),
            state: "Succeeded",
            seconds: Some(seconds),
            final_checkpoint,
        });
    }
    Ok(outcomes)
}

const STATUS_FILE: &str = "status.json";

/// Step durations from the last run's `status.json`, for skipped steps.
fn previous_seconds(out: &Path) -> std::collections::HashMap<String, f64> {
    let v: Value = std::fs::read_to_string(out.join(STATUS_FILE))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    v["phases"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p["name"].as_str()?.to_string(), p["seconds"].as_f64()?)))
        .collect()
}

/// Prints the steps (state, duration, final checkpoint) and the pass@k
/// table of the untrained model (`eval-base`) beside the trained one
/// (`eval`), and writes the same to `<out>/status.json`.
pub fn report(out: &Path, outcomes: &[Outcome], started: Instant) -> anyhow::Result<()> {
    println!(
        "\n{:<10} {:<18} {:>8}  final checkpoint",
        "phase", "state", "time"
    );
    for o in outcomes {
        let time = o.seconds.map_or_else(|| "-".into(), |s| format!("{s:.0}s"));
        let ckpt = o
            .final_checkpoint
            .as_ref()
            .filter(|f| f.is_dir())
            .map_or_else(|| "-".into(), |f| f.display().to_string());
        println!("{:<10} {:<18} {time:>8}  {ckpt}", o.name, o.state);
    }
    print_phase_signals(out);
    let base = rates(&out.join("eval-base").join("results.json"));
    let fin = rates(&out.join("eval").join("results.json"));
    let k = fin
        .as_ref()
        .or(base.as_ref())
        .and_then(|r| r["k"].as_u64())
        .unwrap_or(1);
    println!(
        "\n{:<16} {:>6} {:>8} {:>8} {:>8} {:>8}",
        "model",
        "tasks",
        "pass@1",
        format!("pass@{k}"),
        format!("pass^{k}"),
        "reward"
    );
    for (label, r) in [("untrained", &base), ("after pipeline", &fin)] {
        if let Some(r) = r {
            let o = &r["overall"];
            let f = |key: &str| o[key].as_f64().unwrap_or(f64::NAN);
            println!(
                "{label:<16} {:>6} {:>8.3} {:>8.3} {:>8.3} {:>8.3}",
                o["tasks"].as_u64().unwrap_or(0),
                f("passAt1"),
                f("passAtK"),
                f("passHatK"),
                f("averageReward")
            );
        }
    }
    println!(
        "(pass@1: first sample; pass@{k}: any of the first {k}; pass^{k}: tau2's all-{k}-succeed; \
         {:.0}s in all; results in {})",
        started.elapsed().as_secs_f64(),
        out.display()
    );
    let status = serde_json::json!({
        "phases": outcomes.iter().map(|o| serde_json::json!({
            "name": o.name,
            "state": o.state,
            "seconds": o.seconds,
            "finalCheckpoint": o.final_checkpoint.as_ref().filter(|f| f.is_dir()),
        })).collect::<Vec<_>>(),
        "k": k,
        "untrained": base.as_ref().map(|r| &r["overall"]),
        "trained": fin.as_ref().map(|r| &r["overall"]),
    });
    let path = out.join(STATUS_FILE);
    std::fs::write(&path, serde_json::to_string_pretty(&status)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
