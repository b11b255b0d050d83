//! Our model as the tau2 agent.
//!
//! The agent plays the official `LLMAgent` protocol: the system prompt is
//! tau2-bench's agent prompt with the domain policy, the domain's tools go to
//! the chat template as OpenAI function schemas (`apply_chat_template(tools=...)`,
//! what vLLM/SGLang do for the official agent), and the conversation is the
//! official agent view (user text, own turns, own tool results).
//!
//! Ids are never re-rendered: each episode is a [`tau2_chat::Episode`] whose
//! generated turns are the sampled ids and whose other tokens are the
//! template's delta for the new messages, so the [`crate::trajectory::Trajectory`]
//! is exactly what the model saw and sampled.
//!
//! Generation is batched outside the agent: an agent sends its context to a
//! [`GenerationClient`] and awaits the reply; the rollout driver
//! (`crate::rollout`) answers all live episodes with one batched call.
//!
//! Decisions (cookbook §2.2 and §9):
//! * Malformed output is treated as vLLM's Hermes tool parser treats it for
//!   the official agent: if any `<tool_call>` block fails to parse, the whole
//!   text goes to the user as a plain message (no calls); there is no
//!   format-repair retry (the cookbook's harness re-samples at temperature 0,
//!   which is off-policy and not part of tau2). Text beside valid calls is kept
//!   as the message content, as Hermes keeps the text before the first call.
//! * An empty turn (only a stop token) becomes an empty message, which the
//!   orchestrator ends as `agent_error` (reward 0), as tau2 does with an
//!   invalid message.
//! * Context limit: when the context (plus the turn being generated) would
//!   exceed `max_context`, the agent answers with an empty message, so the
//!   episode ends as `agent_error` and scores 0 (a serving engine rejects such
//!   a request and the official run records the attempt as failed); the
//!   episode is marked invalid for training, because its end is an artefact
//!   of our limit, not of the policy.

use serde_json::{Map, Value};
use tau2_bench::chat::{ChatMessage, agent_view};
use tau2_bench::message::{Message, ParticipantMessage, ToolCall};
use tau2_bench::orchestrator::{Agent, ParticipantError};
use tau2_bench::participants::agent_system_prompt;
use tau2_bench::task::Requestor;
use tau2_chat::{ChatTokenizer, Episode, RenderOptions};
use tau2_model::{Qwen3, SamplingParams};
use tokio::sync::{mpsc, oneshot};

/// Why the policy could not act.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("chat format: {0}")]
    Chat(#[from] tau2_chat::ChatError),
    #[error("model: {0}")]
    Model(#[from] tau2_model::ModelError),
    #[error("invalid policy settings: {0}")]
    Config(String),
    #[error("the generator returned {got} results for {want} contexts")]
    BatchSize { want: usize, got: usize },
    #[error("the rollout driver stopped before answering a generation request")]
    Disconnected,
}

/// How the policy samples (from a phase's `rollout` settings).
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyConfig {
    /// 0 samples greedily.
    pub temperature: f64,
    /// 1 disables nucleus sampling.
    pub top_p: f64,
    /// 0 disables top-k.
    pub top_k: i64,
    /// Most tokens in one assistant turn.
    pub max_new_tokens: usize,
    /// Most tokens of context plus a turn; beyond it the episode ends (see the module docs).
    pub max_context: usize,
}

impl PolicyConfig {
    /// From a phase's rollout settings; `max_context` is the model's limit
    /// (its `max_position_embeddings`, or less to bound memory).
    pub fn from_rollout<D: tau2_api::phases::PhaseDefaults>(
        rollout: &tau2_api::phases::Rollout<D>,
        max_context: usize,
    ) -> Result<Self, PolicyError> {
        let config = Self {
            temperature: rollout.temperature,
            top_p: rollout.top_p,
            top_k: i64::from(rollout.top_k),
            max_new_tokens: usize::try_from(rollout.max_new_tokens).map_err(|_| {
                PolicyError::Config(format!(
                    "maxNewTokens must be positive, got {}",
                    rollout.max_new_tokens
                ))
            })?,
            max_context,
        };
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), PolicyError> {
        let bad = |m: String| Err(PolicyError::Config(m));
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return bad(format!(
                "temperature must be >= 0, got {}",
                self.temperature
            ));
        }
        if self.top_p.is_nan() || self.top_p <= 0.0 || self.top_p > 1.0 {
            return bad(format!("topP must be in (0, 1], got {}", self.top_p));
        }
        if self.top_k < 0 {
            return bad(format!("topK must be >= 0, got {}", self.top_k));
        }
        if self.max_new_tokens == 0 {
            return bad("maxNewTokens must be at least 1".into());
        }
        if self.max_context <= self.max_new_tokens {
            return bad(format!(
                "the context limit ({}) must exceed maxNewTokens ({})",
                self.max_context, self.max_new_tokens
            ));
        }
        Ok(())
    }
}

