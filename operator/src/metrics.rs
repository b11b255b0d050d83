//! Prometheus metrics of the operator and of the pipelines it runs, served on
//! `/metrics` by [`crate::http`].
//!
//! Label cardinality is bounded: operator metrics carry only fixed label
//! values; pipeline metrics carry `namespace`, `pipeline`, `phase` and
//! `domain`, so their series grow with the pipelines that exist (a pipeline's
//! series go when it is forgotten) times four phases or five domain values.
//! The `state`, `phase_duration` and `phase_retries` series come from the
//! status of every pipeline in the controller's cache each housekeeping
//! period, so they exist only on the leader and go with the pipeline.
//! Worker metric names never become labels or metric names: only the names in
//! the allow-list below are exported, the rest stay in status only.
//!
//! | metric | type | labels | meaning |
//! | --- | --- | --- | --- |
//! | `tau2_operator_reconciles_total` | counter | `result` (`success`, `error`) | reconciles run |
//! | `tau2_operator_reconcile_errors_total` | counter | `reason` ([`Error::METRIC_LABELS`](crate::error::Error::METRIC_LABELS), each from the start) | failed reconciles, by the reconciler's error kind |
//! | `tau2_operator_reconcile_duration_seconds` | histogram | | time per reconcile |
//! | `tau2_operator_pipelines` | gauge | `phase` (`Pending`, `Running`, `Succeeded`, `Failed`, `Suspended`) | pipelines by status phase |
//! | `tau2_operator_leader` | gauge | | 1 while this replica holds the leader lease |
//! | `tau2_operator_progress_reports_accepted_total` | counter | | progress reports merged |
//! | `tau2_operator_progress_reports_rejected_total` | counter | `reason` | progress reports refused (validation: [`Rejection::reason`](crate::progress::Rejection::reason); authentication: [`AuthError::reason`](crate::tokens::AuthError::reason); `not_leader`) |
//! | `tau2_operator_progress_metric_values_dropped_total` | counter | | non-finite metric values left out of step reports |
//! | `tau2_operator_progress_streams` | gauge | | open progress streams |
//! | `tau2_pipeline_step` | gauge | `namespace`, `pipeline`, `phase` | steps (eval: episodes) done in the phase's current attempt |
//! | `tau2_pipeline_total_steps` | gauge | `namespace`, `pipeline`, `phase` | steps the phase will take |
//! | `tau2_pipeline_attempt` | gauge | `namespace`, `pipeline`, `phase` | the attempt reporting |
//! | `tau2_pipeline_loss` | gauge | `namespace`, `pipeline`, `phase` | worker metric `loss` |
//! | `tau2_pipeline_reward` | gauge | `namespace`, `pipeline`, `phase` | worker metric `reward` |
//! | `tau2_pipeline_kl` | gauge | `namespace`, `pipeline`, `phase` | worker metric `kl` |
//! | `tau2_pipeline_entropy` | gauge | `namespace`, `pipeline`, `phase` | worker metric `entropy` |
//! | `tau2_pipeline_tokens_per_second` | gauge | `namespace`, `pipeline`, `phase` | worker metric `tokens_per_second` |
//! | `tau2_pipeline_state` | gauge | `namespace`, `pipeline`, `state` (`Pending`, `Running`, `Succeeded`, `Failed`, `Suspended`) | 1 for the pipeline's status phase, 0 for the others |
//! | `tau2_pipeline_phase_duration_seconds` | gauge | `namespace`, `pipeline`, `phase` | a started phase's time from its start to its completion, or to now while it runs |
//! | `tau2_pipeline_phase_retries` | gauge | `namespace`, `pipeline`, `phase` | attempts started after a failed one (status `attempts` - 1) |
//! | `tau2_pipeline_pass_at_1` | gauge | `namespace`, `pipeline`, `domain` (a domain or `all`) | eval pass@1 |
//! | `tau2_pipeline_pass_at_k` | gauge | `namespace`, `pipeline`, `domain` | eval pass@k |
//! | `tau2_pipeline_pass_hat_k` | gauge | `namespace`, `pipeline`, `domain` | eval pass^k |
//! | `tau2_pipeline_average_reward` | gauge | `namespace`, `pipeline`, `domain` | eval mean task reward |

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use prometheus::{GaugeVec, core::Collector};
use tau2_api::bench::Domain;
use tau2_api::crd::{EvalResults, PassRates, PipelinePhase, Tau2Pipeline, Tau2PipelineStatus};
use tau2_api::phases::PhaseName;

