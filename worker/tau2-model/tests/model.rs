//! Tests that need no Python: shapes, cache consistency, padding, loss,
//! checkpoints, sampling.

use tau2_model::checkpoint::{self, SaveOptions};
use tau2_model::generate::{
    FinishReason, Sampler, SamplingParams, generate, generate_seeded, left_pad,
};
use tau2_model::init::{random_model, tiny_config};
use tau2_model::tch::{Device, Kind, Tensor};
use tau2_model::{KvCache, Qwen3};

fn ids(rows: &[&[i64]]) -> Tensor {
    let width = rows[0].len() as i64;
    let flat: Vec<i64> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    Tensor::from_slice(&flat).view([-1, width])
}

fn model(tied: bool) -> Qwen3 {
    tau2_model::tch::set_num_threads(1);
    random_model(tiny_config(101, tied), 3, 0.2, Device::Cpu, Kind::Float).expect("model")
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn forward_shapes_and_bad_inputs() {
    let m = model(true);
    let x = ids(&[&[1, 2, 3], &[4, 5, 6]]);
    assert_eq!(
        m.forward(&x, None, None, None).expect("forward").size(),
        vec![2, 3, 101]
    );
    assert_eq!(
        m.forward_hidden(&x, None, None, None)
            .expect("hidden")
            .size(),
        vec![2, 3, 64]
    );
    for bad in [
        ids(&[&[1, 101]]),
        ids(&[&[-1, 2]]),
        Tensor::from_slice(&[1i64, 2]),
    ] {
        let err = m
            .forward(&bad, None, None, None)
            .expect_err("rejected")
            .to_string();
        assert!(err.contains("invalid input"), "{err}");
    }
    let err = m
        .forward(&x, Some(&ids(&[&[1, 1]])), None, None)
        .expect_err("mask shape");
    assert!(err.to_string().contains("attention_mask"), "{err}");
    // Tied models have no lm_head parameter.
    assert!(
        m.named_parameters()
            .iter()
            .all(|(n, _)| n != "lm_head.weight")
    );
    assert!(
        model(false)
            .named_parameters()
            .iter()
            .any(|(n, _)| n == "lm_head.weight")
    );
}

#[test]
fn cached_decoding_matches_the_full_forward() {
    let _g = tau2_model::tch::no_grad_guard();
    for tied in [true, false] {
        let m = model(tied);
        let x = ids(&[
            &[5, 9, 17, 33, 2, 8, 61, 70, 1, 99],
            &[7, 7, 3, 14, 15, 92, 65, 35, 89, 79],
        ]);
        let full = m.forward(&x, None, None, None).expect("full");
        // Prefill 4, then a 3-token continuation on the cache (explicit
        // bottom-right mask), then single steps.
        let mut cache = KvCache::new(2);
        let mut parts = vec![
            m.forward(&x.narrow(1, 0, 4), None, None, Some(&mut cache))
                .expect("prefill"),
        ];
        parts.push(
            m.forward(&x.narrow(1, 4, 3), None, None, Some(&mut cache))
                .expect("chunk"),
        );
        for t in 7..10 {
            parts.push(
                m.forward(&x.narrow(1, t, 1), None, None, Some(&mut cache))
                    .expect("step"),
            );
        }
        let stepped = Tensor::cat(&parts, 1);
        assert!(
            max_diff(&full, &stepped) < 1e-5,
            "tied={tied}: {}",
            max_diff(&full, &stepped)
        );
        assert_eq!(cache.len(), 10);
    }
}

#[test]
fn left_padding_does_not_change_real_positions() {
    let _g = tau2_model::tch::no_grad_guard();
    let m = model(true);
    let short: Vec<i64> = vec![11, 12, 13];
    let long: Vec<i64> = vec![1, 2, 3, 4, 5, 6];
    let (x, mask) = left_pad(&[short.clone(), long.clone()], 0);
    let batched = m.forward(&x, Some(&mask), None, None).expect("batched");
    let alone = m.forward(&ids(&[&short]), None, None, None).expect("alone");
    let d = max_diff(&batched.get(0).narrow(0, 3, 3), &alone.get(0));
    assert!(d < 1e-5, "{d}");
    assert!(
        bool::try_from(batched.isfinite().all()).expect("bool"),
        "pad rows stay finite"
    );
    // Then decode one step on the padded cache.
    let mut cache = KvCache::new(2);
    let _ = m
        .forward(&x, Some(&mask), None, Some(&mut cache))
        .expect("prefill");
    let step = m
        .forward(&ids(&[&[20], &[21]]), None, None, Some(&mut cache))
        .expect("step");
    let alone = m
        .forward(&ids(&[&[11, 12, 13, 20]]), None, None, None)
        .expect("alone");
    let d = max_diff(&step.get(0).get(0), &alone.get(0).get(3));
    assert!(d < 1e-5, "{d}");
}

#[test]
fn selected_logits_and_sft_loss() {
    let m = model(false);
    let x = ids(&[&[5, 9, 17, 33, 2], &[7, 7, 3, 14, 15]]);
    let loss_mask = ids(&[&[0, 0, 1, 1, 1], &[0, 0, 0, 1, 0]]);
    let full = m
        .forward(&x, None, None, None)
        .expect("full")
        .log_softmax(-1, Kind::Float);
    let lp = m
        .target_logprobs(&x, None, &loss_mask, 1.0)
        .expect("logprobs");
    // Targets (row, position predicting it): (0,1)->17, (0,2)->33, (0,3)->2, (1,2)->14.
    let want = [(0, 1, 17), (0, 2, 33), (0, 3, 2), (1, 2, 14)]
        .map(|(b, t, id)| full.double_value(&[b, t, id]));
    let got = Vec::<f64>::try_from(lp.to_kind(Kind::Double)).expect("vec");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-5, "{got:?} vs {want:?}");
    }
    let loss = m.sft_loss(&x, None, &loss_mask).expect("loss");
    let mean = -want.iter().sum::<f64>() / 4.0;
    assert!((loss.double_value(&[]) - mean).abs() < 1e-5);
    loss.backward();
    for (name, p) in m.named_parameters() {
        assert!(p.grad().defined(), "{name} has a gradient");
    }
    let err = m
        .sft_loss(&x, None, &loss_mask.zeros_like())
        .expect_err("empty mask");
    assert!(err.to_string().contains("no target"), "{err}");
}

