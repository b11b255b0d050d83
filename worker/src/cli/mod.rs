//! Subcommands.

pub mod config;
pub mod init_model;
pub mod serve;
pub mod sft;
pub mod tau2;
