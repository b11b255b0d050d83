//! SFT and GRPO on a tiny random Qwen3 on the CPU: exact resume, skipped
//! corrupt checkpoints, learning, and the direction of the GRPO gradient.

mod support;

use std::path::Path;

use tau2_api::bench::Domain;
use tau2_api::phases::{Curriculum, LrSchedule, RewardShaping};
use tau2_model::init::{random_model, tiny_config};
use tau2_model::rng::Rng;
use tau2_model::{Qwen3, load_weights};
use tau2_train::batch::Sequence;
use tau2_train::checkpoint::{Checkpoints, MANIFEST, verify};
use tau2_train::grpo::{self, GrpoConfig, LossConfig, TaskRef};
use tau2_train::optim::AdamWConfig;
use tau2_train::progress::NoProgress;
use tau2_train::sft::{self, SftConfig};
use tau2_train::trajectory::Trajectory;
use tch::{Device, Kind, Tensor};

const VOCAB: i64 = 64;

fn model(seed: u64) -> Qwen3 {
    tch::set_num_threads(1);
    random_model(
        tiny_config(VOCAB, true),
        seed,
        0.05,
        Device::Cpu,
        Kind::Float,
    )
    .expect("model")
}

/// Toy SFT data: a "prompt" of 4 random tokens, then the "answer": the
/// prompt reversed, trained on the answer only.
fn toy_data(n: usize, seed: u64) -> Vec<Sequence> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|i| {
            let len = 3 + i % 3;
            let prompt: Vec<u32> = (0..len).map(|_| 2 + (rng.next_u64() % 30) as u32).collect();
            let mut ids = vec![1];
            ids.extend(&prompt);
            ids.push(40);
            ids.extend(prompt.iter().rev());
            ids.push(41);
            let answer = prompt.len() + 1;
            let mask: Vec<bool> = (0..ids.len()).map(|j| j + answer >= ids.len()).collect();
            Sequence { ids, mask }
        })
        .collect()
}

fn sft_cfg(epochs: u32, lr: f64) -> SftConfig {
    SftConfig {
        phase: "sft".into(),
        epochs,
        batch_size: 8,
        max_tokens_per_micro_batch: 40,
        save_every_steps: 2,
        keep_last: 2,
        seed: 11,
        adamw: AdamWConfig {
            beta1: 0.9,
            beta2: 0.98,
            eps: 1e-8,
            weight_decay: 0.01,
            max_grad_norm: 1.0,
        },
        schedule: LrSchedule::Cosine,
        learning_rate: lr,
        warmup_ratio: 0.05,
        stop_after_steps: None,
    }
}

fn weights(dir: &Path) -> Vec<(String, Tensor)> {
    let m = model(999);
    load_weights(&m, dir).expect("load");
    m.named_parameters()
        .iter()
        .map(|(n, t)| (n.clone(), t.detach().copy()))
        .collect()
}

#[test]
fn sft_resumed_run_is_bit_identical_and_skips_corrupt_checkpoints() {
    let data = toy_data(20, 1);
    let cfg = sft_cfg(2, 3e-3); // 3 steps per epoch, 6 in all
    let straight_dir = tempfile::tempdir().expect("tmp");
    let straight = {
        let ck = Checkpoints::open(straight_dir.path().join("sft"), 2).expect("ck");
        sft::train(&model(5), &data, &cfg, &ck, &mut NoProgress).expect("train")
    };
    assert_eq!(straight.steps, 6);

    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("sft");
    // "Killed" after 5 steps: checkpoints at 2 and 4 exist.
    let mut first = cfg.clone();
    first.stop_after_steps = Some(5);
    let ck = Checkpoints::open(&out, 2).expect("ck");
    sft::train(&model(5), &data, &first, &ck, &mut NoProgress).expect("part 1");
    // Corrupt the newest (step 4) and leave a half-written save behind.
    let newest = ck.step_dir(4);
    let opt = newest.join("optimizer.safetensors");
    let mut bytes = std::fs::read(&opt).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&opt, bytes).expect("write");
    assert!(verify(&newest).is_err());
    let junk = out.join("checkpoints/.tmp-step-6-1");
    std::fs::create_dir_all(&junk).expect("junk");
    // A step dir without manifest (killed between rename and... or copied partially).
    let partial = ck.step_dir(5);
    std::fs::create_dir_all(&partial).expect("partial");
    std::fs::write(partial.join("config.json"), "{}").expect("partial");

    let ck = Checkpoints::open(&out, 2).expect("reopen");
    assert!(!junk.exists(), "leftover temp dir removed");
    let resumed = sft::train(&model(77), &data, &cfg, &ck, &mut NoProgress).expect("resume");
    assert_eq!(
        resumed.resumed_from,
        Some(2),
        "skipped the corrupt step 4 and partial step 5"
    );
    assert_eq!(resumed.history, straight.history, "same losses and metrics");
    let (a, b) = (
        weights(&straight_dir.path().join("sft/final")),
        weights(&out.join("final")),
    );
    for ((n, x), (_, y)) in a.iter().zip(&b) {
        assert!(x.equal(y), "{n} differs");
    }
    assert!(verify(&out.join("final")).is_ok());
    assert!(out.join("final").join(MANIFEST).is_file());
    // Restarting a finished phase does nothing new.
    let again = sft::train(&model(78), &data, &cfg, &ck, &mut NoProgress).expect("again");
    assert_eq!(again.history, straight.history);
}