#[test]
fn sft_gradient_matches_finite_differences() {
    // f64 model: central differences on a few coordinates of a few tensors.
    let m = random_model(tiny_config(50, true), 5, 0.3, Device::Cpu, Kind::Double).expect("model");
    let x = ids(&[&[1, 4, 9, 16, 25, 36]]);
    let lm = ids(&[&[0, 1, 1, 1, 1, 1]]);
    m.sft_loss(&x, None, &lm).expect("loss").backward();
    let _g = tau2_model::tch::no_grad_guard();
    for (name, p) in m.named_parameters().iter().filter(|(n, _)| {
        n.contains("q_norm") || n.contains("layers.1.self_attn.k_proj") || n.contains("embed")
    }) {
        let grad = p.grad().view([-1]);
        let flat = p.view([-1]);
        for i in [0, 7] {
            let orig = flat.double_value(&[i]);
            let eps = 1e-6;
            let _ = flat.get(i).fill_(orig + eps);
            let up = m.sft_loss(&x, None, &lm).expect("loss").double_value(&[]);
            let _ = flat.get(i).fill_(orig - eps);
            let down = m.sft_loss(&x, None, &lm).expect("loss").double_value(&[]);
            let _ = flat.get(i).fill_(orig);
            let numeric = (up - down) / (2.0 * eps);
            let analytic = grad.double_value(&[i]);
            assert!(
                (numeric - analytic).abs() < 1e-6 + 1e-4 * analytic.abs(),
                "{name}[{i}]: {numeric} vs {analytic}"
            );
        }
    }
}

