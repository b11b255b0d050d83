use std::collections::HashMap;

use tau2_api::progress::{Checkpoint, Finished, Results, Step};

use super::*;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// 2027-01-15, the tests' "now".
const NOW_MS: i64 = 1_800_000_000_000;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(NOW_MS as u64)
}

fn key() -> PipelineKey {
    PipelineKey {
        namespace: "ns".into(),
        name: "p".into(),
        uid: "uid-1".into(),
    }
}

fn report(phase: &str, attempt: u32, seq: u64, event: Event) -> ProgressReport {
    ProgressReport {
        namespace: "ns".into(),
        pipeline: "p".into(),
        pipeline_uid: "uid-1".into(),
        phase: phase.into(),
        attempt,
        seq,
        unix_millis: NOW_MS - 1000,
        event: Some(event),
    }
}

fn step(step: u64, total: u64, metrics: &[(&str, f64)]) -> Event {
    Event::Step(Step {
        step,
        total_steps: total,
        metrics: metrics.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
    })
}

fn checkpoint(step: u64, path: &str, r#final: bool) -> Event {
    Event::Checkpoint(Checkpoint {
        step,
        path: path.into(),
        r#final,
    })
}

fn rates(domain: &str) -> proto::PassRates {
    proto::PassRates {
        domain: domain.into(),
        tasks: 20,
        pass_at1: 0.36,
        pass_at1_unbiased: 0.35,
        pass_at_k: 0.59,
        pass_at_k_unbiased: 0.57,
        pass_hat_k: 0.18,
        average_reward: 0.41,
    }
}

fn results() -> Results {
    Results {
        split: "test".into(),
        k: 4,
        samples_per_task: 4,
        overall: Some(rates("")),
        domains: vec![rates("airline"), rates("retail"), rates("telecom")],
    }
}

fn apply(state: &mut PipelineProgress, r: &ProgressReport) -> Result<Change, Rejection> {
    apply_report(state, r, now())
}

/// The rejection of `r` on an empty state, as its reason label.
fn reason(r: &ProgressReport) -> &'static str {
    match apply(&mut PipelineProgress::default(), r) {
        Ok(_) => "accepted",
        Err(e) => e.reason(),
    }
}

#[test]
fn a_step_is_merged() -> TestResult {
    let mut s = PipelineProgress::default();
    let change = apply(&mut s, &report("grpo", 1, 1, step(3, 10, &[("loss", 0.5)])))?;
    assert_eq!(
        change,
        Change {
            phase: PhaseName::Grpo,
            new_attempt: true,
            kind: ChangeKind::Step,
            dropped_metrics: 0
        }
    );
    let p = s.phase(PhaseName::Grpo).ok_or("grpo state")?;
    assert_eq!(
        (p.attempt, p.last_seq, p.step, p.total_steps),
        (1, 1, 3, 10)
    );
    assert_eq!(p.metrics.get("loss"), Some(&0.5));
    assert_eq!(p.received_at, Some(now()));
    let progress = p.progress().ok_or("progress")?;
    assert_eq!((progress.step, progress.total_steps), (3, 10));
    assert_eq!(
        progress.last_update_time.map(|t| t.0.as_millisecond()),
        Some(NOW_MS - 1000)
    );
    Ok(())
}

