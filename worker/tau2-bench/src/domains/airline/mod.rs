//! The airline domain: flights, users and reservations, with the official
//! `AirlineTools` semantics (fixed clock, deterministic ids, and the
//! upstream quirks: no seat release on cancellation, no refund to gift
//! cards, certificates consumed whole, the one-stop search's date bug).
//!
//! Tools operate on the validated database as JSON, the way the Python
//! models behave without validation on assignment: wrongly typed arguments
//! are stored as given.

mod args;
mod booking;
mod model;
mod num;
mod search;
mod tools;

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value, json};
use tau2_api::bench::Domain;

use super::{agent_only_tool, load_db, update_table_db};
use crate::data::{DataDir, DataError, read_text};
use crate::db::{Records, Table, TableDb};
use crate::env::{DomainState, PyErr, PyResult};
use crate::py;
use crate::task::Requestor;
use crate::tool::{ToolResult, ToolSpec};
use model::FlightDb;
use tools::TOOLS;

pub(super) fn load(data: &DataDir) -> Result<(String, Box<dyn DomainState>), DataError> {
    let path = data.domain_file(Domain::Airline, "db.json")?;
    let value = load_db::<FlightDb>(&path)?;
    let origins = Arc::new(index_origins(&value));
    let db = TableDb::from_value(value).ok_or_else(|| DataError::Invalid {
        path,
        message: "every top-level field must be a table of records".into(),
    })?;
    let policy = read_text(&data.domain_file(Domain::Airline, "policy.md")?)?;
    Ok((policy, Box::new(Airline { db, origins })))
}

/// Flight numbers by origin airport, in database order (flights never move).
type OriginIndex = HashMap<String, Vec<String>>;

fn index_origins(db: &Value) -> OriginIndex {
    let mut index = OriginIndex::new();
    for (number, flight) in db["flights"].as_object().into_iter().flatten() {
        if let Some(origin) = flight["origin"].as_str() {
            index
                .entry(origin.to_string())
                .or_default()
                .push(number.clone());
        }
    }
    index
}

#[derive(Clone)]
struct Airline {
    /// Shared with the loaded template until written (see `crate::db`).
    db: TableDb,
    origins: Arc<OriginIndex>,
}

const QUAL: &str = "AirlineTools";
/// `_get_datetime()`: the domain's fixed clock.
const NOW: &str = "2024-05-15T15:00:00";

fn arg<'a>(args: &'a Map<String, Value>, name: &str) -> &'a Value {
    args.get(name).unwrap_or(&Value::Null)
}

/// `key in table`, with Python's error for an unhashable key.
fn find<'a, T: Records + ?Sized>(
    table: &'a T,
    key: &Value,
) -> PyResult<Option<(&'a String, &'a Value)>> {
    if !py::is_hashable(key) {
        return Err(PyErr::type_error(py::unhashable(key)));
    }
    Ok(key.as_str().and_then(|k| table.entry(k)))
}

fn broken(what: &str) -> PyErr {
    PyErr::new("RuntimeError", format!("airline database has no {what}"))
}

impl Airline {
    fn table(&self, name: &str) -> PyResult<&Table> {
        self.db.table(name).ok_or_else(|| broken(name))
    }

    fn table_mut(&mut self, name: &str) -> PyResult<&mut Table> {
        self.db.table_mut(name).ok_or_else(|| broken(name))
    }

    /// `_get_user`: the user's key.
    fn user_key(&self, user_id: &Value) -> PyResult<String> {
        find(self.table("users")?, user_id)?
            .map(|(k, _)| k.clone())
            .ok_or_else(|| PyErr::value(format!("User {} not found", py::str(user_id))))
    }

    fn user(&self, key: &str) -> PyResult<&Value> {
        self.table("users")?
            .get(key)
            .ok_or_else(|| broken("such user"))
    }

    fn user_mut(&mut self, key: &str) -> PyResult<&mut Value> {
        self.table_mut("users")?
            .get_mut(key)
            .ok_or_else(|| broken("such user"))
    }

    /// `_get_reservation`: the reservation's key.
    fn reservation_key(&self, id: &Value) -> PyResult<String> {
        find(self.table("reservations")?, id)?
            .map(|(k, _)| k.clone())
            .ok_or_else(|| PyErr::value(format!("Reservation {} not found", py::str(id))))
    }

    fn reservation(&self, key: &str) -> PyResult<&Value> {
        self.table("reservations")?
            .get(key)
            .ok_or_else(|| broken("such reservation"))
    }

    fn reservation_mut(&mut self, key: &str) -> PyResult<&mut Value> {
        self.table_mut("reservations")?
            .get_mut(key)
            .ok_or_else(|| broken("such reservation"))
    }

