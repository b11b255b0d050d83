//! `tau2-worker serve`: an OpenAI-compatible `/v1/chat/completions` server on
//! our Qwen3, so that a checkpoint can play the user simulator, be evaluated
//! by any OpenAI client, or be compared with other served models.
//!
//! Layers: [`openai`] turns request JSON into a validated [`openai::ChatRequest`]
//! and results into OpenAI response and error bodies (pure); [`engine`] owns
//! the model on one thread and batches concurrent requests; [`server`] is the
//! axum edge.

pub mod engine;
pub mod openai;
pub mod server;
