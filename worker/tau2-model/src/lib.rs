//! Qwen3 on tch (libtorch): the decoder, its KV cache, Hugging Face
//! checkpoints, batched sampling, and tiny random models for tests.
//!
//! Numerics follow transformers' `Qwen3ForCausalLM` (see
//! `tests/parity.rs`, which compares against it).

pub mod checkpoint;
pub mod config;
pub mod error;
pub mod generate;
pub mod init;
pub mod kv_cache;
pub mod qwen3;
pub mod rng;

pub use checkpoint::{SaveOptions, load_weights, save};
pub use config::Qwen3Config;
pub use error::{ModelError, Result};
pub use generate::{FinishReason, Generation, Sampler, SamplingParams, generate, generate_seeded};
pub use kv_cache::KvCache;
pub use qwen3::Qwen3;

pub use tch;
