//! `APNSettings(**apn_settings)`: pydantic's lax validation of the model's
//! dict argument to `set_apn_settings`, with pydantic's error texts.

use serde_json::{Map, Value, json};

use crate::env::{PyErr, PyResult};
use crate::py::pydantic::Validator;

use super::user::DEFAULT_MMSC_URL;

/// The fields in declaration order with their defaults.
fn defaults() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("apn_name".into(), json!("internet"));
    m.insert("reset_at_reboot".into(), json!(false));
    m.insert("mms_apn".into(), json!("mms"));
    m.insert("mmsc_url".into(), json!(DEFAULT_MMSC_URL));
    m.insert("mms_proxy".into(), Value::Null);
    m.insert("mms_port".into(), Value::Null);
    m
}

/// A fresh `APNSettings()`.
pub fn default_settings() -> Value {
    Value::Object(defaults())
}

/// Validates the dict into the model's dump, or pydantic's `ValidationError`
/// (fields in declaration order, then the extra keys in input order).
pub fn validate(input: &Map<String, Value>) -> PyResult<Value> {
    let mut check = Validator::new();
    let mut out = defaults();
    for (field, slot) in out.iter_mut() {
        let Some(v) = input.get(field) else { continue };
        let parsed = match field.as_str() {
            "apn_name" => apn_name(v),
            "reset_at_reboot" => lax_bool(v),
            "mms_port" => optional(v, lax_int),
            _ => optional(v, strict_str),
        };
        match parsed {
            Ok(value) => *slot = value,
            Err((msg, kind)) => check.fail(field, msg, kind, v),
        }
    }
    for (key, v) in input {
        if !out.contains_key(key) {
            check.fail(key, "Extra inputs are not permitted", "extra_forbidden", v);
        }
    }
    check
        .finish("APNSettings")
        .map_err(|e| PyErr::new("ValidationError", e.to_string()))?;
    Ok(Value::Object(out))
}

type Check = Result<Value, (&'static str, &'static str)>;

fn apn_name(v: &Value) -> Check {
    match v.as_str() {
        Some(s @ ("internet" | "broken")) => Ok(json!(s)),
        _ => Err(("Input should be 'internet' or 'broken'", "enum")),
    }
}

fn optional(v: &Value, inner: fn(&Value) -> Check) -> Check {
    if v.is_null() {
        Ok(Value::Null)
    } else {
        inner(v)
    }
}

fn strict_str(v: &Value) -> Check {
    match v {
        Value::String(_) => Ok(v.clone()),
        _ => Err(("Input should be a valid string", "string_type")),
    }
}

const PARSE_BOOL: (&str, &str) = (
    "Input should be a valid boolean, unable to interpret input",
    "bool_parsing",
);

/// pydantic's lax `bool`: 0/1 numbers and yes/no words, case-insensitively.
fn lax_bool(v: &Value) -> Check {
    match v {
        Value::Bool(b) => Ok(json!(b)),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() != 0.0 => {
                Err(("Input should be a valid boolean", "bool_type"))
            }
            Some(0.0) => Ok(json!(false)),
            Some(1.0) => Ok(json!(true)),
            _ => Err(PARSE_BOOL),
        },
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "0" | "off" | "f" | "false" | "n" | "no" => Ok(json!(false)),
            "1" | "on" | "t" | "true" | "y" | "yes" => Ok(json!(true)),
            _ => Err(PARSE_BOOL),
        },
        _ => Err(("Input should be a valid boolean", "bool_type")),
    }
}

const PARSE_INT: (&str, &str) = (
    "Input should be a valid integer, unable to parse string as an integer",
    "int_parsing",
);

/// pydantic's lax `int`: bools, integral floats and integer strings.
fn lax_int(v: &Value) -> Check {
    match v {
        Value::Bool(b) => Ok(json!(i64::from(*b))),
        Value::Number(n) if !n.is_f64() => Ok(v.clone()),
        Value::Number(n) => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            if f.fract() != 0.0 {
                Err((
                    "Input should be a valid integer, got a number with a fractional part",
                    "int_from_float",
                ))
            } else if f.abs() >= 2f64.powi(63) {
                Err((
                    "Unable to parse input string as an integer, exceeded maximum size",
                    "int_parsing_size",
                ))
            } else {
                Ok(json!(f as i64))
            }
        }
        Value::String(s) => parse_int_text(s).map(Value::from).ok_or(PARSE_INT),
        _ => Err(("Input should be a valid integer", "int_type")),
    }
}

/// An integer string as pydantic reads it: surrounding whitespace, a sign,
/// `_` between digits, and a `.0…` suffix are allowed.
fn parse_int_text(s: &str) -> Option<i64> {
    let s = s.trim();
    let s = match s.split_once('.') {
        Some((int, zeros)) if !zeros.is_empty() && zeros.bytes().all(|c| c == b'0') => int,
        Some(_) => return None,
        None => s,
    };
    let (negative, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let well_formed = !digits.is_empty()
        && !digits.starts_with('_')
        && !digits.ends_with('_')
        && !digits.contains("__")
        && digits.bytes().all(|c| c.is_ascii_digit() || c == b'_');
    if !well_formed {
        return None;
    }
    let value: i64 = digits.replace('_', "").parse().ok()?;
    Some(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(v: Value) -> Result<Value, String> {
        validate(v.as_object().unwrap_or(&Map::new())).map_err(|e| e.message)
    }

    #[test]
    fn lax_values_convert_like_pydantic() {
        let ok = check(json!({"reset_at_reboot": "YES", "mms_port": " 8_0.00 ", "mmsc_url": null}));
        assert_eq!(
            ok,
            Ok(
                json!({"apn_name": "internet", "reset_at_reboot": true, "mms_apn": "mms",
                "mmsc_url": null, "mms_proxy": null, "mms_port": 80})
            )
        );
        assert_eq!(parse_int_text("80."), None);
        assert_eq!(parse_int_text("-0"), Some(0));
        assert_eq!(
            lax_bool(&json!(0.5)),
            Err(("Input should be a valid boolean", "bool_type"))
        );
        assert_eq!(lax_bool(&json!(2.0)), Err(PARSE_BOOL));
    }

    #[test]
    fn errors_list_fields_then_extras() {
        let err = check(json!({"zz": 1, "mms_port": "x", "apn_name": 3}))
            .err()
            .unwrap_or_default();
        assert!(err.contains("\nmms_port\n  Input should be a valid integer, unable to parse string as an integer [type=int_parsing, input_value='x', input_type=str]\n"));
        assert!(err.starts_with("3 validation errors for APNSettings\napn_name\n  Input should be 'internet' or 'broken' [type=enum, input_value=3, input_type=int]"));
        assert!(err.ends_with("zz\n  Extra inputs are not permitted [type=extra_forbidden, input_value=1, input_type=int]\n    For further information visit https://errors.pydantic.dev/2.14/v/extra_forbidden"));
    }
}