use crate::controller::Hooks;
use crate::error::Error;
use crate::progress::store::PhaseReport;
use crate::progress::{PipelineKey, Rejection};

/// The worker metrics exported as gauges: (name in reports, metric name, help).
pub const TRAINING_METRICS: [(&str, &str, &str); 5] = [
    (
        "loss",
        "tau2_pipeline_loss",
        "Training loss of the latest step.",
    ),
    (
        "reward",
        "tau2_pipeline_reward",
        "Mean reward of the latest step.",
    ),
    (
        "kl",
        "tau2_pipeline_kl",
        "KL divergence to the reference policy at the latest step.",
    ),
    (
        "entropy",
        "tau2_pipeline_entropy",
        "Policy entropy at the latest step.",
    ),
    (
        "tokens_per_second",
        "tau2_pipeline_tokens_per_second",
        "Throughput of the latest step in tokens per second.",
    ),
];

/// The `domain` label of the overall rates.
pub const ALL_DOMAINS: &str = "all";

const PIPELINE_PHASES: [(PipelinePhase, &str); 5] = [
    (PipelinePhase::Pending, "Pending"),
    (PipelinePhase::Running, "Running"),
    (PipelinePhase::Succeeded, "Succeeded"),
    (PipelinePhase::Failed, "Failed"),
    (PipelinePhase::Suspended, "Suspended"),
];

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("prometheus: {0}")]
    Prometheus(#[from] prometheus::Error),
    #[error("the metrics text is not UTF-8: {0}")]
    Utf8(#[from] std::string::FromUtf8Error),
}

/// The operator's metrics in their own registry; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    reconciles: IntCounterVec,
    reconcile_errors: IntCounterVec,
    reconcile_duration: Histogram,
    pipelines: IntGaugeVec,
    leader: IntGauge,
    reports_accepted: IntCounter,
    reports_rejected: IntCounterVec,
    dropped_values: IntCounter,
    streams: IntGauge,
    step: IntGaugeVec,
    total_steps: IntGaugeVec,
    attempt: IntGaugeVec,
    /// In the order of [`TRAINING_METRICS`].
    training: Vec<GaugeVec>,
    pass_at_1: GaugeVec,
    pass_at_k: GaugeVec,
    pass_hat_k: GaugeVec,
    average_reward: GaugeVec,
    state: IntGaugeVec,
    phase_duration: GaugeVec,
    phase_retries: IntGaugeVec,
    /// (namespace, name) of the pipelines with status series, to remove
    /// those of pipelines that left the cache.
    with_status: Mutex<BTreeSet<(String, String)>>,
}

const PHASE_LABELS: [&str; 3] = ["namespace", "pipeline", "phase"];
const DOMAIN_LABELS: [&str; 3] = ["namespace", "pipeline", "domain"];
const STATE_LABELS: [&str; 3] = ["namespace", "pipeline", "state"];