/// One episode's request for its next turn.
#[derive(Clone, Debug)]
pub struct GenerateRequest {
    /// The episode's slot in the rollout (its job index): stable, so
    /// batches are ordered the same way on every run.
    pub slot: usize,
    pub context: Vec<u32>,
    /// The seed of this turn's sample, a function of the episode and the
    /// turn only, so that a turn samples the same whatever else is batched.
    pub seed: u64,
}

/// What the generator produced for one context.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Generated {
    /// Sampled ids, up to and including a stop token when one came.
    pub ids: Vec<u32>,
    /// Per id: the raw model log-probability (temperature 1, no truncation).
    pub logprobs: Vec<f32>,
}

/// Produces assistant turns for a batch of contexts. The model implements
/// it; tests use scripted doubles.
pub trait Generator {
    /// One turn per request, in order. [`ModelGenerator`] samples each from
    /// its request's seed; `seed` is the batch's, for generators that draw
    /// for the whole batch.
    fn generate(
        &mut self,
        requests: &[GenerateRequest],
        seed: u64,
    ) -> Result<Vec<Generated>, PolicyError>;
}

/// Qwen3 sampling with tau2-model's batched generation (one prefill of the
/// left-padded batch, then one decode step per token for all rows).
pub struct ModelGenerator<'m> {
    model: &'m Qwen3,
    params: SamplingParams,
}

impl<'m> ModelGenerator<'m> {
    pub fn new(
        model: &'m Qwen3,
        chat: &ChatTokenizer,
        config: &PolicyConfig,
    ) -> Result<Self, PolicyError> {
        config.validate()?;
        let params = SamplingParams {
            temperature: config.temperature,
            top_k: config.top_k,
            top_p: config.top_p,
            max_new_tokens: config.max_new_tokens,
            stop_token_ids: chat.stop_ids().iter().map(|&i| i64::from(i)).collect(),
            // Embedding rows past the tokenizer's vocabulary have no token.
            vocab_limit: i64::try_from(chat.vocab_size()).ok(),
            seed: 0,
        };
        params.validate()?;
        Ok(Self { model, params })
    }
}

