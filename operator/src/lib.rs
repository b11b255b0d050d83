//! The tau2 operator: reconciles `Tau2Pipeline` resources into phase Jobs.
//!
//! - [`reconcile`]: the pure decision logic and the objects it builds;
//! - [`controller`]: the Kubernetes layer around it;
//! - [`leader`]: leader election, so that only one replica reconciles.

pub mod controller;
pub mod crdgen;
pub mod error;
pub mod leader;
pub mod reconcile;
pub mod tokens;