impl Metrics {
    pub fn new() -> Result<Metrics, MetricsError> {
        let registry = Registry::new();
        let reg = |c: Box<dyn Collector>| registry.register(c);
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            reg(Box::new(c.clone())).map(|()| c)
        };
        let int_gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
            reg(Box::new(g.clone())).map(|()| g)
        };
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            let g = GaugeVec::new(Opts::new(name, help), labels)?;
            reg(Box::new(g.clone())).map(|()| g)
        };

        let reconciles = counter_vec(
            "tau2_operator_reconciles_total",
            "Reconciles run, by result.",
            &["result"],
        )?;
        let reconcile_errors = counter_vec(
            "tau2_operator_reconcile_errors_total",
            "Failed reconciles, by reason.",
            &["reason"],
        )?;
        let reconcile_duration = Histogram::with_opts(
            HistogramOpts::new(
                "tau2_operator_reconcile_duration_seconds",
                "Time taken by one reconcile.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        )?;
        reg(Box::new(reconcile_duration.clone()))?;
        let pipelines = int_gauge_vec(
            "tau2_operator_pipelines",
            "Pipelines by status phase.",
            &["phase"],
        )?;
        let leader = IntGauge::new(
            "tau2_operator_leader",
            "1 while this replica holds the leader lease.",
        )?;
        reg(Box::new(leader.clone()))?;
        let reports_accepted = IntCounter::new(
            "tau2_operator_progress_reports_accepted_total",
            "Progress reports merged.",
        )?;
        reg(Box::new(reports_accepted.clone()))?;
        let reports_rejected = counter_vec(
            "tau2_operator_progress_reports_rejected_total",
            "Progress reports refused, by reason.",
            &["reason"],
        )?;
        let dropped_values = IntCounter::new(
            "tau2_operator_progress_metric_values_dropped_total",
            "Non-finite metric values left out of step reports.",
        )?;
        reg(Box::new(dropped_values.clone()))?;
        let streams = IntGauge::new(
            "tau2_operator_progress_streams",
            "Progress streams open now.",
        )?;
        reg(Box::new(streams.clone()))?;

        let step = int_gauge_vec(
            "tau2_pipeline_step",
            "Steps (eval: episodes) done in the phase's current attempt.",
            &PHASE_LABELS,
        )?;
        let total_steps = int_gauge_vec(
            "tau2_pipeline_total_steps",
            "Steps the phase will take.",
            &PHASE_LABELS,
        )?;
        let attempt = int_gauge_vec(
            "tau2_pipeline_attempt",
            "The phase attempt that reported last.",
            &PHASE_LABELS,
        )?;
        let training = TRAINING_METRICS
            .iter()
            .map(|(_, name, help)| gauge_vec(name, help, &PHASE_LABELS))
            .collect::<Result<Vec<_>, _>>()?;
        let pass_at_1 = gauge_vec(
            "tau2_pipeline_pass_at_1",
            "Eval pass@1: share of tasks whose first sample succeeded.",
            &DOMAIN_LABELS,
        )?;
        let pass_at_k = gauge_vec(
            "tau2_pipeline_pass_at_k",
            "Eval pass@k: share of tasks with a success among the first k samples.",
            &DOMAIN_LABELS,
        )?;
        let pass_hat_k = gauge_vec(
            "tau2_pipeline_pass_hat_k",
            "Eval pass^k: chance that k samples of a task all succeed.",
            &DOMAIN_LABELS,
        )?;
        let average_reward = gauge_vec(
            "tau2_pipeline_average_reward",
            "Eval mean task reward over all samples.",
            &DOMAIN_LABELS,
        )?;

        let state = int_gauge_vec(
            "tau2_pipeline_state",
            "1 for the pipeline's status phase (the state label), 0 for the others.",
            &STATE_LABELS,
        )?;
        let phase_duration = gauge_vec(
            "tau2_pipeline_phase_duration_seconds",
            "Time from the phase's start to its completion, or to now while it runs.",
            &PHASE_LABELS,
        )?;
        let phase_retries = int_gauge_vec(
            "tau2_pipeline_phase_retries",
            "Attempts of the phase started after a failed one.",
            &PHASE_LABELS,
        )?;

        // Show every fixed series from the start, so dashboards see zeros, not gaps.
        for result in ["success", "error"] {
            reconciles.with_label_values(&[result]);
        }
        for (_, label) in PIPELINE_PHASES {
            pipelines.with_label_values(&[label]);
        }
        for reason in Rejection::REASONS {
            reports_rejected.with_label_values(&[reason]);
        }
        for reason in Error::METRIC_LABELS {
            reconcile_errors.with_label_values(&[reason]);
        }

        Ok(Metrics {
            inner: Arc::new(Inner {
                registry,
                reconciles,
                reconcile_errors,
                reconcile_duration,
                pipelines,
                leader,
                reports_accepted,
                reports_rejected,
                dropped_values,
                streams,
                step,
                total_steps,
                attempt,
                training,
                pass_at_1,
                pass_at_k,
                pass_hat_k,
                average_reward,
                state,
                phase_duration,
                phase_retries,
                with_status: Mutex::new(BTreeSet::new()),
            }),
        })
    }

    /// The registry, to add more collectors to.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// The text exposition format of every metric.
    pub fn encode(&self) -> Result<String, MetricsError> {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.inner.registry.gather(), &mut buf)?;
        Ok(String::from_utf8(buf)?)
    }

    /// Records the duration of one reconcile.
    pub fn observe_reconcile(&self, took: Duration) {
        self.inner.reconcile_duration.observe(took.as_secs_f64());
    }

    /// Times one reconcile; the duration is recorded when the guard drops.
    pub fn reconcile_timer(&self) -> ReconcileTimer {
        ReconcileTimer {
            histogram: self.inner.reconcile_duration.clone(),
            start: Instant::now(),
        }
    }

    pub fn reconcile_succeeded(&self) {
        self.inner.reconciles.with_label_values(&["success"]).inc();
    }

    /// `reason` is a fixed label of the reconciler's error kind (keep it static
    /// so the label set stays bounded).
    pub fn reconcile_failed(&self, reason: &'static str) {
        self.inner.reconciles.with_label_values(&["error"]).inc();
        self.inner
            .reconcile_errors
            .with_label_values(&[reason])
            .inc();
    }

    /// Sets the pipelines-by-phase gauge from the phases of all pipelines.
    pub fn set_pipeline_phases(&self, phases: impl IntoIterator<Item = PipelinePhase>) {
        let mut counts = [0i64; PIPELINE_PHASES.len()];
        for phase in phases {
            if let Some(i) = PIPELINE_PHASES.iter().position(|(p, _)| *p == phase) {
                counts[i] += 1;
            }
        }
        for ((_, label), count) in PIPELINE_PHASES.iter().zip(counts) {
            self.inner.pipelines.with_label_values(&[*label]).set(count);
        }
    }

    pub fn set_leader(&self, leader: bool) {
        self.inner.leader.set(i64::from(leader));
    }

    pub fn report_accepted(&self, dropped_values: usize) {
        self.inner.reports_accepted.inc();
        self.inner
            .dropped_values
            .inc_by(u64::try_from(dropped_values).unwrap_or(u64::MAX));
    }

    /// `reason` is a fixed label, e.g. [`Rejection::reason`](crate::progress::Rejection::reason).
    pub fn report_rejected(&self, reason: &'static str) {
        self.inner
            .reports_rejected
            .with_label_values(&[reason])
            .inc();
    }

    /// Counts an open stream until the guard drops.
    pub fn stream_opened(&self) -> StreamGuard {
        self.inner.streams.inc();
        StreamGuard {
            gauge: self.inner.streams.clone(),
        }
    }

    /// Sets the pipeline metrics of one phase from what its worker reported:
    /// allow-listed metrics only, and the eval results if any.
    pub fn observe_phase(&self, key: &PipelineKey, phase: PhaseName, report: &PhaseReport) {
        let i = &self.inner;
        let labels = [key.namespace.as_str(), key.name.as_str(), phase.as_str()];
        i.step
            .with_label_values(&labels)
            .set(i64::try_from(report.step).unwrap_or(i64::MAX));
        i.total_steps
            .with_label_values(&labels)
            .set(i64::try_from(report.total_steps).unwrap_or(i64::MAX));
        i.attempt
            .with_label_values(&labels)
            .set(i64::from(report.attempt));
        for ((name, _, _), gauge) in TRAINING_METRICS.iter().zip(&i.training) {
            match report.metrics.get(*name) {
                Some(value) => gauge.with_label_values(&labels).set(*value),
                // A metric the latest step did not report would show a stale value.
                None => {
                    let _ = gauge.remove_label_values(&labels);
                }
            }
        }
        if let Some(results) = &report.results {
            self.observe_results(key, results);
        }
    }

    fn observe_results(&self, key: &PipelineKey, results: &EvalResults) {
        let set = |domain: &str, rates: &PassRates| {
            let labels = [key.namespace.as_str(), key.name.as_str(), domain];
            let i = &self.inner;
            i.pass_at_1.with_label_values(&labels).set(rates.pass_at1);
            i.pass_at_k.with_label_values(&labels).set(rates.pass_at_k);
            i.pass_hat_k
                .with_label_values(&labels)
                .set(rates.pass_hat_k);
            i.average_reward
                .with_label_values(&labels)
                .set(rates.average_reward);
        };
        set(ALL_DOMAINS, &results.overall);
        for d in &results.domains {
            set(d.domain.as_str(), &d.rates);
        }
    }

    /// Sets the status series (`tau2_pipeline_state`, phase durations and
    /// retries) of every pipeline in `all` and removes those of pipelines not
    /// in it. Pipelines being deleted count as gone.
    pub fn observe_statuses(&self, all: &[Arc<Tau2Pipeline>], now: Timestamp) {
        let i = &self.inner;
        let mut seen = BTreeSet::new();
        for p in all {
            if p.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let (Some(ns), Some(name)) =
                (p.metadata.namespace.as_deref(), p.metadata.name.as_deref())
            else {
                continue;
            };
            let status = p.status.clone().unwrap_or_default();
            for (phase, label) in PIPELINE_PHASES {
                i.state
                    .with_label_values(&[ns, name, label])
                    .set(i64::from(status.phase == phase));
            }
            for phase in PhaseName::ALL {
                let labels = [ns, name, phase.as_str()];
                let rec = status.phases.as_ref().and_then(|ph| ph.get(phase));
                match rec.and_then(|r| r.start_time.as_ref().map(|s| (r, s))) {
                    Some((rec, start)) => {
                        let end = rec.completion_time.as_ref().map_or(now, |t| t.0);
                        let ms = end.as_millisecond() - start.0.as_millisecond();
                        i.phase_duration
                            .with_label_values(&labels)
                            .set(ms.max(0) as f64 / 1000.0);
                        i.phase_retries
                            .with_label_values(&labels)
                            .set(i64::from(rec.attempts.saturating_sub(1).max(0)));
                    }
                    None => {
                        let _ = i.phase_duration.remove_label_values(&labels);
                        let _ = i.phase_retries.remove_label_values(&labels);
                    }
                }
            }
            seen.insert((ns.to_owned(), name.to_owned()));
        }
        let gone: Vec<(String, String)> = {
            let mut known = i.with_status.lock().unwrap_or_else(|e| e.into_inner());
            let gone = known.difference(&seen).cloned().collect();
            *known = seen;
            gone
        };
        for (ns, name) in gone {
            self.remove_status_series(&ns, &name);
        }
    }

    fn remove_status_series(&self, ns: &str, name: &str) {
        let i = &self.inner;
        for (_, label) in PIPELINE_PHASES {
            let _ = i.state.remove_label_values(&[ns, name, label]);
        }
        for phase in PhaseName::ALL {
            let labels = [ns, name, phase.as_str()];
            let _ = i.phase_duration.remove_label_values(&labels);
            let _ = i.phase_retries.remove_label_values(&labels);
        }
        i.with_status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(ns.to_owned(), name.to_owned()));
    }

    /// Removes every series of a pipeline (it was deleted).
    pub fn forget_pipeline(&self, key: &PipelineKey) {
        let i = &self.inner;
        let (ns, name) = (key.namespace.as_str(), key.name.as_str());
        for phase in PhaseName::ALL {
            let labels = [ns, name, phase.as_str()];
            for gauge in [&i.step, &i.total_steps, &i.attempt] {
                let _ = gauge.remove_label_values(&labels);
            }
            for gauge in &i.training {
                let _ = gauge.remove_label_values(&labels);
            }
        }
        self.remove_status_series(ns, name);
        let domains = Domain::ALL.map(Domain::as_str);
        for domain in domains.iter().chain([&ALL_DOMAINS]) {
            let labels = [ns, name, *domain];
            for gauge in [&i.pass_at_1, &i.pass_at_k, &i.pass_hat_k, &i.average_reward] {
                let _ = gauge.remove_label_values(&labels);
            }
        }
    }
}

