//! The OpenAI chat-completions wire format, without HTTP: request bodies are
//! validated into [`ChatRequest`] (with errors that name the offending field,
//! as OpenAI's do), and generated turns become response bodies.

use serde_json::{Map, Value, json};
use tau2_chat::{Message, ParsedTurn};

/// An OpenAI-style error: HTTP status and the `{"error": {...}}` body.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    /// `invalid_request_error`, `not_found_error` or `server_error`.
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<&'static str>,
}

impl ApiError {
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status: 400,
            message: message.into(),
            kind: "invalid_request_error",
            param: Some(param.into()),
            code: None,
        }
    }

    pub fn bad_body(message: impl Into<String>) -> Self {
        Self {
            param: None,
            ..Self::invalid("", message)
        }
    }

    pub fn not_found(message: impl Into<String>, code: &'static str) -> Self {
        Self {
            status: 404,
            message: message.into(),
            kind: "not_found_error",
            param: None,
            code: Some(code),
        }
    }

    pub fn server(message: impl Into<String>) -> Self {
        Self {
            status: 500,
            message: message.into(),
            kind: "server_error",
            param: None,
            code: None,
        }
    }

    pub fn body(&self) -> Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

/// Largest `n` (choices per request) accepted.
pub const MAX_N: u64 = 16;

/// A validated chat-completions request.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<Message>,
    /// OpenAI function schemas, as given.
    pub tools: Option<Vec<Value>>,
    /// Whether generated `<tool_call>` blocks become `tool_calls` (tools were
    /// given and `tool_choice` is not `"none"`).
    pub parse_tool_calls: bool,
    pub temperature: f64,
    pub top_p: f64,
    /// vLLM's extension; 0 = off.
    pub top_k: i64,
    pub max_tokens: Option<usize>,
    pub stop: Vec<String>,
    pub n: usize,
    pub seed: Option<u64>,
    /// vLLM's `chat_template_kwargs` (e.g. `enable_thinking`), passed to the template.
    pub template_kwargs: Map<String, Value>,
}

fn number(
    body: &Map<String, Value>,
    key: &str,
    default: f64,
    range: (f64, f64),
) -> Result<f64, ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => match v.as_f64() {
            Some(x) if x >= range.0 && x <= range.1 => Ok(x),
            Some(x) => Err(ApiError::invalid(
                key,
                format!("{key} must be between {} and {}, got {x}", range.0, range.1),
            )),
            None => Err(ApiError::invalid(
                key,
                format!("{key} must be a number, got {v}"),
            )),
        },
    }
}

fn integer(body: &Map<String, Value>, key: &str) -> Result<Option<i64>, ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .map(Some)
            .ok_or_else(|| ApiError::invalid(key, format!("{key} must be an integer, got {v}"))),
    }
}

fn unsupported(key: &str, what: &str) -> ApiError {
    ApiError::invalid(key, format!("{what} is not supported by this server"))
}

fn parse_messages(body: &Map<String, Value>) -> Result<Vec<Message>, ApiError> {
    let Some(Value::Array(items)) = body.get("messages") else {
        return Err(ApiError::invalid(
            "messages",
            "messages is required and must be an array of messages",
        ));
    };
    if items.is_empty() {
        return Err(ApiError::invalid("messages", "messages must not be empty"));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let mut item = item.clone();
            // OpenAI's newer name for the system role.
            if item.get("role").and_then(Value::as_str) == Some("developer") {
                item["role"] = json!("system");
            }
            Message::from_openai(item)
                .map(Message::with_parsed_arguments)
                .map_err(|e| {
                    ApiError::invalid(
                        format!("messages[{i}]"),
                        format!("invalid message {i}: {e}"),
                    )
                })
        })
        .collect()
}

