//! The step metrics a worker reports, listed once: each with the name it has
//! on the wire (the proto's `Step.metrics`, `progress.jsonl` and the train
//! state's history), in the pipeline status (`phases.<phase>.progress.metrics`)
//! and, for those the operator exports, in Prometheus. The dashboards' queries
//! are checked against this list (operator/src/metrics.rs).

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

/// Declares [`StepMetric`] from one table: variant, wire name, status name and,
/// optionally, the Prometheus gauge; the doc comment is the gauge's help.
macro_rules! step_metrics {
    ($( $(#[doc = $doc:literal])+ $variant:ident = $wire:literal, $status:literal $(, $prom:literal)?; )+) => {
        /// A metric of one training step (or, in eval, of the episodes so far).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum StepMetric {
            $( $(#[doc = $doc])+ $variant, )+
        }

        impl StepMetric {
            /// Every metric, in declaration order.
            pub const ALL: &'static [StepMetric] = &[$(StepMetric::$variant,)+];

            /// The name in progress reports, `progress.jsonl` and the train state (snake_case).
            pub fn wire_name(self) -> &'static str {
                match self { $(StepMetric::$variant => $wire,)+ }
            }

            /// The name in the pipeline status (camelCase, like the status' fields).
            pub fn status_name(self) -> &'static str {
                match self { $(StepMetric::$variant => $status,)+ }
            }

            /// The operator's gauge of this metric, if it exports one.
            pub fn prometheus_name(self) -> Option<&'static str> {
                match self { $(StepMetric::$variant => step_metrics!(@opt $($prom)?),)+ }
            }

            /// What it measures (the gauge's help text).
            pub fn description(self) -> &'static str {
                match self { $(StepMetric::$variant => concat!($($doc),+).trim(),)+ }
            }
        }
    };
    (@opt $prom:literal) => { Some($prom) };
    (@opt) => { None };
}

step_metrics! {
    /// Training loss of the latest step.
    Loss = "loss", "loss", "tau2_pipeline_loss";
    /// GRPO: the policy-gradient term of the loss, per trainable token.
    PgLoss = "pg_loss", "pgLoss";
    /// KL divergence to the reference policy at the latest step.
    Kl = "kl", "kl", "tau2_pipeline_kl";
    /// Policy entropy at the latest step.
    Entropy = "entropy", "entropy", "tau2_pipeline_entropy";
    /// Mean reward of the latest step (eval: of the episodes so far).
    Reward = "reward", "reward", "tau2_pipeline_reward";
    /// GRPO: mean reward after shaping (the one advantages are computed from).
    ShapedReward = "shaped_reward", "shapedReward";
    /// GRPO: share of rollouts that are valid training data.
    ValidFraction = "valid_fraction", "validFraction";
    /// GRPO: share of rollouts whose advantage is zero (no learning signal).
    ZeroAdvantageFraction = "zero_advantage_fraction", "zeroAdvantageFraction";
    /// GRPO: mean gap between the rollout's and the trainer's log-probabilities.
    LogprobGap = "logprob_gap", "logprobGap";
    /// GRPO: policy tokens of the valid rollouts.
    PolicyTokens = "policy_tokens", "policyTokens";
    /// Gradient norm before clipping.
    GradNorm = "grad_norm", "gradNorm";
    /// GRPO: optimizer updates in the step.
    Updates = "updates", "updates";
    /// Learning rate of the step.
    Lr = "lr", "lr";
    /// SFT: tokens the loss was computed on.
    LossTokens = "loss_tokens", "lossTokens";
    /// SFT: the epoch the step belongs to.
    Epoch = "epoch", "epoch";
    /// Throughput of the latest step in tokens per second.
    TokensPerSecond = "tokens_per_second", "tokensPerSecond", "tau2_pipeline_tokens_per_second";
    /// SFT: wall time of the step in seconds.
    StepSeconds = "step_seconds", "stepSeconds";
    /// GRPO: wall time of the step's rollouts in seconds.
    RolloutSeconds = "rollout_seconds", "rolloutSeconds";
    /// GRPO: rollout throughput in episodes per second.
    EpisodesPerSecond = "episodes_per_second", "episodesPerSecond";
}

impl StepMetric {
    /// The metric with this wire name.
    pub fn from_wire(name: &str) -> Option<StepMetric> {
        StepMetric::ALL
            .iter()
            .copied()
            .find(|m| m.wire_name() == name)
    }

    /// The metric with this status name.
    pub fn from_status(name: &str) -> Option<StepMetric> {
        StepMetric::ALL
            .iter()
            .copied()
            .find(|m| m.status_name() == name)
    }
}

impl fmt::Display for StepMetric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.wire_name())
    }
}

/// The metrics of one step, finite values only (JSON cannot carry NaN and a
/// diverged value says nothing a dashboard could show).
///
/// Serialized with the wire names; [`status_names`] spells them the status' way.
/// Reading skips names it does not know, so an older reader takes a newer
/// worker's records.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StepMetrics(BTreeMap<StepMetric, f64>);

impl StepMetrics {
    pub fn new() -> StepMetrics {
        StepMetrics::default()
    }

    /// Sets `metric`; a non-finite value removes it instead. Returns whether it was kept.
    pub fn set(&mut self, metric: StepMetric, value: f64) -> bool {
        if value.is_finite() {
            self.0.insert(metric, value);
            true
        } else {
            self.0.remove(&metric);
            false
        }
    }

    /// `self` with `metric` set (see [`set`](Self::set)).
    pub fn with(mut self, metric: StepMetric, value: f64) -> StepMetrics {
        self.set(metric, value);
        self
    }