#[test]
fn sft_loss_drops_on_a_toy_task() {
    let data = toy_data(64, 2);
    let mut cfg = sft_cfg(12, 3e-3);
    cfg.save_every_steps = 1000;
    let dir = tempfile::tempdir().expect("tmp");
    let ck = Checkpoints::open(dir.path().join("sft"), 1).expect("ck");
    let started = std::time::Instant::now();
    let out = sft::train(&model(3), &data, &cfg, &ck, &mut NoProgress).expect("train");
    let loss: Vec<f64> = out.history.iter().map(|r| r.metrics["loss"]).collect();
    let first = loss[..4].iter().sum::<f64>() / 4.0;
    let last = loss[loss.len() - 4..].iter().sum::<f64>() / 4.0;
    eprintln!(
        "SFT loss {first:.3} -> {last:.3} in {} steps, {:.1}s, {:.0} tokens/s",
        loss.len(),
        started.elapsed().as_secs_f64(),
        out.tokens_per_second
    );
    assert!(last < 0.6 * first, "{loss:?}");
}

fn traj(task: &str, sample: u32, ids: Vec<u32>, policy_from: usize, reward: f64) -> Trajectory {
    let mask: Vec<bool> = (0..ids.len()).map(|j| j >= policy_from).collect();
    support::trajectory(task, sample, ids, mask, reward)
}

fn grpo_cfg(steps: u64, tasks: usize, samples: usize, lr: f64) -> GrpoConfig {
    GrpoConfig {
        steps,
        tasks_per_step: tasks,
        samples_per_task: samples,
        update_epochs: 1,
        mini_batches: 1,
        loss: LossConfig {
            clip_low: 0.2,
            clip_high: 0.28,
            kl_coef: 0.01,
            entropy_coef: 0.001,
            temperature: 1.0,
        },
        shaping: RewardShaping::default(),
        curriculum: Curriculum {
            enabled: false,
            ..Curriculum::default()
        },
        max_tokens_per_micro_batch: 64,
        save_every_steps: 1000,
        keep_last: 1,
        seed: 5,
        adamw: AdamWConfig {
            beta1: 0.9,
            beta2: 0.98,
            eps: 1e-8,
            weight_decay: 0.1,
            max_grad_norm: 1.0,
        },
        schedule: LrSchedule::Constant,
        learning_rate: lr,
        warmup_ratio: 0.0,
        stop_after_steps: None,
    }
}

fn seq_logprob(m: &Qwen3, t: &Trajectory) -> f64 {
    let _g = tch::no_grad_guard();
    let ids =
        Tensor::from_slice(&t.ids.iter().map(|i| i64::from(*i)).collect::<Vec<_>>()).view([1, -1]);
    let mask = Tensor::from_slice(&t.policy_mask).view([1, -1]);
    m.target_logprobs(&ids, None, &mask, 1.0)
        .expect("lp")
        .sum(Kind::Double)
        .double_value(&[])
}

#[test]
fn grpo_step_moves_toward_positive_advantage() {
    let (dg, db, m, _) = one_pair_step(&grpo_cfg(1, 1, 2, 1e-3), 1.0);
    assert!(dg > 0.0, "good sample's logprob moved by {dg}");
    assert!(db < 0.0, "bad sample's logprob moved by {db}");
    assert!((m["reward"] - 0.5).abs() < 1e-12);
    assert!(m["kl"].abs() < 1e-9, "policy == reference before the step");
}

fn bandit_tasks() -> Vec<TaskRef> {
    (0..4)
        .map(|i| TaskRef {
            domain: Domain::Mock,
            task_id: format!("t{i}"),
        })
        .collect()
}

