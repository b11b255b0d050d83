//! Conversation messages, as tau2-bench records them in trajectories.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::task::Requestor;

/// A tool call made by the agent or the user.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ToolCall {
    #[serde(default)]
    pub id: String,
    pub name: String,
    pub arguments: Map<String, Value>,
    #[serde(default)]
    pub requestor: Requestor,
}

/// A message from the agent (`assistant`) or the user: text, tool calls, or (invalidly) both or neither.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct ParticipantMessage {
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default)]
    pub tool_calls: Option<Vec<ToolCall>>,
    #[serde(default)]
    pub turn_idx: Option<i64>,
    #[serde(default)]
    pub timestamp: Option<String>,
    #[serde(default)]
    pub cost: Option<f64>,
    #[serde(default)]
    pub usage: Option<Value>,
    #[serde(default)]
    pub raw_data: Option<Value>,
}

impl ParticipantMessage {
    pub fn text(content: impl Into<String>) -> Self {
        Self {
            content: Some(content.into()),
            ..Default::default()
        }
    }

    pub fn calls(tool_calls: Vec<ToolCall>) -> Self {
        Self {
            tool_calls: Some(tool_calls),
            ..Default::default()
        }
    }

    /// Has non-blank text (`has_text_content`).
    pub fn has_text(&self) -> bool {
        self.content
            .as_deref()
            .is_some_and(|c| !c.trim().is_empty())
    }

    /// Carries tool calls (`is_tool_call`: a present list, even empty).
    pub fn is_tool_call(&self) -> bool {
        self.tool_calls.is_some()
    }
}

/// The result of one tool call.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ToolMessage {
    pub id: String,
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default)]
    pub requestor: Requestor,
    #[serde(default)]
    pub error: bool,
    #[serde(default)]
    pub turn_idx: Option<i64>,
    #[serde(default)]
    pub timestamp: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SystemMessage {
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default)]
    pub turn_idx: Option<i64>,
    #[serde(default)]
    pub timestamp: Option<String>,
}

/// Any message of a trajectory.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum Message {
    System(SystemMessage),
    Assistant(ParticipantMessage),
    User(ParticipantMessage),
    Tool(ToolMessage),
}

impl Message {
    /// The tool calls of an agent or user message.
    pub fn tool_calls(&self) -> Option<&[ToolCall]> {
        match self {
            Message::Assistant(m) | Message::User(m) => m.tool_calls.as_deref(),
            _ => None,
        }
    }

    pub fn set_timestamp(&mut self, ts: &str) {
        let ts = Some(ts.to_string());
        match self {
            Message::System(m) => m.timestamp = ts,
            Message::Assistant(m) | Message::User(m) => m.timestamp = ts,
            Message::Tool(m) => m.timestamp = ts,
        }
    }

    pub fn set_turn_idx(&mut self, idx: i64) {
        match self {
            Message::System(m) => m.turn_idx = Some(idx),
            Message::Assistant(m) | Message::User(m) => m.turn_idx = Some(idx),
            Message::Tool(m) => m.turn_idx = Some(idx),
        }
    }
}
