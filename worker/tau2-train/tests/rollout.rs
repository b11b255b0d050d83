//! Rollouts on the mock domain with the scripted user: a tiny random Qwen3
//! with the real Qwen3 tokenizer (garbage output must be handled), and a
//! scripted generator that plays the gold actions (successes, RFT).
//!
//! Needs TAU2_QWEN3_TOKENIZER_DIR (tests/run.sh sets it); without it each
//! test prints a notice and passes.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;

use serde_json::Value;
use tau2_api::bench::{DataVersion, Domain, Split};
use tau2_api::phases::{PartialWeights, RftKeep};
use tau2_bench::chat::agent_view;
use tau2_bench::data::DataDir;
use tau2_bench::domains::LoadedDomain;
use tau2_bench::message::Message;
use tau2_bench::orchestrator::Limits;
use tau2_bench::participants::agent_system_prompt;
use tau2_bench::task::Requestor;
use tau2_chat::{ChatTokenizer, RenderOptions};
use tau2_model::tch::{Device, Kind};
use tau2_model::{Qwen3, init};
use tau2_train::eval::{EvalSpec, run_eval, write_outputs};
use tau2_train::policy::{
    GenerateRequest, Generated, Generator, ModelGenerator, PolicyConfig, PolicyError,
};
use tau2_train::rft::kept_trajectories;
use tau2_train::rollout::{
    EpisodeOutcome, RolloutConfig, RolloutJob, UserSimulator, run_rollouts, runtime,
};

const TEMPLATE_2507: &str = tau2_chat::QWEN3_INSTRUCT_2507_TEMPLATE;

fn chat() -> Option<ChatTokenizer> {
    let Some(dir) = std::env::var_os("TAU2_QWEN3_TOKENIZER_DIR").filter(|d| !d.is_empty()) else {
        eprintln!(
            "skipped: TAU2_QWEN3_TOKENIZER_DIR is not set (export TAU2_QWEN3_TOKENIZER_DIR=$(tests/fixtures/qwen3-tokenizer.sh))"
        );
        return None;
    };
    static CHAT: std::sync::OnceLock<ChatTokenizer> = std::sync::OnceLock::new();
    Some(
        CHAT.get_or_init(|| {
            ChatTokenizer::from_dir(PathBuf::from(dir))
                .expect("the Qwen3 tokenizer loads")
                .with_template(TEMPLATE_2507)
                .expect("the 2507 template compiles")
        })
        .clone(),
    )
}

fn mock() -> LoadedDomain {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/tau2");
    LoadedDomain::load(&DataDir::new(dir, DataVersion::Recipe337326e), Domain::Mock)
        .expect("mock data loads")
}

fn tiny_model(chat: &ChatTokenizer) -> Qwen3 {
    tau2_model::tch::set_num_threads(1);
    let cfg = init::tiny_config(chat.vocab_size() as i64, true);
    init::random_model(cfg, 7, 0.02, Device::Cpu, Kind::Float).expect("model builds")
}

fn policy(max_new_tokens: usize, max_context: usize) -> PolicyConfig {
    PolicyConfig {
        temperature: 1.0,
        top_p: 1.0,
        top_k: 0,
        max_new_tokens,
        max_context,
    }
}

fn config(policy: PolicyConfig, seed: u64) -> RolloutConfig {
    RolloutConfig {
        policy,
        limits: Limits::default(),
        concurrency: 8,
        seed,
    }
}

/// Records each slot's generated turns (cut at the first stop token).
struct Recording<G> {
    inner: G,
    stops: Vec<u32>,
    turns: HashMap<usize, Vec<Vec<u32>>>,
}

impl<G: Generator> Generator for Recording<G> {
    fn generate(
        &mut self,
        requests: &[GenerateRequest],
        seed: u64,
    ) -> Result<Vec<Generated>, PolicyError> {
        let out = self.inner.generate(requests, seed)?;
        for (r, g) in requests.iter().zip(&out) {
            let cut = g
                .ids
                .iter()
                .position(|i| self.stops.contains(i))
                .map_or(g.ids.len(), |p| p + 1);
            self.turns
                .entry(r.slot)
                .or_default()
                .push(g.ids[..cut].to_vec());
        }
        Ok(out)
    }
}

