//! The environment an episode runs in: one domain's databases and tools,
//! with the official tool-call semantics (`Environment.get_response`).

use std::borrow::Cow;
use std::fmt;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::message::{Message, ToolCall, ToolMessage};
use crate::py;
use crate::task::{EnvAssertion, EnvFunctionCall, InitialState, Requestor};
use crate::tool::{ToolResult, ToolSpec};

/// A Python exception as the official code raises it: its type and `str()`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PyErr {
    pub kind: &'static str,
    pub message: String,
}

impl PyErr {
    pub fn new(kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
    pub fn value(message: impl Into<String>) -> Self {
        Self::new("ValueError", message)
    }
    pub fn type_error(message: impl Into<String>) -> Self {
        Self::new("TypeError", message)
    }
    /// `KeyError(key)`: its `str()` is the key's `repr()`.
    pub fn key(key: &Value) -> Self {
        Self::new("KeyError", py::repr(key))
    }
    pub fn attribute(message: impl Into<String>) -> Self {
        Self::new("AttributeError", message)
    }
    pub fn assertion(message: impl Into<String>) -> Self {
        Self::new("AssertionError", message)
    }
}

impl fmt::Display for PyErr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PyErr {}

impl From<String> for PyErr {
    /// Argument-binding errors are `TypeError`s.
    fn from(message: String) -> Self {
        PyErr::type_error(message)
    }
}

pub type PyResult<T> = Result<T, PyErr>;

/// One domain's mutable state: its databases and what its toolkits do.
///
/// `call` runs any attribute of one side's toolkit by name: a tool (from a
/// tool call) or a helper function (initialisation actions, assertions),
/// mirroring Python's `getattr(toolkit, name)(**arguments)`.
pub trait DomainState: Send + Sync {
    /// The agent's tools in the official order.
    fn agent_tools(&self) -> &'static [ToolSpec];
    /// The user's tools, for domains where the user acts on a device.
    fn user_tools(&self) -> Option<&'static [ToolSpec]> {
        None
    }
    fn call(
        &mut self,
        side: Requestor,
        name: &str,
        args: &Map<String, Value>,
    ) -> PyResult<ToolResult>;
    /// Copies facts between the agent's and the user's databases after each step.
    fn sync(&mut self) {}
    /// A side's database as `model_dump()` gives it.
    fn db(&self, side: Requestor) -> Option<Cow<'_, Value>>;
    /// Whether `other` (a state of the same domain) holds equal databases on
    /// both sides. Domains whose tables share records override it to skip
    /// what the two share.
    fn same_db(&self, other: &dyn DomainState) -> bool {
        [Requestor::Assistant, Requestor::User]
            .into_iter()
            .all(|side| self.db(side) == other.db(side))
    }
    /// For `same_db` overrides: the concrete state behind `other`.
    fn as_any(&self) -> &dyn std::any::Any;
    /// Deep-merges `data` into a side's database and validates it (`update_db`).
    fn update_db(&mut self, side: Requestor, data: &Map<String, Value>) -> PyResult<()>;
    fn clone_state(&self) -> Box<dyn DomainState>;
}

