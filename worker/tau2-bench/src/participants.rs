//! Agents and users: the official LLM user simulator and LLM agent over any
//! [`ChatModel`], and deterministic scripted ones for tests and demos.

use serde_json::Value;

use crate::chat::{ChatError, ChatModel, Sampling, agent_view, user_view};
use crate::message::{Message, ParticipantMessage, ToolCall};
use crate::orchestrator::{AGENT_STOP_TOKEN, Agent, ParticipantError, User};
use crate::task::{Requestor, Task};

/// The official user-simulator system prompt: guidelines, then the scenario.
pub fn user_system_prompt(guidelines: &str, task: &Task) -> String {
    format!(
        "{guidelines}\n<scenario>\n{}\n</scenario>",
        task.user_scenario.render()
    )
}

/// The official LLM agent's system prompt.
pub fn agent_system_prompt(policy: &str) -> String {
    const INSTRUCTION: &str = "You are a customer service agent that helps the user according to the <policy> provided below.\nIn each turn you can either:\n- Send a message to the user.\n- Make a tool call.\nYou cannot do both at the same time.\n\nTry to be helpful and always follow the policy. Always make sure you generate valid JSON only.";
    format!("<instructions>\n{INSTRUCTION}\n</instructions>\n<policy>\n{policy}\n</policy>")
}

fn chat_failure(role: &'static str, e: ChatError) -> ParticipantError {
    ParticipantError {
        role,
        message: e.to_string(),
    }
}

/// The official user simulator: an LLM prompted with the guidelines and the
/// scenario, seeing the conversation with roles flipped; in domains where the
/// user has tools (telecom) it may call them.
pub struct LlmUser<M> {
    model: M,
    system: String,
    tools: Vec<Value>,
    sampling: Sampling,
}

impl<M: ChatModel> LlmUser<M> {
    /// `guidelines` is `simulation_guidelines.md`, or `simulation_guidelines_tools.md`
    /// when `tools` (the user's tool schemas) is not empty.
    pub fn new(
        model: M,
        guidelines: &str,
        task: &Task,
        tools: Vec<Value>,
        sampling: Sampling,
    ) -> Self {
        Self {
            model,
            system: user_system_prompt(guidelines, task),
            tools,
            sampling,
        }
    }
}

impl<M: ChatModel> User for LlmUser<M> {
    async fn next(
        &mut self,
        trajectory: &[Message],
    ) -> Result<ParticipantMessage, ParticipantError> {
        let messages = user_view(&self.system, trajectory);
        let reply = self
            .model
            .complete(&messages, &self.tools, &self.sampling)
            .await
            .map_err(|e| chat_failure("user simulator", e))?;
        Ok(reply.into_message(Requestor::User))
    }
}

/// The official LLM agent (`LLMAgent`): policy in the system prompt, tools as functions.
pub struct LlmAgent<M> {
    model: M,
    system: String,
    tools: Vec<Value>,
    sampling: Sampling,
}

impl<M: ChatModel> LlmAgent<M> {
    pub fn new(model: M, policy: &str, tools: Vec<Value>, sampling: Sampling) -> Self {
        Self {
            model,
            system: agent_system_prompt(policy),
            tools,
            sampling,
        }
    }
}

impl<M: ChatModel> Agent for LlmAgent<M> {
    async fn next(
        &mut self,
        trajectory: &[Message],
    ) -> Result<ParticipantMessage, ParticipantError> {
        let messages = agent_view(&self.system, trajectory);
        let reply = self
            .model
            .complete(&messages, &self.tools, &self.sampling)
            .await
            .map_err(|e| chat_failure("agent", e))?;
        Ok(reply.into_message(Requestor::Assistant))
    }

    /// `LLMAgent` never stops by itself; the user ends the conversation.
    fn is_stop(&self, _message: &ParticipantMessage) -> bool {
        false
    }
}