/// The controller's hooks: reconcile counts, errors by the error's
/// [`metric_label`](crate::error::Error::metric_label), durations, and
/// pipelines by phase and the status series from the controller's cache.
impl Hooks for Metrics {
    fn reconciled(&self, _: &Tau2Pipeline, _: &Tau2PipelineStatus, took: Duration) {
        self.observe_reconcile(took);
        self.reconcile_succeeded();
    }

    fn failed(&self, _: &Tau2Pipeline, error: &Error, took: Duration) {
        self.observe_reconcile(took);
        self.reconcile_failed(error.metric_label());
    }

    fn pipelines(&self, all: &[Arc<Tau2Pipeline>]) {
        // A pipeline without status yet is Pending (the status' default).
        self.set_pipeline_phases(
            all.iter()
                .map(|p| p.status.as_ref().map(|s| s.phase).unwrap_or_default()),
        );
        self.observe_statuses(all, Timestamp::now());
    }
}

/// Records a reconcile's duration when dropped.
pub struct ReconcileTimer {
    histogram: Histogram,
    start: Instant,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

/// Decrements the open-streams gauge when dropped.
pub struct StreamGuard {
    gauge: IntGauge,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use tau2_api::bench::Split;
    use tau2_api::crd::DomainPassRates;

    fn key(name: &str) -> PipelineKey {
        PipelineKey {
            namespace: "ns".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
        }
    }