/// Checks a trajectory against the turns its generator produced: the
/// policy tokens are exactly those ids, everything else is prompt or
/// environment, the first context is the template's rendering of the
/// official agent view, and the arrays line up.
fn assert_id_exact(
    chat: &ChatTokenizer,
    job: &RolloutJob<'_>,
    o: &EpisodeOutcome,
    turns: &[Vec<u32>],
) {
    let domain = job.domain;
    let t = &o.trajectory;
    assert_eq!(t.ids.len(), t.policy_mask.len());
    assert_eq!(t.ids.len(), t.logprobs.len());
    let generated: Vec<u32> = turns.concat();
    let masked: Vec<u32> = t
        .ids
        .iter()
        .zip(&t.policy_mask)
        .filter(|(_, m)| **m)
        .map(|(i, _)| *i)
        .collect();
    assert_eq!(masked, generated, "policy tokens are the sampled ids");
    assert_eq!(t.policy_tokens(), o.stats.generated_tokens);
    for (lp, m) in t.logprobs.iter().zip(&t.policy_mask) {
        assert!(if *m { *lp <= 0.0 } else { *lp == 0.0 }, "{lp} {m}");
    }
    // The prompt: the template over the official agent view before the
    // first generated turn (after the greeting, or the task's history).
    let messages: Vec<Message> = serde_json::from_value(t.messages.clone()).expect("messages");
    let history = job
        .task
        .initial_state
        .as_ref()
        .and_then(|s| s.message_history.as_ref())
        .map_or(1, Vec::len);
    let first = (history..messages.len())
        .find(|&i| matches!(messages[i], Message::Assistant(_)))
        .expect("a generated turn");
    let view = agent_view(&agent_system_prompt(&domain.policy), &messages[..first]);
    let view: Vec<tau2_chat::Message> = view
        .iter()
        .map(|m| tau2_chat::Message::from_openai(m.to_openai()).expect("message"))
        .collect();
    let tools: Vec<Value> = domain
        .environment()
        .tools()
        .iter()
        .map(|t| t.openai_schema())
        .collect();
    let prompt = chat
        .render_ids(
            &view,
            &RenderOptions::with_tools(tools).generation_prompt(true),
        )
        .expect("renders");
    assert_eq!(&t.ids[..prompt.len()], prompt.as_slice());
    assert!(t.policy_mask[..prompt.len()].iter().all(|m| !m));
    assert!(
        t.policy_mask[prompt.len()],
        "the first turn follows the prompt"
    );
}

#[test]
fn random_model_episodes_are_id_exact_and_deterministic() {
    let Some(chat) = chat() else { return };
    let mock = mock();
    let model = tiny_model(&chat);
    let tasks: Vec<_> = mock.tasks.tasks.iter().take(3).collect();
    let jobs = RolloutJob::per_task(&mock, &tasks, 2);
    let rt = runtime().expect("runtime");
    let run = |seed: u64| {
        let mut generator = Recording {
            inner: ModelGenerator::new(&model, &chat, &policy(12, 4096)).expect("generator"),
            stops: chat.stop_ids().to_vec(),
            turns: HashMap::new(),
        };
        let (outcomes, stats) = run_rollouts(
            &rt,
            &jobs,
            &chat,
            &mut generator,
            &UserSimulator::Scripted,
            &config(policy(12, 4096), seed),
            None,
        )
        .expect("rollout runs");
        (outcomes, stats, generator.turns)
    };
    let (a, stats, turns) = run(11);
    assert_eq!(a.len(), 6);
    assert!(stats.mean_batch > 1.0, "episodes are batched: {stats:?}");
    for (slot, o) in a.iter().enumerate() {
        assert!(o.error.is_none(), "{:?}", o.error);
        assert!(o.trajectory.valid);
        assert!(o.stats.turns >= 1);
        assert_id_exact(&chat, &jobs[slot], o, &turns[&slot]);
        assert_eq!(o.trajectory.sample, (slot % 2) as u32);
    }
    let (b, _, _) = run(11);
    let (c, _, _) = run(12);
    let ids = |v: &[EpisodeOutcome]| {
        v.iter()
            .map(|o| o.trajectory.ids.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&a), ids(&b), "same seed, same episodes");
    assert_ne!(ids(&a), ids(&c), "another seed, other samples");
}