    /// `_get_flight`.
    fn flight(&self, number: &Value) -> PyResult<&Value> {
        find(self.table("flights")?, number)?
            .map(|(_, f)| f)
            .ok_or_else(|| PyErr::value(format!("Flight {} not found", py::str(number))))
    }

    /// `_get_flight_instance`: the flight's status on a date.
    fn flight_date(&self, number: &Value, date: &Value) -> PyResult<&Value> {
        let dates = self.flight(number)?["dates"]
            .as_object()
            .ok_or_else(|| broken("flight dates"))?;
        find(dates, date)?.map(|(_, d)| d).ok_or_else(|| {
            PyErr::value(format!(
                "Flight {} not found on date {}",
                py::str(number),
                py::str(date)
            ))
        })
    }

    fn get_flight_status(&self, a: &Map<String, Value>) -> PyResult<ToolResult> {
        let instance = self.flight_date(arg(a, "flight_number"), arg(a, "date"))?;
        Ok(ToolResult::Text(py::str(&instance["status"])))
    }
}

fn list_all_airports() -> ToolResult {
    const AIRPORTS: &[(&str, &str)] = &[
        ("SFO", "San Francisco"),
        ("JFK", "New York"),
        ("LAX", "Los Angeles"),
        ("ORD", "Chicago"),
        ("DFW", "Dallas"),
        ("DEN", "Denver"),
        ("SEA", "Seattle"),
        ("ATL", "Atlanta"),
        ("MIA", "Miami"),
        ("BOS", "Boston"),
        ("PHX", "Phoenix"),
        ("IAH", "Houston"),
        ("LAS", "Las Vegas"),
        ("MCO", "Orlando"),
        ("EWR", "Newark"),
        ("CLT", "Charlotte"),
        ("MSP", "Minneapolis"),
        ("DTW", "Detroit"),
        ("PHL", "Philadelphia"),
        ("LGA", "LaGuardia"),
    ];
    ToolResult::Model(Value::Array(
        AIRPORTS
            .iter()
            .map(|(iata, city)| json!({"iata": iata, "city": city}))
            .collect(),
    ))
}

impl DomainState for Airline {
    fn agent_tools(&self) -> &'static [ToolSpec] {
        TOOLS
    }

    fn call(
        &mut self,
        side: Requestor,
        name: &str,
        args: &Map<String, Value>,
    ) -> PyResult<ToolResult> {
        agent_only_tool(side, TOOLS, QUAL, name, args)?;
        match name {
            "book_reservation" => self.book_reservation(args),
            "calculate" => {
                crate::py::calc::calculate(arg(args, "expression")).map(ToolResult::Text)
            }
            "cancel_reservation" => self.cancel_reservation(args),
            "get_reservation_details" => {
                let key = self.reservation_key(arg(args, "reservation_id"))?;
                Ok(ToolResult::Model(self.reservation(&key)?.clone()))
            }
            "get_user_details" => {
                let key = self.user_key(arg(args, "user_id"))?;
                Ok(ToolResult::Model(self.user(&key)?.clone()))
            }
            "list_all_airports" => Ok(list_all_airports()),
            "search_direct_flight" => self.search_direct_flight(args),
            "search_onestop_flight" => self.search_onestop_flight(args),
            "send_certificate" => self.send_certificate(args),
            "transfer_to_human_agents" => Ok(ToolResult::Text("Transfer successful".into())),
            "update_reservation_baggages" => self.update_reservation_baggages(args),
            "update_reservation_flights" => self.update_reservation_flights(args),
            "update_reservation_passengers" => self.update_reservation_passengers(args),
            "get_flight_status" => self.get_flight_status(args),
            other => Err(PyErr::attribute(format!(
                "'{QUAL}' object has no attribute '{other}'"
            ))),
        }
    }

    fn db(&self, side: Requestor) -> Option<std::borrow::Cow<'_, Value>> {
        (side == Requestor::Assistant).then(|| std::borrow::Cow::Owned(self.db.to_value()))
    }

    fn same_db(&self, other: &dyn DomainState) -> bool {
        other
            .as_any()
            .downcast_ref::<Self>()
            .is_some_and(|o| o.db == self.db)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn update_db(&mut self, side: Requestor, data: &Map<String, Value>) -> PyResult<()> {
        match side {
            Requestor::Assistant => {
                let value = update_table_db::<FlightDb>(&mut self.db, data)?;
                self.origins = Arc::new(index_origins(&value));
                Ok(())
            }
            Requestor::User => Err(PyErr::attribute(
                "'NoneType' object has no attribute 'update_db'",
            )),
        }
    }

    fn clone_state(&self) -> Box<dyn DomainState> {
        Box::new(self.clone())
    }
}
