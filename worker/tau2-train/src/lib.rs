//! The recipe's phases (`../shared/spec/cookbook.md`) on our model and our
//! tau2-bench: SFT, RFT, GRPO and eval, with checkpoints that survive
//! restarts and progress reports to the operator.

pub mod eval;
pub mod passk;
pub mod policy;
pub mod rft;
pub mod rollout;
pub mod trajectory;
