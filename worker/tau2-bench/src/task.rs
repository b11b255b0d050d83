//! tau2-bench tasks, as in its `tasks.json` files. Field order follows the
//! official models, because results embed them (`reward_info.action_checks`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::message::Message;

/// Who performs a tool call: the agent (`assistant`) or the simulated user.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "lowercase")]
pub enum Requestor {
    #[default]
    Assistant,
    User,
}

impl Requestor {
    pub fn as_str(self) -> &'static str {
        match self {
            Requestor::Assistant => "assistant",
            Requestor::User => "user",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Task {
    pub id: String,
    #[serde(default)]
    pub description: Option<Description>,
    pub user_scenario: UserScenario,
    #[serde(default)]
    pub ticket: Option<String>,
    #[serde(default)]
    pub initial_state: Option<InitialState>,
    #[serde(default)]
    pub evaluation_criteria: Option<EvaluationCriteria>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Description {
    #[serde(default)]
    pub purpose: Option<String>,
    #[serde(default)]
    pub relevant_policies: Option<String>,
    #[serde(default)]
    pub notes: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct UserScenario {
    #[serde(default)]
    pub persona: Option<String>,
    pub instructions: UserInstructions,
}

/// A scenario's instructions: free text, or the structured form.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(untagged)]
pub enum UserInstructions {
    Text(String),
    Structured(StructuredInstructions),
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct StructuredInstructions {
    pub domain: String,
    pub reason_for_call: String,
    #[serde(default)]
    pub known_info: Option<String>,
    #[serde(default)]
    pub unknown_info: Option<String>,
    pub task_instructions: String,
}

/// A gold action: a tool call the trajectory must contain.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Action {
    pub action_id: String,
    #[serde(default)]
    pub requestor: Requestor,
    pub name: String,
    pub arguments: Map<String, Value>,
    #[serde(default)]
    pub info: Option<String>,
    #[serde(default)]
    pub compare_args: Option<Vec<String>>,
}

/// A call of an environment function (initialisation action).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct EnvFunctionCall {
    pub env_type: Requestor,
    pub func_name: String,
    pub arguments: Map<String, Value>,
}

/// An environment function whose boolean result is checked.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct EnvAssertion {
    pub env_type: Requestor,
    pub func_name: String,
    pub arguments: Map<String, Value>,
    #[serde(default = "yes")]
    pub assert_value: bool,
    #[serde(default)]
    pub message: Option<String>,
}

fn yes() -> bool {
    true
}

/// What a reward is the product of.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RewardType {
    #[serde(rename = "DB")]
    Db,
    #[serde(rename = "ENV_ASSERTION")]
    EnvAssertion,
    #[serde(rename = "NL_ASSERTION")]
    NlAssertion,
    #[serde(rename = "ACTION")]
    Action,
    #[serde(rename = "COMMUNICATE")]
    Communicate,
}

fn default_basis() -> Vec<RewardType> {
    vec![RewardType::Db, RewardType::Communicate]
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct EvaluationCriteria {
    #[serde(default)]
    pub actions: Option<Vec<Action>>,
    #[serde(default)]
    pub env_assertions: Option<Vec<EnvAssertion>>,
    #[serde(default)]
    pub communicate_info: Option<Vec<String>>,
    #[serde(default)]
    pub nl_assertions: Option<Vec<String>>,
    #[serde(default = "default_basis")]
    pub reward_basis: Vec<RewardType>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct InitializationData {
    #[serde(default)]
    pub agent_data: Option<Map<String, Value>>,
    #[serde(default)]
    pub user_data: Option<Map<String, Value>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct InitialState {
    #[serde(default)]
    pub initialization_data: Option<InitializationData>,
    #[serde(default)]
    pub initialization_actions: Option<Vec<EnvFunctionCall>>,
    #[serde(default)]
    pub message_history: Option<Vec<Message>>,
}

impl UserScenario {
    /// The scenario as the user simulator's prompt shows it (Python `str(user_scenario)`).
    pub fn render(&self) -> String {
        let mut lines = Vec::new();
        if let Some(persona) = &self.persona {
            lines.push("Persona:".to_string());
            lines.push(indent(persona));
        }
        lines.push("Instructions:".to_string());
        lines.push(indent(&self.instructions.render()));
        lines.join("\n")
    }
}

impl UserInstructions {
    pub fn render(&self) -> String {
        match self {
            UserInstructions::Text(text) => text.clone(),
            UserInstructions::Structured(s) => {
                let mut lines = vec![format!("Domain: {}", s.domain)];
                lines.push("Reason for call:".into());
                lines.push(indent(&s.reason_for_call));
                if let Some(known) = &s.known_info {
                    lines.push("Known info:".into());
                    lines.push(indent(known));
                }
                if let Some(unknown) = &s.unknown_info {
                    lines.push("Unknown info:".into());
                    lines.push(indent(unknown));
                }
                lines.push("Task instructions:".into());
                lines.push(indent(&s.task_instructions));
                lines.join("\n")
            }
        }
    }
}

/// Python's `textwrap.indent(text, "\t")`: a tab before every non-blank line.
fn indent(text: &str) -> String {
    text.split_inclusive('\n')
        .map(|line| {
            if line.trim().is_empty() {
                line.to_string()
            } else {
                format!("\t{line}")
            }
        })
        .collect()
}
