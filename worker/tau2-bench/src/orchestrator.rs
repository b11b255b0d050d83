//! The official turn protocol: the agent greets with a fixed message, then
//! agent, user and environment take turns; tool calls go to the environment
//! and their results back to the caller; the episode ends on a stop token,
//! after `max_steps` steps or `max_errors` tool errors.

use std::future::Future;

use crate::env::Environment;
use crate::evaluator::TerminationReason;
use crate::message::{Message, ParticipantMessage};
use crate::task::Task;

/// The fixed first agent message of every episode without history.
pub const GREETING: &str = "Hi! How can I help you today?";
/// The greeting as a message: it costs nothing (`cost=0.0` upstream).
pub fn greeting() -> ParticipantMessage {
    ParticipantMessage {
        cost: Some(0.0),
        ..ParticipantMessage::text(GREETING)
    }
}

/// The user's stop tokens: done, transferred to a human, out of scope.
pub const USER_STOP_TOKENS: [&str; 3] = ["###STOP###", "###TRANSFER###", "###OUT-OF-SCOPE###"];
/// The agent's stop token (the gym agent's `done`).
pub const AGENT_STOP_TOKEN: &str = "###STOP###";

/// An error of a participant that is not the episode's fault (an endpoint
/// that stays down, bad credentials): the episode has no result.
#[derive(Debug, thiserror::Error)]
#[error("{role} failed: {message}")]
pub struct ParticipantError {
    pub role: &'static str,
    pub message: String,
}

/// The agent side: sees the trajectory so far, answers with text or tool calls.
pub trait Agent: Send {
    fn next(
        &mut self,
        trajectory: &[Message],
    ) -> impl Future<Output = Result<ParticipantMessage, ParticipantError>> + Send;

    /// Whether a message ends the episode (gym-style agents say `###STOP###`).
    fn is_stop(&self, message: &ParticipantMessage) -> bool {
        !message.is_tool_call()
            && message
                .content
                .as_deref()
                .is_some_and(|c| c.contains(AGENT_STOP_TOKEN))
    }
}

/// The user side.
pub trait User: Send {
    fn next(
        &mut self,
        trajectory: &[Message],
    ) -> impl Future<Output = Result<ParticipantMessage, ParticipantError>> + Send;
}

/// Whether a user message ends the episode (`UserSimulator.is_stop`).
pub fn is_user_stop(message: &ParticipantMessage) -> bool {
    !message.is_tool_call()
        && message
            .content
            .as_deref()
            .is_some_and(|c| USER_STOP_TOKENS.iter().any(|t| c.contains(t)))
}

/// Limits of one episode.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Most steps (every hop, environment included).
    pub max_steps: u32,
    /// Most tool errors.
    pub max_errors: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_steps: 100,
            max_errors: 10,
        }
    }
}

/// A finished episode.
#[derive(Clone, Debug)]
pub struct Episode {
    /// Every message, with `turn_idx` set in order.
    pub messages: Vec<Message>,
    pub termination: TerminationReason,
    pub steps: u32,
    pub errors: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Agent,
    User,
    Env,
}