impl Generator for ModelGenerator<'_> {
    fn generate(
        &mut self,
        requests: &[GenerateRequest],
        _seed: u64,
    ) -> Result<Vec<Generated>, PolicyError> {
        let prompts: Vec<Vec<i64>> = requests
            .iter()
            .map(|r| r.context.iter().map(|&i| i64::from(i)).collect())
            .collect();
        let seeds: Vec<u64> = requests.iter().map(|r| r.seed).collect();
        let out = tau2_model::generate_seeded(self.model, &prompts, &self.params, &seeds)?;
        out.into_iter()
            .map(|g| {
                let ids = g
                    .tokens
                    .iter()
                    .map(|&t| {
                        u32::try_from(t).map_err(|_| {
                            PolicyError::Config(format!("the model sampled an invalid id {t}"))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Generated {
                    ids,
                    logprobs: g.model_logprobs,
                })
            })
            .collect()
    }
}

/// An agent's line to the rollout driver.
pub struct GenerationClient {
    slot: usize,
    /// The episode's seed; turn `n` samples with `mix_seed(seed, n)`.
    seed: u64,
    turns: u64,
    tx: mpsc::UnboundedSender<PendingGeneration>,
}

/// A request waiting in the driver, with where to send the answer.
pub struct PendingGeneration {
    pub request: GenerateRequest,
    pub reply: oneshot::Sender<Generated>,
}

impl GenerationClient {
    pub fn new(slot: usize, seed: u64, tx: mpsc::UnboundedSender<PendingGeneration>) -> Self {
        Self {
            slot,
            seed,
            turns: 0,
            tx,
        }
    }

    async fn generate(&mut self, context: Vec<u32>) -> Result<Generated, PolicyError> {
        let (reply, rx) = oneshot::channel();
        let request = GenerateRequest {
            slot: self.slot,
            context,
            seed: crate::rollout::mix_seed(self.seed, self.turns),
        };
        self.turns += 1;
        self.tx
            .send(PendingGeneration { request, reply })
            .map_err(|_| PolicyError::Disconnected)?;
        rx.await.map_err(|_| PolicyError::Disconnected)
    }
}

/// Counters of one episode's agent side.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AgentStats {
    /// Assistant turns generated.
    pub turns: u32,
    /// Tokens the policy sampled (the trajectory's policy tokens).
    pub generated_tokens: usize,
    /// Turns whose tool calls did not parse (sent to the user as text).
    pub parse_failures: u32,
    /// Turns cut by the per-turn token limit.
    pub length_cut_turns: u32,
    /// The episode ended because the context limit was reached.
    pub context_overflow: bool,
}

/// The agent's record of a finished episode.
#[derive(Clone, Debug, Default)]
pub struct AgentRecord {
    pub ids: Vec<u32>,
    pub policy_mask: Vec<bool>,
    pub logprobs: Vec<f32>,
    pub stats: AgentStats,
}

/// The model as a tau2 agent for one episode.
pub struct PolicyAgent<'c> {
    chat: &'c ChatTokenizer,
    system: String,
    options: RenderOptions,
    client: GenerationClient,
    max_context: usize,
    episode: Option<Episode<'c>>,
    logprobs: Vec<f32>,
    /// Agent-view messages already in the sequence (our last turn excluded).
    seen: usize,
    stats: AgentStats,
}

impl<'c> PolicyAgent<'c> {
    /// `tools` are the domain's agent tools as OpenAI schemas.
    pub fn new(
        chat: &'c ChatTokenizer,
        policy: &str,
        tools: Vec<Value>,
        config: &PolicyConfig,
        client: GenerationClient,
    ) -> Self {
        Self {
            chat,
            system: agent_system_prompt(policy),
            options: RenderOptions::with_tools(tools),
            client,
            max_context: config.max_context,
            episode: None,
            logprobs: Vec::new(),
            seen: 0,
            stats: AgentStats::default(),
        }
    }

    /// The sequence, mask, log-probabilities and counters so far.
    pub fn into_record(self) -> AgentRecord {
        let (ids, policy_mask) = match self.episode {
            Some(e) => {
                let s = e.into_sequence();
                (s.ids, s.mask)
            }
            None => (Vec::new(), Vec::new()),
        };
        AgentRecord {
            ids,
            policy_mask,
            logprobs: self.logprobs,
            stats: self.stats,
        }
    }

