//! The phases through the binary, as the operator runs them: the local
//! pipeline end to end, a SIGKILLed SFT phase resumed on its next attempt
//! with weights equal to an uninterrupted run's, a SIGKILLed eval resumed
//! with results equal to an uninterrupted run's, the termination-message
//! summary, and learning on the gold demonstrations. They need the real
//! Qwen3 tokenizer (TAU2_QWEN3_TOKENIZER_DIR; without it they print a notice
//! and pass).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn worker() -> Command {
    // TAU2_TEST_WORKER: a copy of the binary, where a shared target
    // directory may be rebuilt from another checkout during a long run.
    let exe = std::env::var_os("TAU2_TEST_WORKER").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_tau2-worker")),
        PathBuf::from,
    );
    let mut c = Command::new(exe);
    c.env("OMP_NUM_THREADS", "1")
        .env_remove("TAU2_TERMINATION_MESSAGE_PATH")
        .env_remove("TAU2_PROGRESS_ENDPOINT")
        .env_remove("TAU2_ATTEMPT");
    c
}

fn tokenizer() -> Option<PathBuf> {
    let dir = std::env::var_os("TAU2_QWEN3_TOKENIZER_DIR").filter(|d| !d.is_empty());
    if dir.is_none() {
        eprintln!("skipped: TAU2_QWEN3_TOKENIZER_DIR is not set");
    }
    dir.map(PathBuf::from)
}

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/tau2")
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("JSON")
}

/// A PhaseJob as the operator writes it: base `builtin://tiny` under `root`.
fn job(root: &Path, phase: &str, init: Option<&str>, params: Value) -> Value {
    job_seeded(root, phase, init, params, 7)
}

fn job_seeded(root: &Path, phase: &str, init: Option<&str>, params: Value, seed: i64) -> Value {
    let base = root.join("base-model");
    json!({
        "pipeline": {"namespace": "test", "name": "t", "uid": "u"},
        "attempt": 1,
        "seed": seed,
        "model": {
            "base": base,
            "source": "builtin://tiny",
            "init": init.map_or(base.clone(), |i| root.join(i)),
            "dtype": "float32"
        },
        "data": {"dir": data(), "version": "Recipe337326e", "domains": ["mock"],
                 "trainSplit": "base", "evalSplit": "base"},
        "userSimulator": {"mode": "Scripted"},
        "outputDir": root.join(phase),
        "params": {phase: params},
    })
}

fn write_job(root: &Path, name: &str, job: &Value) -> PathBuf {
    std::fs::create_dir_all(root).expect("root");
    let path = root.join(format!("{name}.json"));
    std::fs::write(&path, job.to_string()).expect("config written");
    path
}

fn sft_params(epochs: i32, lr: f64) -> Value {
    json!({"dataset": "builtin://gold", "epochs": epochs, "batchSize": 2, "saveEverySteps": 2,
           "maxTokensPerMicroBatch": 16384,
           "optimizer": {"learningRate": lr, "warmupRatio": 0.05}})
}

/// Runs `tau2-worker <phase> --config <cfg>` to success.
fn run_phase(phase: &str, cfg: &Path, tokenizer: &Path) -> String {
    let mut cmd = worker();
    cmd.args([phase, "--config"])
        .arg(cfg)
        .env("TAU2_QWEN3_TOKENIZER_DIR", tokenizer);
    run_ok(cmd)
}

