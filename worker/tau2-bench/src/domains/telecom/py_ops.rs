//! The few Python operations the telecom toolkits apply to values that may
//! come straight from the model's arguments: truthiness, attribute access on
//! the wrong type, arithmetic and comparisons with their `TypeError`s, and
//! `%.2f` / `round(x, 2)`.

use serde_json::{Map, Value};

use crate::env::{PyErr, PyResult};
use crate::py::{self, Num};

/// A bound argument (`None` when an optional one was not passed).
pub fn arg<'a>(args: &'a Map<String, Value>, name: &str) -> &'a Value {
    field(args, name)
}

/// A model's field (`None` if absent; indexing a `Map` would panic).
pub fn field<'a>(model: &'a Map<String, Value>, name: &str) -> &'a Value {
    model.get(name).unwrap_or(&Value::Null)
}

/// `bool(x)`.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
    }
}

/// `AttributeError` for `x.attr` on a value that lacks it.
pub fn no_attr(v: &Value, attr: &str) -> PyErr {
    PyErr::attribute(format!(
        "'{}' object has no attribute '{attr}'",
        py::type_name(v)
    ))
}

/// The text of a value on which the code calls a `str` method (`x.lower()`).
pub fn str_for<'a>(v: &'a Value, method: &str) -> PyResult<&'a str> {
    v.as_str().ok_or_else(|| no_attr(v, method))
}

/// A pydantic model held in the JSON (a dict), or `AttributeError` for
/// `x.attr` when a tool stored a non-model value there.
pub fn model<'a>(v: &'a Value, attr: &str) -> PyResult<&'a Map<String, Value>> {
    v.as_object().ok_or_else(|| no_attr(v, attr))
}

/// Mutable access to a model held in the JSON, as [`model`].
pub fn model_mut<'a>(v: &'a mut Value, attr: &str) -> PyResult<&'a mut Map<String, Value>> {
    match v {
        Value::Object(m) => Ok(m),
        other => Err(no_attr(other, attr)),
    }
}

/// A number as Python sees `int`, `float` and `bool`; `None` for other types.
pub fn number(v: &Value) -> Option<Num> {
    py::as_number(v)
}

/// `TypeError` for a comparison between unsupported types.
pub fn cannot_compare(op: &str, a: &Value, b: &Value) -> PyErr {
    PyErr::type_error(format!(
        "'{op}' not supported between instances of '{}' and '{}'",
        py::type_name(a),
        py::type_name(b)
    ))
}

/// `a <op> b` for numbers (`<=`, `<`, `>=`), else Python's `TypeError`.
pub fn compare(op: &str, a: &Value, b: &Value) -> PyResult<bool> {
    let (Some(x), Some(y)) = (number(a), number(b)) else {
        return Err(cannot_compare(op, a, b));
    };
    Ok(match op {
        "<=" => x <= y,
        "<" => x < y,
        ">=" => x >= y,
        _ => x > y,
    })
}

/// `a + b` for numbers: an `int` when both are ints (or bools), else a `float`.
pub fn add(a: &Value, b: &Value) -> PyResult<Value> {
    match (number(a), number(b)) {
        (Some(Num::Int(x)), Some(Num::Int(y))) => Ok(int_value(x + y)),
        (Some(x), Some(y)) => Ok(float_value(x.as_f64() + y.as_f64())),
        _ => Err(binary_op_error("+", a, b)),
    }
}

/// `a - b` for numbers, as [`add`].
pub fn sub(a: &Value, b: &Value) -> PyResult<Value> {
    match (number(a), number(b)) {
        (Some(Num::Int(x)), Some(Num::Int(y))) => Ok(int_value(x - y)),
        (Some(x), Some(y)) => Ok(float_value(x.as_f64() - y.as_f64())),
        _ => Err(binary_op_error("-", a, b)),
    }
}

fn binary_op_error(op: &str, a: &Value, b: &Value) -> PyErr {
    PyErr::type_error(format!(
        "unsupported operand type(s) for {op}: '{}' and '{}'",
        py::type_name(a),
        py::type_name(b)
    ))
}

fn int_value(i: i128) -> Value {
    i64::try_from(i)
        .map(Value::from)
        .or_else(|_| u64::try_from(i).map(Value::from))
        .unwrap_or_else(|_| float_value(i as f64))
}

/// A float as JSON. `serde_json` cannot hold infinities, which only an
/// overflow of absurd inputs (> 1e307) produces; they saturate.
pub fn float_value(f: f64) -> Value {
    let f = if f.is_finite() {
        f
    } else {
        f.signum() * f64::MAX
    };
    serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
}

/// Python's `f"{x:.2f}"`.
pub fn fixed2(f: f64) -> String {
    if f.is_nan() {
        "nan".into()
    } else if f.is_infinite() {
        if f > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        // Rust, like CPython, rounds the exact binary value half-to-even.
        format!("{f:.2}")
    }
}

/// Python's `round(x, 2)`: the float nearest to the correctly rounded decimal.
pub fn round2(f: f64) -> f64 {
    fixed2(f).parse().unwrap_or(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn python_operations() {
        assert!(!truthy(&json!("")) && truthy(&json!([0])) && !truthy(&json!(0.0)));
        assert_eq!(
            compare("<=", &json!("5"), &json!(0)).map_err(|e| e.message),
            Err("'<=' not supported between instances of 'str' and 'int'".into())
        );
        assert_eq!(add(&json!(0.0), &json!(2)).ok(), Some(json!(2.0)));
        assert_eq!(add(&json!(true), &json!(2)).ok(), Some(json!(3)));
        assert_eq!(fixed2(0.125), "0.12");
        assert_eq!(round2(55.00000000000001), 55.0);
        assert_eq!(
            no_attr(&json!(null), "apn_name").message,
            "'NoneType' object has no attribute 'apn_name'"
        );
    }
}
