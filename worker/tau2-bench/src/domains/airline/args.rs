//! The nested-model arguments (`FlightInfo`, `Passenger`, `Payment`) and the
//! `Reservation` a booking builds, validated as pydantic does, error texts
//! included. The official tools convert a list argument to models only when
//! every item is a dict; otherwise they keep it as given, which decides what
//! fails later and what is stored.

use serde_json::{Map, Value, json};

use crate::env::{PyErr, PyResult};
use crate::py;
use crate::py::pydantic::Validator;

#[derive(Clone, Copy)]
enum Field {
    Str,
    Int,
}

/// A pydantic model with required `str` / `int` fields, in declaration order.
pub(super) struct Model {
    name: &'static str,
    fields: &'static [(&'static str, Field)],
}

pub(super) const FLIGHT_INFO: Model = Model {
    name: "FlightInfo",
    fields: &[("flight_number", Field::Str), ("date", Field::Str)],
};

pub(super) const PASSENGER: Model = Model {
    name: "Passenger",
    fields: &[
        ("first_name", Field::Str),
        ("last_name", Field::Str),
        ("dob", Field::Str),
    ],
};

pub(super) const PAYMENT: Model = Model {
    name: "Payment",
    fields: &[("payment_id", Field::Str), ("amount", Field::Int)],
};

pub(super) const CABINS: &[&str] = &["business", "economy", "basic_economy"];

impl Model {
    /// Validates a dict into `check` (locations prefixed by `prefix`);
    /// returns the model dump: declared fields only, coerced.
    fn check(&self, input: &Map<String, Value>, prefix: &str, check: &mut Validator) -> Value {
        let mut dump = Map::new();
        for &(name, field) in self.fields {
            let loc = format!("{prefix}{name}");
            let Some(value) = input.get(name) else {
                check.missing(&loc, &Value::Object(input.clone()));
                continue;
            };
            let stored = match field {
                Field::Str => {
                    check.str(&loc, value);
                    Some(value.clone())
                }
                Field::Int => check.int(&loc, value),
            };
            dump.insert(name.into(), stored.unwrap_or(Value::Null));
        }
        Value::Object(dump)
    }

    /// `Model(**input)`.
    fn build(&self, input: &Map<String, Value>) -> PyResult<Value> {
        let mut check = Validator::new();
        let dump = self.check(input, "", &mut check);
        finish(check, self.name)?;
        Ok(dump)
    }
}

/// The collected errors as the `ValidationError` pydantic raises for `title`.
pub(super) fn finish(check: Validator, title: &str) -> PyResult<()> {
    check
        .finish(title)
        .map_err(|e| PyErr::new("ValidationError", e.to_string()))
}

/// A list argument after `if all(isinstance(x, dict) for x in arg): arg = [Model(**x) for x in arg]`.
pub(super) enum Items<'a> {
    /// Every item was a dict: the models' dumps.
    Models(Vec<Value>),
    /// Kept as given: a non-empty string or dict, or a list with a non-dict.
    Raw(&'a Value),
}

impl<'a> Items<'a> {
    pub(super) fn convert(arg: &'a Value, model: &Model) -> PyResult<Self> {
        let all_dicts = match arg {
            Value::Array(items) => items.iter().all(Value::is_object),
            // Iterating a string gives strings, a dict its (string) keys.
            Value::String(s) => s.is_empty(),
            Value::Object(m) => m.is_empty(),
            other => return Err(not_iterable(other)),
        };
        if !all_dicts {
            return Ok(Items::Raw(arg));
        }
        let models = match arg {
            Value::Array(items) => items
                .iter()
                .filter_map(Value::as_object)
                .map(|item| model.build(item))
                .collect::<PyResult<_>>()?,
            _ => Vec::new(),
        };
        Ok(Items::Models(models))
    }

    /// `len(arg)`.
    pub(super) fn len(&self) -> PyResult<usize> {
        match self {
            Items::Models(models) => Ok(models.len()),
            Items::Raw(raw) => py_len(raw),
        }
    }

