//! Subcommands.

pub mod config;
pub mod eval;
pub mod grpo;
pub mod hub;
pub mod init_model;
pub mod phase;
pub mod pipeline;
pub mod rft;
pub mod rollout_args;
pub mod run;
pub mod serve;
pub mod sft;
pub mod tau2;
