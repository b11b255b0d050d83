//! SFT demonstrations from the gold actions (`builtin://gold`): every task
//! of a split played through the official protocol by tau2-bench's
//! `GoldAgent` against the deterministic `ScriptedUser`, kept when the
//! evaluator scores it a success, and written in the recipe's SFT format
//! (OpenAI messages as our agent sees them, plus the domain's tool schemas).
//! The conversation is exactly the agent view the policy gets in RFT, GRPO
//! and eval with the scripted user (same system prompt, same tools, same
//! user and tool turns), so the demo needs no download but the tokenizer.

use serde_json::{Value, json};
use tau2_api::bench::Split;
use tau2_bench::chat::agent_view;
use tau2_bench::domains::LoadedDomain;
use tau2_bench::evaluator::evaluate;
use tau2_bench::orchestrator::{Limits, run_episode};
use tau2_bench::participants::{GoldAgent, ScriptedUser, agent_system_prompt};

use crate::error::{Result, TrainError};

/// The dataset URI of the gold demonstrations.
pub const GOLD_DATASET: &str = "builtin://gold";

/// What [`gold_records`] produced.
#[derive(Clone, Debug, Default)]
pub struct GoldDemos {
    /// `{"messages": [...], "tools": [...], "task_id", "domain"}` records.
    pub records: Vec<Value>,
    /// Tasks whose gold replay does not succeed (e.g. checked only by
    /// assertions no gold action reaches): left out.
    pub unsolved: Vec<String>,
}

/// Plays the gold agent on every task of `split` in `domains`.
pub fn gold_records(
    runtime: &tokio::runtime::Runtime,
    domains: &[LoadedDomain],
    split: Split,
) -> Result<GoldDemos> {
    let mut out = GoldDemos::default();
    for loaded in domains {
        let tasks = crate::eval::split_tasks(loaded, split, None)
            .map_err(|e| TrainError::Config(e.to_string()))?;
        let system = agent_system_prompt(&loaded.policy);
        for task in tasks {
            let mut env = loaded.environment();
            let tools: Vec<Value> = env.tools().iter().map(|t| t.openai_schema()).collect();
            let episode = runtime
                .block_on(run_episode(
                    &mut env,
                    task,
                    &mut GoldAgent::new(task),
                    &mut ScriptedUser::new(task),
                    Limits::default(),
                ))
                .map_err(|e| TrainError::Config(format!("gold episode of {}: {e}", task.id)))?;
            let solved = evaluate(loaded, task, &episode.messages, episode.termination, None)
                .map(|info| info.is_success())
                .unwrap_or(false);
            if !solved {
                out.unsolved.push(format!("{}/{}", loaded.domain, task.id));
                continue;
            }
            let messages = agent_view(&system, &episode.messages)
                .iter()
                .map(|m| {
                    let m = tau2_chat::Message::from_openai(m.to_openai())
                        .map_err(|e| TrainError::Config(format!("task {}: {e}", task.id)))?
                        .with_parsed_arguments();
                    serde_json::to_value(m)
                        .map_err(|e| TrainError::Config(format!("task {}: {e}", task.id)))
                })
                .collect::<Result<Vec<Value>>>()?;
            out.records.push(json!({
                "messages": messages,
                "tools": tools,
                "task_id": task.id,
                "domain": loaded.domain,
            }));
        }
    }
    Ok(out)
}

/// Writes records as JSON lines.
pub fn write_records(path: &std::path::Path, records: &[Value]) -> Result<()> {
    let mut text = String::new();
    for r in records {
        text.push_str(&r.to_string());
        text.push('\n');
    }
    std::fs::write(path, text).map_err(|e| TrainError::io(path, e))
}