/// SHA-256 of `json.dumps(db, sort_keys=True)`, as the official `get_dict_hash`.
pub fn db_hash(db: &Value) -> String {
    let text = py::json::dumps_sorted(db);
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// An episode's environment.
pub struct Environment {
    pub domain: &'static str,
    pub policy: std::sync::Arc<str>,
    state: Box<dyn DomainState>,
}

impl Clone for Environment {
    fn clone(&self) -> Self {
        Self {
            domain: self.domain,
            policy: self.policy.clone(),
            state: self.state.clone_state(),
        }
    }
}

impl Environment {
    pub fn new(
        domain: &'static str,
        policy: std::sync::Arc<str>,
        state: Box<dyn DomainState>,
    ) -> Self {
        let mut env = Self {
            domain,
            policy,
            state,
        };
        env.state.sync();
        env
    }

    pub fn tools(&self) -> &'static [ToolSpec] {
        self.state.agent_tools()
    }

    pub fn user_tools(&self) -> Option<&'static [ToolSpec]> {
        self.state.user_tools()
    }

    pub fn db(&self) -> Option<Cow<'_, Value>> {
        self.state.db(Requestor::Assistant)
    }

    pub fn user_db(&self) -> Option<Cow<'_, Value>> {
        self.state.db(Requestor::User)
    }

    pub fn db_hash(&self) -> Option<String> {
        self.db().map(|db| db_hash(&db))
    }

    pub fn user_db_hash(&self) -> Option<String> {
        self.user_db().map(|db| db_hash(&db))
    }

    /// Whether both environments hold equal databases (what the evaluator's
    /// DB check compares).
    pub fn same_db(&self, other: &Environment) -> bool {
        self.state.same_db(other.state.as_ref())
    }

    pub fn sync_tools(&mut self) {
        self.state.sync();
    }

    /// `Environment.get_response`: run the call, sync, and wrap the result or
    /// the exception (`Error: <message>`) in a tool message.
    pub fn get_response(&mut self, call: &ToolCall) -> ToolMessage {
        let (content, error) =
            match self.make_tool_call(&call.name, call.requestor, &call.arguments) {
                Ok(result) => {
                    self.state.sync();
                    (result.into_content(), false)
                }
                Err(e) => (format!("Error: {e}"), true),
            };
        ToolMessage {
            id: call.id.clone(),
            content: Some(content),
            requestor: call.requestor,
            error,
            turn_idx: None,
            timestamp: None,
        }
    }

    /// `Environment.make_tool_call` (without the sync), including the errors
    /// Python raises while forwarding the arguments as keywords.
    pub fn make_tool_call(
        &mut self,
        name: &str,
        requestor: Requestor,
        args: &Map<String, Value>,
    ) -> PyResult<ToolResult> {
        if args.contains_key("requestor") {
            return Err(PyErr::type_error(
                "tau2.environment.environment.Environment.make_tool_call() got multiple values for keyword argument 'requestor'",
            ));
        }
        if let Some(key) = args.keys().find(|k| *k == "tool_name" || *k == "self") {
            return Err(PyErr::type_error(format!(
                "Environment.make_tool_call() got multiple values for argument '{key}'"
            )));
        }
        let tools = match requestor {
            Requestor::Assistant => self.state.agent_tools(),
            Requestor::User => self
                .state
                .user_tools()
                .ok_or_else(|| PyErr::value("User tools not available"))?,
        };
        let spec = tools
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| PyErr::value(format!("Tool '{name}' not found.")))?;
        spec.bind(args)?;
        self.state.call(requestor, name, args)
    }

    /// `Environment.run_env_function_call`: any toolkit function, then sync.
    pub fn run_env_function_call(&mut self, call: &EnvFunctionCall) -> PyResult<ToolResult> {
        self.run_function(call.env_type, &call.func_name, &call.arguments)
    }

    fn run_function(
        &mut self,
        side: Requestor,
        name: &str,
        args: &Map<String, Value>,
    ) -> PyResult<ToolResult> {
        if side == Requestor::User && self.state.user_tools().is_none() {
            // getattr(None, name)
            return Err(PyErr::attribute(format!(
                "'NoneType' object has no attribute '{name}'"
            )));
        }
        let result = self.state.call(side, name, args)?;
        self.state.sync();
        Ok(result)
    }

    /// `Environment.run_env_assertion`: the function's boolean result against
    /// `assert_value`; with `raise_error`, a failed assertion is an error.
    pub fn run_env_assertion(
        &mut self,
        assertion: &EnvAssertion,
        raise_error: bool,
    ) -> PyResult<bool> {
        let result = self.run_function(
            assertion.env_type,
            &assertion.func_name,
            &assertion.arguments,
        )?;
        let value = match result {
            ToolResult::Plain(Value::Bool(b)) => b,
            other => {
                return Err(PyErr::value(format!(
                    "Function {} returned {} instead of bool",
                    assertion.func_name,
                    result_type(&other)
                )));
            }
        };
        let pass = value == assertion.assert_value;
        if raise_error && !pass {
            return Err(PyErr::assertion(assertion.message.clone().unwrap_or_else(
                || format!("Assertion failed: {}", assertion.func_name),
            )));
        }
        Ok(pass)
    }

    /// `Environment.set_state` with the task's initial state: initialisation
    /// data, initialisation actions, then its message history replayed.
    pub fn set_state(&mut self, initial: Option<&InitialState>) -> PyResult<()> {
        let history = initial
            .and_then(|s| s.message_history.as_deref())
            .unwrap_or_default();
        self.set_state_with_history(initial, history)
    }

    /// `Environment.set_state` with the initial state's data and actions but
    /// another message history (the evaluator replays whole trajectories).
    /// Each replayed tool result must equal the recorded one.
    pub fn set_state_with_history(
        &mut self,
        initial: Option<&InitialState>,
        history: &[Message],
    ) -> PyResult<()> {
        if let Some(data) = initial.and_then(|s| s.initialization_data.as_ref()) {
            if let Some(agent) = &data.agent_data {
                self.state.update_db(Requestor::Assistant, agent)?;
            }
            if let Some(user) = &data.user_data {
                self.state.update_db(Requestor::User, user)?;
            }
        }
        for action in initial
            .and_then(|s| s.initialization_actions.as_ref())
            .into_iter()
            .flatten()
        {
            self.run_env_function_call(action)?;
        }
        self.replay_history(history)?;
        self.state.sync();
        Ok(())
    }

    fn replay_history(&mut self, history: &[Message]) -> PyResult<()> {
        let mut rest = history.iter();
        while let Some(message) = rest.next() {
            if let Message::Tool(_) = message {
                return Err(PyErr::value(
                    "Tool message not expected. Tool messages should always follow a tool call.",
                ));
            }
            for call in message.tool_calls().unwrap_or_default() {
                let Some(Message::Tool(expected)) = rest.next() else {
                    return Err(PyErr::value("Tool message expected."));
                };
                if expected.id != call.id {
                    return Err(PyErr::value(format!(
                        "Tool call id mismatch. Got {} and {}",
                        call.id, expected.id
                    )));
                }
                let got = self.get_response(call);
                if !same_content(got.content.as_deref(), expected.content.as_deref()) {
                    return Err(PyErr::value(format!(
                        "Tool call {} returned a different result",
                        call.name
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Tool contents compare as JSON when both parse, else as text.
pub fn same_content(a: Option<&str>, b: Option<&str>) -> bool {
    let parse = |s: Option<&str>| s.and_then(|s| serde_json::from_str::<Value>(s).ok());
    match (parse(a), parse(b)) {
        (Some(x), Some(y)) => py::eq(&x, &y),
        _ => a == b,
    }
}

fn result_type(r: &ToolResult) -> &'static str {
    match r {
        ToolResult::Text(_) => "<class 'str'>",
        ToolResult::Model(_) => "<class 'pydantic.main.BaseModel'>",
        ToolResult::Plain(v) => match py::type_name(v) {
            "NoneType" => "<class 'NoneType'>",
            "int" => "<class 'int'>",
            "float" => "<class 'float'>",
            "list" => "<class 'list'>",
            "dict" => "<class 'dict'>",
            _ => "<class 'object'>",
        },
    }
}
