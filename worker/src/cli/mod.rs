//! Subcommands.

pub mod config;
pub mod sft;
pub mod tau2;
