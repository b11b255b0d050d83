//! The recipe's phases (`../shared/spec/cookbook.md`) on our model and our
//! tau2-bench: SFT, RFT, GRPO and eval, with checkpoints that survive
//! restarts and progress reports to the operator.

pub mod batch;
pub mod checkpoint;
pub mod error;
pub mod grpo;
pub mod optim;
pub mod progress;
pub mod reward;
mod run;
pub mod schedule;
pub mod sft;
pub mod trajectory;

pub use error::{Result, TrainError};