    fn rates() -> PassRates {
        PassRates {
            tasks: 20,
            pass_at1: 0.35,
            pass_at1_unbiased: 0.36,
            pass_at_k: 0.6,
            pass_at_k_unbiased: 0.58,
            pass_hat_k: 0.2,
            average_reward: 0.4,
        }
    }

    fn report() -> PhaseReport {
        PhaseReport {
            attempt: 1,
            step: 3,
            total_steps: 10,
            metrics: BTreeMap::from([
                ("loss".to_owned(), 0.5),
                ("tokens_per_second".to_owned(), 1000.0),
                ("grad_norm_of_layer_17".to_owned(), 2.0),
            ]),
            ..PhaseReport::default()
        }
    }

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    #[test]
    fn text_names_the_documented_metrics() -> TestResult {
        let m = Metrics::new()?;
        m.reconcile_succeeded();
        m.reconcile_failed("kube");
        drop(m.reconcile_timer());
        m.set_leader(true);
        m.report_accepted(1);
        m.report_rejected("bad_step");
        m.set_pipeline_phases([PipelinePhase::Running, PipelinePhase::Running]);
        let _stream = m.stream_opened();
        m.observe_phase(&key("a"), PhaseName::Grpo, &report());
        let text = m.encode()?;
        for needle in [
            "tau2_operator_reconciles_total{result=\"success\"} 1",
            "tau2_operator_reconciles_total{result=\"error\"} 1",
            "tau2_operator_reconcile_errors_total{reason=\"kube\"} 1",
            "tau2_operator_reconcile_duration_seconds_count 1",
            "tau2_operator_pipelines{phase=\"Running\"} 2",
            "tau2_operator_pipelines{phase=\"Failed\"} 0",
            "tau2_operator_leader 1",
            "tau2_operator_progress_reports_accepted_total 1",
            "tau2_operator_progress_reports_rejected_total{reason=\"bad_step\"} 1",
            "tau2_operator_progress_metric_values_dropped_total 1",
            "tau2_operator_progress_streams 1",
            "tau2_pipeline_step{namespace=\"ns\",phase=\"grpo\",pipeline=\"a\"} 3",
            "tau2_pipeline_total_steps{namespace=\"ns\",phase=\"grpo\",pipeline=\"a\"} 10",
            "tau2_pipeline_loss{namespace=\"ns\",phase=\"grpo\",pipeline=\"a\"} 0.5",
            "tau2_pipeline_tokens_per_second{namespace=\"ns\",phase=\"grpo\",pipeline=\"a\"} 1000",
        ] {
            assert!(text.contains(needle), "{needle} missing from\n{text}");
        }
        // Every name in the module's table is registered.
        let names: Vec<String> = m
            .registry()
            .gather()
            .iter()
            .map(|f| f.name().to_owned())
            .collect();
        assert!(
            names
                .iter()
                .all(|n| n.starts_with("tau2_operator_") || n.starts_with("tau2_pipeline_"))
        );
        Ok(())
    }

