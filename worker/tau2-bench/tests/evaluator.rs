//! The evaluator's checks on hand-made mock trajectories.

use serde_json::json;
use tau2_api::bench::{DataVersion, Domain};
use tau2_bench::data::DataDir;
use tau2_bench::domains::LoadedDomain;
use tau2_bench::evaluator::{EvalError, TerminationReason, action_matches, evaluate};
use tau2_bench::message::{Message, ParticipantMessage, ToolCall};
use tau2_bench::orchestrator::{Agent, Limits, ParticipantError, run_episode};
use tau2_bench::participants::ScriptedUser;
use tau2_bench::task::{Action, Requestor, RewardType, Task};

fn mock() -> LoadedDomain {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/tau2");
    LoadedDomain::load(
        &DataDir::new(root, DataVersion::Recipe337326e),
        Domain::Mock,
    )
    .expect("mock loads")
}

fn task(domain: &LoadedDomain, id: &str) -> Task {
    domain.tasks.get(id).cloned().expect("task exists")
}

fn call(name: &str, args: serde_json::Value) -> ToolCall {
    ToolCall {
        id: "c".into(),
        name: name.into(),
        arguments: args.as_object().cloned().unwrap_or_default(),
        requestor: Requestor::Assistant,
    }
}

fn action(args: serde_json::Value, compare: Option<Vec<&str>>) -> Action {
    Action {
        action_id: "a".into(),
        requestor: Requestor::Assistant,
        name: "create_task".into(),
        arguments: args.as_object().cloned().unwrap_or_default(),
        info: None,
        compare_args: compare.map(|c| c.into_iter().map(String::from).collect()),
    }
}

#[test]
fn actions_match_on_the_compared_arguments_with_python_equality() {
    let gold = action(json!({"user_id": "user_1", "title": "T", "n": 2}), None);
    assert!(action_matches(
        &gold,
        &call(
            "create_task",
            json!({"user_id": "user_1", "title": "T", "n": 2.0})
        )
    ));
    // Without compare_args, the predicted call's keys are compared: an extra one the gold lacks fails.
    assert!(!action_matches(
        &gold,
        &call(
            "create_task",
            json!({"user_id": "user_1", "title": "T", "x": 1})
        )
    ));
    // ...and a subset of the gold's keys passes (an upstream quirk).
    assert!(action_matches(
        &gold,
        &call("create_task", json!({"user_id": "user_1"}))
    ));
    let loose = action(
        json!({"user_id": "user_1", "title": "T"}),
        Some(vec!["user_id"]),
    );
    assert!(action_matches(
        &loose,
        &call(
            "create_task",
            json!({"user_id": "user_1", "title": "other"})
        )
    ));
    let name_only = action(json!({"user_id": "user_1"}), Some(vec![]));
    assert!(action_matches(&name_only, &call("create_task", json!({}))));
    assert!(!action_matches(&name_only, &call("get_users", json!({}))));
}

/// Builds a trajectory by running calls on a live environment, as the orchestrator would.
fn trajectory(
    domain: &LoadedDomain,
    task: &Task,
    calls: &[ToolCall],
    closing: &str,
) -> Vec<Message> {
    let mut env = domain.environment();
    env.set_state(task.initial_state.as_ref())
        .expect("initial state");
    let mut t = vec![Message::Assistant(tau2_bench::orchestrator::greeting())];
    for c in calls {
        let result = env.get_response(c);
        t.push(Message::Assistant(ParticipantMessage::calls(vec![
            c.clone(),
        ])));
        t.push(Message::Tool(result));
    }
    t.push(Message::Assistant(ParticipantMessage::text(closing)));
    t.push(Message::User(ParticipantMessage::text("###STOP###")));
    t
}

#[test]
fn a_different_write_fails_the_db_check() {
    let d = mock();
    let t = task(&d, "create_task_1");
    let right = call(
        "create_task",
        json!({"user_id": "user_1", "title": "Important Meeting"}),
    );
    let wrong = call(
        "create_task",
        json!({"user_id": "user_1", "title": "Unimportant Meeting"}),
    );
    let ok = evaluate(
        &d,
        &t,
        &trajectory(&d, &t, &[right], "done"),
        TerminationReason::UserStop,
        None,
    )
    .expect("evaluates");
    let bad = evaluate(
        &d,
        &t,
        &trajectory(&d, &t, &[wrong], "done"),
        TerminationReason::UserStop,
        None,
    )
    .expect("evaluates");
    assert_eq!(ok.reward, 1.0);
    assert_eq!(bad.reward, 0.0);
    assert_eq!(bad.db_check.map(|c| c.db_match), Some(false));
    assert_eq!(
        bad.reward_breakdown
            .and_then(|b| b.get(&RewardType::Db).copied()),
        Some(0.0)
    );
}

