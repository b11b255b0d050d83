//! Chat messages in OpenAI's chat-completions shape, which is also what
//! Hugging Face chat templates read (`role`, `content`, `tool_calls` with
//! `function.name` / `function.arguments`, `tool_call_id`).
//!
//! tau2-bench's `ChatMessage::to_openai()` JSON deserializes into [`Message`]
//! directly; we mirror the format instead of depending on tau2-bench, which
//! would pull its HTTP stack into every model crate.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value, json};

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

/// One message. Serializes to the JSON the template sees (and that the
/// transformers parity harness receives), so `content: null` stays null.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Message {
    pub role: Role,
    #[serde(default, deserialize_with = "content_text")]
    pub content: Option<String>,
    /// Only hybrid-thinking templates read it; 2507 ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_empty"
    )]
    pub tool_calls: Vec<ToolCall>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Message {
    fn new(role: Role, content: Option<String>) -> Self {
        Self {
            role,
            content,
            reasoning_content: None,
            tool_calls: Vec::new(),
            tool_call_id: None,
            name: None,
        }
    }

    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, Some(content.into()))
    }

    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, Some(content.into()))
    }

    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, Some(content.into()))
    }

    /// An assistant turn with tool calls; `content` None when it has no text.
    pub fn assistant_calls(content: Option<String>, tool_calls: Vec<ToolCall>) -> Self {
        Self {
            tool_calls,
            ..Self::new(Role::Assistant, content)
        }
    }

    pub fn tool(tool_call_id: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            tool_call_id: Some(tool_call_id.into()),
            ..Self::new(Role::Tool, Some(content.into()))
        }
    }

    /// Parses OpenAI-style JSON messages (e.g. tau2-bench's `to_openai()`).
    pub fn from_openai(value: Value) -> Result<Self, crate::ChatError> {
        serde_json::from_value(value).map_err(|e| crate::ChatError::Message(e.to_string()))
    }

    /// The same message with every string `arguments` that holds a JSON
    /// object replaced by that object. OpenAI clients send arguments as JSON
    /// text, but the template renders a string verbatim and an object with
    /// Python's `json.dumps` spacing, which is what the model produces; so
    /// conversations from an API should be normalised before rendering.
    pub fn with_parsed_arguments(mut self) -> Self {
        for call in &mut self.tool_calls {
            if let Some(Ok(Value::Object(obj))) = call.arguments.as_str().map(serde_json::from_str)
            {
                call.arguments = Value::Object(obj);
            }
        }
        self
    }
}

/// A function call of an assistant message. `arguments` is kept as given:
/// a JSON object, or a string the template prints verbatim.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolCall {
    pub id: Option<String>,
    pub name: String,
    pub arguments: Value,
}

impl ToolCall {
    pub fn new(name: impl Into<String>, arguments: Map<String, Value>) -> Self {
        Self {
            id: None,
            name: name.into(),
            arguments: Value::Object(arguments),
        }
    }

    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// The arguments as an object, parsing a JSON string if needed.
    pub fn arguments_object(&self) -> Option<Map<String, Value>> {
        match &self.arguments {
            Value::Object(m) => Some(m.clone()),
            Value::String(s) => match serde_json::from_str(s) {
                Ok(Value::Object(m)) => Some(m),
                _ => None,
            },
            Value::Null => Some(Map::new()),
            _ => None,
        }
    }

    /// The arguments as JSON text, as the OpenAI API returns them.
    pub fn arguments_json(&self) -> String {
        match &self.arguments {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }
}

impl Serialize for ToolCall {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = Map::new();
        if let Some(id) = &self.id {
            m.insert("id".into(), json!(id));
        }
        m.insert("type".into(), json!("function"));
        m.insert(
            "function".into(),
            json!({"name": self.name, "arguments": self.arguments}),
        );
        Value::Object(m).serialize(s)
    }
}

impl<'de> Deserialize<'de> for ToolCall {
    /// Accepts OpenAI's nested `{"id", "type", "function": {"name", "arguments"}}`
    /// and the flat `{"name", "arguments"}` some datasets use.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut outer = Map::<String, Value>::deserialize(d)?;
        let id = match outer.remove("id") {
            Some(Value::String(s)) => Some(s),
            Some(Value::Null) | None => None,
            Some(other) => Some(other.to_string()),
        };
        let mut function = match outer.remove("function") {
            Some(Value::Object(f)) => f,
            Some(_) => return Err(D::Error::custom("tool_calls[].function must be an object")),
            None => outer,
        };
        let name = match function.remove("name") {
            Some(Value::String(s)) => s,
            _ => return Err(D::Error::custom("tool call without a string `name`")),
        };
        let arguments = function.remove("arguments").unwrap_or_else(|| json!({}));
        Ok(Self {
            id,
            name,
            arguments,
        })
    }
}

/// `content` may be a string, null, or a list of `{"type": "text", "text"}`
/// parts (joined; other part types have no text to render).
fn content_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        Value::Array(parts) => Ok(Some(
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect(),
        )),
        other => Err(D::Error::custom(format!("unsupported content {other}"))),
    }
}

fn null_as_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ToolCall>, D::Error> {
    Ok(Option::<Vec<ToolCall>>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_round_trip() {
        let wire = json!({
            "role": "assistant",
            "content": null,
            "tool_calls": [{"id": "c1", "type": "function",
                            "function": {"name": "f", "arguments": "{\"a\": 1}"}}]
        });
        let m = Message::from_openai(wire.clone()).expect("succeeds");
        assert_eq!(m.tool_calls[0].arguments, json!("{\"a\": 1}"));
        assert_eq!(serde_json::to_value(&m).expect("succeeds"), wire);
        let parsed = m.with_parsed_arguments();
        assert_eq!(parsed.tool_calls[0].arguments, json!({"a": 1}));
        assert_eq!(parsed.tool_calls[0].arguments_json(), "{\"a\":1}");
    }

    #[test]
    fn content_parts_and_flat_calls() {
        let m = Message::from_openai(json!({
            "role": "user",
            "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
        }))
        .expect("succeeds");
        assert_eq!(m.content.as_deref(), Some("ab"));
        let m = Message::from_openai(json!({
            "role": "assistant", "content": "x", "tool_calls": [{"name": "g", "arguments": {"k": "v"}}]
        }))
        .expect("succeeds");
        assert_eq!(m.tool_calls[0].name, "g");
        assert!(
            Message::from_openai(json!({"role": "assistant", "tool_calls": [{"arguments": {}}]}))
                .is_err()
        );
        assert!(Message::from_openai(json!({"role": "robot", "content": ""})).is_err());
    }
}
