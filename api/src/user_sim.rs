//! The simulated user that RFT, GRPO and eval episodes talk to.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How the user is simulated.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum UserSimulatorMode {
    /// An LLM behind an OpenAI-compatible chat-completions endpoint (vLLM, SGLang, OpenAI...), prompted
    /// with tau2-bench's user guidelines and the task's scenario.
    #[default]
    Endpoint,
    /// A deterministic scripted user that states the task's instructions and answers from them; for
    /// tests and demos without an LLM.
    Scripted,
}

/// A key of a Secret in the pipeline's namespace.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
pub struct SecretKeyRef {
    /// The Secret's name.
    pub name: String,
    /// The key within the Secret.
    pub key: String,
}

/// The simulated user.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.mode != 'Endpoint' || (has(self.endpoint) && has(self.model))",
        "message": "userSimulator.endpoint and userSimulator.model are required when mode is Endpoint",
    },
    {
        "rule": "!has(self.endpoint) || (isURL(self.endpoint) && url(self.endpoint).getScheme() in ['http', 'https'])",
        "message": "userSimulator.endpoint must be an http(s) URL of an OpenAI-compatible API, e.g. http://user-sim:30001/v1",
        "fieldPath": ".endpoint",
    },
]))]
pub struct UserSimulator {
    /// Endpoint (an LLM) or Scripted.
    #[serde(default)]
    pub mode: UserSimulatorMode,
    /// Base URL of the OpenAI-compatible API, ending before `/chat/completions`, e.g. `http://user-sim:30001/v1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    pub endpoint: Option<String>,
    /// Model name sent in each request, e.g. `Qwen/Qwen3-4B-Instruct-2507` or `gpt-4.1-mini`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub model: Option<String>,
    /// A Secret key holding the API key, sent as a bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_secret_ref: Option<SecretKeyRef>,
    /// Sampling temperature of the user model.
    #[serde(default = "default_temperature")]
    #[schemars(range(min = 0.0, max = 2.0))]
    pub temperature: f64,
    /// Nucleus sampling of the user model; the endpoint's default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0), extend("exclusiveMinimum" = true))]
    pub top_p: Option<f64>,
    /// Most tokens in one user turn; the endpoint's default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_tokens: Option<i32>,
    /// Seconds to wait for one response.
    #[serde(default = "default_timeout")]
    #[schemars(range(min = 1, max = 3600))]
    pub request_timeout_seconds: i32,
    /// Retries of a request that failed for a transient reason (timeouts, 429, 5xx), with backoff.
    #[serde(default = "default_retries")]
    #[schemars(range(min = 0, max = 20))]
    pub max_retries: i32,
}

fn default_temperature() -> f64 {
    0.7
}
fn default_timeout() -> i32 {
    300
}
fn default_retries() -> i32 {
    5
}

impl UserSimulator {
    /// A scripted user with default settings.
    pub fn scripted() -> Self {
        Self {
            mode: UserSimulatorMode::Scripted,
            endpoint: None,
            model: None,
            api_key_secret_ref: None,
            temperature: default_temperature(),
            top_p: None,
            max_tokens: None,
            request_timeout_seconds: default_timeout(),
            max_retries: default_retries(),
        }
    }
}