#[test]
fn communicated_info_is_found_case_insensitively_without_commas() {
    let d = mock();
    let mut t = task(&d, "create_task_1");
    let criteria = t.evaluation_criteria.as_mut().expect("criteria");
    criteria.communicate_info = Some(vec!["TASK 2 created".into(), "1,000".into()]);
    criteria.reward_basis = vec![RewardType::Communicate];
    let info = evaluate(
        &d,
        &t,
        &trajectory(&d, &t, &[], "Task, 2 created for 1,000 people"),
        TerminationReason::AgentStop,
        None,
    )
    .expect("evaluates");
    let checks = info.communicate_checks.expect("checks");
    assert!(checks[0].met, "commas are removed from the message");
    assert!(
        !checks[1].met,
        "but not from the expected text (upstream quirk)"
    );
    assert_eq!(info.reward, 0.0);
}

#[test]
fn a_trajectory_whose_recorded_results_cannot_be_reproduced_is_an_error() {
    let d = mock();
    let t = task(&d, "create_task_1");
    let mut traj = trajectory(&d, &t, &[call("get_users", json!({}))], "ok");
    if let Message::Tool(result) = &mut traj[2] {
        result.content = Some("[]".into());
    }
    let err =
        evaluate(&d, &t, &traj, TerminationReason::UserStop, None).expect_err("tampered result");
    assert!(matches!(err, EvalError::Replay(_)), "{err}");
}

#[test]
fn episodes_that_did_not_stop_score_zero() {
    let d = mock();
    let t = task(&d, "create_task_1");
    for reason in [
        TerminationReason::MaxSteps,
        TerminationReason::TooManyErrors,
        TerminationReason::AgentError,
    ] {
        let info = evaluate(&d, &t, &[], reason, None).expect("evaluates");
        assert_eq!(info.reward, 0.0, "{reason:?}");
        assert!(info.reward_basis.is_none());
    }
}

/// Replays canned agent messages, one per turn.
struct Canned(std::collections::VecDeque<ParticipantMessage>);

impl Agent for Canned {
    async fn next(&mut self, _t: &[Message]) -> Result<ParticipantMessage, ParticipantError> {
        Ok(self
            .0
            .pop_front()
            .unwrap_or_else(|| ParticipantMessage::text("###STOP###")))
    }
}

#[tokio::test]
async fn malformed_agent_messages_are_handled_as_upstream_without_panics() {
    let d = mock();
    let t = task(&d, "create_task_1");

    // Text and tool calls together: the calls run, the text stays in the trajectory.
    let mut both = ParticipantMessage::calls(vec![call(
        "create_task",
        json!({"user_id": "user_1", "title": "Important Meeting"}),
    )]);
    both.content = Some("creating it".into());
    // Arguments of the wrong shape and an unknown tool: error tool results, not crashes.
    let weird = ParticipantMessage::calls(vec![
        call(
            "create_task",
            json!({"user_id": {"nested": [1, 2]}, "title": null}),
        ),
        call("drop_database", json!({"really": true})),
    ]);
    let mut agent = Canned(vec![both, weird, ParticipantMessage::default()].into());
    let mut env = d.environment();
    let ep = run_episode(
        &mut env,
        &t,
        &mut agent,
        &mut ScriptedUser::new(&t),
        Limits::default(),
    )
    .await
    .expect("runs");
    let tool_results: Vec<_> = ep
        .messages
        .iter()
        .filter_map(|m| {
            if let Message::Tool(r) = m {
                Some(r)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(tool_results.len(), 3);
    assert!(!tool_results[0].error);
    assert_eq!(
        tool_results[1].content.as_deref(),
        Some("Error: unhashable type: 'dict'")
    );
    assert_eq!(
        tool_results[2].content.as_deref(),
        Some("Error: Tool 'drop_database' not found.")
    );
    assert!(ep.messages.iter().any(|m| matches!(m, Message::Assistant(a) if a.content.as_deref() == Some("creating it") && a.is_tool_call())));
    // The empty message ends the episode as an agent error.
    assert_eq!(ep.termination, TerminationReason::AgentError);
}