/// Toy bandit: from prompt [1, 2] the policy samples 2 tokens; reward 1
/// when the first sampled token is even.
fn bandit(m: &Qwen3, tasks: &[TaskRef], g: usize, seed: u64) -> Result<Vec<Trajectory>, String> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::new();
    for task in tasks {
        for s in 0..g {
            let mut ids: Vec<u32> = vec![1, 2];
            for _ in 0..2 {
                let x = Tensor::from_slice(&ids.iter().map(|i| i64::from(*i)).collect::<Vec<_>>())
                    .view([1, -1]);
                let logits = m.forward(&x, None, None, None).map_err(|e| e.to_string())?;
                let probs = logits.select(1, -1).softmax(-1, Kind::Double).view([-1]);
                let probs = Vec::<f64>::try_from(probs).map_err(|e| e.to_string())?;
                let u = rng.uniform();
                let mut acc = 0.0;
                let mut pick = probs.len() - 1;
                for (i, p) in probs.iter().enumerate() {
                    acc += p;
                    if u < acc {
                        pick = i;
                        break;
                    }
                }
                ids.push(pick as u32);
            }
            let reward = if ids[2].is_multiple_of(2) { 1.0 } else { 0.0 };
            let mut t = traj(&task.task_id, s as u32, ids, 2, reward);
            t.domain = task.domain;
            out.push(t);
        }
    }
    Ok(out)
}

/// GRPO must raise the bandit's mean reward.
#[test]
fn grpo_raises_the_mean_reward_on_a_toy_reward() {
    let policy = model(21);
    let reference = model(21);
    let tasks = bandit_tasks();
    let mut rollouts = bandit;
    let dir = tempfile::tempdir().expect("tmp");
    let ck = Checkpoints::open(dir.path().join("grpo"), 1).expect("ck");
    let out = grpo::train(
        &policy,
        Some(&reference),
        &tasks,
        &mut rollouts,
        &grpo_cfg(30, 4, 8, 3e-3),
        &ck,
        &mut NoProgress,
    )
    .expect("grpo");
    let r: Vec<f64> = out.history.iter().map(|h| h.metrics["reward"]).collect();
    let first = r[..5].iter().sum::<f64>() / 5.0;
    let last = r[r.len() - 5..].iter().sum::<f64>() / 5.0;
    eprintln!("GRPO mean reward {first:.3} -> {last:.3}: {r:?}");
    assert!(last > first + 0.2, "{r:?}");
}

/// The good/bad pair of `grpo_step_moves_toward_positive_advantage` trained
/// for one step with `cfg`; returns the change of the good sample's log-prob
/// and the step's metrics.
fn one_pair_step(
    cfg: &GrpoConfig,
    good_reward: f64,
) -> (f64, f64, std::collections::BTreeMap<String, f64>, Qwen3) {
    let good = traj("t", 0, vec![1, 5, 6, 7, 8, 9], 3, good_reward);
    let bad = traj("t", 1, vec![1, 5, 6, 20, 21, 22], 3, 0.0);
    let policy = model(9);
    let reference = model(9);
    let (g0, b0) = (seq_logprob(&policy, &good), seq_logprob(&policy, &bad));
    let pair = vec![good.clone(), bad.clone()];
    let mut rollouts = move |_: &Qwen3, _: &[TaskRef], _: usize, _: u64| Ok(pair.clone());
    let dir = tempfile::tempdir().expect("tmp");
    let ck = Checkpoints::open(dir.path().join("grpo"), 1).expect("ck");
    let tasks = [TaskRef {
        domain: Domain::Mock,
        task_id: "t".into(),
    }];
    let out = grpo::train(
        &policy,
        Some(&reference),
        &tasks,
        &mut rollouts,
        cfg,
        &ck,
        &mut NoProgress,
    )
    .expect("grpo");
    let (g1, b1) = (seq_logprob(&policy, &good), seq_logprob(&policy, &bad));
    (g1 - g0, b1 - b0, out.history[0].metrics.clone(), policy)
}

