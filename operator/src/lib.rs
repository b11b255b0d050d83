//! The tau2 operator: reconciles `Tau2Pipeline` resources into phase Jobs.

pub mod crdgen;
