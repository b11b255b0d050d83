//! The tau2 operator: reconciles `Tau2Pipeline` resources into phase Jobs.
//!
//! - [`app`]: all of it wired together in one process (`tau2-operator run`);
//! - [`reconcile`]: the pure decision logic and the objects it builds;
//! - [`controller`]: the Kubernetes layer around it;
//! - [`leader`]: leader election, so that only one replica reconciles;
//! - [`progress`], [`tokens`]: the gRPC service workers report to, and
//!   the per-pipeline tokens that authenticate them;
//! - [`metrics`], [`http`]: Prometheus metrics, `/healthz` and `/readyz`;
//! - [`probe`]: the HTTP check the chart's `helm test` pod runs.

pub mod app;
pub mod controller;
pub mod crdgen;
pub mod error;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod probe;
pub mod progress;
pub mod reconcile;
pub mod tokens;