fn run_ok(mut cmd: Command) -> String {
    let out = cmd.output().expect("tau2-worker runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "tau2-worker failed:\n{text}");
    text
}

#[test]
fn local_pipeline_runs_every_phase_on_the_tiny_model() {
    let Some(tok) = tokenizer() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("run");
    let t = Instant::now();
    let mut cmd = worker();
    cmd.args(["pipeline", "--local", "--out"])
        .arg(&out)
        .arg("--tokenizer-dir")
        .arg(&tok)
        .arg("--data")
        .arg(data())
        .args([
            "--sft-epochs",
            "2",
            "--rft-samples",
            "2",
            "--rft-epochs",
            "1",
        ])
        .args([
            "--grpo-steps",
            "2",
            "--grpo-tasks",
            "2",
            "--grpo-samples",
            "2",
        ])
        .args([
            "--eval-samples",
            "2",
            "--max-new-tokens",
            "24",
            "--max-steps",
            "8",
        ]);
    let text = run_ok(cmd);
    eprintln!("pipeline in {:.0}s:\n{text}", t.elapsed().as_secs_f64());
    for phase in ["sft", "rft", "grpo"] {
        let f = out.join(phase).join("final");
        assert!(f.join("config.json").is_file(), "{phase}/final has a model");
        assert!(
            f.join("model.safetensors").is_file(),
            "{phase}/final has weights"
        );
        assert!(out.join(phase).join("results.json").is_file());
    }
    // Each phase started from the previous one's final checkpoint.
    let rft_cfg = read_json(&out.join("configs/rft.json"));
    assert_eq!(rft_cfg["model"]["init"], json!(out.join("sft/final")));
    let grpo_cfg = read_json(&out.join("configs/grpo.json"));
    assert_eq!(grpo_cfg["model"]["init"], json!(out.join("rft/final")));
    for eval in ["eval", "eval-base"] {
        let r = read_json(&out.join(eval).join("results.json"));
        let o = &r["results"]["overall"];
        assert_eq!(o["tasks"], json!(9), "{eval}: {o}");
        for key in ["passAt1", "passAtK", "passHatK", "averageReward"] {
            let v = o[key].as_f64().expect("a rate");
            assert!((0.0..=1.0).contains(&v), "{eval} {key} {v}");
        }
    }
    assert!(
        text.contains("after pipeline"),
        "the pass@k table is printed"
    );
    assert!(
        text.contains("sampled success of the SFT checkpoint")
            && text.contains("reward first step"),
        "each training phase's own measurement is printed"
    );
}

/// A small Tau2Pipeline manifest: every phase for real, in little time.
const SMALL_MANIFEST: &str = "
apiVersion: tau2.dev/v1alpha1
kind: Tau2Pipeline
metadata: {name: small}
spec:
  model: {uri: builtin://tiny, dtype: float32}
  tau2: {domains: [mock], trainSplit: base, evalSplit: base, maxEvalTasksPerDomain: 3}
  userSimulator: {mode: Scripted}
  storage: {existingClaim: unused-here}
  worker: {resources: {gpus: 0}}
  phases:
    sft: {dataset: builtin://gold, epochs: 1, batchSize: 2, maxTokensPerMicroBatch: 16384, saveEverySteps: 2}
    rft:
      samplesPerTask: 1
      epochs: 1
      batchSize: 2
      retrainFrom: Previous
      mergeSftDataset: true
      maxTokensPerMicroBatch: 16384
      rollout: {maxNewTokens: 24, maxSteps: 8}
    grpo:
      steps: 1
      tasksPerStep: 2
      samplesPerTask: 2
      maxTokensPerMicroBatch: 16384
      rollout: {maxNewTokens: 24, maxSteps: 8}
    eval: {samplesPerTask: 2, k: 2, rollout: {maxNewTokens: 24, maxSteps: 8}}
";

#[test]
fn run_f_runs_a_manifest_and_a_rerun_skips_finished_phases() {
    let Some(tok) = tokenizer() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = dir.path().join("small.yaml");
    std::fs::write(&manifest, SMALL_MANIFEST).expect("manifest written");
    let out = dir.path().join("run");
    let run = || {
        let mut cmd = worker();
        cmd.args(["run", "-f"])
            .arg(&manifest)
            .arg("--out")
            .arg(&out)
            .arg("--tokenizer-dir")
            .arg(&tok)
            .arg("--data")
            .arg(data());
        cmd
    };
    let t = Instant::now();
    let text = run_ok(run());
    eprintln!("run -f in {:.0}s:\n{text}", t.elapsed().as_secs_f64());
    for phase in ["sft", "rft", "grpo"] {
        let f = out.join(phase).join("final");
        assert!(
            f.join("model.safetensors").is_file(),
            "{phase}/final has weights"
        );
        assert!(
            text.contains(&f.display().to_string()),
            "{phase}'s final is printed"
        );
    }
    let grpo_cfg = read_json(&out.join("configs/grpo.json"));
    assert_eq!(grpo_cfg["model"]["init"], json!(out.join("rft/final")));
    let status = read_json(&out.join("status.json"));
    for model in ["untrained", "trained"] {
        let o = &status[model];
        assert_eq!(o["tasks"], json!(3), "{model}: {status}");
        for key in ["passAt1", "passAtK", "passHatK"] {
            let v = o[key].as_f64().expect("a rate");
            assert!((0.0..=1.0).contains(&v), "{model} {key} {v}");
        }
    }
    assert!(text.contains("untrained") && text.contains("after pipeline"));
    assert!(
        text.contains("pass@1: first sample"),
        "the table says what pass@1 is"
    );

    let t = Instant::now();
    let again = run_ok(run());
    let names = ["eval-base", "sft", "rft", "grpo", "eval"];
    for name in names {
        assert!(
            again.contains(&format!("{name}: finished by an earlier run, skipped")),
            "{name} skipped:\n{again}"
        );
    }
    assert!(
        t.elapsed() < Duration::from_secs(60),
        "a rerun trains nothing"
    );
    let status = read_json(&out.join("status.json"));
    let states: Vec<&str> = status["phases"]
        .as_array()
        .expect("phases")
        .iter()
        .filter_map(|p| p["state"].as_str())
        .collect();
    assert_eq!(states, ["Succeeded earlier"; 5]);
}

/// Waits for the first complete step checkpoint (its manifest written).
fn first_checkpoint(out: &Path, limit: Duration) -> Option<PathBuf> {
    let t = Instant::now();
    while t.elapsed() < limit {
        if let Ok(entries) = std::fs::read_dir(out.join("checkpoints")) {
            for e in entries.flatten() {
                let p = e.path();
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with("step-") && p.join("MANIFEST.json").is_file() {
                    return Some(p);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[test]
fn a_killed_sft_phase_resumes_and_ends_like_an_uninterrupted_run() {
    let Some(tok) = tokenizer() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let params = sft_params(2, 1e-3);
    // Uninterrupted.
    let a = dir.path().join("a");
    let cfg_a = write_job(&a, "sft", &job(&a, "sft", None, params.clone()));
    run_phase("sft", &cfg_a, &tok);
    // Killed after its first checkpoint, then attempt 2.
    let b = dir.path().join("b");
    let cfg_b = write_job(&b, "sft", &job(&b, "sft", None, params));
    let mut child = worker()
        .args(["sft", "--config"])
        .arg(&cfg_b)
        .env("TAU2_QWEN3_TOKENIZER_DIR", &tok)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawned");
    let ckpt = first_checkpoint(&b.join("sft"), Duration::from_secs(300));
    child.kill().expect("SIGKILL"); // Child::kill sends SIGKILL on Unix.
    let _ = child.wait();
    let ckpt = ckpt.expect("a checkpoint appeared");
    assert!(
        !b.join("sft/final/model.safetensors").exists(),
        "killed before the end (raise the step count if this machine is fast)"
    );
    let summary_path = dir.path().join("termination-log");
    let mut cmd = worker();
    cmd.args(["sft", "--config"])
        .arg(&cfg_b)
        .env("TAU2_QWEN3_TOKENIZER_DIR", &tok)
        .env("TAU2_ATTEMPT", "2")
        .env("TAU2_TERMINATION_MESSAGE_PATH", &summary_path);
    run_ok(cmd);
    let results = read_json(&b.join("sft/results.json"));
    let resumed = results["resumedFrom"]
        .as_u64()
        .expect("resumed from a checkpoint");
    let ckpt_step: u64 = ckpt
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.trim_start_matches("step-").parse().ok())
        .expect("step number");
    assert!(
        resumed >= ckpt_step,
        "resumed from {resumed}, first checkpoint {ckpt_step}"
    );
    assert!(resumed < results["totalSteps"].as_u64().unwrap_or(0));
    assert_eq!(results["attempt"], json!(2));
    let wa = std::fs::read(a.join("sft/final/model.safetensors")).expect("final a");
    let wb = std::fs::read(b.join("sft/final/model.safetensors")).expect("final b");
    assert!(
        wa == wb,
        "resumed final weights differ from the uninterrupted run's"
    );
    let ra = read_json(&a.join("sft/results.json"));
    assert_eq!(
        ra["history"], results["history"],
        "same losses step by step"
    );
    // The termination message: a PhaseSummary under 4 KiB.
    let text = std::fs::read_to_string(&summary_path).expect("summary written");
    assert!(text.len() < 4096, "{} bytes", text.len());
    let s: tau2_api::job::PhaseSummary = serde_json::from_str(&text).expect("a PhaseSummary");
    assert!(s.succeeded);
    assert_eq!(s.final_checkpoint.as_deref(), Some("sft/final"));
    assert_eq!(s.step, results["steps"].as_i64());
}

/// Complete lines of `path` (0 if it does not exist yet).
fn lines(path: &Path) -> usize {
    std::fs::read(path).map_or(0, |t| t.iter().filter(|&&b| b == b'\n').count())
}

/// The comparable part of a trajectories file: task, sample, ids, reward.
fn trajectory_keys(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("trajectories")
        .lines()
        .map(|l| {
            let t: Value = serde_json::from_str(l).expect("JSON");
            json!([t["task_id"], t["sample"], t["ids"], t["reward"]])
        })
        .collect()
}

#[test]
fn a_killed_eval_resumes_and_ends_like_an_uninterrupted_run() {
    let Some(tok) = tokenizer() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let params = json!({"samplesPerTask": 3, "k": 2,
                        "rollout": {"temperature": 1.0, "maxNewTokens": 12, "maxSteps": 12}});
    let eval = |cfg: &Path| {
        let mut cmd = worker();
        cmd.args(["eval", "--config"])
            .arg(cfg)
            .args(["--concurrency", "4"])
            .env("TAU2_QWEN3_TOKENIZER_DIR", &tok);
        cmd
    };
    // Uninterrupted.
    let a = dir.path().join("a");
    let cfg_a = write_job(&a, "eval", &job(&a, "eval", None, params.clone()));
    run_ok(eval(&cfg_a));
    let total = read_json(&a.join("eval/results.json"))["episodes"]
        .as_array()
        .map_or(0, Vec::len);
    assert_eq!(total, 27, "9 mock tasks x 3 samples");
    // Killed once a few episodes are logged, then attempt 2.
    let b = dir.path().join("b");
    let cfg_b = write_job(&b, "eval", &job(&b, "eval", None, params));
    let log = b.join("eval/episodes.jsonl");
    let mut child = eval(&cfg_b)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawned");
    let t = Instant::now();
    while lines(&log) < 1 + 5 && t.elapsed() < Duration::from_secs(300) {
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().expect("SIGKILL"); // Child::kill sends SIGKILL on Unix.
    let _ = child.wait();
    let logged = lines(&log).saturating_sub(1);
    assert!(
        (5..total).contains(&logged) && !b.join("eval/results.json").exists(),
        "killed mid-run ({logged} episodes logged; lower the threshold if this machine is fast)"
    );
    // A torn last line, as a kill in the middle of a write leaves.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .expect("log");
    std::io::Write::write_all(&mut f, b"{\"job\": 3, \"domain\": \"mo").expect("torn line");
    drop(f);
    let mut cmd = eval(&cfg_b);
    cmd.env("TAU2_ATTEMPT", "2");
    run_ok(cmd);
    let (ra, rb) = (
        read_json(&a.join("eval/results.json")),
        read_json(&b.join("eval/results.json")),
    );
    let rerun = rb["rollout"]["episodes"].as_u64().unwrap_or(0) as usize;
    assert_eq!(
        rerun,
        total - logged,
        "only the unlogged episodes ran again"
    );
    assert_eq!(ra["results"], rb["results"], "same pass@k");
    assert_eq!(ra["episodes"], rb["episodes"], "same episodes");
    // The random model scores 0 everywhere: the ids are what shows that
    // every episode sampled what it did in the uninterrupted run.
    let (ta, tb) = (
        trajectory_keys(&a.join("eval/trajectories.jsonl")),
        trajectory_keys(&b.join("eval/trajectories.jsonl")),
    );
    assert_eq!(ta.len(), tb.len());
    let differ: Vec<usize> = (0..ta.len()).filter(|i| ta[*i] != tb[*i]).collect();
    assert!(differ.is_empty(), "trajectories {differ:?} differ");
    assert_eq!(lines(&log), 1 + total, "every episode logged once");
}

#[test]
fn bad_configuration_fails_with_a_clear_message_and_a_summary() {
    let Some(tok) = tokenizer() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    // Not a PhaseJob at all.
    let bad = root.join("bad.json");
    std::fs::write(&bad, "{}").expect("written");
    let out = worker()
        .args(["sft", "--config"])
        .arg(&bad)
        .output()
        .expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is invalid"));
    // A dataset that does not exist: non-zero, and a failed summary.
    let mut params = sft_params(1, 1e-3);
    params["dataset"] = json!("file:///nonexistent/data.jsonl");
    let cfg = write_job(root, "sft", &job(root, "sft", None, params));
    let summary = root.join("termination-log");
    let out = worker()
        .args(["sft", "--config"])
        .arg(&cfg)
        .env("TAU2_QWEN3_TOKENIZER_DIR", &tok)
        .env("TAU2_TERMINATION_MESSAGE_PATH", &summary)
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/data.jsonl"), "{err}");
    let s: tau2_api::job::PhaseSummary =
        serde_json::from_str(&std::fs::read_to_string(&summary).expect("summary")).expect("JSON");
    assert!(!s.succeeded);
    // A phase of the wrong kind for the subcommand.
    let eval_cfg = write_job(root, "eval", &job(root, "eval", None, json!({})));
    let out = worker()
        .args(["grpo", "--config"])
        .arg(&eval_cfg)
        .output()
        .expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not grpo"));
}

/// Greedy pass@1 of `model` on the 9 mock tasks with the scripted user.
fn greedy_pass_at_1(cfg: &Path, model: &Path, out: &Path) -> f64 {
    let mut cmd = worker();
    cmd.args(["eval", "--config"])
        .arg(cfg)
        .arg("--model")
        .arg(model)
        .args(["--temperature", "0", "--samples", "1", "--k", "1"])
        .arg("--output")
        .arg(out);
    run_ok(cmd);
    read_json(&out.join("results.json"))["results"]["overall"]["passAt1"]
        .as_f64()
        .expect("pass@1")
}

/// Sampled success of a model: the unbiased pass@1 (successes over all
/// samples) and the average reward, from an eval's results.
#[derive(Clone, Copy, Debug)]
struct Sampled {
    pass_at_1: f64,
    reward: f64,
}

impl std::fmt::Display for Sampled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pass@1 {:.3} reward {:.3}", self.pass_at_1, self.reward)
    }
}

/// Evaluates `<root>/<phase>/final` with the sampling settings of `cfg`
/// (same seed for every model, so the only difference is the weights).
fn sampled_success(cfg: &Path, root: &Path, phase: &str) -> Sampled {
    let out = root.join(format!("eval-{phase}-sampled"));
    let mut cmd = worker();
    cmd.args(["eval", "--config"])
        .arg(cfg)
        .arg("--model")
        .arg(root.join(phase).join("final"))
        .arg("--output")
        .arg(&out);
    run_ok(cmd);
    let o = &read_json(&out.join("results.json"))["results"]["overall"];
    Sampled {
        pass_at_1: o["passAt1Unbiased"].as_f64().expect("unbiased pass@1"),
        reward: o["averageReward"].as_f64().expect("average reward"),
    }
}

/// Sampling at the recipe's RFT and eval temperature (0.8, cookbook §4 and
/// §6) over the whole vocabulary, in RFT's rollouts and in the evaluations:
/// the SFT checkpoint below is greedy-good (7 of 9 tasks) but sampled-fair
/// (pass@1 0.31), which leaves RFT room to improve.
fn sampling_at_t08() -> Value {
    json!({"maxNewTokens": 96, "maxSteps": 20, "temperature": 0.8, "topP": 1.0, "topK": 0})
}

/// Samples per task of the sampled evaluations (72 episodes on the 9 tasks).
const SAMPLED_EVAL_SAMPLES: i64 = 8;
/// The gain RFT must show in unbiased pass@1 and in average reward. Measured
/// (seeds: SFT and RFT sampling 0, eval 1) with one shared RNG stream per
/// batch: SFT 0.389; after RFT at lr 1e-3 0.458 with 12 epochs and 0.500
/// with 20 (the dose the test uses), so the gain grows with training on the
/// kept episodes rather than being noise; the margin is half that +0.111 (4
/// of the 8 extra successes). With one stream per row
/// (`tau2_model::generate_seeded`): SFT 0.306, after RFT 0.611 (14 of 72
/// episodes kept), +0.306, so the margin is kept as the smaller of the two.
const RFT_GAIN: f64 = 0.055;

/// The gain GRPO must show in unbiased pass@1 and in average reward, from
/// the same SFT checkpoint and evaluation as RFT. Measured (release
/// binary, SFT 0.306) with 9 tasks x 8 samples per step, task reward only
/// (no KL, no entropy bonus, curriculum off): one update per step as in
/// the recipe gained nothing above noise at any lr (2e-4: 0.319, 1e-3:
/// 0.333 to 0.347, 3e-3 collapsed); reusing each rollout for 4 clipped
/// updates did: 6 steps at lr 5e-4 0.444, 6 steps of 4 x 2 mini-batch
/// updates at 1e-3 0.486, and the 4 steps of 4 updates at 1e-3 the test
/// runs 0.486. The margin is under half the smallest gain (5 of 72 episodes).
const GRPO_GAIN: f64 = 0.069;

/// GRPO's settings in the learning test: 4 steps on all 9 tasks x 8
/// samples, each rollout used for 4 updates at lr 1e-3.
fn grpo_learning_params() -> Value {
    json!({"steps": 4, "tasksPerStep": 9, "samplesPerTask": 8, "rollout": sampling_at_t08(),
           "updateEpochs": 4, "miniBatches": 1, "klCoef": 0.0, "entropyCoef": 0.0,
           "curriculum": {"enabled": false}, "saveEverySteps": 100,
           "maxTokensPerMicroBatch": 16384, "optimizer": {"learningRate": 1e-3}})
}

/// One test for SFT, RFT and GRPO, so that RFT and GRPO start from the SFT
/// checkpoint it has just trained (the SFT run is the slowest part).
#[test]
fn sft_teaches_the_mock_tasks_then_rft_and_grpo_each_raise_sampled_success() {
    let Some(tok) = tokenizer() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let t = Instant::now();
    let params = json!({"dataset": "builtin://gold", "epochs": 50, "batchSize": 4, "saveEverySteps": 20,
                        "maxTokensPerMicroBatch": 16384, "maxSequenceLength": 8192,
                        "optimizer": {"learningRate": 1e-2, "warmupRatio": 0.05}});
    let cfg = write_job(root, "sft", &job_seeded(root, "sft", None, params, 0));
    run_phase("sft", &cfg, &tok);
    let r = read_json(&root.join("sft/results.json"));
    let (first, last) = (
        r["firstLoss"].as_f64().expect("first loss"),
        r["finalLoss"].as_f64().expect("final loss"),
    );
    let eval_params =
        json!({"samplesPerTask": 1, "k": 1, "rollout": {"maxNewTokens": 96, "maxSteps": 20}});
    let eval_cfg = write_job(
        root,
        "eval",
        &job_seeded(root, "eval", Some("sft/final"), eval_params, 0),
    );
    let trained = greedy_pass_at_1(&eval_cfg, &root.join("sft/final"), &root.join("eval-sft"));
    let untrained = greedy_pass_at_1(&eval_cfg, &root.join("base-model"), &root.join("eval-base"));
    eprintln!(
        "SFT loss {first:.3} -> {last:.3}; greedy pass@1 untrained {untrained:.3}, after SFT {trained:.3} ({:.0}s)",
        t.elapsed().as_secs_f64()
    );
    assert!(last < 0.25 && last < first / 20.0, "loss {first} -> {last}");
    assert!(
        trained >= untrained + 0.4,
        "greedy pass@1 {untrained} -> {trained}"
    );

    // RFT from the SFT checkpoint, on its own kept episodes only (no merged
    // demonstrations, so any gain comes from rejection sampling), evaluated
    // with another seed than it sampled with.
    let n = SAMPLED_EVAL_SAMPLES;
    let sampled_params = json!({"samplesPerTask": n, "k": n, "rollout": sampling_at_t08()});
    let sampled_cfg = write_job(
        root,
        "eval-sampled",
        &job_seeded(root, "eval", Some("sft/final"), sampled_params, 1),
    );
    let sft = sampled_success(&sampled_cfg, root, "sft");
    eprintln!(
        "SFT checkpoint sampled at T=0.8: {sft} ({:.0}s)",
        t.elapsed().as_secs_f64()
    );
    // A gentle retrain (a tenth of SFT's peak lr, many epochs): at 3e-3 the
    // fresh optimizer's first steps undo as much as the kept episodes teach.
    let rft_params = json!({"samplesPerTask": 8, "retrainFrom": "Previous", "mergeSftDataset": false,
                            "epochs": 20, "batchSize": 4, "saveEverySteps": 100,
                            "maxTokensPerMicroBatch": 16384, "rollout": sampling_at_t08(),
                            "optimizer": {"learningRate": 1e-3, "warmupRatio": 0.05}});
    let cfg = write_job(
        root,
        "rft",
        &job_seeded(root, "rft", Some("sft/final"), rft_params, 0),
    );
    run_phase("rft", &cfg, &tok);
    let kept = read_json(&root.join("rft/rft_selection.json"))["selection"].clone();
    let rft = sampled_success(&sampled_cfg, root, "rft");
    eprintln!(
        "RFT kept {} of {} episodes; sampled at T=0.8: {rft} ({:.0}s)",
        kept["kept"],
        kept["sampled"],
        t.elapsed().as_secs_f64()
    );

    // GRPO from the same SFT checkpoint, with the same evaluation.
    let cfg = write_job(
        root,
        "grpo",
        &job_seeded(root, "grpo", Some("sft/final"), grpo_learning_params(), 0),
    );
    run_phase("grpo", &cfg, &tok);
    let history = read_json(&root.join("grpo/results.json"))["history"].clone();
    let rewards: Vec<String> = history
        .as_array()
        .expect("GRPO history")
        .iter()
        .map(|h| format!("{:.3}", h["metrics"]["reward"].as_f64().unwrap_or(f64::NAN)))
        .collect();
    let grpo = sampled_success(&sampled_cfg, root, "grpo");
    eprintln!(
        "GRPO in-training rewards {rewards:?}; sampled at T=0.8: {grpo} ({:.0}s)",
        t.elapsed().as_secs_f64()
    );
    assert!(
        rft.pass_at_1 >= sft.pass_at_1 + RFT_GAIN && rft.reward >= sft.reward + RFT_GAIN,
        "RFT did not raise sampled success by {RFT_GAIN}: SFT {sft}, after RFT {rft}"
    );
    assert!(
        grpo.pass_at_1 >= sft.pass_at_1 + GRPO_GAIN && grpo.reward >= sft.reward + GRPO_GAIN,
        "GRPO did not raise sampled success by {GRPO_GAIN}: SFT {sft}, after GRPO {grpo}"
    );
}

/// A `tau2-worker serve` process, killed when dropped.
struct Served {
    child: std::process::Child,
    /// The OpenAI-compatible base URL (`http://127.0.0.1:<port>/v1`).
    base: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Serves `model` as `name` on a free port; waits for the line that names it.
fn serve(model: &Path, name: &str) -> Served {
    use std::io::BufRead;
    let mut child = worker()
        .args(["serve", "--port", "0", "--device", "cpu", "--model"])
        .arg(model)
        .args(["--served-model-name", name, "--default-max-tokens", "16"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("tau2-worker serve starts");
    let mut lines = std::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
    let base = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| {
            let url = l.split(" on ").nth(1)?.split_whitespace().next()?;
            (l.starts_with("serving ") && url.starts_with("http://")).then(|| url.to_string())
        })
        .expect("the server printed its address");
    // Keep draining its logs so it never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    Served { child, base }
}

/// GRPO against a live LLM user simulator: the user is a tiny random model
/// behind `tau2-worker serve`, so this proves the path (episodes with HTTP
/// user turns, rewards, one optimizer step, a final checkpoint), not learning.
#[test]
fn a_grpo_step_runs_against_a_live_llm_user_simulator() {
    let Some(tok) = tokenizer() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let user_model = root.join("user-model");
    let mut cmd = worker();
    cmd.args(["init-model", "--seed", "3", "--tokenizer"])
        .arg(&tok)
        .arg("--out")
        .arg(&user_model);
    run_ok(cmd);
    let server = serve(&user_model, "user-sim");
    let params = json!({"steps": 1, "tasksPerStep": 2, "samplesPerTask": 2, "saveEverySteps": 1,
                        "maxTokensPerMicroBatch": 16384,
                        "rollout": {"maxNewTokens": 16, "maxSteps": 6, "temperature": 1.0},
                        "optimizer": {"learningRate": 1e-4}});
    let mut job = job_seeded(root, "grpo", None, params, 0);
    job["userSimulator"] = json!({"mode": "Endpoint", "endpoint": server.base, "model": "user-sim",
                                  "temperature": 1.0, "maxTokens": 16,
                                  "requestTimeoutSeconds": 60, "maxRetries": 0});
    let cfg = write_job(root, "grpo", &job);
    let text = run_phase("grpo", &cfg, &tok);
    drop(server);
    let r = read_json(&root.join("grpo/results.json"));
    assert_eq!(r["steps"], json!(1), "{text}");
    assert!(root.join("grpo/final/model.safetensors").is_file());
    let m = &r["history"][0]["metrics"];
    // Every episode ran to a scored end: no user request failed.
    assert_eq!(m["valid_fraction"], json!(1.0), "{m}");
    let reward = m["reward"].as_f64().expect("a reward");
    assert!((0.0..=1.0).contains(&reward), "{m}");
    assert!(m["policy_tokens"].as_f64().unwrap_or(0.0) > 0.0, "{m}");
}
