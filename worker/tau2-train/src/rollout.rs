//! Sampling episodes: N samples of each task, the policy against a user
//! simulator, scored by the official evaluator, as [`Trajectory`]s.
//!
//! Batching: every episode runs as a future of tau2-bench's orchestrator on
//! one task; an agent turn sends its context to the driver loop here, which
//! waits until *every* live episode is waiting for a turn (user simulator
//! replies and tool calls have all come back), then answers them all with
//! one batched generate call ordered by slot. These lock-step rounds keep
//! the batch as large as the number of live episodes and make the batches,
//! and so the samples, a function of the seed alone (not of HTTP timing).
//! Finished episodes are replaced from the job queue before the next round,
//! up to `concurrency` episodes at once.
//!
//! Seeds: each episode's policy turns and user simulator are seeded from
//! (rollout seed, job index) alone, so an episode samples the same whatever
//! else runs beside it (up to float rounding of the batched forward), and a
//! resumed evaluation can skip finished jobs without changing the others.
//!
//! Not done yet: each turn re-prefills the whole context; reusing the KV
//! cache across turns (the context only grows) would save the prefill.

use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use serde_json::Value;
use tau2_bench::chat::Sampling;
use tau2_bench::domains::LoadedDomain;
use tau2_bench::evaluator::{NlJudge, RewardInfo, evaluate};
use tau2_bench::http::OpenAiClient;
use tau2_bench::message::{Message, ParticipantMessage};
use tau2_bench::orchestrator::{Limits, ParticipantError, User, run_episode};
use tau2_bench::participants::{LlmUser, ScriptedUser};
use tau2_bench::task::Task;
use tau2_chat::ChatTokenizer;
use tokio::sync::mpsc;

use crate::policy::{
    AgentStats, GenerateRequest, GenerationClient, Generator, PendingGeneration, PolicyAgent,
    PolicyConfig, PolicyError,
};
use crate::trajectory::Trajectory;

/// Why a rollout could not run at all (single episodes that fail are
/// recorded in their [`EpisodeOutcome`] instead).
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    #[error("generation failed: {0}")]
    Generation(#[from] PolicyError),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("invalid rollout settings: {0}")]
    Config(String),
    #[error("recording an episode: {0}")]
    Record(String),
}

/// Who plays the user.
#[derive(Clone)]
pub enum UserSimulator {
    /// tau2-bench's deterministic scripted user (tests, the embedded demo).
    Scripted,
    /// The official LLM user simulator over an OpenAI-compatible endpoint.
    Llm(Box<LlmUserConfig>),
}

#[derive(Clone)]
pub struct LlmUserConfig {
    pub client: OpenAiClient,
    /// `simulation_guidelines.md`, for domains where the user has no tools.
    pub guidelines: Arc<str>,
    /// `simulation_guidelines_tools.md`, for domains where the user has tools (telecom).
    pub guidelines_tools: Arc<str>,
    /// The user model's sampling; its seed is derived per episode.
    pub sampling: Sampling,
}

/// One episode to sample: a task of a loaded domain, and which sample it is.
#[derive(Clone, Copy)]
pub struct RolloutJob<'a> {
    pub domain: &'a LoadedDomain,
    pub task: &'a Task,
    pub sample: u32,
}

impl<'a> RolloutJob<'a> {
    /// `samples` jobs for each task, task-major (all samples of a task together).
    pub fn per_task(domain: &'a LoadedDomain, tasks: &[&'a Task], samples: u32) -> Vec<Self> {
        tasks
            .iter()
            .flat_map(|&task| {
                (0..samples).map(move |sample| RolloutJob {
                    domain,
                    task,
                    sample,
                })
            })
            .collect()
    }
}

#[derive(Clone, Debug)]
pub struct RolloutConfig {
    pub policy: PolicyConfig,
    pub limits: Limits,
    /// Most episodes in flight, i.e. the largest generation batch.
    pub concurrency: usize,
    pub seed: u64,
}

/// A sampled and scored episode.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct EpisodeOutcome {
    pub trajectory: Trajectory,
    pub stats: AgentStats,
    /// Why the episode has no proper result (a participant failed, the
    /// evaluator failed); it then scores 0 and is invalid for training.
    pub error: Option<String>,
}

/// Throughput of a rollout.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RolloutStats {
    pub episodes: usize,
    pub generated_tokens: usize,
    /// Batched generate calls.
    pub batches: usize,
    /// Mean rows per batch.
    pub mean_batch: f64,
    pub seconds: f64,
    pub episodes_per_second: f64,
    pub generated_tokens_per_second: f64,
}

/// An episode after the orchestrator, before scoring.
struct Played {
    episode: Result<tau2_bench::orchestrator::Episode, String>,
    record: crate::policy::AgentRecord,
}

