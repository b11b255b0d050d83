//! Python's `json.dumps` over template values, as transformers' `tojson`
//! filter calls it (`ensure_ascii=False`, `indent=None`, default separators,
//! insertion order). Chat templates embed tool schemas and tool-call
//! arguments with it, so every byte must match what the model was trained on.

use std::fmt::Write as _;

use minijinja::value::ValueKind;
use minijinja::{Error, ErrorKind, Value};

/// The `json.dumps` keyword arguments transformers' `tojson` forwards.
#[derive(Clone, Debug)]
pub struct DumpOptions {
    pub ensure_ascii: bool,
    /// `None`: one line. `Some(s)`: a newline plus `s` per nesting level.
    pub indent: Option<String>,
    pub item_separator: String,
    pub key_separator: String,
    pub sort_keys: bool,
}

impl Default for DumpOptions {
    fn default() -> Self {
        Self {
            ensure_ascii: false,
            indent: None,
            item_separator: ", ".into(),
            key_separator: ": ".into(),
            sort_keys: false,
        }
    }
}

impl DumpOptions {
    /// Python picks `","` instead of `", "` when an indent is given and no
    /// separators are (the newline already separates items).
    pub fn with_indent(mut self, indent: Option<String>) -> Self {
        if indent.is_some() {
            self.item_separator = ",".into();
        }
        self.indent = indent;
        self
    }
}

/// `json.dumps(value, **options)`.
pub fn dumps(value: &Value, options: &DumpOptions) -> Result<String, Error> {
    let mut out = String::new();
    write_value(&mut out, value, options, 0)?;
    Ok(out)
}

fn unserializable(value: &Value) -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        format!("Object of type {} is not JSON serializable", value.kind()),
    )
}

fn write_value(
    out: &mut String,
    value: &Value,
    o: &DumpOptions,
    depth: usize,
) -> Result<(), Error> {
    match value.kind() {
        ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number => write_number(out, value),
        ValueKind::String => write_string(out, value.as_str().unwrap_or_default(), o.ensure_ascii),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = value.try_iter()?.collect();
            write_container(out, '[', ']', items.len(), o, depth, |out, i| {
                write_value(out, &items[i], o, depth + 1)
            })?;
        }
        ValueKind::Map => {
            let mut entries = Vec::new();
            for key in value.try_iter()? {
                let item = value.get_item(&key)?;
                entries.push((map_key(&key)?, item));
            }
            if o.sort_keys {
                // Python orders str keys by code point, i.e. UTF-8 byte order.
                entries.sort_by(|a, b| a.0.cmp(&b.0));
            }
            write_container(out, '{', '}', entries.len(), o, depth, |out, i| {
                write_string(out, &entries[i].0, o.ensure_ascii);
                out.push_str(&o.key_separator);
                write_value(out, &entries[i].1, o, depth + 1)
            })?;
        }
        _ => return Err(unserializable(value)),
    }
    Ok(())
}

fn write_container(
    out: &mut String,
    open: char,
    close: char,
    len: usize,
    o: &DumpOptions,
    depth: usize,
    mut item: impl FnMut(&mut String, usize) -> Result<(), Error>,
) -> Result<(), Error> {
    out.push(open);
    if len == 0 {
        out.push(close);
        return Ok(());
    }
    let newline = |out: &mut String, level: usize| {
        if let Some(indent) = &o.indent {
            out.push('\n');
            for _ in 0..level {
                out.push_str(indent);
            }
        }
    };
    for i in 0..len {
        if i > 0 {
            out.push_str(&o.item_separator);
        }
        newline(out, depth + 1);
        item(out, i)?;
    }
    newline(out, depth);
    out.push(close);
    Ok(())
}

/// Python converts non-string keys: `True` -> `"true"`, `None` -> `"null"`,
/// numbers to their text.
fn map_key(key: &Value) -> Result<String, Error> {
    match key.kind() {
        ValueKind::String => Ok(key.as_str().unwrap_or_default().to_string()),
        ValueKind::None => Ok("null".into()),
        ValueKind::Bool => Ok(if key.is_true() { "true" } else { "false" }.into()),
        ValueKind::Number => {
            let mut s = String::new();
            write_number(&mut s, key);
            Ok(s)
        }
        _ => Err(Error::new(
            ErrorKind::InvalidOperation,
            format!(
                "keys must be str, int, float, bool or None, not {}",
                key.kind()
            ),
        )),
    }
}