#[test]
fn the_context_limit_ends_episodes_as_invalid_failures() {
    let Some(chat) = chat() else { return };
    let mock = mock();
    let model = tiny_model(&chat);
    let tasks: Vec<_> = mock.tasks.tasks.iter().take(1).collect();
    let jobs = RolloutJob::per_task(&mock, &tasks, 1);
    let cfg = policy(8, 9);
    let mut generator = ModelGenerator::new(&model, &chat, &cfg).expect("generator");
    let (out, _) = run_rollouts(
        &runtime().expect("runtime"),
        &jobs,
        &chat,
        &mut generator,
        &UserSimulator::Scripted,
        &config(cfg, 1),
        None,
    )
    .expect("rollout runs");
    let t = &out[0].trajectory;
    assert!(out[0].stats.context_overflow);
    assert!(!t.valid);
    assert_eq!(t.reward, 0.0);
    assert_eq!(t.termination, "agent_error");
}

/// Plays scripted texts per slot; "Done." when a slot's script is over.
struct Scripted {
    chat: ChatTokenizer,
    scripts: Vec<VecDeque<String>>,
}

impl Generator for Scripted {
    fn generate(
        &mut self,
        requests: &[GenerateRequest],
        _seed: u64,
    ) -> Result<Vec<Generated>, PolicyError> {
        Ok(requests
            .iter()
            .map(|r| {
                let text = self.scripts[r.slot]
                    .pop_front()
                    .unwrap_or_else(|| "Done.".into());
                let mut ids = self.chat.encode(&text).expect("encodes");
                ids.push(self.chat.end_of_turn_id());
                Generated {
                    logprobs: vec![-0.5; ids.len()],
                    ids,
                }
            })
            .collect())
    }
}

/// The task's gold assistant actions as tool-call texts, then what it must communicate.
fn gold_script(task: &tau2_bench::task::Task) -> VecDeque<String> {
    let crit = task.evaluation_criteria.as_ref();
    let mut script: VecDeque<String> = crit
        .and_then(|c| c.actions.as_ref())
        .into_iter()
        .flatten()
        .filter(|a| a.requestor == Requestor::Assistant)
        .map(|a| {
            let call = serde_json::json!({"name": a.name, "arguments": a.arguments});
            format!("<tool_call>\n{call}\n</tool_call>")
        })
        .collect();
    if let Some(info) = crit
        .and_then(|c| c.communicate_info.as_ref())
        .filter(|i| !i.is_empty())
    {
        script.push_back(info.join("\n"));
    }
    script
}