#[test]
fn every_rejection_reason() {
    let ok = report("sft", 1, 1, step(1, 10, &[]));
    assert_eq!(reason(&ok), "accepted");

    let mut r = ok.clone();
    r.phase = "pretrain".into();
    assert_eq!(reason(&r), "unknown_phase");

    let mut r = ok.clone();
    r.attempt = 0;
    assert_eq!(reason(&r), "zero_attempt");

    let mut r = ok.clone();
    r.event = None;
    assert_eq!(reason(&r), "no_event");

    for millis in [
        0,
        -5,
        MIN_UNIX_MILLIS - 1,
        NOW_MS + 11 * 60 * 1000,
        i64::MAX,
    ] {
        let mut r = ok.clone();
        r.unix_millis = millis;
        assert_eq!(reason(&r), "bad_timestamp", "{millis}");
    }
    let mut r = ok.clone();
    r.unix_millis = NOW_MS + 60 * 1000;
    assert_eq!(reason(&r), "accepted", "a minute of clock skew is fine");

    for (s, t) in [(11, 10), (0, 0), (1, MAX_STEPS + 1)] {
        assert_eq!(reason(&report("sft", 1, 1, step(s, t, &[]))), "bad_step");
    }
    assert_eq!(reason(&report("sft", 1, 1, step(10, 10, &[]))), "accepted");

    let many: Vec<(String, f64)> = (0..=MAX_METRICS).map(|i| (format!("m{i}"), 1.0)).collect();
    let many: Vec<(&str, f64)> = many.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(
        reason(&report("sft", 1, 1, step(1, 2, &many))),
        "too_many_metrics"
    );
    assert_eq!(
        reason(&report("sft", 1, 1, step(1, 2, &many[..MAX_METRICS]))),
        "accepted"
    );

    let long = "x".repeat(MAX_METRIC_NAME_LEN + 1);
    for name in ["", "bad name", "a\"b", "λ", long.as_str()] {
        assert_eq!(
            reason(&report("sft", 1, 1, step(1, 2, &[(name, 1.0)]))),
            "bad_metric_name",
            "{name:?}"
        );
    }

    let long = "a/".repeat(MAX_PATH_LEN);
    for path in [
        "",
        "/abs/path",
        "../up",
        "sft/../../etc",
        "sft/..",
        "a//b",
        "a\\b",
        "a\nb",
        long.as_str(),
    ] {
        assert_eq!(
            reason(&report("sft", 1, 1, checkpoint(5, path, false))),
            "bad_checkpoint_path",
            "{path:?}"
        );
    }
    for path in ["sft/step-5", "sft/final/", "a..b/c"] {
        assert_eq!(
            reason(&report("sft", 1, 1, checkpoint(5, path, false))),
            "accepted"
        );
    }
    assert_eq!(
        reason(&report("sft", 1, 1, checkpoint(MAX_STEPS + 1, "x", false))),
        "bad_checkpoint_step"
    );

    assert_eq!(
        reason(&report("grpo", 1, 1, Event::Results(results()))),
        "results_outside_eval"
    );
    assert_eq!(
        reason(&report("eval", 1, 1, Event::Results(results()))),
        "accepted"
    );
}

#[test]
fn stale_attempts_and_old_sequence_numbers_are_refused_harmlessly() -> TestResult {
    let mut s = PipelineProgress::default();
    apply(&mut s, &report("sft", 2, 5, step(4, 10, &[])))?;
    let before = s.clone();
    let stale = apply(&mut s, &report("sft", 1, 9, step(9, 10, &[])));
    assert_eq!(stale, Err(Rejection::StaleAttempt { got: 1, current: 2 }));
    for seq in [5, 4, 0] {
        let old = apply(&mut s, &report("sft", 2, seq, step(9, 10, &[])));
        assert_eq!(old.map_err(|e| e.reason()), Err("old_sequence"));
    }
    assert_eq!(s, before, "rejections leave the state as it was");
    // Gaps are fine: a lost report must not block the rest.
    apply(&mut s, &report("sft", 2, 8, step(6, 10, &[])))?;
    assert_eq!(s.phase(PhaseName::Sft).map(|p| p.step), Some(6));
    Ok(())
}

#[test]
fn phases_are_independent() -> TestResult {
    let mut s = PipelineProgress::default();
    apply(&mut s, &report("sft", 3, 10, step(4, 10, &[])))?;
    // rft's attempt 1, seq 1 is not stale against sft's attempt 3.
    apply(&mut s, &report("rft", 1, 1, step(1, 5, &[])))?;
    assert_eq!(s.phases.len(), 2);
    Ok(())
}

#[test]
fn a_new_attempt_resets_progress_but_keeps_checkpoints() -> TestResult {
    let mut s = PipelineProgress::default();
    apply(
        &mut s,
        &report("grpo", 1, 1, step(50, 100, &[("loss", 1.0)])),
    )?;
    apply(
        &mut s,
        &report("grpo", 1, 2, checkpoint(50, "grpo/step-50", false)),
    )?;
    apply(
        &mut s,
        &report(
            "grpo",
            1,
            3,
            Event::Finished(Finished {
                succeeded: false,
                message: "OOM".into(),
            }),
        ),
    )?;
    // The retry starts its sequence numbers over.
    let change = apply(&mut s, &report("grpo", 2, 1, step(51, 100, &[])))?;
    assert!(change.new_attempt);
    let p = s.phase(PhaseName::Grpo).ok_or("grpo")?;
    assert_eq!((p.attempt, p.last_seq, p.step), (2, 1, 51));
    assert!(p.metrics.is_empty());
    assert_eq!(p.finished, None);
    assert_eq!(
        p.latest_checkpoint().map(|c| c.path.as_str()),
        Some("grpo/step-50")
    );
    Ok(())
}

