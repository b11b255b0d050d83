//! Parity with transformers' `Qwen3ForCausalLM` (torch 2.13.0, transformers
//! 5.23.0), driven through `tests/reference/model/model_reference.py` in the
//! venv `tests/reference/model/setup.sh` builds (`TAU2_MODEL_REFERENCE_PYTHON`).
//!
//! Tiny random Qwen3s (tied and untied) are saved by our code and loaded by
//! transformers, which refuses missing or unexpected keys. Compared in f32:
//! logits of a full forward, of a left-padded batch, and of prefill + cached
//! decoding; the SFT loss and every parameter's gradient. A checkpoint
//! transformers saves (sharded, with an index) loads back bit-exactly here.

#[path = "support/reference.rs"]
mod support;

use std::path::Path;

use serde_json::{Value, json};
use support::get;
use tau2_model::checkpoint::{self, SaveOptions};
use tau2_model::generate::left_pad;
use tau2_model::init::{random_model, tiny_config};
use tau2_model::tch::{Device, Kind, Tensor};
use tau2_model::{KvCache, Qwen3};

/// f32 logits differ from transformers by float rounding only.
const TOL: f64 = 1e-5;

/// Runs a reference command; returns the tensors it wrote.
fn reference(command: &str, model: &Path, input: &Value, work: &Path) -> Vec<(String, Tensor)> {
    let input_path = work.join(format!("{command}-input.json"));
    // resave writes a checkpoint directory, the others one safetensors file.
    let out = if command == "resave" {
        work.to_path_buf()
    } else {
        work.join(format!("{command}-out.safetensors"))
    };
    std::fs::write(&input_path, input.to_string()).expect("input written");
    support::run(command, model, &input_path, &out);
    if command == "resave" {
        Vec::new()
    } else {
        Tensor::read_safetensors(&out).expect("reference output")
    }
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

fn to_json(t: &Tensor) -> Value {
    let rows: Vec<Vec<i64>> = (0..t.size()[0])
        .map(|r| Vec::<i64>::try_from(t.get(r)).expect("ints"))
        .collect();
    json!(rows)
}

/// A tiny random model saved by our code into a fresh directory.
fn saved_model(tied: bool, seed: u64) -> (tempfile::TempDir, Qwen3) {
    tau2_model::tch::set_num_threads(1);
    let dir = tempfile::tempdir().expect("tempdir");
    let model =
        random_model(tiny_config(1000, tied), seed, 0.2, Device::Cpu, Kind::Float).expect("model");
    checkpoint::save(&model, dir.path(), &SaveOptions::default()).expect("save");
    (dir, model)
}

fn sequence(seed: i64, len: usize) -> Vec<i64> {
    (0..len as i64)
        .map(|i| (seed * 7919 + i * 104_729 + i * i * 31) % 1000)
        .collect()
}

#[test]
#[ignore = "needs transformers (TAU2_MODEL_REFERENCE_PYTHON); run by tests/run.sh"]
fn logits_match_transformers() {
    let _g = tau2_model::tch::no_grad_guard();
    for tied in [true, false] {
        let (dir, model) = saved_model(tied, 11);
        let work = tempfile::tempdir().expect("tempdir");

        // Full forward, two rows of 24 tokens.
        let ids = Tensor::from_slice(&[sequence(1, 24), sequence(2, 24)].concat()).view([2, 24]);
        let ours = model.forward(&ids, None, None, None).expect("forward");
        let theirs = get(
            &reference(
                "forward",
                dir.path(),
                &json!({"input_ids": to_json(&ids)}),
                work.path(),
            ),
            "logits",
        );
        let d = max_diff(&ours, &theirs);
        eprintln!(
            "tied={tied} full forward: max |diff| = {d:.2e} (logit scale {:.2})",
            theirs.abs().max().double_value(&[])
        );
        assert!(d < TOL, "full forward differs by {d}");

        // Left-padded batch: rows of 5, 17 and 12 tokens. transformers takes
        // positions from position_ids, so pass the ones we derive from the mask.
        let prompts = vec![sequence(3, 5), sequence(4, 17), sequence(5, 12)];
        let (ids, mask) = left_pad(&prompts, 0);
        let positions = (mask.cumsum(1, Kind::Int64) - 1).clamp_min(0);
        let ours = model
            .forward(&ids, Some(&mask), None, None)
            .expect("padded forward");
        let input = json!({"input_ids": to_json(&ids), "attention_mask": to_json(&mask), "position_ids": to_json(&positions)});
        let theirs = get(
            &reference("forward", dir.path(), &input, work.path()),
            "logits",
        );
        let mut worst = 0f64;
        for (row, p) in prompts.iter().enumerate() {
            let n = p.len() as i64;
            let (a, b) = (
                ours.get(row as i64).narrow(0, 17 - n, n),
                theirs.get(row as i64).narrow(0, 17 - n, n),
            );
            worst = worst.max(max_diff(&a, &b));
        }
        eprintln!("tied={tied} left-padded batch: max |diff| = {worst:.2e}");
        assert!(worst < TOL, "padded batch differs by {worst}");

        // Prefill 9 tokens, then 11 single-token steps with the cache.
        let ids = Tensor::from_slice(&[sequence(6, 20), sequence(7, 20)].concat()).view([2, 20]);
        let mut cache = KvCache::new(2);
        let mut parts = vec![
            model
                .forward(&ids.narrow(1, 0, 9), None, None, Some(&mut cache))
                .expect("prefill"),
        ];
        for t in 9..20 {
            parts.push(
                model
                    .forward(&ids.narrow(1, t, 1), None, None, Some(&mut cache))
                    .expect("step"),
            );
        }
        let ours = Tensor::cat(&parts, 1);
        let theirs = get(
            &reference(
                "decode",
                dir.path(),
                &json!({"input_ids": to_json(&ids), "prefill": 9}),
                work.path(),
            ),
            "logits",
        );
        let d = max_diff(&ours, &theirs);
        eprintln!("tied={tied} prefill + cached decode: max |diff| = {d:.2e}");
        assert!(d < TOL, "cached decoding differs by {d}");
    }
}

#[test]
#[ignore = "needs transformers (TAU2_MODEL_REFERENCE_PYTHON); run by tests/run.sh"]
fn sft_gradients_match_transformers() {
    for tied in [true, false] {
        let (dir, model) = saved_model(tied, 12);
        let work = tempfile::tempdir().expect("tempdir");
        let prompts = vec![sequence(8, 10), sequence(9, 16)];
        let (ids, mask) = left_pad(&prompts, 0);
        // Train on the last 60% of each row (a prompt / completion split).
        let loss_mask = Tensor::from_slice(
            &(0..2 * 16)
                .map(|i| i64::from(i % 16 >= 7))
                .collect::<Vec<_>>(),
        )
        .view([2, 16]);
        let loss = model.sft_loss(&ids, Some(&mask), &loss_mask).expect("loss");
        loss.backward();
        let input = json!({"input_ids": to_json(&ids), "attention_mask": to_json(&mask), "loss_mask": to_json(&loss_mask)});
        let theirs = reference("grad", dir.path(), &input, work.path());
        let dl = (loss.double_value(&[]) - get(&theirs, "loss").double_value(&[0])).abs();
        assert!(dl < 1e-6, "loss differs by {dl}");
        assert_eq!(
            theirs.len(),
            model.named_parameters().len() + 1,
            "one gradient per parameter"
        );
        let mut worst = (0f64, String::new());
        for (name, p) in model.named_parameters() {
            let g = get(&theirs, name);
            let d = max_diff(&p.grad(), &g);
            let scale = g.abs().max().double_value(&[]);
            assert!(
                d < 1e-6 + 1e-4 * scale,
                "{name}: gradient differs by {d} (scale {scale})"
            );
            if d > worst.0 {
                worst = (d, name.clone());
            }
        }
        eprintln!(
            "tied={tied} SFT loss |diff| = {dl:.2e}; worst gradient |diff| = {:.2e} ({})",
            worst.0, worst.1
        );
    }
}

#[test]
#[ignore = "needs transformers (TAU2_MODEL_REFERENCE_PYTHON); run by tests/run.sh"]
fn checkpoints_round_trip_through_transformers() {
    for tied in [true, false] {
        let (dir, model) = saved_model(tied, 13);
        std::fs::write(
            dir.path().join("generation_config.json"),
            r#"{"eos_token_id": 999}"#,
        )
        .expect("write");
        // Ours (single file) -> transformers -> sharded with an index -> ours.
        let resaved = tempfile::tempdir().expect("tempdir");
        reference(
            "resave",
            dir.path(),
            &json!({"max_shard_size": "60KB"}),
            resaved.path(),
        );
        let _ = std::fs::remove_file(resaved.path().join("resave-input.json"));
        let files = checkpoint::weight_files(resaved.path()).expect("files");
        assert!(files.len() > 1, "transformers wrote shards: {files:?}");
        let loaded = Qwen3::load(resaved.path(), Device::Cpu, None)
            .expect("loads the transformers checkpoint");
        for ((name, a), (_, b)) in model
            .named_parameters()
            .iter()
            .zip(loaded.named_parameters())
        {
            assert!(a.equal(b), "{name} changed through transformers");
        }
        // Ours, sharded, loads in transformers too (the forward command
        // refuses missing or unexpected keys).
        let sharded = tempfile::tempdir().expect("tempdir");
        let opts = SaveOptions {
            max_shard_bytes: 100_000,
            ..SaveOptions::default()
        };
        assert!(
            checkpoint::save(&loaded, sharded.path(), &opts)
                .expect("save")
                .len()
                > 1
        );
        let ids = Tensor::from_slice(&sequence(10, 8)).view([1, 8]);
        let theirs = get(
            &reference(
                "forward",
                sharded.path(),
                &json!({"input_ids": to_json(&ids)}),
                sharded.path(),
            ),
            "logits",
        );
        let ours =
            tau2_model::tch::no_grad(|| model.forward(&ids, None, None, None)).expect("forward");
        assert!(max_diff(&ours, &theirs) < TOL);
    }
}
