//! Tiny random Qwen3 models of the real architecture, for tests, benchmarks
//! and the embedded demo. Weights come from our own seeded RNG, so a (config,
//! seed) pair gives the same checkpoint on every machine and in parallel
//! tests (libtorch's global generator would be shared between threads).

use std::path::Path;

use serde_json::{Value, json};
use tch::{Device, Kind, Tensor};

use crate::checkpoint::{SaveOptions, save};
use crate::config::{Qwen3Config, TokenIds, kind_name};
use crate::error::Result;
use crate::qwen3::Qwen3;
use crate::rng::Rng;

/// The fields transformers needs to recognise a Qwen3 config.json.
fn hf_extras() -> serde_json::Map<String, Value> {
    let v = json!({
        "architectures": ["Qwen3ForCausalLM"],
        "model_type": "qwen3",
        "hidden_act": "silu",
        "attention_bias": false,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "use_cache": true,
        "use_sliding_window": false,
    });
    v.as_object().cloned().unwrap_or_default()
}

/// A Qwen3-shaped config with the given sizes (the rest as Qwen3-4B:
/// eps 1e-6, explicit head_dim).
#[allow(clippy::too_many_arguments)]
pub fn config(
    vocab_size: i64,
    hidden_size: i64,
    intermediate_size: i64,
    num_hidden_layers: i64,
    num_attention_heads: i64,
    num_key_value_heads: i64,
    head_dim: i64,
    tie_word_embeddings: bool,
) -> Qwen3Config {
    Qwen3Config {
        hidden_size,
        intermediate_size,
        num_hidden_layers,
        num_attention_heads,
        num_key_value_heads: Some(num_key_value_heads),
        head_dim,
        rms_norm_eps: 1e-6,
        rope_theta: Some(1_000_000.0),
        vocab_size,
        tie_word_embeddings,
        max_position_embeddings: 4096,
        torch_dtype: Some(kind_name(Kind::Float).into()),
        dtype: None,
        bos_token_id: None,
        eos_token_id: Some(TokenIds::One(vocab_size - 1)),
        extra: hf_extras(),
    }
}

/// The test model: hidden 64, 2 layers, 4 query / 2 KV heads of 16, SwiGLU 128.
pub fn tiny_config(vocab_size: i64, tied: bool) -> Qwen3Config {
    config(vocab_size, 64, 128, 2, 4, 2, 16, tied)
}

/// Fills every parameter: projections and embeddings N(0, std²); norm
/// weights 1 + N(0, 0.1²) rather than exactly 1, so that a mistake in any
/// norm (q_norm, k_norm, ...) changes the output and tests see it.
pub fn randomize(model: &Qwen3, seed: u64, std: f64) {
    let _guard = tch::no_grad_guard();
    let mut rng = Rng::new(seed);
    for (name, p) in model.named_parameters() {
        let is_norm = name.ends_with("norm.weight");
        let values: Vec<f32> = (0..p.numel())
            .map(|_| if is_norm { 1.0 + 0.1 * rng.normal() } else { std * rng.normal() } as f32)
            .collect();
        let src = Tensor::from_slice(&values).view(p.size().as_slice());
        p.shallow_clone().copy_(&src);
    }
}

/// A random model in memory.
pub fn random_model(
    cfg: Qwen3Config,
    seed: u64,
    std: f64,
    device: Device,
    kind: Kind,
) -> Result<Qwen3> {
    let model = Qwen3::new(cfg, device, kind)?;
    randomize(&model, seed, std);
    Ok(model)
}

/// Creates a random model and saves it as an HF checkpoint in `dir`.
pub fn write_random_checkpoint(
    dir: &Path,
    cfg: Qwen3Config,
    seed: u64,
    std: f64,
    kind: Kind,
) -> Result<Qwen3> {
    let model = random_model(cfg, seed, std, Device::Cpu, kind)?;
    save(&model, dir, &SaveOptions::default())?;
    Ok(model)
}
