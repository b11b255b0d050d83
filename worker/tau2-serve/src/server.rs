//! The HTTP edge: `/v1/chat/completions`, `/v1/models`, `/health`, and
//! OpenAI-style error bodies for everything else (bad JSON, unknown routes,
//! wrong methods).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;
use tau2_chat::{ChatTokenizer, RenderOptions};
use tau2_model::generate::{FinishReason, SamplingParams};

use crate::engine::Engine;
use crate::openai::{self, ApiError, Choice};

/// What the handlers share.
pub struct ServerState {
    pub engine: Engine,
    pub tokenizer: ChatTokenizer,
    /// The name clients must send as `model`.
    pub model_name: String,
    /// Prompt plus completion tokens the model accepts.
    pub context_len: usize,
    /// Completion tokens when the request sets no `max_tokens`.
    pub default_max_tokens: usize,
    /// Unix seconds the server started (the model's `created`).
    pub created: u64,
}

struct Reply(Result<Value, ApiError>);

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        match self.0 {
            Ok(body) => (StatusCode::OK, axum::Json(body)).into_response(),
            Err(e) => {
                let status =
                    StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                (status, axum::Json(e.body())).into_response()
            }
        }
    }
}

pub fn router(state: Arc<ServerState>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/models", get(models))
        .route("/health", get(|| async { "ok" }))
        .fallback(|| async {
            Reply(Err(ApiError::not_found(
                "no such route; this server serves /v1/chat/completions and /v1/models",
                "unknown_url",
            )))
        })
        .method_not_allowed_fallback(|| async {
            Reply(Err(ApiError {
                status: 405,
                ..ApiError::bad_body("method not allowed for this route")
            }))
        })
        .with_state(state)
}

async fn models(State(state): State<Arc<ServerState>>) -> Reply {
    Reply(Ok(openai::models_body(&state.model_name, state.created)))
}

async fn chat_completions(State(state): State<Arc<ServerState>>, body: Bytes) -> Reply {
    Reply(complete(&state, &body).await)
}

async fn complete(state: &ServerState, body: &[u8]) -> Result<Value, ApiError> {
    let body: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_body(format!("the request body is not valid JSON: {e}")))?;
    let request = openai::parse_request(&body)?;
    if request.model != state.model_name {
        return Err(ApiError::not_found(
            format!(
                "The model `{}` does not exist; this server serves `{}`",
                request.model, state.model_name
            ),
            "model_not_found",
        ));
    }
    let mut options = RenderOptions::default().generation_prompt(true);
    options.tools = request.tools.clone();
    options.extra = request.template_kwargs.clone();
    let prompt = state
        .tokenizer
        .render_ids(&request.messages, &options)
        .map_err(|e| {
            ApiError::invalid(
                "messages",
                format!("the chat template rejected the conversation: {e}"),
            )
        })?;
    let room = state.context_len.saturating_sub(prompt.len());
    let max_new_tokens = match request.max_tokens {
        Some(m) if m > room => {
            return Err(ApiError::invalid(
                "max_tokens",
                format!(
                    "This model's maximum context length is {} tokens. However, you requested {} tokens ({} in the messages, {m} in the completion).",
                    state.context_len,
                    prompt.len() + m,
                    prompt.len()
                ),
            ));
        }
        Some(m) => m,
        None if room == 0 => {
            return Err(ApiError::invalid(
                "messages",
                format!(
                    "the messages take {} tokens, the whole context of {}",
                    prompt.len(),
                    state.context_len
                ),
            ));
        }
        None => room.min(state.default_max_tokens),
    };
    let params = SamplingParams {
        temperature: request.temperature,
        top_k: request.top_k,
        top_p: request.top_p,
        max_new_tokens,
        stop_token_ids: state
            .tokenizer
            .stop_ids()
            .iter()
            .map(|&i| i64::from(i))
            .collect(),
        vocab_limit: Some(state.tokenizer.vocab_size() as i64),
        seed: request.seed.unwrap_or(0),
    };
    let prompt_len = prompt.len();
    let generations = state
        .engine
        .generate(
            prompt.into_iter().map(i64::from).collect(),
            request.n,
            params,
            request.seed.is_some(),
        )
        .await
        .map_err(|e| ApiError::server(e.to_string()))?;

    let mut completion_tokens = 0;
    let mut choices = Vec::with_capacity(generations.len());
    for g in generations {
        completion_tokens += g.tokens.len();
        let ids: Vec<u32> = g
            .tokens
            .iter()
            .filter_map(|&t| u32::try_from(t).ok())
            .collect();
        let decoded = state
            .tokenizer
            .decode_completion(&ids)
            .map_err(|e| ApiError::server(format!("decoding the completion: {e}")))?;
        let mut text = decoded.text;
        let cut = openai::apply_stop_strings(&mut text, &request.stop);
        let stopped = cut || g.finish_reason == FinishReason::Stop;
        let parsed = request
            .parse_tool_calls
            .then(|| tau2_chat::parse_tool_calls(&text));
        choices.push(Choice {
            text,
            stopped,
            parsed,
        });
    }
    Ok(openai::completion_body(
        &state.model_name,
        state.created,
        &choices,
        prompt_len,
        completion_tokens,
    ))
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<ServerState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