    #[test]
    fn unknown_worker_metrics_create_no_series() -> TestResult {
        let m = Metrics::new()?;
        m.observe_phase(&key("a"), PhaseName::Sft, &report());
        let text = m.encode()?;
        assert!(!text.contains("grad_norm"), "{text}");
        let series = text
            .lines()
            .filter(|l| l.contains("pipeline=\"a\""))
            .count();
        // step, total_steps, attempt, loss, tokens_per_second
        assert_eq!(series, 5, "{text}");
        Ok(())
    }

    #[test]
    fn a_metric_missing_from_the_latest_step_is_removed() -> TestResult {
        let m = Metrics::new()?;
        m.observe_phase(&key("a"), PhaseName::Sft, &report());
        let mut next = report();
        next.metrics.remove("loss");
        m.observe_phase(&key("a"), PhaseName::Sft, &next);
        assert!(!m.encode()?.contains("tau2_pipeline_loss{"));
        Ok(())
    }

    #[test]
    fn results_are_per_domain_and_forgetting_removes_every_series() -> TestResult {
        let m = Metrics::new()?;
        let mut eval = report();
        eval.results = Some(EvalResults {
            split: Split::Test,
            k: 4,
            samples_per_task: 4,
            overall: rates(),
            domains: [Domain::Airline, Domain::Retail]
                .map(|domain| DomainPassRates {
                    domain,
                    rates: rates(),
                })
                .into(),
        });
        m.observe_phase(&key("a"), PhaseName::Eval, &eval);
        m.observe_phase(&key("b"), PhaseName::Sft, &report());
        let text = m.encode()?;
        for domain in ["all", "airline", "retail"] {
            let needle = format!(
                "tau2_pipeline_pass_at_k{{domain=\"{domain}\",namespace=\"ns\",pipeline=\"a\"}} 0.6"
            );
            assert!(text.contains(&needle), "{needle} missing from\n{text}");
        }
        m.forget_pipeline(&key("a"));
        let text = m.encode()?;
        assert!(!text.contains("pipeline=\"a\""), "{text}");
        assert!(text.contains("pipeline=\"b\""), "only a's series go");
        Ok(())
    }