/// A deterministic user for tests and the embedded demo: it states the
/// scenario's instructions, performs the task's gold user actions one per
/// turn (telecom's device actions), reports each result, asks an agent that
/// only talks to go ahead (twice at most), and otherwise stops.
pub struct ScriptedUser {
    opening: String,
    actions: std::collections::VecDeque<ToolCall>,
    max_turns: usize,
    turns: usize,
    nudges: usize,
}

impl ScriptedUser {
    pub fn new(task: &Task) -> Self {
        let actions = task
            .evaluation_criteria
            .as_ref()
            .and_then(|c| c.actions.as_ref())
            .into_iter()
            .flatten()
            .filter(|a| a.requestor == Requestor::User)
            .enumerate()
            .map(|(i, a)| ToolCall {
                id: format!("user_call_{i}"),
                name: a.name.clone(),
                arguments: a.arguments.clone(),
                requestor: Requestor::User,
            })
            .collect();
        Self {
            opening: task.user_scenario.instructions.render(),
            actions,
            max_turns: 30,
            turns: 0,
            nudges: 0,
        }
    }
}

impl User for ScriptedUser {
    async fn next(
        &mut self,
        trajectory: &[Message],
    ) -> Result<ParticipantMessage, ParticipantError> {
        self.turns += 1;
        // Its first turn states the instructions, also after a task's history.
        if self.turns == 1 && !matches!(trajectory.last(), Some(Message::Tool(_))) {
            return Ok(ParticipantMessage::text(self.opening.clone()));
        }
        if let Some(Message::Tool(result)) = trajectory.last() {
            let content = result.content.clone().unwrap_or_default();
            return Ok(ParticipantMessage::text(format!(
                "I did that. The result: {content}"
            )));
        }
        if self.turns > self.max_turns {
            return Ok(ParticipantMessage::text("###STOP###"));
        }
        if let Some(call) = self.actions.pop_front() {
            return Ok(ParticipantMessage::calls(vec![call]));
        }
        let agent_acted = trajectory
            .iter()
            .rev()
            .take_while(|m| !matches!(m, Message::User(u) if !u.is_tool_call()))
            .any(|m| matches!(m, Message::Assistant(a) if a.is_tool_call()));
        if !agent_acted && self.nudges < 2 {
            self.nudges += 1;
            return Ok(ParticipantMessage::text("Please go ahead."));
        }
        Ok(ParticipantMessage::text("###STOP###"))
    }
}

/// A deterministic agent that performs the task's gold assistant actions in
/// order, then tells the user everything it was asked to communicate, then
/// stops. It plays the gold trajectory through the real protocol.
pub struct GoldAgent {
    actions: std::collections::VecDeque<ToolCall>,
    communicate: Option<String>,
}

impl GoldAgent {
    pub fn new(task: &Task) -> Self {
        let criteria = task.evaluation_criteria.as_ref();
        let actions = criteria
            .and_then(|c| c.actions.as_ref())
            .into_iter()
            .flatten()
            .filter(|a| a.requestor == Requestor::Assistant)
            .enumerate()
            .map(|(i, a)| ToolCall {
                id: format!("gold_{i}"),
                name: a.name.clone(),
                arguments: a.arguments.clone(),
                requestor: Requestor::Assistant,
            })
            .collect();
        let communicate = criteria
            .and_then(|c| c.communicate_info.as_ref())
            .filter(|i| !i.is_empty())
            .map(|i| i.join("\n"));
        Self {
            actions,
            communicate,
        }
    }
}

impl Agent for GoldAgent {
    async fn next(
        &mut self,
        _trajectory: &[Message],
    ) -> Result<ParticipantMessage, ParticipantError> {
        if let Some(call) = self.actions.pop_front() {
            return Ok(ParticipantMessage::calls(vec![call]));
        }
        if let Some(text) = self.communicate.take() {
            return Ok(ParticipantMessage::text(text));
        }
        Ok(ParticipantMessage::text(AGENT_STOP_TOKEN))
    }
}
