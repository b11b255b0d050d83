//! The recipe's phases (`../shared/spec/cookbook.md`) on our model and our
//! tau2-bench: SFT, RFT, GRPO and eval, with checkpoints that survive
//! restarts and progress reports to the operator.

pub mod batch;
pub mod checkpoint;
pub mod demos;
pub mod episodes;
pub mod error;
pub mod eval;
pub mod grpo;
pub mod optim;
pub mod passk;
pub mod policy;
pub mod progress;
pub mod reward;
pub mod rft;
pub mod rollout;
mod run;
pub mod schedule;
pub mod sft;
pub mod trajectory;

pub use error::{Result, TrainError};
