//! An OpenAI-compatible chat-completions client (vLLM, SGLang, OpenAI, our
//! own server): the user simulator, the judge and HTTP agents use it.
//! Transient failures (timeouts, connection errors, 429, 5xx) are retried
//! with exponential backoff; refused credentials fail at once.

use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::chat::{ChatError, ChatMessage, ChatModel, ChatReply, Sampling};
use crate::message::ToolCall;
use crate::task::Requestor;

/// Settings of an endpoint.
#[derive(Clone, Debug)]
pub struct EndpointConfig {
    /// Base URL ending before `/chat/completions`, e.g. `http://user-sim:30001/v1`.
    pub base_url: String,
    /// Model name sent with each request.
    pub model: String,
    /// Sent as `Authorization: Bearer <key>`.
    pub api_key: Option<String>,
    /// Seconds to wait for one response.
    pub timeout: Duration,
    /// Retries after a transient failure.
    pub max_retries: u32,
    /// Delay before the first retry; doubled each time (capped at 30 s).
    pub initial_backoff: Duration,
    /// Extra request fields, e.g. `chat_template_kwargs` for vLLM/SGLang.
    pub extra_body: Map<String, Value>,
}

impl EndpointConfig {
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            model: model.into(),
            api_key: None,
            timeout: Duration::from_secs(300),
            max_retries: 5,
            initial_backoff: Duration::from_millis(500),
            extra_body: Map::new(),
        }
    }
}

/// A chat-completions endpoint.
#[derive(Clone, Debug)]
pub struct OpenAiClient {
    http: reqwest::Client,
    config: EndpointConfig,
    url: String,
}

/// The seed as OpenAI-compatible servers take it: a signed 64-bit integer
/// (vLLM, SGLang and `tau2-worker serve` reject larger values with HTTP 400),
/// so the top bit of our u64 seeds is dropped.
fn wire_seed(seed: u64) -> i64 {
    (seed & i64::MAX as u64) as i64
}

impl OpenAiClient {
    pub fn new(config: EndpointConfig) -> Result<Self, ChatError> {
        // reqwest is built without a bundled crypto provider; use ring (as kube does).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|e| ChatError::BadRequest(format!("cannot build the HTTP client: {e}")))?;
        let url = format!("{}/chat/completions", config.base_url.trim_end_matches('/'));
        Ok(Self { http, config, url })
    }

    fn body(&self, messages: &[ChatMessage], tools: &[Value], sampling: &Sampling) -> Value {
        let mut body = self.config.extra_body.clone();
        body.insert("model".into(), json!(self.config.model));
        body.insert(
            "messages".into(),
            Value::Array(messages.iter().map(ChatMessage::to_openai).collect()),
        );
        if !tools.is_empty() {
            body.insert("tools".into(), Value::Array(tools.to_vec()));
        }
        body.insert("temperature".into(), json!(sampling.temperature));
        if let Some(top_p) = sampling.top_p {
            body.insert("top_p".into(), json!(top_p));
        }
        if let Some(max) = sampling.max_tokens {
            body.insert("max_tokens".into(), json!(max));
        }
        if let Some(seed) = sampling.seed {
            body.insert("seed".into(), json!(wire_seed(seed)));
        }
        Value::Object(body)
    }

    async fn attempt(&self, body: &Value) -> Result<Value, Attempt> {
        let mut request = self.http.post(&self.url).json(body);
        if let Some(key) = &self.config.api_key {
            request = request.bearer_auth(key);
        }
        let response = request
            .send()
            .await
            .map_err(|e| Attempt::Retry(e.to_string(), None))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = response
            .text()
            .await
            .map_err(|e| Attempt::Retry(e.to_string(), None))?;
        let detail = || format!("HTTP {status}: {}", error_message(&text));
        match status.as_u16() {
            200..=299 => serde_json::from_str(&text).map_err(|e| {
                Attempt::Fatal(ChatError::Malformed(format!(
                    "not JSON ({e}): {}",
                    clip(&text)
                )))
            }),
            401 | 403 => Err(Attempt::Fatal(ChatError::Auth(detail()))),
            408 | 409 | 429 | 500..=599 => Err(Attempt::Retry(detail(), retry_after)),
            _ => Err(Attempt::Fatal(ChatError::BadRequest(detail()))),
        }
    }
}

