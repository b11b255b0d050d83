//! Whole episodes through the official protocol, scored by the evaluator.

use tau2_api::bench::{DataVersion, Domain};
use tau2_bench::data::DataDir;
use tau2_bench::domains::LoadedDomain;
use tau2_bench::evaluator::{TerminationReason, evaluate};
use tau2_bench::message::{Message, ParticipantMessage};
use tau2_bench::orchestrator::{Agent, GREETING, Limits, ParticipantError, User, run_episode};
use tau2_bench::participants::{GoldAgent, ScriptedUser};

fn data() -> DataDir {
    DataDir::new(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/tau2"),
        DataVersion::Recipe337326e,
    )
}

#[tokio::test]
async fn gold_agent_with_scripted_user_solves_every_mock_task() {
    let mock = LoadedDomain::load(&data(), Domain::Mock).expect("mock data loads");
    for task in &mock.tasks.tasks {
        let mut env = mock.environment();
        let episode = run_episode(
            &mut env,
            task,
            &mut GoldAgent::new(task),
            &mut ScriptedUser::new(task),
            Limits::default(),
        )
        .await
        .expect("episode runs");
        let info =
            evaluate(&mock, task, &episode.messages, episode.termination, None).expect("evaluates");
        // A task checked only by environment assertions, with no gold actions,
        // cannot be solved by replaying gold actions.
        let crit = task.evaluation_criteria.as_ref();
        let solvable = crit.is_none_or(|c| c.actions.is_some() || c.env_assertions.is_none());
        assert!(
            info.is_success() == solvable,
            "task {}: {:?} reward {} {:?}",
            task.id,
            episode.termination,
            info.reward,
            info
        );
        for (i, m) in episode.messages.iter().enumerate() {
            let idx = match m {
                Message::Assistant(p) | Message::User(p) => p.turn_idx,
                Message::Tool(t) => t.turn_idx,
                Message::System(s) => s.turn_idx,
            };
            assert_eq!(idx, Some(i as i64));
        }
    }
}

/// An agent that always calls a tool that does not exist.
struct Flailing;

impl Agent for Flailing {
    async fn next(&mut self, _t: &[Message]) -> Result<ParticipantMessage, ParticipantError> {
        let mut calls = ParticipantMessage::calls(vec![tau2_bench::message::ToolCall {
            id: "x".into(),
            name: "no_such_tool".into(),
            arguments: Default::default(),
            requestor: Default::default(),
        }]);
        calls.content = None;
        Ok(calls)
    }
}

/// A participant that never stops talking.
struct Chatty;

impl User for Chatty {
    async fn next(&mut self, _t: &[Message]) -> Result<ParticipantMessage, ParticipantError> {
        Ok(ParticipantMessage::text("and another thing"))
    }
}

impl Agent for Chatty {
    async fn next(&mut self, _t: &[Message]) -> Result<ParticipantMessage, ParticipantError> {
        Ok(ParticipantMessage::text("let me check"))
    }
}

#[tokio::test]
async fn tool_errors_and_step_limits_end_episodes_with_zero_reward() {
    let mock = LoadedDomain::load(&data(), Domain::Mock).expect("mock data loads");
    let task = &mock.tasks.tasks[0];

    let mut env = mock.environment();
    let ep = run_episode(
        &mut env,
        task,
        &mut Flailing,
        &mut Chatty,
        Limits {
            max_steps: 100,
            max_errors: 3,
        },
    )
    .await
    .expect("runs");
    assert_eq!(ep.termination, TerminationReason::TooManyErrors);
    assert_eq!(ep.errors, 3);
    let errors: Vec<_> = ep
        .messages
        .iter()
        .filter(|m| matches!(m, Message::Tool(t) if t.error))
        .collect();
    assert_eq!(errors.len(), 3);
    let info = evaluate(&mock, task, &ep.messages, ep.termination, None).expect("evaluates");
    assert_eq!(info.reward, 0.0);
    assert_eq!(
        info.info.as_ref().and_then(|i| i["note"].as_str()),
        Some("Simulation terminated prematurely. Termination reason: too_many_errors")
    );

    let mut env = mock.environment();
    let ep = run_episode(
        &mut env,
        task,
        &mut Chatty,
        &mut Chatty,
        Limits {
            max_steps: 5,
            max_errors: 10,
        },
    )
    .await
    .expect("runs");
    assert_eq!(ep.termination, TerminationReason::MaxSteps);
    assert_eq!(ep.steps, 5);
    assert!(
        matches!(&ep.messages[0], Message::Assistant(m) if m.content.as_deref() == Some(GREETING))
    );
}