    /// The models, or the error the first raw item gives when the tool
    /// reads `item.<attribute>` from it.
    pub(super) fn models(&self, attribute: &str) -> PyResult<&[Value]> {
        match self {
            Items::Models(models) => Ok(models),
            Items::Raw(raw) => {
                let first = match raw {
                    Value::Array(items) => items.first().map_or("NoneType", py::type_name),
                    _ => "str",
                };
                Err(PyErr::attribute(format!(
                    "'{first}' object has no attribute '{attribute}'"
                )))
            }
        }
    }

    /// The value a model field would hold: the dumps, or the raw value.
    pub(super) fn to_value(&self) -> Value {
        match self {
            Items::Models(models) => Value::Array(models.clone()),
            Items::Raw(raw) => (*raw).clone(),
        }
    }
}

pub(super) fn not_iterable(v: &Value) -> PyErr {
    PyErr::type_error(format!("'{}' object is not iterable", py::type_name(v)))
}

/// Python's `len()` of a value that has one.
pub(super) fn py_len(v: &Value) -> PyResult<usize> {
    match v {
        Value::Array(items) => Ok(items.len()),
        Value::Object(map) => Ok(map.len()),
        Value::String(s) => Ok(s.chars().count()),
        other => Err(PyErr::type_error(format!(
            "object of type '{}' has no len()",
            py::type_name(other)
        ))),
    }
}

/// A `List[Model]` field of the `Reservation` being validated.
fn check_list(check: &mut Validator, loc: &str, items: &Items, model: &Model) -> Value {
    let raw = match items {
        Items::Models(_) => return items.to_value(),
        Items::Raw(raw) => *raw,
    };
    match raw {
        Value::Array(list) => Value::Array(
            list.iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::Object(fields) => model.check(fields, &format!("{loc}.{i}."), check),
                    other => {
                        check.model_type(&format!("{loc}.{i}"), other, model.name);
                        Value::Null
                    }
                })
                .collect(),
        ),
        other => {
            check.list_type(loc, other);
            Value::Null
        }
    }
}

/// What `book_reservation` builds its `Reservation` from.
pub(super) struct Booking<'a> {
    pub id: &'a str,
    pub user_id: &'a str,
    pub created_at: &'a str,
    pub args: &'a Map<String, Value>,
    pub passengers: &'a Items<'a>,
    pub payments: &'a Items<'a>,
}

/// `Reservation(...)` with no flights yet: validates the arguments the
/// model receives and returns its dump (declaration order, coerced ints).
pub(super) fn new_reservation(b: &Booking) -> PyResult<Value> {
    let arg = |name: &str| b.args.get(name).unwrap_or(&Value::Null);
    let mut check = Validator::new();
    check.str("origin", arg("origin"));
    check.str("destination", arg("destination"));
    check.literal(
        "flight_type",
        arg("flight_type"),
        &["round_trip", "one_way"],
    );
    check.literal("cabin", arg("cabin"), CABINS);
    let passengers = check_list(
        &mut check,
        "passengers",
        b.passengers,
        &super::args::PASSENGER,
    );
    let payments = check_list(&mut check, "payment_history", b.payments, &PAYMENT);
    let total_baggages = check.int("total_baggages", arg("total_baggages"));
    let nonfree_baggages = check.int("nonfree_baggages", arg("nonfree_baggages"));
    check.literal("insurance", arg("insurance"), &["yes", "no"]);
    finish(check, "Reservation")?;
    Ok(json!({
        "reservation_id": b.id,
        "user_id": b.user_id,
        "origin": arg("origin"),
        "destination": arg("destination"),
        "flight_type": arg("flight_type"),
        "cabin": arg("cabin"),
        "flights": [],
        "passengers": passengers,
        "payment_history": payments,
        "created_at": b.created_at,
        "total_baggages": total_baggages,
        "nonfree_baggages": nonfree_baggages,
        "insurance": arg("insurance"),
        "status": null,
    }))
}

/// `Payment(payment_id=..., amount=...)` for an amount the tool computed.
pub(super) fn payment(payment_id: &Value, amount: Value) -> PyResult<Value> {
    let mut input = Map::new();
    input.insert("payment_id".into(), payment_id.clone());
    input.insert("amount".into(), amount);
    PAYMENT.build(&input)
}
