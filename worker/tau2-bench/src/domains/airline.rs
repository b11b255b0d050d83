//! The airline domain (not implemented yet).

use crate::data::{DataDir, DataError};
use crate::env::DomainState;

pub(super) fn load(data: &DataDir) -> Result<(String, Box<dyn DomainState>), DataError> {
    Err(DataError::Invalid {
        path: data.domain_dir(tau2_api::bench::Domain::Airline)?,
        message: "the airline domain is not implemented yet".into(),
    })
}