#[test]
fn gold_playing_generator_succeeds_and_rft_keeps_the_successes() {
    let Some(chat) = chat() else { return };
    let mock = mock();
    let tasks: Vec<_> = mock.tasks.tasks.iter().collect();
    let jobs = RolloutJob::per_task(&mock, &tasks, 2);
    // Sample 1 of the first task without a message history starts with a malformed call.
    let mut scripts: Vec<VecDeque<String>> = jobs.iter().map(|j| gold_script(j.task)).collect();
    let bad = jobs
        .iter()
        .position(|j| {
            j.sample == 1
                && j.task
                    .initial_state
                    .as_ref()
                    .and_then(|s| s.message_history.as_ref())
                    .is_none()
        })
        .expect("a task without history");
    let broken = "<tool_call>\n{\"name\": broken\n</tool_call>";
    scripts[bad] = VecDeque::from([broken.to_string()]);
    let mut generator = Recording {
        inner: Scripted {
            chat: chat.clone(),
            scripts,
        },
        stops: chat.stop_ids().to_vec(),
        turns: HashMap::new(),
    };
    let (out, _) = run_rollouts(
        &runtime().expect("runtime"),
        &jobs,
        &chat,
        &mut generator,
        &UserSimulator::Scripted,
        &config(policy(64, 8192), 3),
        None,
    )
    .expect("rollout runs");
    for (slot, o) in out.iter().enumerate() {
        assert!(o.error.is_none(), "{:?}", o.error);
        assert_id_exact(&chat, &jobs[slot], o, &generator.turns[&slot]);
    }
    // The malformed turn went to the user as text, without calls.
    assert_eq!(out[bad].stats.parse_failures, 1);
    let messages: Vec<Message> =
        serde_json::from_value(out[bad].trajectory.messages.clone()).expect("messages");
    match &messages[2] {
        Message::Assistant(m) => {
            assert_eq!(m.content.as_deref(), Some(broken));
            assert!(m.tool_calls.is_none());
        }
        other => panic!("expected the agent's turn, got {other:?}"),
    }
    assert!(!out[bad].trajectory.is_success());
    // Gold play solves the tasks whose gold actions determine the outcome.
    let solvable = |t: &tau2_bench::task::Task| {
        let c = t.evaluation_criteria.as_ref();
        c.is_none_or(|c| c.actions.is_some() || c.env_assertions.is_none())
    };
    for (job, o) in jobs
        .iter()
        .zip(&out)
        .filter(|(j, _)| j.task.id != jobs[bad].task.id)
    {
        assert_eq!(
            o.trajectory.is_success(),
            solvable(job.task),
            "task {}: {:?}",
            job.task.id,
            o.trajectory.reward_info
        );
    }
    let trajectories: Vec<_> = out.iter().map(|o| o.trajectory.clone()).collect();
    let (kept, selection) = kept_trajectories(
        &trajectories,
        &RftKeep::default(),
        &PartialWeights::default(),
    );
    // Both gold samples of a task are identical: one is kept, one dropped as duplicate.
    let successes_per_task = trajectories
        .chunks(2)
        .filter(|c| c.iter().any(|t| t.is_success()))
        .count();
    assert!(
        kept.iter()
            .all(|t| t.is_success() || t.task_id == jobs[bad].task.id)
    );
    assert!(selection.kept_successes >= successes_per_task);
    assert!(kept.len() >= successes_per_task);
}

#[test]
fn eval_writes_results_and_trajectories() {
    let Some(chat) = chat() else { return };
    let mock = mock();
    let model = tiny_model(&chat);
    let spec = EvalSpec {
        split: Split::Base,
        samples_per_task: 2,
        k: 2,
        max_tasks_per_domain: Some(2),
        rollout: config(policy(6, 4096), 5),
    };
    let mut generator = ModelGenerator::new(&model, &chat, &spec.rollout.policy).expect("gen");
    let mut steps = Steps::default();
    let (report, trajectories) = run_eval(
        &runtime().expect("runtime"),
        std::slice::from_ref(&mock),
        &spec,
        &chat,
        &mut generator,
        &UserSimulator::Scripted,
        None,
        None,
        &mut steps,
    )
    .expect("eval runs");
    // One step per episode, ending at all of them.
    assert_eq!(steps.0.len(), 4);
    assert_eq!(steps.0.last(), Some(&(4, 4)));
    assert_eq!(report.results.overall.tasks, 2);
    assert_eq!(report.episodes.len(), 4);
    assert_eq!(trajectories.len(), 4);
    let dir = tempfile::tempdir().expect("tempdir");
    write_outputs(dir.path(), &report, &trajectories).expect("writes");
    let results: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("results.json")).expect("results"),
    )
    .expect("JSON");
    assert_eq!(results["results"]["k"], 2);
    assert!(results["results"]["definitions"]["passHatK"].is_string());
    let lines = std::fs::read_to_string(dir.path().join("trajectories.jsonl")).expect("jsonl");
    assert_eq!(lines.lines().count(), 4);
}

/// Records the (step, total) pairs an observer hears.
#[derive(Default)]
struct Steps(Vec<(u64, u64)>);

impl tau2_train::progress::Observer for Steps {
    fn step(&mut self, step: u64, total: u64, _: &std::collections::BTreeMap<String, f64>) {
        self.0.push((step, total));
    }
    fn checkpoint(&mut self, _: u64, _: &str, _: bool) {}
}