#[test]
fn several_updates_reuse_a_rollout_and_the_clip_bounds_them() {
    // A small lr, so that the ratios stay inside the clip range.
    let single = grpo_cfg(1, 1, 2, 1e-4);
    let (dg1, db1, m1, _) = one_pair_step(&single, 1.0);
    assert_eq!(m1["updates"], 1.0);
    // 6 passes over the rollout: the first is the single update's.
    let several = GrpoConfig {
        update_epochs: 6,
        ..single.clone()
    };
    let (dg6, db6, m6, _) = one_pair_step(&several, 1.0);
    assert_eq!(m6["updates"], 6.0);
    assert!(
        dg6 > dg1 && db6 < db1,
        "6 updates move further: good {dg1} / {dg6}, bad {db1} / {db6}"
    );
    for k in ["loss", "pg_loss", "entropy", "kl"] {
        assert!((m6[k] - m1[k]).abs() < 1e-6, "{k}: {m1:?} {m6:?}");
    }
    // 3 passes of 2 mini-batches (one sample each) are 6 updates too.
    let halves = GrpoConfig {
        update_epochs: 3,
        mini_batches: 2,
        ..single.clone()
    };
    let (dgh, dbh, mh, _) = one_pair_step(&halves, 1.0);
    assert_eq!(mh["updates"], 6.0);
    assert!(
        dgh > dg1 && dbh < db1,
        "good {dg1} / {dgh}, bad {db1} / {dbh}"
    );
    // With a large lr the clip stops the push once a sample's ratio to the
    // rollout policy leaves [1 − ε_low, 1 + ε_high] (per token, so the
    // sequence's log-ratio is bounded by its length times the clip while
    // the unclipped objective keeps pushing).
    let unclipped = GrpoConfig {
        learning_rate: 3e-2,
        loss: LossConfig {
            clip_low: 10.0,
            clip_high: 10.0,
            ..several.loss
        },
        ..several.clone()
    };
    let clipped = GrpoConfig {
        learning_rate: 3e-2,
        ..several
    };
    let (dg_free, _, _, _) = one_pair_step(&unclipped, 1.0);
    let (dg_clip, _, _, _) = one_pair_step(&clipped, 1.0);
    assert!(
        dg_clip < dg_free,
        "clipped {dg_clip} vs unclipped {dg_free}"
    );
}

#[test]
fn a_step_without_advantage_makes_no_update() {
    // Both samples fail: equal rewards, zero advantages, no update even
    // though the KL and entropy terms have gradients.
    let cfg = GrpoConfig {
        update_epochs: 2,
        ..grpo_cfg(1, 1, 2, 1e-2)
    };
    let (dg, db, m, policy) = one_pair_step(&cfg, 0.0);
    assert_eq!((dg, db), (0.0, 0.0));
    assert_eq!(m["updates"], 0.0);
    // The loss terms are still measured (KL 0: the policy is the reference).
    assert!(m["entropy"] > 0.0 && m["kl"].abs() < 1e-9, "{m:?}");
    assert!(!m.contains_key("grad_norm"), "{m:?}");
    assert_eq!((m["reward"], m["policy_tokens"]), (0.0, 6.0));
    for ((n, a), (_, b)) in policy
        .named_parameters()
        .iter()
        .zip(model(9).named_parameters().iter())
    {
        assert!(a.equal(b), "{n} moved");
    }
}

#[test]
fn a_grpo_run_with_several_updates_per_step_resumes_exactly() {
    let cfg = GrpoConfig {
        update_epochs: 2,
        mini_batches: 3,
        save_every_steps: 2,
        curriculum: Curriculum::default(),
        ..grpo_cfg(6, 2, 6, 3e-3)
    };
    let tasks = bandit_tasks();
    let run = |policy: &Qwen3, cfg: &GrpoConfig, ck: &Checkpoints| {
        let mut rollouts = bandit;
        grpo::train(
            policy,
            Some(&model(21)),
            &tasks,
            &mut rollouts,
            cfg,
            ck,
            &mut NoProgress,
        )
        .expect("grpo")
    };
    let straight_dir = tempfile::tempdir().expect("tmp");
    let ck = Checkpoints::open(straight_dir.path().join("grpo"), 2).expect("ck");
    let straight = run(&model(21), &cfg, &ck);
    assert_eq!(straight.steps, 6);
    assert!(
        straight
            .history
            .iter()
            .all(|h| h.metrics["updates"] == 6.0 || h.metrics["updates"] == 0.0)
    );
    assert!(straight.history.iter().any(|h| h.metrics["updates"] == 6.0));

    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("grpo");
    // "Killed" after 5 steps: the newest complete checkpoint is step 4.
    let ck = Checkpoints::open(&out, 2).expect("ck");
    run(
        &model(21),
        &GrpoConfig {
            stop_after_steps: Some(5),
            ..cfg.clone()
        },
        &ck,
    );
    let resumed = run(
        &model(77),
        &cfg,
        &Checkpoints::open(&out, 2).expect("reopen"),
    );
    assert_eq!(resumed.resumed_from, Some(4));
    assert_eq!(
        resumed.history, straight.history,
        "same rewards, losses and curriculum"
    );
    let (a, b) = (
        weights(&straight_dir.path().join("grpo/final")),
        weights(&out.join("final")),
    );
    for ((n, x), (_, y)) in a.iter().zip(&b) {
        assert!(x.equal(y), "{n} differs");
    }
}
