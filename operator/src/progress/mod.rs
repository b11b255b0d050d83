//! Progress reports from phase workers: validated, kept in memory per
//! pipeline, and handed to the reconciler, which merges them into status.
//!
//! - [`store`]: the pure validation and merge rules and the shared in-memory store;
//! - [`service`]: the tonic server workers stream their reports to.
//!
//! The store is the only thing the reconciler reads; the service is the only
//! thing that writes to it. Status writes stay with the reconciler (and so
//! with the leader), rate-limited by its debounce of the store's notifications.

pub mod service;
pub mod source;
pub mod store;

use serde::{Deserialize, Serialize};
use tau2_api::crd::Tau2Pipeline;

pub use service::{ProgressService, ServiceConfig, ServiceError};
pub use store::{PipelineProgress, ProgressStore, Rejection};

/// One pipeline object: the uid tells a pipeline from a later one of the same name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PipelineKey {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl PipelineKey {
    /// The key of a pipeline read from the API server (`None` for an object
    /// that lacks a namespace, name or uid, i.e. was never stored).
    pub fn of(pipeline: &Tau2Pipeline) -> Option<PipelineKey> {
        let meta = &pipeline.metadata;
        Some(PipelineKey {
            namespace: meta.namespace.clone()?,
            name: meta.name.clone()?,
            uid: meta.uid.clone()?,
        })
    }
}

impl std::fmt::Display for PipelineKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{} ({})", self.namespace, self.name, self.uid)
    }
}
