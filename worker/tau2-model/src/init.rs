//! Tiny random Qwen3 models of the real architecture, for tests, benchmarks
//! and the embedded demo. Weights come from our own seeded RNG, so a (config,
//! seed) pair gives the same checkpoint on every machine and in parallel
//! tests (libtorch's global generator would be shared between threads).

use std::path::Path;

use serde_json::{Value, json};
use tch::{Device, Kind, Tensor};

use crate::checkpoint::{SaveOptions, save};
use crate::config::{Qwen3Config, TokenIds, kind_name};
use crate::error::{ModelError, Result};
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

/// Sizes of the random models `tau2-worker init-model` creates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    /// Hidden 64, 2 layers (see [`tiny_config`]).
    Tiny,
    /// Hidden 256, 4 layers, 8 query / 4 KV heads of 32.
    Small,
}

/// What a chat model needs besides weights: the tokenizer, the chat
/// template, and the ids that end a turn.
pub struct ChatFiles<'a> {
    /// Holds `tokenizer.json` and `tokenizer_config.json`.
    pub tokenizer_dir: &'a Path,
    /// Written as `chat_template.jinja`, which wins over the config's template.
    pub chat_template: &'a str,
    /// End-of-turn ids (`eos_token_id` in config and generation config).
    pub stop_ids: &'a [i64],
    /// Tokens the tokenizer knows (embedding rows are rounded up to 128).
    pub vocab_size: usize,
}

/// A random Qwen3 with a real tokenizer and template, saved as a complete
/// Hugging Face model directory in `dir` (which must not hold a model yet).
pub fn write_chat_model(
    dir: &Path,
    size: Size,
    tied: bool,
    seed: u64,
    files: &ChatFiles<'_>,
) -> Result<Qwen3Config> {
    let vocab = (files.vocab_size.div_ceil(128) * 128) as i64;
    let mut cfg = match size {
        Size::Tiny => tiny_config(vocab, tied),
        Size::Small => config(vocab, 256, 512, 4, 8, 4, 32, tied),
    };
    cfg.eos_token_id = Some(TokenIds::Many(files.stop_ids.to_vec()));
    std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    write_random_checkpoint(dir, cfg.clone(), seed, 0.02, Kind::Float)?;
    for file in ["tokenizer.json", "tokenizer_config.json"] {
        let from = files.tokenizer_dir.join(file);
        std::fs::copy(&from, dir.join(file)).map_err(|e| ModelError::io(from, e))?;
    }
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| ModelError::io(path, e))
    };
    write("chat_template.jinja", files.chat_template)?;
    let generation = json!({
        "eos_token_id": files.stop_ids,
        "pad_token_id": files.stop_ids.last(),
        "temperature": 0.7,
        "top_p": 0.8,
        "top_k": 20,
    });
    write("generation_config.json", &format!("{generation:#}"))?;
    Ok(cfg)
}
