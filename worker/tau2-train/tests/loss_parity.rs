//! The trainers' losses against PyTorch: `sft::accumulate_gradients` and
//! `grpo::accumulate_gradients` (what `sft::train` and `grpo::train` run for
//! each step) against `tests/reference/model/loss_reference.py`, the
//! formulas of `../shared/spec/ml.md` written in PyTorch on transformers'
//! Qwen3 loading the same tiny random checkpoint, with the same inputs.
//!
//! The GRPO case has ε_low ≠ ε_high with clipping active on tokens of both
//! signs (given π_old log-probs), a k3 KL to a separate reference
//! checkpoint, an entropy bonus, temperature ≠ 1, an invalid sample and a
//! sample without policy tokens, several micro-batches with left padding.
//! The loss and every parameter's gradient are compared in f32.
//!
//! Run: `TAU2_MODEL_REFERENCE_PYTHON=$(tests/reference/model/setup.sh)
//! cargo test -p tau2-train --test loss_parity -- --include-ignored --nocapture`.

#[path = "../../tau2-model/tests/support/reference.rs"]
mod reference;
mod support;

use std::path::Path;

use reference::get;
use serde_json::{Value, json};
use support::trajectory;
use tau2_api::phases::{Curriculum, RewardShaping};
use tau2_model::Qwen3;
use tau2_model::checkpoint::{self, SaveOptions};
use tau2_model::init::{random_model, tiny_config};
use tau2_train::batch::Sequence;
use tau2_train::grpo::{self, CurriculumState, LossConfig};
use tau2_train::optim::{AdamW, AdamWConfig};
use tau2_train::sft;
use tau2_train::trajectory::Trajectory;
use tch::{Device, Kind, Tensor};

const VOCAB: i64 = 1000;

fn scalar(tensors: &[(String, Tensor)], name: &str) -> f64 {
    get(tensors, name).double_value(&[0])
}

fn run_reference(model: &Path, input: &Value, work: &Path) -> Vec<(String, Tensor)> {
    let input_path = work.join("losses-input.json");
    let out = work.join("losses-out.safetensors");
    std::fs::write(&input_path, input.to_string()).expect("input written");
    reference::run("losses", model, &input_path, &out);
    Tensor::read_safetensors(&out).expect("reference output")
}

fn saved(model: &Qwen3) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    checkpoint::save(model, dir.path(), &SaveOptions::default()).expect("save");
    dir
}

/// Deterministic ids of one sequence.
fn ids(seed: u32, len: usize) -> Vec<u32> {
    (0..len as u32)
        .map(|i| (seed * 7919 + i * 104_729 + i * i * 31) % VOCAB as u32)
        .collect()
}

/// A multi-turn mask: a prompt of `prompt` tokens, then alternating policy
/// turns of 4 and environment turns of 3.
fn turns(len: usize, prompt: usize) -> Vec<bool> {
    (0..len)
        .map(|j| j >= prompt && (j - prompt) % 7 < 4)
        .collect()
}

fn adamw() -> AdamWConfig {
    AdamWConfig {
        beta1: 0.9,
        beta2: 0.98,
        eps: 1e-8,
        weight_decay: 0.01,
        max_grad_norm: 1.0,
    }
}

/// Compares every parameter's gradient; returns the worst |diff| and its name.
fn compare_grads(model: &Qwen3, theirs: &[(String, Tensor)], prefix: &str) -> (f64, String) {
    let mut worst = (0f64, String::new());
    for (name, p) in model.named_parameters() {
        let g = get(theirs, &format!("{prefix}.grad.{name}"));
        let ours = p.grad();
        assert!(ours.defined(), "{prefix}: no gradient for {name}");
        let d = (&ours - &g).abs().max().double_value(&[]);
        let scale = g.abs().max().double_value(&[]);
        assert!(
            d < 1e-6 + 1e-4 * scale,
            "{prefix} {name}: gradient differs by {d:.3e} (scale {scale:.3e})"
        );
        if d > worst.0 {
            worst = (d, name.clone());
        }
    }
    worst
}

