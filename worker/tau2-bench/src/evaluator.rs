//! The official evaluator (evaluation type ALL): the final databases against
//! a gold replay, environment assertions, gold actions among the tool calls,
//! and information communicated to the user; the reward is the product over
//! the task's reward basis, with a `reward_info` shaped like the official one.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::domains::LoadedDomain;
use crate::env::PyErr;
use crate::message::{Message, ToolCall};
use crate::py;
use crate::task::{Action, EnvAssertion, RewardType, Task};

/// Why an episode ended.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TerminationReason {
    UserStop,
    AgentStop,
    JudgeStop,
    MaxSteps,
    TooManyErrors,
    AgentError,
    UserError,
}

impl TerminationReason {
    pub fn as_str(self) -> &'static str {
        match self {
            TerminationReason::UserStop => "user_stop",
            TerminationReason::AgentStop => "agent_stop",
            TerminationReason::JudgeStop => "judge_stop",
            TerminationReason::MaxSteps => "max_steps",
            TerminationReason::TooManyErrors => "too_many_errors",
            TerminationReason::AgentError => "agent_error",
            TerminationReason::UserError => "user_error",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct DbCheck {
    pub db_match: bool,
    pub db_reward: f64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct EnvAssertionCheck {
    pub env_assertion: EnvAssertion,
    pub met: bool,
    pub reward: f64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ActionCheck {
    pub action: Action,
    pub action_match: bool,
    pub action_reward: f64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct NlAssertionCheck {
    pub nl_assertion: String,
    pub met: bool,
    pub justification: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct CommunicateCheck {
    pub info: String,
    pub met: bool,
    pub justification: String,
}

/// The official `RewardInfo`, field for field.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct RewardInfo {
    pub reward: f64,
    pub db_check: Option<DbCheck>,
    pub env_assertions: Option<Vec<EnvAssertionCheck>>,
    pub action_checks: Option<Vec<ActionCheck>>,
    pub nl_assertions: Option<Vec<NlAssertionCheck>>,
    pub communicate_checks: Option<Vec<CommunicateCheck>>,
    pub reward_basis: Option<Vec<RewardType>>,
    pub reward_breakdown: Option<IndexMap<RewardType, f64>>,
    pub info: Option<Value>,
}

impl RewardInfo {
    fn note(reward: f64, key: &str, note: String) -> Self {
        Self {
            reward,
            info: Some(json!({ key: note })),
            ..Default::default()
        }
    }

    /// Success as the metrics count it: a reward within 1e-6 of 1.
    pub fn is_success(&self) -> bool {
        (self.reward - 1.0).abs() < 1e-6
    }
}

/// Judges natural-language assertions about a trajectory (an LLM in practice).
pub trait NlJudge {
    fn judge(
        &self,
        trajectory: &[Message],
        assertions: &[String],
    ) -> Result<Vec<NlAssertionCheck>, String>;
}

/// Why a trajectory could not be evaluated.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// Replaying the trajectory's tool calls on a fresh environment failed
    /// or gave other results than recorded (the official code raises too).
    #[error("replaying the trajectory failed: {0}")]
    Replay(PyErr),
    #[error("setting the task's initial state failed: {0}")]
    InitialState(PyErr),
    #[error("NL assertions are part of the reward basis, but no judge is configured")]
    NoJudge,
    #[error("the NL assertion judge failed: {0}")]
    Judge(String),
}

/// Evaluates a finished trajectory as `evaluate_simulation(..., ALL)` does
/// (with `ALL_WITH_NL_ASSERTIONS` when a judge is given).
pub fn evaluate(
    domain: &LoadedDomain,
    task: &Task,
    trajectory: &[Message],
    termination: TerminationReason,
    judge: Option<&dyn NlJudge>,
) -> Result<RewardInfo, EvalError> {
    if !matches!(
        termination,
        TerminationReason::AgentStop | TerminationReason::UserStop
    ) {
        return Ok(RewardInfo::note(
            0.0,
            "note",
            format!(
                "Simulation terminated prematurely. Termination reason: {}",
                termination.as_str()
            ),
        ));
    }
    let Some(criteria) = &task.evaluation_criteria else {
        return Ok(RewardInfo::note(
            1.0,
            "note",
            "No evaluation criteria".into(),
        ));
    };
    let env_info = env_reward(domain, task, trajectory)?;
    let action_info = action_reward(task, trajectory);
    let communicate_info = communicate_reward(task, trajectory);
    let nl_info = match judge {
        Some(judge) => Some(nl_reward(task, trajectory, judge)?),
        None => None,
    };

    let basis = &criteria.reward_basis;
    let has = |kinds: &[RewardType]| kinds.iter().any(|k| basis.contains(k));
    let mut reward = 1.0;
    let mut breakdown = IndexMap::new();
    let mut take = |part: &RewardInfo| {
        if let Some(b) = &part.reward_breakdown {
            breakdown.extend(b.iter().map(|(k, v)| (*k, *v)));
        }
        reward *= part.reward;
    };
    if has(&[RewardType::Db, RewardType::EnvAssertion]) {
        take(&env_info);
    }
    if has(&[RewardType::Action]) {
        take(&action_info);
    }
    if has(&[RewardType::NlAssertion]) {
        take(nl_info.as_ref().ok_or(EvalError::NoJudge)?);
    }
    if has(&[RewardType::Communicate]) {
        take(&communicate_info);
    }
    Ok(RewardInfo {
        reward,
        db_check: env_info.db_check,
        env_assertions: env_info.env_assertions,
        action_checks: action_info.action_checks,
        nl_assertions: nl_info.as_ref().and_then(|n| n.nl_assertions.clone()),
        communicate_checks: communicate_info.communicate_checks,
        reward_basis: Some(basis.clone()),
        reward_breakdown: Some(breakdown),
        info: Some(json!({
            "env": env_info.info,
            "nl": nl_info.and_then(|n| n.info),
            "communicate": communicate_info.info,
            "action": action_info.info,
        })),
    })
}

/// Tool calls of the agent and the user, in order.
pub fn tool_calls(trajectory: &[Message]) -> impl Iterator<Item = &ToolCall> {
    trajectory.iter().filter_map(Message::tool_calls).flatten()
}

/// The environment part: replay the trajectory and the gold actions on fresh
/// environments and compare database hashes; run the environment assertions.
fn env_reward(
    domain: &LoadedDomain,
    task: &Task,
    trajectory: &[Message],
) -> Result<RewardInfo, EvalError> {
    let Some(criteria) = &task.evaluation_criteria else {
        return Ok(RewardInfo::note(
            1.0,
            "note",
            "No evaluation criteria".into(),
        ));
    };
    if criteria.actions.is_none() && criteria.env_assertions.is_none() {
        return Ok(RewardInfo {
            reward: 1.0,
            db_check: Some(DbCheck {
                db_match: true,
                db_reward: 1.0,
            }),
            info: Some(json!({"note": "No expected actions or env assertions"})),
            ..Default::default()
        });
    }
    let initial = task.initial_state.as_ref();

    // The predicted environment replays the whole trajectory (which starts
    // with the task's own message history).
    let mut predicted = domain.environment();
    predicted
        .set_state_with_history(initial, trajectory)
        .map_err(EvalError::Replay)?;

    // The gold environment gets the task's history, then the gold actions
    // through `make_tool_call`, which (an upstream quirk we keep) never syncs
    // the toolkits; failing gold actions are ignored as upstream does.
    let mut gold = domain.environment();
    gold.set_state(initial).map_err(EvalError::InitialState)?;
    for action in criteria.actions.iter().flatten() {
        let _ = gold.make_tool_call(&action.name, action.requestor, &action.arguments);
    }

    // Upstream compares SHA-256 hashes of the sorted JSON dumps. Comparing the
    // values is equivalent (same keys, same number types and values, key
    // order ignored) and avoids serialising megabytes per check.
    let db_match = gold.same_db(&predicted);
    let db_reward = if db_match { 1.0 } else { 0.0 };
    let mut assertion_reward = 1.0;
    let mut checks = Vec::new();
    for assertion in criteria.env_assertions.iter().flatten() {
        let met = predicted
            .run_env_assertion(assertion, false)
            .unwrap_or(false);
        let reward = if met { 1.0 } else { 0.0 };
        assertion_reward *= reward;
        checks.push(EnvAssertionCheck {
            env_assertion: assertion.clone(),
            met,
            reward,
        });
    }
    let mut reward = 1.0;
    let mut breakdown = IndexMap::new();
    if criteria.reward_basis.contains(&RewardType::Db) {
        breakdown.insert(RewardType::Db, db_reward);
        reward *= db_reward;
    }
    if criteria.reward_basis.contains(&RewardType::EnvAssertion) {
        breakdown.insert(RewardType::EnvAssertion, assertion_reward);
        reward *= assertion_reward;
    }
    Ok(RewardInfo {
        reward,
        db_check: Some(DbCheck {
            db_match,
            db_reward,
        }),
        env_assertions: Some(checks),
        reward_basis: Some(criteria.reward_basis.clone()),
        reward_breakdown: Some(breakdown),
        ..Default::default()
    })
}

/// Whether a tool call matches a gold action (`Action.compare_with_tool_call`).
pub fn action_matches(action: &Action, call: &ToolCall) -> bool {
    if action.name != call.name {
        return false;
    }
    let keys: Vec<&String> = match &action.compare_args {
        Some(keys) => keys.iter().collect(),
        None => call.arguments.keys().collect(),
    };
    if keys.is_empty() {
        return true;
    }
    let pick = |args: &serde_json::Map<String, Value>| -> serde_json::Map<String, Value> {
        args.iter()
            .filter(|(k, _)| keys.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    py::eq(
        &Value::Object(pick(&call.arguments)),
        &Value::Object(pick(&action.arguments)),
    )
}

fn action_reward(task: &Task, trajectory: &[Message]) -> RewardInfo {
    let mut breakdown = IndexMap::new();
    let gold = task
        .evaluation_criteria
        .as_ref()
        .and_then(|c| c.actions.as_ref())
        .filter(|a| !a.is_empty());
    let Some(gold) = gold else {
        breakdown.insert(RewardType::Action, 1.0);
        return RewardInfo {
            reward: 1.0,
            info: Some(json!({"note": "No actions to evaluate"})),
            reward_breakdown: Some(breakdown),
            ..Default::default()
        };
    };
    let checks: Vec<ActionCheck> = gold
        .iter()
        .map(|action| {
            let matched = tool_calls(trajectory).any(|call| action_matches(action, call));
            ActionCheck {
                action: action.clone(),
                action_match: matched,
                action_reward: if matched { 1.0 } else { 0.0 },
            }
        })
        .collect();
    let reward = if checks.iter().all(|c| c.action_match) {
        1.0
    } else {
        0.0
    };
    breakdown.insert(RewardType::Action, reward);
    RewardInfo {
        reward,
        action_checks: Some(checks),
        reward_breakdown: Some(breakdown),
        ..Default::default()
    }
}

fn communicate_reward(task: &Task, trajectory: &[Message]) -> RewardInfo {
    let mut breakdown = IndexMap::new();
    let infos = task
        .evaluation_criteria
        .as_ref()
        .and_then(|c| c.communicate_info.as_ref())
        .filter(|i| !i.is_empty());
    let Some(infos) = infos else {
        breakdown.insert(RewardType::Communicate, 1.0);
        return RewardInfo {
            reward: 1.0,
            info: Some(json!({"note": "No communicate_info to evaluate"})),
            reward_breakdown: Some(breakdown),
            ..Default::default()
        };
    };
    let checks: Vec<CommunicateCheck> = infos
        .iter()
        .map(|info| {
            let needle = info.to_lowercase();
            let found = trajectory.iter().find_map(|m| match m {
                Message::Assistant(a) if a.has_text() => a
                    .content
                    .as_deref()
                    .filter(|c| c.to_lowercase().replace(',', "").contains(&needle)),
                _ => None,
            });
            match found {
                Some(content) => CommunicateCheck {
                    info: info.clone(),
                    met: true,
                    justification: format!(
                        "Information '{info}' communicated in the message:\n '{content}'"
                    ),
                },
                None => CommunicateCheck {
                    info: info.clone(),
                    met: false,
                    justification: format!("Information '{info}' not communicated."),
                },
            }
        })
        .collect();
    let reward = if checks.iter().all(|c| c.met) {
        1.0
    } else {
        0.0
    };
    breakdown.insert(RewardType::Communicate, reward);
    RewardInfo {
        reward,
        communicate_checks: Some(checks),
        reward_breakdown: Some(breakdown),
        ..Default::default()
    }
}

fn nl_reward(
    task: &Task,
    trajectory: &[Message],
    judge: &dyn NlJudge,
) -> Result<RewardInfo, EvalError> {
    let mut breakdown = IndexMap::new();
    let assertions = task
        .evaluation_criteria
        .as_ref()
        .and_then(|c| c.nl_assertions.as_ref())
        .filter(|a| !a.is_empty());
    let Some(assertions) = assertions else {
        breakdown.insert(RewardType::NlAssertion, 1.0);
        return Ok(RewardInfo {
            reward: 1.0,
            info: Some(json!({"note": "No nl_assertions to evaluate"})),
            reward_breakdown: Some(breakdown),
            ..Default::default()
        });
    };
    let checks = judge
        .judge(trajectory, assertions)
        .map_err(EvalError::Judge)?;
    let reward = if checks.iter().all(|c| c.met) {
        1.0
    } else {
        0.0
    };
    breakdown.insert(RewardType::NlAssertion, reward);
    Ok(RewardInfo {
        reward,
        nl_assertions: Some(checks),
        reward_breakdown: Some(breakdown),
        ..Default::default()
    })
}
