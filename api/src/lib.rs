//! The contract between the tau2 operator and its workers, defined once.
//!
//! - [`phases`]: the phases' hyper-parameters, with the recipe's defaults;
//! - [`job`]: the configuration a phase's worker receives;
//! - [`report`]: what a phase's worker reports: the step metrics, by typed name;
//! - [`bench`] and [`user_sim`]: tau2-bench's domains and splits, the simulated user;
//! - `crd` (feature `crd`): the `Tau2Pipeline` custom resource, and `plan`:
//!   the phase configurations it maps to (shared by the operator and `tau2-worker run`);
//! - `progress` (feature `grpc`): the gRPC service workers report progress to.

pub mod bench;
pub mod job;
pub mod phases;
pub mod report;
pub mod user_sim;

#[cfg(feature = "crd")]
pub mod crd;
#[cfg(feature = "crd")]
pub mod plan;

/// Generated from `proto/progress.proto`.
#[cfg(feature = "grpc")]
pub mod progress {
    #![allow(clippy::all, clippy::pedantic)]
    tonic::include_proto!("tau2.progress.v1");
}
