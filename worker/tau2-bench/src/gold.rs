//! Gold replay: a task's gold actions played on a live environment and
//! scored by the evaluator. A perfect agent gets these rewards; comparing
//! them with the official implementation's checks the domains end to end.
//!
//! The trajectory (the same as `tests/reference/tau2_reference.py replay`
//! builds): the task's message history if it has one, else the greeting;
//! for each gold action a message from its requestor
//! with one tool call `gold_<i>` and the environment's tool message; the
//! task's `communicate_info` joined by newlines, if any; the user's
//! `###STOP###`. Messages get `turn_idx` 0, 1, ... and a fixed timestamp.

use crate::domains::LoadedDomain;
use crate::evaluator::{EvalError, NlJudge, RewardInfo, TerminationReason, evaluate};
use crate::message::{Message, ParticipantMessage, ToolCall};
use crate::orchestrator::greeting;
use crate::task::{Requestor, Task};

/// The timestamp every gold message carries, so outputs are reproducible.
pub const GOLD_TIMESTAMP: &str = "2025-01-01T00:00:00";

/// A replayed task.
#[derive(Clone, Debug)]
pub struct GoldReplay {
    pub task_id: String,
    pub messages: Vec<Message>,
    pub reward_info: RewardInfo,
}

/// Why a task could not be replayed.
#[derive(Debug, thiserror::Error)]
pub enum GoldError {
    #[error("task {task}: {source}")]
    InitialState {
        task: String,
        source: crate::env::PyErr,
    },
    #[error("task {task}: {source}")]
    Eval { task: String, source: EvalError },
}

/// Builds the gold trajectory of `task` on a fresh environment.
pub fn gold_trajectory(domain: &LoadedDomain, task: &Task) -> Result<Vec<Message>, GoldError> {
    let mut env = domain.environment();
    env.set_state(task.initial_state.as_ref())
        .map_err(|source| GoldError::InitialState {
            task: task.id.clone(),
            source,
        })?;
    let history = task
        .initial_state
        .as_ref()
        .and_then(|s| s.message_history.clone());
    let mut messages = match history {
        Some(h) if !h.is_empty() => h,
        _ => vec![Message::Assistant(greeting())],
    };
    let criteria = task.evaluation_criteria.as_ref();
    for (i, action) in criteria
        .and_then(|c| c.actions.as_ref())
        .into_iter()
        .flatten()
        .enumerate()
    {
        let call = ToolCall {
            id: format!("gold_{i}"),
            name: action.name.clone(),
            arguments: action.arguments.clone(),
            requestor: action.requestor,
        };
        let result = env.get_response(&call);
        let msg = ParticipantMessage::calls(vec![call]);
        messages.push(match action.requestor {
            Requestor::Assistant => Message::Assistant(msg),
            Requestor::User => Message::User(msg),
        });
        messages.push(Message::Tool(result));
    }
    if let Some(info) = criteria
        .and_then(|c| c.communicate_info.as_ref())
        .filter(|i| !i.is_empty())
    {
        messages.push(Message::Assistant(ParticipantMessage::text(
            info.join("\n"),
        )));
    }
    messages.push(Message::User(ParticipantMessage::text("###STOP###")));
    for (i, m) in messages.iter_mut().enumerate() {
        m.set_turn_idx(i as i64);
        m.set_timestamp(GOLD_TIMESTAMP);
    }
    Ok(messages)
}

/// Replays and scores one task (terminated by the user's stop).
pub fn replay(domain: &LoadedDomain, task: &Task) -> Result<GoldReplay, GoldError> {
    replay_judged(domain, task, None)
}

/// [`replay`], with a judge for tasks whose reward includes NL assertions.
pub fn replay_judged(
    domain: &LoadedDomain,
    task: &Task,
    judge: Option<&dyn NlJudge>,
) -> Result<GoldReplay, GoldError> {
    let messages = gold_trajectory(domain, task)?;
    let reward_info = evaluate(domain, task, &messages, TerminationReason::UserStop, judge)
        .map_err(|source| GoldError::Eval {
            task: task.id.clone(),
            source,
        })?;
    Ok(GoldReplay {
        task_id: task.id.clone(),
        messages,
        reward_info,
    })
}