fn assert_same_params(a: &Qwen3, b: &Qwen3) {
    assert_eq!(a.named_parameters().len(), b.named_parameters().len());
    for ((na, ta), (nb, tb)) in a.named_parameters().iter().zip(b.named_parameters()) {
        assert_eq!(na, nb);
        assert_eq!(ta.kind(), tb.kind(), "{na}");
        assert!(ta.equal(tb), "{na} differs");
    }
}

#[test]
fn save_load_round_trip_is_bit_exact() {
    for (kind, tied) in [(Kind::Float, true), (Kind::BFloat16, false)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let m = random_model(tiny_config(101, tied), 9, 0.2, Device::Cpu, kind).expect("model");
        let files = checkpoint::save(&m, dir.path(), &SaveOptions::default()).expect("save");
        assert_eq!(files, vec![dir.path().join("model.safetensors")]);
        let header = checkpoint::read_header(&files[0]).expect("header");
        assert_eq!(header.metadata["format"], "pt");
        assert_eq!(
            header.tensors.iter().any(|t| t.name == "lm_head.weight"),
            !tied
        );
        let loaded = Qwen3::load(dir.path(), Device::Cpu, None).expect("load");
        assert_same_params(&m, &loaded);
        assert_eq!(loaded.config().kind(), kind);
    }
}

#[test]
fn sharded_save_and_load_with_side_files() {
    let src = tempfile::tempdir().expect("tempdir");
    let m = random_model(tiny_config(101, false), 1, 0.2, Device::Cpu, Kind::Float).expect("model");
    checkpoint::save(&m, src.path(), &SaveOptions::default()).expect("save");
    std::fs::write(src.path().join("tokenizer.json"), "{}").expect("write");
    std::fs::write(src.path().join("generation_config.json"), "{\"top_k\": 20}").expect("write");
    let loaded = Qwen3::load(src.path(), Device::Cpu, None).expect("load");

    let dst = tempfile::tempdir().expect("tempdir");
    let opts = SaveOptions {
        max_shard_bytes: 40_000,
        ..SaveOptions::default()
    };
    let files = checkpoint::save(&loaded, dst.path(), &opts).expect("save sharded");
    assert!(files.len() > 3, "{files:?}");
    assert!(files[0].ends_with(format!("model-00001-of-{:05}.safetensors", files.len())));
    let index: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dst.path().join(checkpoint::INDEX_FILE)).expect("index"),
    )
    .expect("json");
    let bytes: u64 = m
        .named_parameters()
        .iter()
        .map(|(_, t)| t.numel() as u64 * 4)
        .sum();
    assert_eq!(index["metadata"]["total_size"], bytes);
    assert_eq!(
        index["weight_map"].as_object().expect("map").len(),
        m.named_parameters().len()
    );
    assert!(
        dst.path().join("tokenizer.json").exists()
            && dst.path().join("generation_config.json").exists()
    );
    assert!(!dst.path().join(checkpoint::SINGLE_FILE).exists());
    assert_same_params(
        &m,
        &Qwen3::load(dst.path(), Device::Cpu, None).expect("load sharded"),
    );

    // Re-saving unsharded into the same directory removes the old shards.
    checkpoint::save(&m, dst.path(), &SaveOptions::default()).expect("resave");
    assert!(!dst.path().join(checkpoint::INDEX_FILE).exists());
    assert_same_params(
        &m,
        &Qwen3::load(dst.path(), Device::Cpu, None).expect("load"),
    );

    // bf16 on load from an f32 checkpoint converts; a missing tensor is an error naming it.
    let bf = Qwen3::load(dst.path(), Device::Cpu, Some(Kind::BFloat16)).expect("bf16");
    assert_eq!(bf.kind(), Kind::BFloat16);
    let small = tempfile::tempdir().expect("tempdir");
    let other =
        random_model(tiny_config(101, true), 1, 0.2, Device::Cpu, Kind::Float).expect("model");
    checkpoint::save(&other, small.path(), &SaveOptions::default()).expect("save");
    std::fs::copy(
        dst.path().join("config.json"),
        small.path().join("config.json"),
    )
    .expect("copy");
    let err =
        Qwen3::load(small.path(), Device::Cpu, None).expect_err("untied config, tied weights");
    assert!(err.to_string().contains("lm_head.weight"), "{err}");
}