/// Mixes a seed with a counter (SplitMix64 finaliser) so that nearby
/// counters give unrelated streams.
pub fn mix_seed(seed: u64, counter: u64) -> u64 {
    let mut z = seed ^ counter.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The user side of one episode.
enum AnyUser {
    Scripted(ScriptedUser),
    Llm(Box<LlmUser<OpenAiClient>>),
}

impl User for AnyUser {
    async fn next(
        &mut self,
        trajectory: &[Message],
    ) -> Result<ParticipantMessage, ParticipantError> {
        match self {
            AnyUser::Scripted(u) => u.next(trajectory).await,
            AnyUser::Llm(u) => u.next(trajectory).await,
        }
    }
}

fn make_user(sim: &UserSimulator, job: &RolloutJob<'_>, seed: u64) -> AnyUser {
    match sim {
        UserSimulator::Scripted => AnyUser::Scripted(ScriptedUser::new(job.task)),
        UserSimulator::Llm(c) => {
            let env = job.domain.environment();
            let user_tools: Vec<Value> = env
                .user_tools()
                .into_iter()
                .flatten()
                .map(|t| t.openai_schema())
                .collect();
            let guidelines = if user_tools.is_empty() {
                &c.guidelines
            } else {
                &c.guidelines_tools
            };
            let sampling = Sampling {
                seed: Some(seed),
                ..c.sampling.clone()
            };
            AnyUser::Llm(Box::new(LlmUser::new(
                c.client.clone(),
                guidelines,
                job.task,
                user_tools,
                sampling,
            )))
        }
    }
}

async fn play(
    slot: usize,
    job: RolloutJob<'_>,
    chat: &ChatTokenizer,
    user: &UserSimulator,
    config: &RolloutConfig,
    tx: mpsc::UnboundedSender<PendingGeneration>,
) -> (usize, Played) {
    let mut env = job.domain.environment();
    let tools: Vec<Value> = env.tools().iter().map(|t| t.openai_schema()).collect();
    let client = GenerationClient::new(slot, mix_seed(config.seed, 2 << 40 | slot as u64), tx);
    let mut agent = PolicyAgent::new(chat, &job.domain.policy, tools, &config.policy, client);
    let mut user = make_user(user, &job, mix_seed(config.seed, 1 << 40 | slot as u64));
    let episode = run_episode(&mut env, job.task, &mut agent, &mut user, config.limits)
        .await
        .map_err(|e| e.to_string());
    let record = agent.into_record();
    (slot, Played { episode, record })
}

/// Samples and scores every job. Runs the episodes on `runtime` (the LLM
/// user needs one), then scores them synchronously, so a `judge` that blocks
/// on the runtime may be used.
pub fn run_rollouts(
    runtime: &tokio::runtime::Runtime,
    jobs: &[RolloutJob<'_>],
    chat: &ChatTokenizer,
    generator: &mut dyn Generator,
    user: &UserSimulator,
    config: &RolloutConfig,
    judge: Option<&dyn NlJudge>,
) -> Result<(Vec<EpisodeOutcome>, RolloutStats), RolloutError> {
    run_rollouts_with(
        runtime,
        jobs,
        chat,
        generator,
        user,
        config,
        judge,
        Vec::new(),
        &mut |_, _| Ok(()),
    )
}

/// Receives each newly scored episode with its job index.
pub type OnOutcome<'r> = dyn FnMut(usize, &EpisodeOutcome) -> Result<(), String> + 'r;

/// [`run_rollouts`] that skips the jobs whose outcome is in `done` (by job
/// index; shorter than `jobs` is fine) and hands every new outcome to
/// `on_outcome` as soon as it is scored: at once without a `judge`, after
/// all episodes with one (the judge may block on the runtime). The
/// outcomes come back in job order, `done` ones included; the stats count
/// the new episodes only.
#[allow(clippy::too_many_arguments)]
pub fn run_rollouts_with(
    runtime: &tokio::runtime::Runtime,
    jobs: &[RolloutJob<'_>],
    chat: &ChatTokenizer,
    generator: &mut dyn Generator,
    user: &UserSimulator,
    config: &RolloutConfig,
    judge: Option<&dyn NlJudge>,
    mut done: Vec<Option<EpisodeOutcome>>,
    on_outcome: &mut OnOutcome<'_>,
) -> Result<(Vec<EpisodeOutcome>, RolloutStats), RolloutError> {
    config.policy.validate()?;
    if config.concurrency == 0 {
        return Err(RolloutError::Config(
            "concurrency must be at least 1".into(),
        ));
    }
    done.resize(jobs.len(), None);
    let skip: Vec<bool> = done.iter().map(Option::is_some).collect();
    let mut outcomes = done;
    let mut unscored: Vec<(usize, Played)> = Vec::new();
    let started = Instant::now();
    let mut finish = |slot: usize, played: Played| -> Result<(), RolloutError> {
        if judge.is_some() {
            unscored.push((slot, played));
            return Ok(());
        }
        let outcome = score(&jobs[slot], played, None);
        on_outcome(slot, &outcome).map_err(RolloutError::Record)?;
        outcomes[slot] = Some(outcome);
        Ok(())
    };
    let (batches, rows) = runtime.block_on(drive(
        jobs,
        &skip,
        chat,
        generator,
        user,
        config,
        &mut finish,
    ))?;
    for (slot, played) in unscored {
        let outcome = score(&jobs[slot], played, judge);
        on_outcome(slot, &outcome).map_err(RolloutError::Record)?;
        outcomes[slot] = Some(outcome);
    }
    let seconds = started.elapsed().as_secs_f64();
    let new: Vec<&EpisodeOutcome> = outcomes
        .iter()
        .zip(&skip)
        .filter(|(_, s)| !**s)
        .filter_map(|(o, _)| o.as_ref())
        .collect();
    let generated_tokens = new.iter().map(|o| o.stats.generated_tokens).sum();
    let stats = RolloutStats {
        episodes: new.len(),
        generated_tokens,
        batches,
        mean_batch: rows as f64 / batches.max(1) as f64,
        seconds,
        episodes_per_second: new.len() as f64 / seconds.max(1e-9),
        generated_tokens_per_second: generated_tokens as f64 / seconds.max(1e-9),
    };
    let outcomes = outcomes
        .into_iter()
        .zip(jobs)
        .map(|(o, job)| {
            o.unwrap_or_else(|| {
                let never = Played {
                    episode: Err("the episode never finished".into()),
                    record: Default::default(),
                };
                score(job, never, None)
            })
        })
        .collect();
    Ok((outcomes, stats))
}

/// A current-thread runtime with I/O and timers (for the HTTP user).
pub fn runtime() -> Result<tokio::runtime::Runtime, RolloutError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(RolloutError::Runtime)
}

/// Plays the jobs not in `skip`, handing each to `finish` as it ends;
/// returns the batch counters.
async fn drive(
    jobs: &[RolloutJob<'_>],
    skip: &[bool],
    chat: &ChatTokenizer,
    generator: &mut dyn Generator,
    user: &UserSimulator,
    config: &RolloutConfig,
    finish: &mut dyn FnMut(usize, Played) -> Result<(), RolloutError>,
) -> Result<(usize, usize), RolloutError> {
    let (tx, mut rx) = mpsc::unbounded_channel::<PendingGeneration>();
    let mut running = FuturesUnordered::new();
    let mut pending: Vec<PendingGeneration> = Vec::new();
    let (mut next, mut live, mut batches, mut rows) = (0usize, 0usize, 0usize, 0usize);
    loop {
        while live < config.concurrency && next < jobs.len() {
            if skip.get(next).copied().unwrap_or(false) {
                next += 1;
                continue;
            }
            running.push(play(next, jobs[next], chat, user, config, tx.clone()));
            live += 1;
            next += 1;
        }
        if live == 0 {
            break;
        }
        tokio::select! {
            Some((slot, p)) = running.next() => {
                finish(slot, p)?;
                live -= 1;
            }
            Some(request) = rx.recv() => pending.push(request),
        }
        // Every live episode waits for its turn: answer them all at once.
        if !pending.is_empty() && pending.len() == live {
            pending.sort_by_key(|p| p.request.slot);
            let batch = std::mem::take(&mut pending);
            let requests: Vec<GenerateRequest> = batch.iter().map(|p| p.request.clone()).collect();
            let out = generator.generate(&requests, mix_seed(config.seed, batches as u64))?;
            if out.len() != batch.len() {
                return Err(PolicyError::BatchSize {
                    want: batch.len(),
                    got: out.len(),
                }
                .into());
            }
            batches += 1;
            rows += batch.len();
            for (p, g) in batch.into_iter().zip(out) {
                // A dropped receiver means its episode is gone; nothing to answer.
                let _ = p.reply.send(g);
            }
        }
    }
    Ok((batches, rows))
}

/// Scores a played episode into its trajectory.
fn score(job: &RolloutJob<'_>, played: Played, judge: Option<&dyn NlJudge>) -> EpisodeOutcome {
    let Played { episode, record } = played;
    let (messages, termination, reward_info, error) = match episode {
        Ok(ep) => match evaluate(job.domain, job.task, &ep.messages, ep.termination, judge) {
            Ok(info) => (ep.messages, ep.termination.as_str(), Some(info), None),
            Err(e) => (
                ep.messages,
                ep.termination.as_str(),
                None,
                Some(format!("evaluation failed: {e}")),
            ),
        },
        Err(e) => (Vec::new(), "error", None, Some(e)),
    };
    let reward = reward_info.as_ref().map_or(0.0, |i: &RewardInfo| i.reward);
    let valid = error.is_none() && !record.stats.context_overflow && !record.ids.is_empty();
    let trajectory = Trajectory {
        domain: job.domain.domain,
        task_id: job.task.id.clone(),
        sample: job.sample,
        ids: record.ids,
        policy_mask: record.policy_mask,
        logprobs: record.logprobs,
        reward,
        reward_info,
        termination: termination.to_string(),
        valid,
        messages: serde_json::to_value(&messages).unwrap_or(Value::Null),
    };
    EpisodeOutcome {
        trajectory,
        stats: record.stats,
        error,
    }
}
