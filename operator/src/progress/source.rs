//! The store as the reconciler's [`ProgressSource`]: the reconciler reads a
//! plain view of the reports ([`crate::reconcile::progress_view`]), so its
//! planning stays pure and its fixtures spell progress out in YAML; this
//! module converts the store's state into that view.
//!
//! [`ProgressSource::snapshot`] goes to [`ProgressStore::snapshot`], which also
//! re-arms the pipeline's change notification: the controller reconciles each
//! key the store sends, and every reconcile that plans takes a snapshot.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::PipelineKey;
use super::store::{self, CheckpointState, PhaseReport, ProgressStore};
use crate::reconcile::progress_view::{
    self as view, CheckpointView, FinishedView, PhaseProgressView, ProgressSource,
};

fn key(namespace: &str, name: &str, uid: &str) -> PipelineKey {
    PipelineKey {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        uid: uid.to_owned(),
    }
}

impl ProgressSource for ProgressStore {
    fn snapshot(&self, namespace: &str, name: &str, uid: &str) -> Option<view::PipelineProgress> {
        ProgressStore::snapshot(self, &key(namespace, name, uid)).map(|p| view_of(&p))
    }

    fn forget(&self, namespace: &str, name: &str, uid: &str) {
        ProgressStore::forget(self, &key(namespace, name, uid));
    }

    fn retain(&self, keep: &dyn Fn(&str, &str, &str) -> bool) {
        ProgressStore::retain(self, |k| keep(&k.namespace, &k.name, &k.uid));
    }
}

/// The reconciler's view of a pipeline's reports.
pub fn view_of(progress: &store::PipelineProgress) -> view::PipelineProgress {
    view::PipelineProgress {
        phases: progress
            .phases
            .iter()
            .map(|(phase, report)| (*phase, phase_view(report)))
            .collect(),
    }
}

fn time_of(unix_millis: i64) -> Option<Time> {
    (unix_millis > 0)
        .then(|| Timestamp::from_millisecond(unix_millis).ok().map(Time))
        .flatten()
}

fn phase_view(r: &PhaseReport) -> PhaseProgressView {
    PhaseProgressView {
        attempt: r.attempt,
        step: r.step,
        total_steps: r.total_steps,
        metrics: r.metrics.clone(),
        updated: time_of(r.reported_unix_millis),
        checkpoints: r.checkpoints.iter().map(checkpoint_view).collect(),
        results: r.results.clone(),
        finished: r.finished.as_ref().map(|f| FinishedView {
            succeeded: f.succeeded,
            message: f.message.clone(),
        }),
    }
}

fn checkpoint_view(c: &CheckpointState) -> CheckpointView {
    CheckpointView {
        step: c.step,
        path: c.path.clone(),
        r#final: c.r#final,
        time: time_of(c.unix_millis),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;
    use tau2_api::crd::Tau2Pipeline;
    use tau2_api::phases::PhaseName;
    use tau2_api::progress::progress_report::Event;
    use tau2_api::progress::{self as proto, ProgressReport};

    use crate::reconcile::{self, Observed, Settings};

    const NOW_MS: i64 = 1_800_000_000_000;

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(NOW_MS as u64)
    }

    fn report(phase: &str, seq: u64, event: Event) -> ProgressReport {
        ProgressReport {
            namespace: "ns".into(),
            pipeline: "recipe".into(),
            pipeline_uid: "uid-1".into(),
            phase: phase.into(),
            attempt: 1,
            seq,
            unix_millis: NOW_MS,
            event: Some(event),
        }
    }

    fn rates(domain: &str) -> proto::PassRates {
        proto::PassRates {
            domain: domain.into(),
            tasks: 20,
            pass_at1: 0.36,
            pass_at1_unbiased: 0.35,
            pass_at_k: 0.59,
            pass_at_k_unbiased: 0.58,
            pass_hat_k: 0.2,
            average_reward: 0.4,
        }
    }

    /// Reports go into the store; the plan's status shows them.
    #[test]
    fn store_reports_reach_the_status_through_the_view() -> Result<(), Box<dyn std::error::Error>> {
        let (store, mut keys) = ProgressStore::new();
        let k = key("ns", "recipe", "uid-1");
        let events = [
            (
                "sft",
                Event::Step(proto::Step {
                    step: 3,
                    total_steps: 10,
                    metrics: [("loss".to_owned(), 0.5)].into(),
                }),
            ),
            (
                "sft",
                Event::Checkpoint(proto::Checkpoint {
                    step: 10,
                    path: "sft/final".into(),
                    r#final: true,
                }),
            ),
            (
                "eval",
                Event::Results(proto::Results {
                    split: "test".into(),
                    k: 4,
                    samples_per_task: 4,
                    overall: Some(rates("")),
                    domains: vec![rates("airline")],
                }),
            ),
        ];
        for (seq, (phase, event)) in (1..).zip(events) {
            store.apply_at(&k, &report(phase, seq, event), now())?;
        }
        assert_eq!(keys.try_recv()?, k, "one notification");
        assert!(keys.try_recv().is_err(), "only one until a snapshot");

        let source: &dyn ProgressSource = &store;
        assert!(source.snapshot("ns", "recipe", "other-uid").is_none());
        let view = source
            .snapshot("ns", "recipe", "uid-1")
            .ok_or("a snapshot")?;
        let sft = &view.phases[&PhaseName::Sft];
        assert_eq!((sft.step, sft.total_steps, sft.attempt), (3, 10, 1));
        assert_eq!(
            sft.final_checkpoint().map(|c| c.path.as_str()),
            Some("sft/final")
        );
        assert!(sft.updated.is_some());

        let p: Tau2Pipeline = serde_json::from_value(serde_json::json!({
            "apiVersion": "tau2.dev/v1alpha1",
            "kind": "Tau2Pipeline",
            "metadata": {"name": "recipe", "namespace": "ns", "uid": "uid-1", "generation": 1},
            "spec": {
                "model": {"uri": "builtin://tiny"},
                "userSimulator": {"endpoint": "http://u/v1", "model": "m"},
                "storage": {"existingClaim": "c"}
            }
        }))?;
        let observed = Observed {
            progress: Some(view),
            ..Observed::default()
        };
        let plan = reconcile::plan(&p, &observed, &Settings::default(), Timestamp::now());
        let st = plan.status;
        let rec = st
            .phases
            .as_ref()
            .and_then(|p| p.sft.as_ref())
            .ok_or("sft")?;
        let progress = rec.progress.as_ref().ok_or("progress")?;
        assert_eq!((progress.step, progress.total_steps), (3, 10));
        assert_eq!(progress.metrics["loss"], 0.5);
        assert!(
            st.checkpoints
                .iter()
                .any(|c| c.path == "sft/final" && c.r#final)
        );
        let results = st.results.as_ref().ok_or("results")?;
        assert_eq!((results.k, results.overall.pass_at_k), (4, 0.59));
        assert_eq!(results.domains.len(), 1);

        // The snapshot re-armed the notification.
        store.apply_at(
            &k,
            &report(
                "sft",
                4,
                Event::Finished(proto::Finished {
                    succeeded: true,
                    message: String::new(),
                }),
            ),
            now(),
        )?;
        assert_eq!(keys.try_recv()?, k);

        source.retain(&|_, name, _| name != "recipe");
        assert!(store.keys().is_empty());
        Ok(())
    }
}
