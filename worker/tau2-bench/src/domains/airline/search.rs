//! Flight search: `search_direct_flight` and `search_onestop_flight`.

use serde_json::{Map, Value, json};

use super::{Airline, arg};
use crate::env::{PyErr, PyResult};
use crate::py;
use crate::tool::ToolResult;

impl Airline {
    pub(super) fn search_direct_flight(&self, a: &Map<String, Value>) -> PyResult<ToolResult> {
        let found = self.direct_flights(
            arg(a, "date"),
            arg(a, "origin"),
            arg(a, "destination"),
            None,
        )?;
        Ok(ToolResult::Model(Value::Array(found)))
    }

    /// Pairs of a first leg from `origin` and a connecting leg to
    /// `destination` that leaves after the first one lands.
    pub(super) fn search_onestop_flight(&self, a: &Map<String, Value>) -> PyResult<ToolResult> {
        let date = arg(a, "date");
        let destination = arg(a, "destination");
        let mut pairs = Vec::new();
        for mut first in self.direct_flights(date, arg(a, "origin"), &Value::Null, None)? {
            first["date"] = date.clone();
            let arrival = py::str(&first["scheduled_arrival_time_est"]);
            let date2 = if arrival.contains("+1") {
                Value::String(next_day(date)?)
            } else {
                date.clone()
            };
            let connections =
                self.direct_flights(&date2, &first["destination"], destination, Some(&arrival))?;
            for mut second in connections {
                second["date"] = date2.clone();
                pairs.push(json!([first, second]));
            }
        }
        Ok(ToolResult::Model(Value::Array(pairs)))
    }

    /// `_search_direct_flight`: available flights on `date`; a `None`
    /// (JSON null) origin or destination matches any airport.
    fn direct_flights(
        &self,
        date: &Value,
        origin: &Value,
        destination: &Value,
        leave_after: Option<&str>,
    ) -> PyResult<Vec<Value>> {
        let flights = self.table("flights")?;
        let candidates: Box<dyn Iterator<Item = &Value>> = match origin {
            Value::Null => Box::new(flights.values()),
            Value::String(o) => Box::new(
                self.origins
                    .get(o)
                    .into_iter()
                    .flatten()
                    .filter_map(|number| flights.get(number)),
            ),
            _ => Box::new(std::iter::empty()),
        };
        let mut found = Vec::new();
        for flight in candidates {
            if !destination.is_null() && !py::eq(&flight["destination"], destination) {
                continue;
            }
            // `date in flight.dates` is only evaluated here.
            if !py::is_hashable(date) {
                return Err(PyErr::type_error(py::unhashable(date)));
            }
            let Some(instance) = date.as_str().and_then(|d| flight["dates"].get(d)) else {
                continue;
            };
            let departs = flight["scheduled_departure_time_est"]
                .as_str()
                .unwrap_or_default();
            if instance["status"] != "available" || leave_after.is_some_and(|t| departs < t) {
                continue;
            }
            found.push(json!({
                "flight_number": flight["flight_number"],
                "origin": flight["origin"],
                "destination": flight["destination"],
                "status": "available",
                "scheduled_departure_time_est": flight["scheduled_departure_time_est"],
                "scheduled_arrival_time_est": flight["scheduled_arrival_time_est"],
                "date": null,
                "available_seats": instance["available_seats"],
                "prices": instance["prices"],
            }));
        }
        Ok(found)
    }
}

/// The upstream next-day date: `f"2024-05-{int(date[-2:]) + 1}"`, without
/// zero padding, so connections the next day are found only from the 9th.
fn next_day(date: &Value) -> PyResult<String> {
    let text = py::str(date);
    let chars: Vec<char> = text.chars().collect();
    let tail: String = chars[chars.len().saturating_sub(2)..].iter().collect();
    let day = python_int(&tail).ok_or_else(|| {
        PyErr::value(format!(
            "invalid literal for int() with base 10: {}",
            py::str_repr(&tail)
        ))
    })?;
    Ok(format!("2024-05-{}", day + 1))
}

/// `int(s)` for a short decimal string.
fn python_int(s: &str) -> Option<i64> {
    let t = s.trim();
    let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse().ok()
}