    fn pipeline(name: &str, status: serde_json::Value) -> Arc<Tau2Pipeline> {
        let mut p: Tau2Pipeline = serde_json::from_value(serde_json::json!({
            "apiVersion": "tau2.dev/v1alpha1",
            "kind": "Tau2Pipeline",
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {
                "model": {"uri": "builtin://tiny"},
                "userSimulator": {"mode": "Scripted"},
                "storage": {"existingClaim": "checkpoints"}
            }
        }))
        .expect("a pipeline");
        p.status = Some(serde_json::from_value(status).expect("a status"));
        Arc::new(p)
    }

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
    }

    #[test]
    fn statuses_give_states_durations_and_retries() -> TestResult {
        let m = Metrics::new()?;
        let running = pipeline(
            "a",
            serde_json::json!({"phase": "Running", "phases": {
                "sft": {"state": "Succeeded", "attempts": 1,
                        "startTime": "2026-01-01T00:00:00Z", "completionTime": "2026-01-01T00:01:30Z"},
                "rft": {"state": "Running", "attempts": 3, "startTime": "2026-01-01T00:01:30Z"},
                "grpo": {"state": "Pending"}
            }}),
        );
        let failed = pipeline("b", serde_json::json!({"phase": "Failed"}));
        let now: Timestamp = "2026-01-01T00:02:00Z".parse()?;
        m.observe_statuses(&[running, failed], now);
        let text = m.encode()?;
        let a = |metric: &str, phase: &str| {
            value(
                &text,
                &format!("{metric}{{namespace=\"ns\",phase=\"{phase}\",pipeline=\"a\"}}"),
            )
        };
        assert_eq!(a("tau2_pipeline_phase_duration_seconds", "sft"), Some(90.0));
        // A running phase: until now.
        assert_eq!(a("tau2_pipeline_phase_duration_seconds", "rft"), Some(30.0));
        assert_eq!(a("tau2_pipeline_phase_retries", "sft"), Some(0.0));
        assert_eq!(a("tau2_pipeline_phase_retries", "rft"), Some(2.0));
        // Not started: no series.
        assert_eq!(a("tau2_pipeline_phase_duration_seconds", "grpo"), None);
        let state = |pipeline: &str, state: &str| {
            value(
                &text,
                &format!(
                    "tau2_pipeline_state{{namespace=\"ns\",pipeline=\"{pipeline}\",state=\"{state}\"}}"
                ),
            )
        };
        assert_eq!(state("a", "Running"), Some(1.0));
        assert_eq!(state("a", "Failed"), Some(0.0));
        assert_eq!(state("b", "Failed"), Some(1.0));
        assert_eq!(state("b", "Running"), Some(0.0));
        Ok(())
    }

