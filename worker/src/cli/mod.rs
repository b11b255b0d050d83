//! Subcommands.

pub mod config;
pub mod tau2;