fn parse_tools(body: &Map<String, Value>) -> Result<Option<Vec<Value>>, ApiError> {
    let tools = match body.get("tools") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(t)) => t,
        Some(_) => return Err(ApiError::invalid("tools", "tools must be an array")),
    };
    for (i, tool) in tools.iter().enumerate() {
        let named = tool["type"] == "function"
            && tool["function"]["name"]
                .as_str()
                .is_some_and(|n| !n.is_empty());
        if !named {
            return Err(ApiError::invalid(
                format!("tools[{i}]"),
                format!(
                    "tools[{i}] must be {{\"type\": \"function\", \"function\": {{\"name\": ...}}}}"
                ),
            ));
        }
    }
    Ok(Some(tools.clone()))
}

fn parse_stop(body: &Map<String, Value>) -> Result<Vec<String>, ApiError> {
    let bad = || {
        ApiError::invalid(
            "stop",
            "stop must be a string or an array of up to 4 strings",
        )
    };
    match body.get("stop") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) if items.len() <= 4 => items
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or_else(bad))
            .collect(),
        Some(_) => Err(bad()),
    }
    .map(|stops: Vec<String>| stops.into_iter().filter(|s| !s.is_empty()).collect())
}

/// Validates a request body.
pub fn parse_request(body: &Value) -> Result<ChatRequest, ApiError> {
    let Value::Object(body) = body else {
        return Err(ApiError::bad_body("the request body must be a JSON object"));
    };
    let model = match body.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        _ => {
            return Err(ApiError::invalid(
                "model",
                "model is required and must be a string",
            ));
        }
    };
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        return Err(unsupported("stream", "stream=true"));
    }
    if body.get("logprobs").and_then(Value::as_bool) == Some(true) {
        return Err(unsupported("logprobs", "logprobs=true"));
    }
    if let Some(format) = body.get("response_format").filter(|v| !v.is_null())
        && format["type"] != "text"
    {
        return Err(unsupported(
            "response_format",
            "a response_format other than text",
        ));
    }
    let tools = parse_tools(body)?;
    let parse_tool_calls = match body.get("tool_choice") {
        None | Some(Value::Null) => true,
        Some(Value::String(c)) if c == "auto" => true,
        Some(Value::String(c)) if c == "none" => false,
        Some(_) => {
            return Err(ApiError::invalid(
                "tool_choice",
                "tool_choice must be \"auto\" or \"none\" (forcing a call is not supported)",
            ));
        }
    } && tools.as_ref().is_some_and(|t| !t.is_empty());

    let max_tokens = match integer(body, "max_completion_tokens")?.or(integer(body, "max_tokens")?)
    {
        None => None,
        Some(m) if m >= 1 => Some(m as usize),
        Some(m) => {
            return Err(ApiError::invalid(
                "max_tokens",
                format!("max_tokens must be at least 1, got {m}"),
            ));
        }
    };
    let n = match integer(body, "n")? {
        None => 1,
        Some(n) if (1..=MAX_N as i64).contains(&n) => n as usize,
        Some(n) => {
            return Err(ApiError::invalid(
                "n",
                format!("n must be between 1 and {MAX_N}, got {n}"),
            ));
        }
    };
    let top_k = match integer(body, "top_k")? {
        None | Some(-1) => 0,
        Some(k) if k >= 0 => k,
        Some(k) => {
            return Err(ApiError::invalid(
                "top_k",
                format!("top_k must be -1 (off) or >= 0, got {k}"),
            ));
        }
    };
    let top_p = number(body, "top_p", 1.0, (0.0, 1.0))?;
    if top_p == 0.0 {
        return Err(ApiError::invalid("top_p", "top_p must be greater than 0"));
    }
    let template_kwargs = match body.get("chat_template_kwargs") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => {
            return Err(ApiError::invalid(
                "chat_template_kwargs",
                "chat_template_kwargs must be an object",
            ));
        }
    };
    Ok(ChatRequest {
        model,
        messages: parse_messages(body)?,
        tools,
        parse_tool_calls,
        temperature: number(body, "temperature", 1.0, (0.0, 2.0))?,
        top_p,
        top_k,
        max_tokens,
        stop: parse_stop(body)?,
        n,
        // Any integer is a valid seed; negative ones keep their bits.
        seed: integer(body, "seed")?.map(|s| s as u64),
        template_kwargs,
    })
}