#[test]
fn a_seeded_row_samples_the_same_in_any_batch() {
    let m = model(true);
    let prompts = vec![vec![1, 2, 3], vec![4, 5], vec![6, 7, 8, 9]];
    let params = SamplingParams {
        temperature: 1.0,
        max_new_tokens: 12,
        ..Default::default()
    };
    let all = generate_seeded(&m, &prompts, &params, &[11, 12, 13]).expect("batch");
    for (row, seed) in [(0, 11), (1, 12), (2, 13)] {
        let alone = generate_seeded(&m, &prompts[row..row + 1], &params, &[seed]).expect("alone");
        assert_eq!(all[row].tokens, alone[0].tokens, "row {row}");
    }
    let reordered = generate_seeded(
        &m,
        &[prompts[2].clone(), prompts[0].clone()],
        &params,
        &[13, 11],
    )
    .expect("reordered");
    assert_eq!(reordered[0].tokens, all[2].tokens);
    assert!(generate_seeded(&m, &prompts, &params, &[1]).is_err());
}

#[test]
fn generation_is_deterministic_under_a_seed_and_stops() {
    let m = model(true);
    let prompts = vec![vec![1, 2, 3], vec![4, 5], vec![6, 7, 8, 9]];
    let params = SamplingParams {
        temperature: 1.0,
        max_new_tokens: 12,
        seed: 42,
        ..Default::default()
    };
    let a = generate(&m, &prompts, &params).expect("generate");
    let b = generate(&m, &prompts, &params).expect("generate");
    assert_eq!(a, b);
    let c = generate(
        &m,
        &prompts,
        &SamplingParams {
            seed: 43,
            ..params.clone()
        },
    )
    .expect("generate");
    assert_ne!(a, c);
    for g in &a {
        assert_eq!(g.tokens.len(), 12);
        assert_eq!(g.finish_reason, FinishReason::Length);
        // At temperature 1 without truncation the two log-probs agree.
        for (x, y) in g.logprobs.iter().zip(&g.model_logprobs) {
            assert!((x - y).abs() < 1e-4, "{x} vs {y}");
        }
    }
    // Stop on the token the first row emitted at step 3: it ends there, included.
    let stop = a[0].tokens[3];
    let s = generate(
        &m,
        &prompts,
        &SamplingParams {
            stop_token_ids: vec![stop],
            ..params.clone()
        },
    )
    .expect("generate");
    let first = a[0]
        .tokens
        .iter()
        .position(|&t| t == stop)
        .expect("present");
    assert_eq!(s[0].tokens, a[0].tokens[..=first].to_vec());
    assert_eq!(s[0].finish_reason, FinishReason::Stop);
    // Rows are independent of which other rows stopped: same first tokens.
    assert_eq!(s[1].tokens[..], a[1].tokens[..s[1].tokens.len()]);

    // Greedy equals the argmax of a full forward, and a row alone equals the row batched.
    let greedy = SamplingParams {
        temperature: 0.0,
        max_new_tokens: 5,
        ..Default::default()
    };
    let batched = generate(&m, &prompts, &greedy).expect("greedy");
    let alone = generate(&m, &prompts[1..2], &greedy).expect("greedy alone");
    assert_eq!(batched[1].tokens, alone[0].tokens);
    assert!(batched.iter().all(|g| g.logprobs.iter().all(|&l| l == 0.0)));
    let mut seq = prompts[2].clone();
    seq.extend(&batched[2].tokens[..4]);
    let logits = m
        .forward(&Tensor::from_slice(&seq).view([1, -1]), None, None, None)
        .expect("fwd");
    let argmax = Vec::<i64>::try_from(logits.get(0).argmax(-1, false)).expect("vec");
    assert_eq!(batched[2].tokens[..], argmax[3..]);
    assert!(generate(&m, &[vec![]], &greedy).is_err());
    assert!(
        generate(
            &m,
            &prompts,
            &SamplingParams {
                max_new_tokens: 0,
                ..greedy
            }
        )
        .expect("empty")[0]
            .tokens
            .is_empty()
    );
}

