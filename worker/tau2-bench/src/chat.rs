//! Chat models behind a small trait, in OpenAI chat-completions terms: the
//! user simulator, the judge and HTTP agents talk to any of them (a served
//! LLM over HTTP, our own model, or a scripted double in tests).

use std::future::Future;

use serde_json::{Map, Value, json};

use crate::message::{Message, ParticipantMessage, ToolCall};
use crate::py::json::dumps;
use crate::task::Requestor;

/// Sampling settings of one request.
#[derive(Clone, Debug, PartialEq)]
pub struct Sampling {
    pub temperature: f64,
    pub top_p: Option<f64>,
    pub max_tokens: Option<u32>,
    pub seed: Option<u64>,
}

impl Default for Sampling {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_p: None,
            max_tokens: None,
            seed: None,
        }
    }
}

/// A message in OpenAI's chat format.
#[derive(Clone, Debug, PartialEq)]
pub enum ChatMessage {
    System(String),
    User(String),
    Assistant {
        content: Option<String>,
        tool_calls: Vec<ToolCall>,
    },
    Tool {
        tool_call_id: String,
        content: String,
    },
}

impl ChatMessage {
    /// The request JSON of this message (as litellm sends it).
    pub fn to_openai(&self) -> Value {
        match self {
            ChatMessage::System(c) => json!({"role": "system", "content": c}),
            ChatMessage::User(c) => json!({"role": "user", "content": c}),
            ChatMessage::Assistant {
                content,
                tool_calls,
            } => {
                let mut m = Map::new();
                m.insert("role".into(), json!("assistant"));
                m.insert("content".into(), json!(content));
                if !tool_calls.is_empty() {
                    let calls: Vec<Value> = tool_calls
                        .iter()
                        .map(|tc| {
                            json!({
                                "id": tc.id,
                                "type": "function",
                                "function": {"name": tc.name, "arguments": dumps(&Value::Object(tc.arguments.clone()))},
                            })
                        })
                        .collect();
                    m.insert("tool_calls".into(), Value::Array(calls));
                }
                Value::Object(m)
            }
            ChatMessage::Tool {
                tool_call_id,
                content,
            } => {
                json!({"role": "tool", "content": content, "tool_call_id": tool_call_id})
            }
        }
    }
}

/// What a chat model answered.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ChatReply {
    pub content: Option<String>,
    pub tool_calls: Vec<ToolCall>,
    /// Token usage, if the server reported it.
    pub usage: Option<Value>,
}

impl ChatReply {
    /// As an agent or user message (tool calls get `requestor`).
    pub fn into_message(self, requestor: Requestor) -> ParticipantMessage {
        let tool_calls = (!self.tool_calls.is_empty()).then(|| {
            self.tool_calls
                .into_iter()
                .map(|tc| ToolCall { requestor, ..tc })
                .collect()
        });
        ParticipantMessage {
            content: self.content,
            tool_calls,
            usage: self.usage,
            ..Default::default()
        }
    }
}

/// Why a chat request failed.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// The credentials were refused (HTTP 401/403): retrying will not help.
    #[error("the chat endpoint refused the credentials: {0}")]
    Auth(String),
    /// A request the server rejects as malformed (4xx): retrying will not help.
    #[error("the chat endpoint rejected the request: {0}")]
    BadRequest(String),
    /// Still failing after the retries (timeouts, 429, 5xx, connection errors).
    #[error("the chat endpoint failed after {attempts} attempts: {last}")]
    Unavailable { attempts: u32, last: String },
    /// The reply could not be understood.
    #[error("the chat endpoint's reply is malformed: {0}")]
    Malformed(String),
}

/// A chat-completions model.
pub trait ChatModel: Send + Sync {
    /// One completion for `messages`, offering `tools` (OpenAI function schemas).
    fn complete(
        &self,
        messages: &[ChatMessage],
        tools: &[Value],
        sampling: &Sampling,
    ) -> impl Future<Output = Result<ChatReply, ChatError>> + Send;
}

/// The agent's view of a trajectory in chat form (`to_litellm_messages`):
/// user text, the agent's own messages and the results of its tool calls.
pub fn agent_view(system: &str, trajectory: &[Message]) -> Vec<ChatMessage> {
    let mut out = vec![ChatMessage::System(system.to_string())];
    for m in trajectory {
        match m {
            Message::User(u) if !u.is_tool_call() => {
                out.push(ChatMessage::User(u.content.clone().unwrap_or_default()))
            }
            Message::Assistant(a) => out.push(ChatMessage::Assistant {
                content: a.content.clone(),
                tool_calls: a.tool_calls.clone().unwrap_or_default(),
            }),
            Message::Tool(t) if t.requestor == Requestor::Assistant => {
                out.push(ChatMessage::Tool {
                    tool_call_id: t.id.clone(),
                    content: t.content.clone().unwrap_or_default(),
                })
            }
            _ => {}
        }
    }
    out
}

/// The user simulator's view (`UserState.flip_roles`): the agent's text as
/// `user`, the user's own messages as `assistant`, its tool results.
pub fn user_view(system: &str, trajectory: &[Message]) -> Vec<ChatMessage> {
    let mut out = vec![ChatMessage::System(system.to_string())];
    for m in trajectory {
        match m {
            Message::User(u) => out.push(ChatMessage::Assistant {
                content: u.content.clone(),
                tool_calls: u.tool_calls.clone().unwrap_or_default(),
            }),
            Message::Assistant(a) if !a.is_tool_call() => {
                out.push(ChatMessage::User(a.content.clone().unwrap_or_default()))
            }
            Message::Tool(t) if t.requestor == Requestor::User => out.push(ChatMessage::Tool {
                tool_call_id: t.id.clone(),
                content: t.content.clone().unwrap_or_default(),
            }),
            _ => {}
        }
    }
    out
}
