//! Python semantics the official tau2-bench leaks into what the model sees.
//!
//! The official tools are Python methods called with the model's JSON
//! arguments as keyword arguments, without validation; their exceptions
//! become `Error: <message>` tool results. To give byte-identical results we
//! reproduce the few Python behaviours involved: `json.dumps`, `str()` and
//! `repr()` of values, equality, hashability, and CPython's argument-binding
//! errors.

mod bigint;
pub mod calc;
pub mod call;
pub mod json;
pub mod pydantic;

use serde_json::Value;

/// Python's name for the type a JSON value becomes (`type(x).__name__`).
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "NoneType",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

/// Whether Python can hash the value (dict keys, `in` on a dict).
pub fn is_hashable(v: &Value) -> bool {
    !matches!(v, Value::Array(_) | Value::Object(_))
}

/// The `TypeError` message for using an unhashable value as a key.
pub fn unhashable(v: &Value) -> String {
    format!("unhashable type: '{}'", type_name(v))
}

/// Python's `str(x)`.
pub fn str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => repr(other),
    }
}

/// Python's `repr(x)`.
pub fn repr(v: &Value) -> String {
    let mut out = String::new();
    write_repr(&mut out, v);
    out
}

fn write_repr(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("None"),
        Value::Bool(true) => out.push_str("True"),
        Value::Bool(false) => out.push_str("False"),
        Value::Number(n) if n.is_f64() => out.push_str(
            &json::float_repr(n.as_f64().unwrap_or(f64::NAN))
                .replace("Infinity", "inf")
                .replace("NaN", "nan"),
        ),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => out.push_str(&str_repr(s)),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_repr(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&str_repr(k));
                out.push_str(": ");
                write_repr(out, item);
            }
            out.push('}');
        }
    }
}

/// Python's `repr(str)`: single quotes unless the text has a single quote and
/// no double quote; backslash escapes for quotes, `\\`, `\n`, `\r`, `\t` and
/// other non-printable characters.
pub fn str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if is_unprintable(c) => {
                let code = c as u32;
                if code <= 0xff {
                    out.push_str(&format!("\\x{code:02x}"));
                } else if code <= 0xffff {
                    out.push_str(&format!("\\u{code:04x}"));
                } else {
                    out.push_str(&format!("\\U{code:08x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// The characters `str.isprintable()` rejects that appear in practice:
/// C1 controls, the no-break space and the Unicode separators.
fn is_unprintable(c: char) -> bool {
    matches!(c as u32, 0x80..=0xa0 | 0xad | 0x2028 | 0x2029 | 0x200b..=0x200f | 0xfeff)
}

/// Python's `==` on JSON values: numbers compare by value across int, float
/// and bool (`1 == 1.0 == True`); lists element-wise; dicts by key set.
pub fn eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| eq(v, w)))
        }
        _ => match (as_number(a), as_number(b)) {
            (Some(x), Some(y)) => x == y,
            _ => false,
        },
    }
}

/// A number (or bool) as Python compares it.
pub fn as_number(v: &Value) -> Option<Num> {
    match v {
        Value::Bool(b) => Some(Num::Int(i128::from(*b))),
        Value::Number(n) => {
            if n.is_f64() {
                n.as_f64().map(Num::Float)
            } else if let Some(i) = n.as_i64() {
                Some(Num::Int(i128::from(i)))
            } else {
                n.as_u64().map(|u| Num::Int(i128::from(u)))
            }
        }
        _ => None,
    }
}

/// A Python int or float.
#[derive(Clone, Copy, Debug)]
pub enum Num {
    Int(i128),
    Float(f64),
}

impl Num {
    pub fn as_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }
}

impl PartialEq for Num {
    fn eq(&self, other: &Self) -> bool {
        match (*self, *other) {
            (Num::Int(a), Num::Int(b)) => a == b,
            (a, b) => a.as_f64() == b.as_f64(),
        }
    }
}

impl PartialOrd for Num {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        match (*self, *other) {
            (Num::Int(a), Num::Int(b)) => a.partial_cmp(&b),
            (a, b) => a.as_f64().partial_cmp(&b.as_f64()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn repr_and_str_match_python() {
        assert_eq!(
            repr(&json!({"a": [1, 2.5, null, true], "b'": "it's"})),
            r#"{'a': [1, 2.5, None, True], "b'": "it's"}"#
        );
        assert_eq!(str_repr("a'b\"c"), r#"'a\'b"c'"#);
        assert_eq!(str_repr("tab\there\u{1}"), r"'tab\there\x01'");
        assert_eq!(str(&json!("plain")), "plain");
        assert_eq!(str(&json!(1e-5)), "1e-05");
    }

    #[test]
    fn equality_crosses_numeric_types_like_python() {
        assert!(eq(&json!(2), &json!(2.0)));
        assert!(eq(&json!(true), &json!(1)));
        assert!(!eq(&json!("2"), &json!(2)));
        assert!(eq(
            &json!({"a": 1, "b": [1.0]}),
            &json!({"b": [1], "a": 1.0})
        ));
        assert_eq!(type_name(&json!(1.0)), "float");
        assert!(!is_hashable(&json!([1])));
    }
}