/// Why an episode could not run.
#[derive(Debug, thiserror::Error)]
pub enum EpisodeError {
    #[error("the task's initial state cannot be set: {0}")]
    InitialState(crate::env::PyErr),
    #[error(transparent)]
    Participant(#[from] ParticipantError),
}

/// Runs one episode of `task` in `env` (a fresh environment of the task's domain).
pub async fn run_episode<A: Agent, U: User>(
    env: &mut Environment,
    task: &Task,
    agent: &mut A,
    user: &mut U,
    limits: Limits,
) -> Result<Episode, EpisodeError> {
    env.set_state(task.initial_state.as_ref())
        .map_err(EpisodeError::InitialState)?;
    let history = task
        .initial_state
        .as_ref()
        .and_then(|s| s.message_history.clone())
        .unwrap_or_default();
    let mut trajectory: Vec<Message> = Vec::new();
    let mut done = None;
    let (mut from, mut to) = if let Some(last) = history.last() {
        let route = resume_route(last);
        if let Message::Assistant(a) = last
            && agent.is_stop(a)
        {
            done = Some(TerminationReason::AgentStop);
        }
        if let Message::User(u) = last
            && is_user_stop(u)
        {
            done = Some(TerminationReason::UserStop);
        }
        trajectory.extend(history.into_iter().map(|mut m| {
            clear_turn(&mut m);
            m
        }));
        route
    } else {
        trajectory.push(Message::Assistant(greeting()));
        (Role::Agent, Role::User)
    };
    env.sync_tools();

    let (mut steps, mut errors) = (0u32, 0u32);
    while done.is_none() {
        match (from, to) {
            (Role::Agent | Role::Env, Role::User) => {
                let msg = user.next(&trajectory).await?;
                let (valid, stop, calls) = (is_valid(&msg), is_user_stop(&msg), msg.is_tool_call());
                trajectory.push(Message::User(msg));
                if !valid {
                    done = Some(TerminationReason::UserError);
                } else if stop {
                    done = Some(TerminationReason::UserStop);
                }
                from = Role::User;
                to = if calls { Role::Env } else { Role::Agent };
            }
            (Role::User | Role::Env, Role::Agent) => {
                let msg = agent.next(&trajectory).await?;
                let (valid, stop, calls) =
                    (is_valid(&msg), agent.is_stop(&msg), msg.is_tool_call());
                trajectory.push(Message::Assistant(msg));
                if !valid {
                    done = Some(TerminationReason::AgentError);
                } else if stop {
                    done = Some(TerminationReason::AgentStop);
                }
                from = Role::Agent;
                to = if calls { Role::Env } else { Role::User };
            }
            (Role::Agent | Role::User, Role::Env) => {
                let calls = trajectory
                    .last()
                    .and_then(Message::tool_calls)
                    .map(<[_]>::to_vec)
                    .unwrap_or_default();
                for call in &calls {
                    let result = env.get_response(call);
                    errors += u32::from(result.error);
                    trajectory.push(Message::Tool(result));
                }
                to = from;
                from = Role::Env;
            }
            _ => unreachable_route(&mut done),
        }
        steps += 1;
        env.sync_tools();
        // As upstream, the limits apply even to a step that just stopped the
        // episode (a stop on the last allowed step counts as max_steps).
        if to != Role::Env {
            if steps >= limits.max_steps {
                done = Some(TerminationReason::MaxSteps);
            }
            if errors >= limits.max_errors {
                done = Some(TerminationReason::TooManyErrors);
            }
        }
    }
    for (i, m) in trajectory.iter_mut().enumerate() {
        m.set_turn_idx(i as i64);
    }
    Ok(Episode {
        messages: trajectory,
        termination: done.unwrap_or(TerminationReason::AgentError),
        steps,
        errors,
    })
}

/// Who speaks next after a task's message history (`Orchestrator.initialize`).
fn resume_route(last: &Message) -> (Role, Role) {
    match last {
        Message::Assistant(a) => (
            Role::Agent,
            if a.is_tool_call() {
                Role::Env
            } else {
                Role::User
            },
        ),
        Message::User(u) => (
            Role::User,
            if u.is_tool_call() {
                Role::Env
            } else {
                Role::Agent
            },
        ),
        Message::Tool(t) if t.requestor == crate::task::Requestor::User => (Role::Env, Role::User),
        _ => (Role::Env, Role::Agent),
    }
}

fn clear_turn(m: &mut Message) {
    match m {
        Message::System(s) => s.turn_idx = None,
        Message::Assistant(p) | Message::User(p) => p.turn_idx = None,
        Message::Tool(t) => t.turn_idx = None,
    }
}

/// A message needs text or tool calls (`validate()`); the official code
/// raises on an empty one, we end the episode with an error instead.
fn is_valid(m: &ParticipantMessage) -> bool {
    m.has_text() || m.is_tool_call()
}

/// The role pairs above are exhaustive for routes we create; anything else
/// ends the episode as an agent error rather than panicking.
fn unreachable_route(done: &mut Option<TerminationReason>) {
    *done = Some(TerminationReason::AgentError);
}
