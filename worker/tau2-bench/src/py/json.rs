//! JSON text exactly as Python's `json.dumps` writes it with its defaults:
//! `", "` and `": "` separators, non-ASCII escaped as `\uXXXX`, floats as
//! `repr(float)` (`100.0`, `1e-05`, `Infinity`), keys in insertion order or
//! sorted (`sort_keys=True`). Tool results and DB hashes depend on every byte.

use serde_json::{Map, Number, Value};

/// `json.dumps(value)`.
pub fn dumps(value: &Value) -> String {
    let mut out = String::with_capacity(64);
    write_value(&mut out, value, false);
    out
}

/// `json.dumps(value, sort_keys=True)`.
pub fn dumps_sorted(value: &Value) -> String {
    let mut out = String::with_capacity(1024);
    write_value(&mut out, value, true);
    out
}

pub(crate) fn write_value(out: &mut String, value: &Value, sort_keys: bool) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value(out, item, sort_keys);
            }
            out.push(']');
        }
        Value::Object(map) => write_object(out, map, sort_keys),
    }
}

fn write_object(out: &mut String, map: &Map<String, Value>, sort_keys: bool) {
    out.push('{');
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    if sort_keys {
        // Python compares str by code point, which is UTF-8 byte order.
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    }
    for (i, (key, value)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_str(out, key);
        out.push_str(": ");
        write_value(out, value, sort_keys);
    }
    out.push('}');
}

fn write_number(out: &mut String, n: &Number) {
    if let Some(f) = n.as_f64().filter(|_| n.is_f64()) {
        out.push_str(&float_repr(f));
    } else {
        out.push_str(&n.to_string());
    }
}

/// A JSON string literal with `ensure_ascii=True` escaping.
pub fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
}

/// Python's `repr(float)`: the shortest digits that round-trip, in fixed
/// notation when the exponent is in [-4, 16), else scientific (`1e-05`, `1e+16`).
pub fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    // Rust's `{:e}` is also shortest round-trip: "d.ddde-N".
    let sci = nearest_shortest(f, format!("{f:e}"));
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if negative { "-" } else { "" };
    if (-4..16).contains(&exp) {
        let point = exp + 1; // digits before the decimal point
        let body = if point <= 0 {
            format!("0.{}{}", "0".repeat(point.unsigned_abs() as usize), digits)
        } else if point as usize >= digits.len() {
            format!("{}{}.0", digits, "0".repeat(point as usize - digits.len()))
        } else {
            let (int, frac) = digits.split_at(point as usize);
            format!("{int}.{frac}")
        };
        format!("{sign}{body}")
    } else {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let exp_sign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{first}{frac}e{exp_sign}{:02}", exp.unsigned_abs())
    }
}

/// Among shortest round-trip digit strings, Python's repr takes the one
/// nearest the exact value, ties to even (`1457813356820689.25` gives
/// `...689.2`); Rust's shortest may take the other. The correctly rounded
/// string of the same length is Python's, when it round-trips. Two strings
/// of one length can only both round-trip from 16 digits on.
fn nearest_shortest(f: f64, sci: String) -> String {
    let digits = sci
        .split('e')
        .next()
        .map_or(0, |m| m.chars().filter(char::is_ascii_digit).count());
    if digits < 16 {
        return sci;
    }
    let rounded = format!("{:.*e}", digits - 1, f);
    if rounded.parse::<f64>() == Ok(f) {
        rounded
    } else {
        sci
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn floats_print_as_python_repr() {
        let cases = [
            (100.0, "100.0"),
            (8.7, "8.7"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (1e16, "1e+16"),
            (1234567890123456.0, "1234567890123456.0"),
            (-2.5e-7, "-2.5e-07"),
            (123456789.125, "123456789.125"),
            (1.5e300, "1.5e+300"),
            (1457813356820689.0 + 0.25, "1457813356820689.2"),
            (-0.0, "-0.0"),
            (f64::INFINITY, "Infinity"),
        ];
        for (f, want) in cases {
            assert_eq!(float_repr(f), want, "{f:?}");
        }
    }

    #[test]
    fn dumps_matches_python_spacing_escaping_and_order() {
        let v = json!({"b": [1, 2.0, null, true], "a": "café \"x\"\n", "e": "😀"});
        assert_eq!(
            dumps(&v),
            r#"{"b": [1, 2.0, null, true], "a": "caf\u00e9 \"x\"\n", "e": "\ud83d\ude00"}"#
        );
        assert_eq!(
            dumps_sorted(&v),
            r#"{"a": "caf\u00e9 \"x\"\n", "b": [1, 2.0, null, true], "e": "\ud83d\ude00"}"#
        );
        assert_eq!(dumps(&json!({})), "{}");
        assert_eq!(dumps(&json!("\u{7f}\u{1f}")), r#""\u007f\u001f""#);
    }
}
