//! The tau2 operator: reconciles `Tau2Pipeline` resources into phase Jobs.

pub mod crdgen;
pub mod http;
pub mod metrics;
pub mod progress;
pub mod tokens;