#[test]
fn checkpoints_dedupe_by_path_stay_bounded_and_the_final_one_is_kept() -> TestResult {
    let mut s = PipelineProgress::default();
    let mut seq = 0;
    let mut send = |s: &mut PipelineProgress, attempt, ev| {
        seq += 1;
        apply(s, &report("sft", attempt, seq, ev))
    };
    for i in 0..(MAX_CHECKPOINTS as u64 + 10) {
        send(&mut s, 1, checkpoint(i, &format!("sft/step-{i}"), false))?;
    }
    send(&mut s, 1, checkpoint(999, "sft/final", true))?;
    // A retry (new attempt) rewrites a directory: one record, the newest.
    send(&mut s, 2, checkpoint(109, "sft/step-109", false))?;
    let p = s.phase(PhaseName::Sft).ok_or("sft")?;
    assert_eq!(p.checkpoints.len(), MAX_CHECKPOINTS);
    assert_eq!(
        p.checkpoints
            .iter()
            .filter(|c| c.path == "sft/step-109")
            .count(),
        1
    );
    assert_eq!(p.latest_checkpoint().map(|c| c.step), Some(109));
    let fin = p.final_checkpoint().ok_or("final checkpoint")?;
    assert_eq!((fin.path.as_str(), fin.step), ("sft/final", 999));
    let record = fin.record(PhaseName::Sft);
    assert!(record.r#final);
    assert_eq!(record.step, 999);
    Ok(())
}

#[test]
fn non_finite_metric_values_are_dropped_and_the_step_counts() -> TestResult {
    let mut s = PipelineProgress::default();
    let metrics = [
        ("loss", f64::NAN),
        ("kl", f64::INFINITY),
        ("reward", 0.25),
        ("entropy", f64::NEG_INFINITY),
    ];
    let change = apply(&mut s, &report("grpo", 1, 1, step(7, 10, &metrics)))?;
    assert_eq!(change.dropped_metrics, 3);
    let p = s.phase(PhaseName::Grpo).ok_or("grpo")?;
    assert_eq!(p.step, 7);
    assert_eq!(
        p.metrics.clone().into_iter().collect::<Vec<_>>(),
        vec![("reward".to_owned(), 0.25)]
    );
    Ok(())
}

#[test]
fn bad_results_are_refused() {
    type Mutate = Box<dyn Fn(&mut Results)>;
    let cases: Vec<(&str, Mutate)> = vec![
        ("unknown split", Box::new(|r| r.split = "dev".into())),
        ("no samples", Box::new(|r| r.samples_per_task = 0)),
        ("k = 0", Box::new(|r| r.k = 0)),
        ("k > samples", Box::new(|r| r.k = 5)),
        ("no overall", Box::new(|r| r.overall = None)),
        (
            "overall with a domain",
            Box::new(|r| r.overall = Some(rates("airline"))),
        ),
        (
            "unknown domain",
            Box::new(|r| r.domains[0].domain = "bank".into()),
        ),
        (
            "duplicate domain",
            Box::new(|r| r.domains[1].domain = "airline".into()),
        ),
        (
            "too many domains",
            Box::new(|r| r.domains = vec![rates("airline"); MAX_DOMAINS + 1]),
        ),
        ("zero tasks", Box::new(|r| r.domains[0].tasks = 0)),
        (
            "zero overall tasks",
            Box::new(|r| {
                if let Some(o) = r.overall.as_mut() {
                    o.tasks = 0
                }
            }),
        ),
        ("rate above 1", Box::new(|r| r.domains[2].pass_at_k = 1.01)),
        (
            "negative rate",
            Box::new(|r| r.domains[2].pass_hat_k = -0.1),
        ),
        (
            "NaN rate",
            Box::new(|r| r.domains[2].average_reward = f64::NAN),
        ),
        (
            "infinite rate",
            Box::new(|r| r.domains[2].pass_at1 = f64::INFINITY),
        ),
    ];
    for (what, mutate) in cases {
        let mut res = results();
        mutate(&mut res);
        assert_eq!(
            reason(&report("eval", 1, 1, Event::Results(res))),
            "bad_results",
            "{what}"
        );
    }
}

#[test]
fn results_are_validated_into_the_status_shape() -> TestResult {
    let mut s = PipelineProgress::default();
    let change = apply(&mut s, &report("eval", 1, 1, Event::Results(results())))?;
    assert_eq!(change.kind, ChangeKind::Results);
    let status = s
        .phase(PhaseName::Eval)
        .and_then(|p| p.results.as_ref())
        .ok_or("results")?
        .clone();
    assert_eq!(
        (status.split, status.k, status.samples_per_task),
        (Split::Test, 4, 4)
    );
    assert_eq!(status.overall.pass_at1, 0.36);
    let domains: Vec<Domain> = status.domains.iter().map(|d| d.domain).collect();
    assert_eq!(domains, [Domain::Airline, Domain::Retail, Domain::Telecom]);
    // The store's types serialize (the reconciler may log or persist them).
    let json = serde_json::to_value(&s)?;
    assert_eq!(json["phases"]["eval"]["results"]["split"], "test");
    Ok(())
}

#[test]
fn finished_messages_are_cut_not_refused() -> TestResult {
    let mut s = PipelineProgress::default();
    let message = "é".repeat(MAX_MESSAGE_LEN);
    let event = Event::Finished(Finished {
        succeeded: false,
        message,
    });
    assert_eq!(
        apply(&mut s, &report("rft", 1, 1, event))?.kind,
        ChangeKind::Finished
    );
    let finished = s
        .phase(PhaseName::Rft)
        .and_then(|p| p.finished.clone())
        .ok_or("finished")?;
    assert!(!finished.succeeded);
    assert_eq!(finished.message.len(), MAX_MESSAGE_LEN);
    Ok(())
}

#[test]
fn the_store_notifies_once_until_a_snapshot_is_taken() -> TestResult {
    let (store, mut changed) = ProgressStore::new();
    let k = key();
    store.apply_at(&k, &report("sft", 1, 1, step(1, 10, &[])), now())?;
    store.apply_at(&k, &report("sft", 1, 2, step(2, 10, &[])), now())?;
    assert_eq!(changed.try_recv().ok(), Some(k.clone()));
    assert!(changed.try_recv().is_err(), "coalesced until a snapshot");
    let snap = store.snapshot(&k).ok_or("snapshot")?;
    assert_eq!(snap.phase(PhaseName::Sft).map(|p| p.step), Some(2));
    store.apply_at(&k, &report("sft", 1, 3, step(3, 10, &[])), now())?;
    assert_eq!(changed.try_recv().ok(), Some(k.clone()));
    Ok(())
}

#[test]
fn rejected_reports_neither_notify_nor_leave_entries() {
    let (store, mut changed) = ProgressStore::new();
    let bad = report("sft", 0, 1, step(1, 10, &[]));
    assert!(store.apply_at(&key(), &bad, now()).is_err());
    assert!(changed.try_recv().is_err());
    assert!(store.keys().is_empty());
    assert!(store.snapshot(&key()).is_none());
}

#[test]
fn forget_drops_the_pipeline_and_its_metric_series() -> TestResult {
    let metrics = Metrics::new()?;
    let (store, _changed) = ProgressStore::new();
    let store = store.with_metrics(metrics.clone());
    let other = PipelineKey {
        name: "q".into(),
        ..key()
    };
    for k in [key(), other.clone()] {
        store.apply_at(
            &k,
            &report("sft", 1, 1, step(1, 10, &[("loss", 2.0)])),
            now(),
        )?;
    }
    assert!(metrics.encode()?.contains("pipeline=\"p\""));
    store.forget(&key());
    assert!(store.snapshot(&key()).is_none());
    assert!(store.snapshot(&other).is_some());
    let text = metrics.encode()?;
    assert!(!text.contains("pipeline=\"p\""), "{text}");
    assert!(text.contains("pipeline=\"q\""));
    store.retain(|k| k.name != "q");
    assert!(store.keys().is_empty());
    assert!(!metrics.encode()?.contains("pipeline=\"q\""));
    Ok(())
}

#[test]
fn every_reason_is_listed() {
    let reasons: HashMap<&str, ()> = Rejection::REASONS.iter().map(|r| (*r, ())).collect();
    let all = [
        Rejection::UnknownPhase(String::new()),
        Rejection::ZeroAttempt,
        Rejection::StaleAttempt { got: 0, current: 0 },
        Rejection::OldSequence { got: 0, last: 0 },
        Rejection::NoEvent,
        Rejection::BadTimestamp(0),
        Rejection::BadStep { step: 0, total: 0 },
        Rejection::TooManyMetrics(0),
        Rejection::BadMetricName(String::new()),
        Rejection::BadCheckpointPath(String::new()),
        Rejection::BadCheckpointStep(0),
        Rejection::ResultsOutsideEval,
        Rejection::BadResults(String::new()),
    ];
    assert_eq!(all.len(), reasons.len());
    for r in all {
        assert!(reasons.contains_key(r.reason()), "{r}");
    }
}