    #[test]
    fn status_series_go_with_the_pipeline() -> TestResult {
        let m = Metrics::new()?;
        let started = serde_json::json!({"phase": "Running", "phases": {
            "sft": {"state": "Running", "attempts": 1, "startTime": "2026-01-01T00:00:00Z"}}});
        let a = pipeline("a", started.clone());
        let b = pipeline("b", started.clone());
        let now: Timestamp = "2026-01-01T00:02:00Z".parse()?;
        m.observe_statuses(&[a.clone(), b], now);
        // b left the cache.
        m.observe_statuses(std::slice::from_ref(&a), now);
        let text = m.encode()?;
        assert!(!text.contains("pipeline=\"b\""), "{text}");
        assert!(text.contains("tau2_pipeline_state{namespace=\"ns\",pipeline=\"a\""));
        // a is being deleted: gone too.
        let mut deleting = (*a).clone();
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now));
        m.observe_statuses(&[Arc::new(deleting)], now);
        assert!(!m.encode()?.contains("pipeline=\"a\""));
        // Forgetting a deleted pipeline removes its status series as well.
        m.observe_statuses(&[pipeline("c", started)], now);
        m.forget_pipeline(&key("c"));
        assert!(!m.encode()?.contains("pipeline=\"c\""));
        Ok(())
    }
}