fn sample_many(params: SamplingParams, logits: &[f32], n: usize) -> Vec<(i64, f32)> {
    let mut s = Sampler::new(params).expect("sampler");
    let t = Tensor::from_slice(logits).view([1, -1]);
    (0..n)
        .map(|_| {
            let r = s.sample(&t).expect("sample");
            (r.tokens[0], r.logprobs[0])
        })
        .collect()
}

#[test]
fn top_k_top_p_and_limits() {
    let logits = [2.0f32, 1.0, 0.5, 0.0, -1.0, 3.0];
    let base = SamplingParams {
        seed: 1,
        ..Default::default()
    };
    // top_k = 1 is greedy with log-prob 0 under the truncated distribution.
    for (tok, lp) in sample_many(
        SamplingParams {
            top_k: 1,
            ..base.clone()
        },
        &logits,
        20,
    ) {
        assert_eq!((tok, lp), (5, 0.0));
    }
    // top_k = 2 keeps {5, 0}; both appear; log-probs renormalised over the two.
    let got = sample_many(
        SamplingParams {
            top_k: 2,
            ..base.clone()
        },
        &logits,
        200,
    );
    assert!(got.iter().all(|(t, _)| *t == 5 || *t == 0));
    assert!(got.iter().any(|(t, _)| *t == 0) && got.iter().any(|(t, _)| *t == 5));
    let p0 = (2.0f32.exp() / (2.0f32.exp() + 3.0f32.exp())).ln();
    assert!(
        got.iter()
            .filter(|(t, _)| *t == 0)
            .all(|(_, lp)| (lp - p0).abs() < 1e-5)
    );
    // top_k >= vocab is off.
    let got = sample_many(
        SamplingParams {
            top_k: 100,
            ..base.clone()
        },
        &logits,
        300,
    );
    assert!(got.iter().any(|(t, _)| *t == 4));
    // Tiny top_p keeps only the mode; p = 1 keeps everything.
    for (tok, _) in sample_many(
        SamplingParams {
            top_p: 1e-6,
            ..base.clone()
        },
        &logits,
        20,
    ) {
        assert_eq!(tok, 5);
    }
    // top_p 0.8: softmax = [.23, .08, .05, .03, .01, .62]: 5 then 0 reach .85; 1.. dropped.
    let got = sample_many(
        SamplingParams {
            top_p: 0.8,
            ..base.clone()
        },
        &logits,
        200,
    );
    assert!(got.iter().all(|(t, _)| *t == 5 || *t == 0));
    // vocab_limit masks the tail even where it is the mode.
    let got = sample_many(
        SamplingParams {
            vocab_limit: Some(5),
            temperature: 0.0,
            ..base.clone()
        },
        &logits,
        3,
    );
    assert!(got.iter().all(|(t, _)| *t == 0));
    // Invalid parameters are rejected.
    for bad in [
        SamplingParams {
            temperature: -1.0,
            ..base.clone()
        },
        SamplingParams {
            top_p: 0.0,
            ..base.clone()
        },
        SamplingParams {
            top_p: 1.5,
            ..base.clone()
        },
        SamplingParams {
            top_k: -1,
            ..base.clone()
        },
    ] {
        assert!(Sampler::new(bad).is_err());
    }
}

#[test]
fn bf16_forward_runs_and_tracks_f32() {
    let _g = tau2_model::tch::no_grad_guard();
    let m = model(true);
    let x = ids(&[&[5, 9, 17, 33, 2, 8]]);
    let f = m.forward(&x, None, None, None).expect("f32");
    let mut b = model(true);
    b.set_kind(Kind::BFloat16);
    let lb = b.forward(&x, None, None, None).expect("bf16");
    assert_eq!(lb.kind(), Kind::BFloat16);
    let d = max_diff(&f, &lb.to_kind(Kind::Float));
    assert!(d < 0.1, "{d}");
}