enum Attempt {
    Retry(String, Option<Duration>),
    Fatal(ChatError),
}

impl ChatModel for OpenAiClient {
    async fn complete(
        &self,
        messages: &[ChatMessage],
        tools: &[Value],
        sampling: &Sampling,
    ) -> Result<ChatReply, ChatError> {
        let body = self.body(messages, tools, sampling);
        let mut backoff = self.config.initial_backoff;
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.attempt(&body).await {
                Ok(reply) => return parse_reply(&reply),
                Err(Attempt::Fatal(e)) => return Err(e),
                Err(Attempt::Retry(last, retry_after)) => {
                    if attempts > self.config.max_retries {
                        return Err(ChatError::Unavailable { attempts, last });
                    }
                    let wait = retry_after.unwrap_or(backoff);
                    tracing::warn!(url = %self.url, attempt = attempts, error = %last, wait_ms = wait.as_millis() as u64, "chat request failed; retrying");
                    tokio::time::sleep(wait).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }
}

/// The first choice's message: text and tool calls (arguments must be a JSON object).
pub fn parse_reply(reply: &Value) -> Result<ChatReply, ChatError> {
    let message = reply.pointer("/choices/0/message").ok_or_else(|| {
        ChatError::Malformed(format!(
            "no choices[0].message in {}",
            clip(&reply.to_string())
        ))
    })?;
    let content = message
        .get("content")
        .and_then(Value::as_str)
        .map(str::to_string);
    let mut tool_calls = Vec::new();
    for (i, call) in message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let name = call
            .pointer("/function/name")
            .and_then(Value::as_str)
            .ok_or_else(|| ChatError::Malformed(format!("tool call {i} has no function name")))?;
        let arguments = match call.pointer("/function/arguments") {
            Some(Value::String(s)) if s.trim().is_empty() => Map::new(),
            Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
                Ok(Value::Object(m)) => m,
                _ => {
                    return Err(ChatError::Malformed(format!(
                        "tool call {name}: arguments are not a JSON object: {}",
                        clip(s)
                    )));
                }
            },
            Some(Value::Object(m)) => m.clone(),
            _ => Map::new(),
        };
        let id = call
            .get("id")
            .and_then(Value::as_str)
            .map_or_else(|| format!("call_{i}"), str::to_string);
        tool_calls.push(ToolCall {
            id,
            name: name.to_string(),
            arguments,
            requestor: Requestor::Assistant,
        });
    }
    Ok(ChatReply {
        content,
        tool_calls,
        usage: reply.get("usage").cloned(),
    })
}

/// The `error.message` of an OpenAI-style error body, else the body itself.
fn error_message(text: &str) -> String {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| clip(text))
}

fn clip(text: &str) -> String {
    let mut s: String = text.chars().take(300).collect();
    if s.len() < text.len() {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_fit_a_signed_64_bit_integer() {
        let client =
            OpenAiClient::new(EndpointConfig::new("http://127.0.0.1:1/v1", "m")).expect("client");
        let sampling = Sampling {
            seed: Some(13_166_404_999_472_472_597),
            ..Sampling::default()
        };
        let body = client.body(&[], &[], &sampling);
        assert_eq!(
            body["seed"],
            json!(13_166_404_999_472_472_597u64 & (i64::MAX as u64))
        );
        assert!(body["seed"].is_i64());
        let small = Sampling {
            seed: Some(42),
            ..Sampling::default()
        };
        assert_eq!(client.body(&[], &[], &small)["seed"], json!(42));
    }
}