    pub fn get(&self, metric: StepMetric) -> Option<f64> {
        self.0.get(&metric).copied()
    }

    pub fn remove(&mut self, metric: StepMetric) -> Option<f64> {
        self.0.remove(&metric)
    }

    /// Adds every metric of `other`, replacing those already here.
    pub fn extend(&mut self, other: &StepMetrics) {
        self.0.extend(other.iter());
    }

    pub fn iter(&self) -> impl Iterator<Item = (StepMetric, f64)> + '_ {
        self.0.iter().map(|(m, v)| (*m, *v))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// From wire names and values, as a progress report carries them: the
    /// metrics, and how many values were left out (unknown names, non-finite values).
    pub fn from_wire<'a>(pairs: impl IntoIterator<Item = (&'a str, f64)>) -> (StepMetrics, usize) {
        let mut metrics = StepMetrics::new();
        let mut dropped = 0;
        for (name, value) in pairs {
            match StepMetric::from_wire(name) {
                Some(m) if metrics.set(m, value) => {}
                _ => dropped += 1,
            }
        }
        (metrics, dropped)
    }

    fn serialize_as<S: Serializer>(
        &self,
        serializer: S,
        name: fn(StepMetric) -> &'static str,
    ) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (m, v) in &self.0 {
            map.serialize_entry(name(*m), v)?;
        }
        map.end()
    }

    fn deserialize_as<'de, D: Deserializer<'de>>(
        deserializer: D,
        name: fn(&str) -> Option<StepMetric>,
    ) -> Result<StepMetrics, D::Error> {
        struct Names(fn(&str) -> Option<StepMetric>);
        impl<'de> Visitor<'de> for Names {
            type Value = StepMetrics;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of metric names to numbers")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StepMetrics, A::Error> {
                let mut out = StepMetrics::new();
                while let Some((key, value)) = map.next_entry::<String, f64>()? {
                    if let Some(m) = (self.0)(&key) {
                        out.set(m, value);
                    }
                }
                Ok(out)
            }
        }
        deserializer.deserialize_map(Names(name))
    }
}

impl FromIterator<(StepMetric, f64)> for StepMetrics {
    fn from_iter<I: IntoIterator<Item = (StepMetric, f64)>>(iter: I) -> StepMetrics {
        let mut out = StepMetrics::new();
        for (m, v) in iter {
            out.set(m, v);
        }
        out
    }
}

impl<const N: usize> From<[(StepMetric, f64); N]> for StepMetrics {
    fn from(pairs: [(StepMetric, f64); N]) -> StepMetrics {
        pairs.into_iter().collect()
    }
}

impl Serialize for StepMetrics {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.serialize_as(serializer, StepMetric::wire_name)
    }
}

impl<'de> Deserialize<'de> for StepMetrics {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<StepMetrics, D::Error> {
        StepMetrics::deserialize_as(deserializer, StepMetric::from_wire)
    }
}

/// `#[serde(with = "status_names")]`: [`StepMetrics`] with the status' names.
pub mod status_names {
    use super::{StepMetric, StepMetrics};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(m: &StepMetrics, serializer: S) -> Result<S::Ok, S::Error> {
        m.serialize_as(serializer, StepMetric::status_name)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<StepMetrics, D::Error> {
        StepMetrics::deserialize_as(deserializer, StepMetric::from_status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_spelled_per_convention() {
        let all = StepMetric::ALL;
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a.wire_name(), b.wire_name());
                assert_ne!(a.status_name(), b.status_name());
            }
            // The status name is the wire name in camelCase.
            let camel: String = a
                .wire_name()
                .split('_')
                .enumerate()
                .map(|(i, w)| match i {
                    0 => w.to_owned(),
                    _ => w[..1].to_uppercase() + &w[1..],
                })
                .collect();
            assert_eq!(a.status_name(), camel);
            if let Some(p) = a.prometheus_name() {
                assert_eq!(p, format!("tau2_pipeline_{}", a.wire_name()));
            }
            assert!(!a.description().is_empty());
        }
    }

    #[test]
    fn wire_and_status_spellings_round_trip_and_unknown_names_are_skipped()
    -> Result<(), serde_json::Error> {
        let m = StepMetrics::from([
            (StepMetric::Loss, 0.5),
            (StepMetric::TokensPerSecond, 9100.0),
            (StepMetric::Kl, f64::NAN),
        ]);
        assert_eq!(m.len(), 2, "NaN is not kept");
        let wire = serde_json::to_value(&m)?;
        assert_eq!(
            wire,
            serde_json::json!({"loss": 0.5, "tokens_per_second": 9100.0})
        );
        assert_eq!(serde_json::from_value::<StepMetrics>(wire)?, m);

        #[derive(Serialize, Deserialize)]
        struct Status {
            #[serde(with = "status_names")]
            m: StepMetrics,
        }
        let status = serde_json::to_value(Status { m: m.clone() })?;
        assert_eq!(
            status["m"],
            serde_json::json!({"loss": 0.5, "tokensPerSecond": 9100.0})
        );
        let back: Status = serde_json::from_value(status)?;
        assert_eq!(back.m, m);

        let newer = serde_json::json!({"loss": 1.0, "a_metric_from_the_future": 2.0});
        let read: StepMetrics = serde_json::from_value(newer)?;
        assert_eq!(read, StepMetrics::from([(StepMetric::Loss, 1.0)]));

        let (parsed, dropped) =
            StepMetrics::from_wire([("loss", 1.0), ("kl", f64::INFINITY), ("grad_norm_17", 2.0)]);
        assert_eq!(
            (parsed, dropped),
            (StepMetrics::from([(StepMetric::Loss, 1.0)]), 2)
        );
        Ok(())
    }
}
