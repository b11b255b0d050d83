//! The bit of Python number semantics the tools' price arithmetic exposes
//! to wrongly typed arguments: ints and floats mix, bools count as ints,
//! and anything else is a `TypeError`.

use serde_json::{Number, Value};

use crate::env::{PyErr, PyResult};
use crate::py::{self, Num};

/// A JSON value as a Python number (`bool` is an `int`).
pub(super) fn num(v: &Value) -> Option<Num> {
    py::as_number(v)
}

fn unsupported(op: &str, a: &Value, b: &Value) -> PyErr {
    PyErr::type_error(format!(
        "unsupported operand type(s) for {op}: '{}' and '{}'",
        py::type_name(a),
        py::type_name(b)
    ))
}

/// `a - b`.
pub(super) fn sub_values(a: &Value, b: &Value) -> PyResult<Num> {
    match (num(a), num(b)) {
        (Some(x), Some(y)) => Ok(sub(x, y)),
        _ => Err(unsupported("-", a, b)),
    }
}

pub(super) fn add(a: Num, b: Num) -> Num {
    match (a, b) {
        (Num::Int(x), Num::Int(y)) => x
            .checked_add(y)
            .map_or(Num::Float(x as f64 + y as f64), Num::Int),
        _ => Num::Float(a.as_f64() + b.as_f64()),
    }
}

pub(super) fn sub(a: Num, b: Num) -> Num {
    add(a, neg(b))
}

pub(super) fn mul(a: Num, b: Num) -> Num {
    match (a, b) {
        (Num::Int(x), Num::Int(y)) => x
            .checked_mul(y)
            .map_or(Num::Float(x as f64 * y as f64), Num::Int),
        _ => Num::Float(a.as_f64() * b.as_f64()),
    }
}

pub(super) fn neg(a: Num) -> Num {
    match a {
        Num::Int(x) => x.checked_neg().map_or(Num::Float(-(x as f64)), Num::Int),
        Num::Float(f) => Num::Float(-f),
    }
}

/// `max(0, a)`: the int `0` unless `a` is greater.
pub(super) fn max0(a: Num) -> Num {
    if a > Num::Int(0) { a } else { Num::Int(0) }
}

pub(super) fn is_zero(a: Num) -> bool {
    a == Num::Int(0)
}

/// The JSON value of a Python number.
pub(super) fn to_value(n: Num) -> Value {
    match n {
        Num::Int(i) => i64::try_from(i)
            .map(Value::from)
            .or_else(|_| u64::try_from(i).map(Value::from))
            .unwrap_or_else(|_| float_value(i as f64)),
        Num::Float(f) => float_value(f),
    }
}

/// A float as JSON (non-finite floats have no JSON form; they cannot arise
/// from JSON arguments here).
pub(super) fn float_value(f: f64) -> Value {
    Number::from_f64(f).map_or(Value::Null, Value::Number)
}

/// `str(n)`.
pub(super) fn to_str(n: Num) -> String {
    py::str(&to_value(n))
}