fn write_number(out: &mut String, value: &Value) {
    if value.is_integer() {
        let _ = write!(out, "{value}");
    } else {
        match f64::try_from(value.clone()) {
            Ok(f) => out.push_str(&float_repr(f)),
            Err(_) => {
                let _ = write!(out, "{value}");
            }
        }
    }
}

/// A JSON string literal the way Python escapes it.
pub fn write_string(out: &mut String, s: &str, ensure_ascii: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20
                || (ensure_ascii && !c.is_ascii())
                || (ensure_ascii && c == '\u{7f}') =>
            {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `repr(float)`: shortest round-trip digits; positional for decimal
/// exponents -4..16, else `d.ddde±XX`; NaN/Infinity as `json` writes them.
pub fn float_repr(f: f64) -> String {
    if !f.is_finite() {
        return match (f.is_nan(), f > 0.0) {
            (true, _) => "NaN",
            (false, true) => "Infinity",
            (false, false) => "-Infinity",
        }
        .into();
    }
    let sign = if f.is_sign_negative() { "-" } else { "" };
    // `{:e}` is Rust's shortest round-trip form too, e.g. "1.2345e-7".
    let sci = format!("{:e}", f.abs());
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let digits = mantissa.replace('.', "");
    if f == 0.0 {
        return format!("{sign}0.0");
    }
    if !(-4..16).contains(&exponent) {
        let rest = &digits[1..];
        let dot = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let esign = if exponent < 0 { '-' } else { '+' };
        return format!("{sign}{}{dot}e{esign}{:02}", &digits[..1], exponent.abs());
    }
    let int_len = exponent + 1;
    if int_len <= 0 {
        let zeros = "0".repeat(int_len.unsigned_abs() as usize);
        format!("{sign}0.{zeros}{digits}")
    } else {
        let int_len = int_len as usize;
        if digits.len() <= int_len {
            format!("{sign}{digits}{}.0", "0".repeat(int_len - digits.len()))
        } else {
            format!("{sign}{}.{}", &digits[..int_len], &digits[int_len..])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(json: serde_json::Value) -> Value {
        Value::from(minijinja::value::Serde(&json))
    }

    #[test]
    fn python_spacing_order_and_unicode() {
        let value =
            v(serde_json::json!({"z": [1, 2.5, null, true], "a": "café \"q\"\n\u{1}", "m": {}}));
        assert_eq!(
            dumps(&value, &DumpOptions::default()).expect("succeeds"),
            r#"{"z": [1, 2.5, null, true], "a": "café \"q\"\n\u0001", "m": {}}"#
        );
        let ascii = DumpOptions {
            ensure_ascii: true,
            sort_keys: true,
            ..Default::default()
        };
        assert_eq!(
            dumps(&v(serde_json::json!({"b": "é😀", "a": 1})), &ascii).expect("succeeds"),
            r#"{"a": 1, "b": "\u00e9\ud83d\ude00"}"#
        );
    }

    #[test]
    fn indent_uses_python_separators() {
        let value = v(serde_json::json!({"a": [1, []], "b": {}}));
        let o = DumpOptions::default().with_indent(Some("  ".into()));
        assert_eq!(
            dumps(&value, &o).expect("succeeds"),
            "{\n  \"a\": [\n    1,\n    []\n  ],\n  \"b\": {}\n}"
        );
    }

    #[test]
    fn floats_match_python_repr() {
        for (f, want) in [
            (1.0, "1.0"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (1e16, "1e+16"),
            (1234567890123456.0, "1234567890123456.0"),
            (-2.5e-7, "-2.5e-07"),
            (-0.0, "-0.0"),
            (f64::NEG_INFINITY, "-Infinity"),
        ] {
            assert_eq!(float_repr(f), want);
        }
    }

    #[test]
    fn undefined_is_not_serializable() {
        assert!(dumps(&Value::UNDEFINED, &DumpOptions::default()).is_err());
    }
}