fn zero_grads(model: &Qwen3) {
    for (_, p) in model.named_parameters() {
        let mut g = p.grad();
        if g.defined() {
            let _ = g.zero_();
        }
    }
}

#[test]
#[ignore = "needs transformers (TAU2_MODEL_REFERENCE_PYTHON); run by tests/run.sh"]
fn sft_and_grpo_losses_and_gradients_match_pytorch() {
    tch::set_num_threads(1);
    for tied in [true, false] {
        let model = random_model(tiny_config(VOCAB, tied), 21, 0.2, Device::Cpu, Kind::Float)
            .expect("model");
        // The KL reference: the policy moved a little, so k3 is small but not 0.
        let reference =
            random_model(tiny_config(VOCAB, tied), 21, 0.2, Device::Cpu, Kind::Float).expect("ref");
        {
            let _g = tch::no_grad_guard();
            for (i, (_, p)) in reference.named_parameters().iter().enumerate() {
                tch::manual_seed(100 + i as i64);
                let mut p = p.shallow_clone();
                let _ = p.g_add_(&(p.randn_like() * 0.003));
            }
        }
        let (dir, ref_dir) = (saved(&model), saved(&reference));
        let work = tempfile::tempdir().expect("tempdir");

        // SFT: 5 conversations, 4 micro-batches of a 48-token budget.
        let data: Vec<Sequence> = [(1, 9, 3), (2, 20, 5), (3, 14, 2), (4, 17, 6), (5, 11, 1)]
            .iter()
            .map(|&(seed, len, prompt)| Sequence {
                ids: ids(seed, len),
                mask: turns(len, prompt),
            })
            .collect();
        let lengths: Vec<usize> = data.iter().map(Sequence::len).collect();
        let all: Vec<usize> = (0..data.len()).collect();
        let mut opt = AdamW::new(&model, adamw()).expect("adamw");
        let (sft_loss, _) =
            sft::accumulate_gradients(&model, &data, &lengths, &all, 48, &mut opt).expect("sft");
        let sft_grads: Vec<Tensor> = model
            .named_parameters()
            .iter()
            .map(|(_, p)| p.grad().copy())
            .collect();
        zero_grads(&model);

        // GRPO: two groups; "a" has an invalid sample, "b" a sample with no
        // policy token. Every sample counts in the mean.
        let loss = LossConfig {
            clip_low: 0.2,
            clip_high: 0.28,
            kl_coef: 0.05,
            entropy_coef: 0.01,
            temperature: 0.7,
        };
        let mut trajs = vec![
            trajectory("a", 0, ids(11, 18), turns(18, 4), 1.0),
            trajectory("a", 1, ids(12, 13), turns(13, 2), 0.0),
            trajectory("a", 2, ids(13, 21), turns(21, 5), 0.5),
            trajectory("a", 3, ids(14, 15), turns(15, 3), 0.9),
            trajectory("b", 0, ids(15, 16), turns(16, 3), 0.0),
            trajectory("b", 1, ids(16, 12), turns(12, 2), 1.0),
            trajectory("b", 2, ids(17, 10), vec![false; 10], 0.3),
        ];
        trajs[3].valid = false;
        // π_old = current − δ: ratios e^δ of 1.82, 0.55, 1.05, 0.95, 1.35, 0.74
        // cycle over the tokens, so the clip binds on both sides.
        let deltas = [0.6f32, -0.6, 0.05, -0.05, 0.3, -0.3];
        let current =
            grpo::rollout_logprobs(&model, &trajs, loss.temperature, 40).expect("logprobs");
        let old: Vec<Vec<f32>> = trajs
            .iter()
            .zip(&current)
            .map(|(t, current)| {
                current
                    .iter()
                    .enumerate()
                    .map(|(j, l)| {
                        if t.policy_mask[j] && j > 0 {
                            l - deltas[j % 6]
                        } else {
                            0.0
                        }
                    })
                    .collect()
            })
            .collect();
        let (_, adv) = grpo::advantages(
            &trajs,
            &RewardShaping::default(),
            &Curriculum {
                enabled: false,
                ..Curriculum::default()
            },
            &mut CurriculumState::default(),
        );
        let mut opt = AdamW::new(&model, adamw()).expect("adamw");
        let sums = grpo::accumulate_gradients(
            &model,
            Some(&reference),
            &trajs,
            &adv,
            Some(&old),
            &loss,
            40,
            Some(&mut opt),
        )
        .expect("grpo");
        assert_eq!(sums.trainable, 5);
        // Clipped tokens (the clipped branch is the larger loss): r > 1 + ε_high
        // with A > 0, r < 1 − ε_low with A < 0.
        let (mut clipped_high, mut clipped_low) = (0, 0);
        for (t, a) in trajs.iter().zip(&adv) {
            if !t.valid {
                continue;
            }
            for j in 1..t.ids.len() {
                if t.policy_mask[j] {
                    let r = f64::from(deltas[j % 6]).exp();
                    clipped_high += usize::from(*a > 0.0 && r > 1.0 + loss.clip_high);
                    clipped_low += usize::from(*a < 0.0 && r < 1.0 - loss.clip_low);
                }
            }
        }
        assert!(clipped_high > 0 && clipped_low > 0);

        let seq_json = |t: &Trajectory, old: &[f32]| {
            json!({"ids": t.ids, "mask": t.policy_mask, "group": t.task_id,
                   "reward": t.reward, "valid": t.valid, "old": old})
        };
        let input = json!({
            "sft": {"sequences": data.iter().map(|s| json!({"ids": s.ids, "mask": s.mask})).collect::<Vec<_>>()},
            "grpo": {
                "sequences": trajs.iter().zip(&old).map(|(t, o)| seq_json(t, o)).collect::<Vec<_>>(),
                "reference": ref_dir.path(),
                "clip_low": loss.clip_low, "clip_high": loss.clip_high, "kl_coef": loss.kl_coef,
                "entropy_coef": loss.entropy_coef, "temperature": loss.temperature,
            },
        });
        let theirs = run_reference(dir.path(), &input, work.path());

        let d_sft = (sft_loss - scalar(&theirs, "sft.loss")).abs();
        assert!(d_sft < 1e-5, "SFT loss differs by {d_sft}");
        let their_adv = Vec::<f64>::try_from(get(&theirs, "grpo.advantages")).expect("adv");
        let d_adv = adv
            .iter()
            .zip(&their_adv)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(d_adv < 1e-9, "advantages differ: {adv:?} vs {their_adv:?}");
        let d_loss = (sums.loss - scalar(&theirs, "grpo.loss")).abs();
        let d_terms = [("pg", sums.pg), ("kl", sums.kl), ("entropy", sums.entropy)]
            .map(|(k, v)| (k, (v - scalar(&theirs, &format!("grpo.{k}"))).abs()));
        assert!(
            d_loss < 1e-5,
            "GRPO loss differs by {d_loss}: ours {sums:?}, terms |diff| {d_terms:?}"
        );
        for (k, d) in d_terms {
            assert!(d < 1e-4, "GRPO {k} differs by {d}");
        }
        assert!(
            sums.kl > 1e-4 && sums.entropy > 0.1,
            "KL {} and entropy {} are exercised",
            sums.kl,
            sums.entropy
        );
        let grpo_worst = compare_grads(&model, &theirs, "grpo");
        zero_grads(&model);
        for ((_, p), g) in model.named_parameters().iter().zip(&sft_grads) {
            let mut grad = p.grad();
            grad.copy_(g);
        }
        let sft_worst = compare_grads(&model, &theirs, "sft");
        eprintln!(
            "tied={tied} SFT: loss {sft_loss:.6} |diff| {d_sft:.2e}, worst grad |diff| {:.2e} ({})",
            sft_worst.0, sft_worst.1
        );
        eprintln!(
            "tied={tied} GRPO: loss {:.6} |diff| {d_loss:.2e}, advantages |diff| {d_adv:.2e}, \
             terms |diff| {d_terms:?}, worst grad |diff| {:.2e} ({}); clipped tokens {clipped_high} high, {clipped_low} low; \
             KL {:.4}, entropy {:.3}",
            sums.loss, grpo_worst.0, grpo_worst.1, sums.kl, sums.entropy
        );
    }
}