/// Why a choice ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    Stop,
    Length,
    ToolCalls,
}

impl Finish {
    fn as_str(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::Length => "length",
            Finish::ToolCalls => "tool_calls",
        }
    }
}

/// One generated choice, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    /// The generated text (stop token removed, cut at a stop string).
    pub text: String,
    /// The stop token or a stop string ended it (rather than the length limit).
    pub stopped: bool,
    /// Tool calls parsed from `text`, when the request asked for them.
    pub parsed: Option<ParsedTurn>,
}

/// Cuts `text` at the first occurrence of any stop string; true if cut.
pub fn apply_stop_strings(text: &mut String, stops: &[String]) -> bool {
    let first = stops.iter().filter_map(|s| text.find(s.as_str())).min();
    match first {
        Some(at) => {
            text.truncate(at);
            true
        }
        None => false,
    }
}

/// A random id suffix (ids need only be unique, not secret).
pub fn random_hex() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("{:016x}", h.finish())
}

fn choice_json(index: usize, choice: &Choice) -> Value {
    let (content, calls) = match &choice.parsed {
        Some(turn) if !turn.calls.is_empty() => {
            let calls: Vec<Value> = turn
                .calls
                .iter()
                .map(|c| {
                    let arguments = match &c.arguments {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    json!({
                        "id": format!("call_{}", random_hex()),
                        "type": "function",
                        "function": {"name": c.name, "arguments": arguments},
                    })
                })
                .collect();
            // OpenAI gives null content next to tool calls when there is no text.
            (
                turn.content.clone().map_or(Value::Null, Value::String),
                Some(calls),
            )
        }
        Some(turn) => (json!(turn.content.clone().unwrap_or_default()), None),
        None => (json!(choice.text), None),
    };
    let finish = match (&calls, choice.stopped) {
        (Some(_), _) => Finish::ToolCalls,
        (None, true) => Finish::Stop,
        (None, false) => Finish::Length,
    };
    let mut message = json!({"role": "assistant", "content": content});
    if let Some(calls) = calls {
        message["tool_calls"] = Value::Array(calls);
    }
    json!({"index": index, "message": message, "logprobs": null, "finish_reason": finish.as_str()})
}

/// The `chat.completion` response body.
pub fn completion_body(
    model: &str,
    created: u64,
    choices: &[Choice],
    prompt_tokens: usize,
    completion_tokens: usize,
) -> Value {
    json!({
        "id": format!("chatcmpl-{}", random_hex()),
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": choices.iter().enumerate().map(|(i, c)| choice_json(i, c)).collect::<Vec<_>>(),
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    })
}

/// The `/v1/models` body.
pub fn models_body(model: &str, created: u64) -> Value {
    json!({"object": "list", "data": [{"id": model, "object": "model", "created": created, "owned_by": "tau2-operator"}]})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(extra: Value) -> Result<ChatRequest, ApiError> {
        let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        if let (Some(b), Value::Object(e)) = (body.as_object_mut(), extra) {
            b.extend(e);
        }
        parse_request(&body)
    }

    #[test]
    fn defaults_follow_openai() {
        let r = request(json!({})).expect("valid");
        assert_eq!((r.temperature, r.top_p, r.n, r.top_k), (1.0, 1.0, 1, 0));
        assert_eq!(r.max_tokens, None);
        assert!(!r.parse_tool_calls, "no tools, nothing to parse");
    }

    #[test]
    fn every_bad_field_is_named() {
        let cases = [
            (json!({"temperature": 3}), "temperature"),
            (json!({"temperature": "hot"}), "temperature"),
            (json!({"top_p": 0}), "top_p"),
            (json!({"n": 0}), "n"),
            (json!({"n": 99}), "n"),
            (json!({"max_tokens": 0}), "max_tokens"),
            (json!({"stop": [1]}), "stop"),
            (json!({"stop": ["a", "b", "c", "d", "e"]}), "stop"),
            (json!({"tools": [{"type": "function"}]}), "tools[0]"),
            (json!({"tools": {}}), "tools"),
            (
                json!({"tool_choice": "required", "tools": []}),
                "tool_choice",
            ),
            (json!({"stream": true}), "stream"),
            (json!({"logprobs": true}), "logprobs"),
            (json!({"messages": []}), "messages"),
            (json!({"messages": "hi"}), "messages"),
            (
                json!({"messages": [{"role": "robot", "content": "x"}]}),
                "messages[0]",
            ),
            (json!({"model": 3}), "model"),
            (json!({"top_k": -2}), "top_k"),
            (
                json!({"response_format": {"type": "json_object"}}),
                "response_format",
            ),
        ];
        for (extra, param) in cases {
            let err = request(extra.clone()).expect_err(&format!("{extra} is invalid"));
            assert_eq!(err.status, 400);
            assert_eq!(err.param.as_deref(), Some(param), "{extra}: {err}");
            assert_eq!(err.body()["error"]["type"], "invalid_request_error");
        }
        assert!(parse_request(&json!([1])).is_err());
    }

    #[test]
    fn tools_developer_role_and_string_arguments_are_accepted() {
        let r = request(json!({
            "messages": [
                {"role": "developer", "content": "be brief"},
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{\"city\": \"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "sunny"}
            ],
            "tools": [{"type": "function", "function": {"name": "w", "parameters": {}}}],
            "stop": "END", "seed": -1, "max_completion_tokens": 7
        }))
        .expect("valid");
        assert!(r.parse_tool_calls);
        assert_eq!(r.messages[0].role, tau2_chat::Role::System);
        assert_eq!(
            r.messages[2].tool_calls[0].arguments,
            json!({"city": "Paris"})
        );
        assert_eq!(r.stop, ["END"]);
        assert_eq!(r.seed, Some(u64::MAX));
        assert_eq!(r.max_tokens, Some(7));
        let none = request(
            json!({"tools": [{"type": "function", "function": {"name": "w"}}], "tool_choice": "none"}),
        );
        assert!(!none.expect("valid").parse_tool_calls);
    }

    #[test]
    fn stop_strings_cut_at_the_earliest_match() {
        let mut t = String::from("abc END def STOP");
        assert!(apply_stop_strings(&mut t, &["STOP".into(), "END".into()]));
        assert_eq!(t, "abc ");
        let mut u = String::from("nothing");
        assert!(!apply_stop_strings(&mut u, &["x".into()]));
    }

    #[test]
    fn choices_map_to_openai_messages_and_finish_reasons() {
        let call = tau2_chat::parse_tool_calls(
            "<tool_call>\n{\"name\": \"w\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
        );
        let choices = [
            Choice {
                text: String::new(),
                stopped: true,
                parsed: Some(call),
            },
            Choice {
                text: "hello".into(),
                stopped: false,
                parsed: None,
            },
            Choice {
                text: "hi".into(),
                stopped: true,
                parsed: Some(tau2_chat::parse_tool_calls("hi")),
            },
        ];
        let body = completion_body("m", 1, &choices, 10, 5);
        let c = &body["choices"];
        assert_eq!(c[0]["finish_reason"], "tool_calls");
        assert_eq!(c[0]["message"]["content"], Value::Null);
        assert_eq!(c[0]["message"]["tool_calls"][0]["function"]["name"], "w");
        assert_eq!(
            c[0]["message"]["tool_calls"][0]["function"]["arguments"],
            "{\"city\":\"Paris\"}"
        );
        assert_eq!(c[1]["finish_reason"], "length");
        assert_eq!(c[1]["message"]["content"], "hello");
        assert_eq!(c[2]["finish_reason"], "stop");
        assert_eq!(c[2]["message"]["content"], "hi");
        assert!(c[2]["message"].get("tool_calls").is_none());
        assert_eq!(body["usage"]["total_tokens"], 15);
    }
}
