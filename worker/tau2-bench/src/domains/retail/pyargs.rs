//! How the official tools treat their unvalidated arguments: as dict keys,
//! as iterables (`for x in arg`, `arg.count(x)`, `len(arg)`, `sorted(arg)`)
//! and as strings (`arg.lower()`), with Python's errors for other types.

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::env::{PyErr, PyResult};
use crate::py;

/// The string to look up for `arg in some_dict`; `None` for a hashable
/// non-string (never a key), an error for an unhashable value.
pub fn dict_key(arg: &Value) -> PyResult<Option<&str>> {
    if !py::is_hashable(arg) {
        return Err(PyErr::type_error(py::unhashable(arg)));
    }
    Ok(arg.as_str())
}

/// An argument that Python can iterate: a list, a string (its characters)
/// or a dict (its keys).
#[derive(Clone, Copy)]
pub enum Iterable<'a> {
    List(&'a [Value]),
    Str(&'a str),
    Dict(&'a Map<String, Value>),
}

impl<'a> Iterable<'a> {
    /// `iter(arg)`.
    pub fn new(arg: &'a Value) -> PyResult<Self> {
        match arg {
            Value::Array(items) => Ok(Self::List(items)),
            Value::String(s) => Ok(Self::Str(s)),
            Value::Object(map) => Ok(Self::Dict(map)),
            other => Err(PyErr::type_error(format!(
                "'{}' object is not iterable",
                py::type_name(other)
            ))),
        }
    }

    /// The values `for x in arg` yields.
    pub fn items(self) -> Vec<Value> {
        match self {
            Self::List(items) => items.to_vec(),
            Self::Str(s) => s.chars().map(|c| Value::String(c.into())).collect(),
            Self::Dict(map) => map.keys().map(|k| Value::String(k.clone())).collect(),
        }
    }

    /// `arg.count(x)`: list equality count, non-overlapping substring count,
    /// and dicts have no `count`.
    pub fn count(self, x: &Value) -> PyResult<usize> {
        match self {
            Self::List(items) => Ok(count_eq(items, x)),
            Self::Str(s) => match x {
                Value::String(sub) => Ok(s.matches(sub.as_str()).count()),
                other => Err(PyErr::type_error(format!(
                    "must be str, not {}",
                    py::type_name(other)
                ))),
            },
            Self::Dict(_) => Err(PyErr::attribute("'dict' object has no attribute 'count'")),
        }
    }

    /// `sorted(arg)`. Only lists of strings get here (every element was
    /// matched against string ids), so comparing as strings suffices.
    pub fn sorted(self) -> Vec<Value> {
        let mut items = self.items();
        items.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
        items
    }
}

/// `list.count(x)` with Python equality.
pub fn count_eq(items: &[Value], x: &Value) -> usize {
    items.iter().filter(|v| py::eq(v, x)).count()
}

/// `len(arg)`.
pub fn len(arg: &Value) -> PyResult<usize> {
    match arg {
        Value::Array(items) => Ok(items.len()),
        Value::String(s) => Ok(s.chars().count()),
        Value::Object(map) => Ok(map.len()),
        other => Err(PyErr::type_error(format!(
            "object of type '{}' has no len()",
            py::type_name(other)
        ))),
    }
}

/// `arg.lower()`: only strings have it.
pub fn lower(arg: &Value) -> PyResult<Cow<'_, str>> {
    match arg {
        Value::String(s) => Ok(lowercase(s)),
        other => Err(PyErr::attribute(format!(
            "'{}' object has no attribute 'lower'",
            py::type_name(other)
        ))),
    }
}

/// Python's `str.lower()` (the full Unicode mapping, Final_Sigma included).
pub fn lowercase(s: &str) -> Cow<'_, str> {
    if s.is_ascii() {
        if s.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(s.to_ascii_lowercase())
        } else {
            Cow::Borrowed(s)
        }
    } else {
        Cow::Owned(s.to_lowercase())
    }
}
