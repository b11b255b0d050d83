//! The session format of the parity harness (`tests/reference/`), shared by
//! `tests/parity.rs` and `examples/reference_io.rs`: a session is a task
//! whose initial state is set, then tool calls; each call's result is
//! reported with the hashes of both databases after it.

use serde_json::{Value, json};

use crate::domains::LoadedDomain;
use crate::message::ToolCall;
use crate::task::Requestor;

/// Runs `{"task_id": .., "calls": [{"name", "arguments", "requestor"}]}` on a
/// fresh environment, as `tau2_reference.py calls` does on the official one.
pub fn run_session(loaded: &LoadedDomain, session: &Value) -> Value {
    let mut env = loaded.environment();
    if let Some(id) = session["task_id"].as_str() {
        let Some(task) = loaded.tasks.get(id) else {
            return json!({"harness_error": format!("no task {id}")});
        };
        if let Err(e) = env.set_state(task.initial_state.as_ref()) {
            return json!({"set_state_error": format!("{}: {}", e.kind, e.message)});
        }
    }
    let mut results = Vec::new();
    for (i, call) in session["calls"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let call = ToolCall {
            id: format!("call_{i}"),
            name: call["name"].as_str().unwrap_or_default().into(),
            arguments: call["arguments"].as_object().cloned().unwrap_or_default(),
            requestor: if call["requestor"] == "user" {
                Requestor::User
            } else {
                Requestor::Assistant
            },
        };
        let msg = env.get_response(&call);
        results.push(json!({"content": msg.content, "error": msg.error, "agent_hash": env.db_hash(), "user_hash": env.user_db_hash()}));
    }
    json!({"results": results})
}
