//! Subcommands.

pub mod config;
pub mod eval;
pub mod rft;
pub mod rollout_args;
pub mod tau2;
