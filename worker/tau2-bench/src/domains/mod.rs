//! The tau2-bench domains, loaded once and cloned per episode.

pub mod airline;
pub mod mock;
pub mod retail;
pub mod telecom;

use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use tau2_api::bench::Domain;

use crate::data::{DataDir, DataError, TaskSet};
use crate::db::TableDb;
use crate::env::{DomainState, Environment, PyErr};
use crate::task::Requestor;
use crate::tool::ToolSpec;

/// A domain ready to make environments: its validated databases, policy and tasks.
pub struct LoadedDomain {
    pub domain: Domain,
    pub policy: Arc<str>,
    pub tasks: TaskSet,
    template: Box<dyn DomainState>,
}

impl LoadedDomain {
    /// Reads and validates a domain's files once.
    pub fn load(data: &DataDir, domain: Domain) -> Result<Self, DataError> {
        let (policy, template) = match domain {
            Domain::Mock => mock::load(data)?,
            Domain::Airline => airline::load(data)?,
            Domain::Retail => retail::load(data)?,
            Domain::Telecom => telecom::load(data)?,
        };
        Ok(Self {
            domain,
            policy: policy.into(),
            tasks: TaskSet::load(data, domain)?,
            template,
        })
    }

    /// A fresh environment (a copy of the loaded databases).
    pub fn environment(&self) -> Environment {
        Environment::new(
            self.domain.as_str(),
            self.policy.clone(),
            self.template.clone_state(),
        )
    }
}

/// Validates a database the way `Model.model_validate` does for well-formed
/// data: through the typed model, which fills defaults and fixes field order
/// and number types (an int in a float field becomes a float).
pub fn validate<T: DeserializeOwned + Serialize>(
    value: Value,
    what: &str,
) -> Result<Value, String> {
    let typed: T = serde_json::from_value(value).map_err(|e| format!("invalid {what}: {e}"))?;
    serde_json::to_value(typed).map_err(|e| format!("invalid {what}: {e}"))
}

/// Reads and validates a database file.
pub fn load_db<T: DeserializeOwned + Serialize>(
    path: &std::path::Path,
) -> Result<Value, DataError> {
    let raw = crate::data::read_value(path)?;
    validate::<T>(raw, "database").map_err(|message| DataError::Invalid {
        path: path.to_owned(),
        message,
    })
}

/// `update_db`: addict's recursive dict merge, then validation.
pub fn update_db<T: DeserializeOwned + Serialize>(
    db: &mut Value,
    data: &Map<String, Value>,
) -> Result<(), PyErr> {
    let mut merged = db.clone();
    deep_merge(&mut merged, data);
    *db = validate::<T>(merged, "database update").map_err(PyErr::value)?;
    Ok(())
}

/// Merges `patch` into `base`: dicts merge key by key, everything else is replaced.
pub fn deep_merge(base: &mut Value, patch: &Map<String, Value>) {
    let Value::Object(base_map) = base else {
        *base = Value::Object(patch.clone());
        return;
    };
    for (key, value) in patch {
        match (base_map.get_mut(key), value) {
            (Some(existing @ Value::Object(_)), Value::Object(p)) => deep_merge(existing, p),
            _ => {
                base_map.insert(key.clone(), value.clone());
            }
        }
    }
}

/// `update_db` for a database of record tables: returns the merged and
/// validated database as JSON too, for indexes built from it.
pub fn update_table_db<T: DeserializeOwned + Serialize>(
    db: &mut TableDb,
    data: &Map<String, Value>,
) -> Result<Value, PyErr> {
    let mut value = db.to_value();
    update_db::<T>(&mut value, data)?;
    *db = TableDb::from_value(value.clone()).ok_or_else(|| {
        PyErr::new(
            "RuntimeError",
            "an updated database field is not a table of records",
        )
    })?;
    Ok(value)
}

/// The tool a call names in a domain whose user has no tools (the user's
/// toolkit is `None` upstream), bound to its arguments as Python would.
pub fn agent_only_tool(
    side: Requestor,
    tools: &'static [ToolSpec],
    qualname: &str,
    name: &str,
    args: &Map<String, Value>,
) -> Result<&'static ToolSpec, PyErr> {
    if side == Requestor::User {
        return Err(PyErr::attribute(format!(
            "'NoneType' object has no attribute '{name}'"
        )));
    }
    let spec = tools.iter().find(|t| t.name == name).ok_or_else(|| {
        PyErr::attribute(format!("'{qualname}' object has no attribute '{name}'"))
    })?;
    // Environment functions arrive unbound; tool calls were bound already.
    spec.bind(args)?;
    Ok(spec)
}
