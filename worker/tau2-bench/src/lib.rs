//! A native tau2-bench: the domains, the orchestrator, the evaluator and the
//! user simulator, giving the same tool outputs and rewards as the official
//! Python implementation (sierra-research/tau2-bench at the recipe's commit).

pub mod chat;
pub mod data;
pub mod db;
pub mod domains;
pub mod env;
pub mod evaluator;
pub mod gold;
pub mod harness;
pub mod http;
pub mod judge;
pub mod message;
pub mod orchestrator;
pub mod participants;
pub mod py;
pub mod task;
pub mod tool;
