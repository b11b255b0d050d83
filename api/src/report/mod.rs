//! What a phase's worker reports, modelled once.
//!
//! - [`StepMetric`] / [`StepMetrics`]: a step's metrics, by typed name, with
//!   their wire, status and Prometheus names in one list.

mod metric;

pub use metric::{StepMetric, StepMetrics, status_names};