    /// Brings the episode up to the conversation: starts it from the first
    /// view, or appends the messages that arrived since our last turn.
    fn sync(&mut self, view: &[ChatMessage]) -> Result<(), PolicyError> {
        match &mut self.episode {
            None => {
                let messages = to_chat_messages(view)?;
                self.episode = Some(self.chat.start_episode(messages, self.options.clone())?);
            }
            Some(episode) => {
                let new = view.get(self.seen..).unwrap_or_default();
                // The first new message is the turn we generated; its ids are in already.
                let new = match new.split_first() {
                    Some((ChatMessage::Assistant { .. }, rest)) => rest,
                    _ => new,
                };
                episode.push_messages(&to_chat_messages(new)?)?;
            }
        }
        self.seen = view.len();
        self.pad_logprobs();
        Ok(())
    }

    fn pad_logprobs(&mut self) {
        let len = self.episode.as_ref().map_or(0, |e| e.sequence().len());
        self.logprobs.resize(len, 0.0);
    }

    async fn act(&mut self, trajectory: &[Message]) -> Result<ParticipantMessage, PolicyError> {
        let view = agent_view(&self.system, trajectory);
        self.sync(&view)?;
        let context = self
            .episode
            .as_ref()
            .map(|e| e.context().to_vec())
            .unwrap_or_default();
        if context.len() + 1 > self.max_context {
            self.stats.context_overflow = true;
            return Ok(ParticipantMessage::default());
        }
        let generated = self.client.generate(context.clone()).await?;
        if context.len() + generated.ids.len() > self.max_context {
            self.stats.context_overflow = true;
            return Ok(ParticipantMessage::default());
        }
        let Some(episode) = self.episode.as_mut() else {
            return Ok(ParticipantMessage::default());
        };
        let turn = episode.push_generated(&generated.ids)?;
        let n = turn.completion.ids.len();
        self.logprobs
            .extend(generated.logprobs.iter().take(n).copied());
        self.pad_logprobs();
        self.stats.turns += 1;
        self.stats.generated_tokens += n;
        self.stats.length_cut_turns += u32::from(turn.completion.stop.is_none());
        let failed = turn.parsed.errors().next().is_some();
        self.stats.parse_failures += u32::from(failed);
        Ok(to_participant(&turn, failed))
    }
}

/// tau2's OpenAI-shaped messages as chat-template messages, with tool-call
/// arguments as objects (rendered like the model writes them).
fn to_chat_messages(view: &[ChatMessage]) -> Result<Vec<tau2_chat::Message>, PolicyError> {
    view.iter()
        .map(|m| Ok(tau2_chat::Message::from_openai(m.to_openai())?.with_parsed_arguments()))
        .collect()
}

/// The generated turn as the message tau2 records (see the module docs).
fn to_participant(turn: &tau2_chat::GeneratedTurn, failed: bool) -> ParticipantMessage {
    let text = |s: &str| {
        let s = s.trim();
        (!s.is_empty()).then(|| s.to_string())
    };
    if failed || turn.parsed.calls.is_empty() {
        return ParticipantMessage {
            content: text(&turn.completion.text),
            ..Default::default()
        };
    }
    let calls = turn
        .message
        .tool_calls
        .iter()
        .enumerate()
        .map(|(i, c)| ToolCall {
            id: c.id.clone().unwrap_or_else(|| format!("call_{i}")),
            name: c.name.clone(),
            arguments: c.arguments_object().unwrap_or_else(Map::new),
            requestor: Requestor::Assistant,
        })
        .collect();
    ParticipantMessage {
        content: turn.parsed.content.as_deref().and_then(text),
        tool_calls: Some(calls),
        ..Default::default()
    }
}

impl Agent for PolicyAgent<'_> {
    async fn next(
        &mut self,
        trajectory: &[Message],
    ) -> Result<ParticipantMessage, ParticipantError> {
        self.act(trajectory).await.map_err(|e| ParticipantError {
            role: "agent",
            message: e.to_string(),
        })
    }

    /// As the official `LLMAgent`: only the user ends the conversation.
    fn is_stop(&self, _message: &ParticipantMessage) -> bool {
        false
    }
}
