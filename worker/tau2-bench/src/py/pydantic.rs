//! pydantic (v2.14) validation as the official tools trigger it when they
//! build a model from the model's arguments, with pydantic's error text.

use serde_json::Value;

use super::{repr, type_name};

/// The pydantic minor version whose error links the reference prints.
pub const PYDANTIC_DOCS: &str = "https://errors.pydantic.dev/2.14/v";

/// One failed field.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldError {
    /// Location, e.g. `title` or `flights.0.date`.
    pub loc: String,
    pub msg: String,
    pub kind: &'static str,
    /// The offending input; `None` for a missing field (pydantic shows the whole input then).
    pub input: Value,
}

/// A `pydantic_core.ValidationError` for model `title`.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidationError {
    pub title: String,
    pub errors: Vec<FieldError>,
}

impl std::fmt::Display for ValidationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.errors.len();
        write!(
            f,
            "{n} validation error{} for {}",
            if n == 1 { "" } else { "s" },
            self.title
        )?;
        for e in &self.errors {
            write!(
                f,
                "\n{}\n  {} [type={}, input_value={}, input_type={}]\n    For further information visit {}/{}",
                e.loc,
                e.msg,
                e.kind,
                truncated_repr(&e.input),
                type_name(&e.input),
                PYDANTIC_DOCS,
                e.kind
            )?;
        }
        Ok(())
    }
}

/// pydantic-core shortens long input reprs to their first 25 and last 24 characters.
pub fn truncated_repr(v: &Value) -> String {
    let r = repr(v);
    let chars: Vec<char> = r.chars().collect();
    if chars.len() <= 50 {
        return r;
    }
    let head: String = chars[..25].iter().collect();
    let tail: String = chars[chars.len() - 24..].iter().collect();
    format!("{head}...{tail}")
}

/// Collects field errors while a model is validated.
#[derive(Debug, Default)]
pub struct Validator {
    errors: Vec<FieldError>,
}

impl Validator {
    pub fn new() -> Self {
        Self::default()
    }

    /// A `str` field (strict about type: pydantic does not turn numbers into strings).
    pub fn str(&mut self, loc: &str, v: &Value) {
        if !v.is_string() {
            self.fail(loc, "Input should be a valid string", "string_type", v);
        }
    }

    /// An `Optional[str]` field.
    pub fn opt_str(&mut self, loc: &str, v: &Value) {
        if !v.is_null() {
            self.str(loc, v);
        }
    }

    /// A `Literal[...]` of strings.
    pub fn literal(&mut self, loc: &str, v: &Value, allowed: &[&str]) {
        if v.as_str().is_some_and(|s| allowed.contains(&s)) {
            return;
        }
        let quoted: Vec<String> = allowed.iter().map(|a| format!("'{a}'")).collect();
        let expected = match quoted.as_slice() {
            [one] => one.clone(),
            [init @ .., last] => format!("{} or {last}", init.join(", ")),
            [] => String::new(),
        };
        self.fail(
            loc,
            &format!("Input should be {expected}"),
            "literal_error",
            v,
        );
    }

    /// An `int` field (lax mode): ints, bools, integral floats and integer
    /// strings pass. Returns the value the model stores.
    pub fn int(&mut self, loc: &str, v: &Value) -> Option<Value> {
        match lax_int(v) {
            Ok(n) => Some(n),
            Err((msg, kind)) => {
                self.fail(loc, msg, kind, v);
                None
            }
        }
    }

    /// A `float` field (lax mode): numbers, bools and numeric strings pass.
    pub fn float(&mut self, loc: &str, v: &Value) -> Option<f64> {
        match lax_float(v) {
            Ok(f) => Some(f),
            Err((msg, kind)) => {
                self.fail(loc, msg, kind, v);
                None
            }
        }
    }

    /// A required field the input lacks: pydantic shows the whole input.
    pub fn missing(&mut self, loc: &str, input: &Value) {
        self.fail(loc, "Field required", "missing", input);
    }

    /// A nested-model field given something other than a dict.
    pub fn model_type(&mut self, loc: &str, v: &Value, model: &str) {
        let msg = format!("Input should be a valid dictionary or instance of {model}");
        self.fail(loc, &msg, "model_type", v);
    }

    /// A `list[...]` field given something other than a list.
    pub fn list_type(&mut self, loc: &str, v: &Value) {
        self.fail(loc, "Input should be a valid list", "list_type", v);
    }

    pub fn fail(&mut self, loc: &str, msg: &str, kind: &'static str, input: &Value) {
        self.errors.push(FieldError {
            loc: loc.into(),
            msg: msg.into(),
            kind,
            input: input.clone(),
        });
    }

    /// The accumulated errors as a `ValidationError` for `title`, if any.
    pub fn finish(self, title: &str) -> Result<(), ValidationError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ValidationError {
                title: title.into(),
                errors: self.errors,
            })
        }
    }
}

type Rejection = (&'static str, &'static str);

const INT_TYPE: Rejection = ("Input should be a valid integer", "int_type");
const INT_PARSING: Rejection = (
    "Input should be a valid integer, unable to parse string as an integer",
    "int_parsing",
);
const FLOAT_PARSING: Rejection = (
    "Input should be a valid number, unable to parse string as a number",
    "float_parsing",
);

/// pydantic-core's lax `int` conversion.
pub fn lax_int(v: &Value) -> Result<Value, Rejection> {
    match v {
        Value::Bool(b) => Ok(Value::from(i64::from(*b))),
        Value::Number(n) if !n.is_f64() => Ok(v.clone()),
        Value::Number(n) => float_to_int(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => str_to_int(s).ok_or(INT_PARSING),
        _ => Err(INT_TYPE),
    }
}

/// A float becomes an int only without a fractional part and within i64.
fn float_to_int(f: f64) -> Result<Value, Rejection> {
    if !f.is_finite() {
        return Err(("Input should be a finite number", "finite_number"));
    }
    if f.fract() != 0.0 {
        return Err((
            "Input should be a valid integer, got a number with a fractional part",
            "int_from_float",
        ));
    }
    if f <= i64::MIN as f64 || f >= i64::MAX as f64 {
        return Err((
            "Unable to parse input string as an integer, exceeded maximum size",
            "int_parsing_size",
        ));
    }
    Ok(Value::from(f as i64))
}

/// An integer string: surrounding whitespace, a sign, `_` between digits,
/// and a `.0…` suffix are accepted (`" 5 "`, `"1_000"`, `"5.00"`).
fn str_to_int(s: &str) -> Option<Value> {
    let s = s.trim();
    let s = match s.split_once('.') {
        Some((int, frac)) if !frac.is_empty() && frac.bytes().all(|b| b == b'0') => int,
        Some(_) => return None,
        None => s,
    };
    let (negative, digits) = split_sign(s);
    let digits = python_digits(digits)?;
    let magnitude: i128 = digits.parse().ok()?;
    let n = if negative { -magnitude } else { magnitude };
    i64::try_from(n)
        .map(Value::from)
        .ok()
        .or_else(|| u64::try_from(n).ok().map(Value::from))
}

/// pydantic-core's lax `float` conversion.
pub fn lax_float(v: &Value) -> Result<f64, Rejection> {
    match v {
        Value::Bool(b) => Ok(f64::from(u8::from(*b))),
        Value::Number(n) => Ok(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => str_to_float(s).ok_or(FLOAT_PARSING),
        _ => Err(("Input should be a valid number", "float_type")),
    }
}

fn str_to_float(s: &str) -> Option<f64> {
    let s = s.trim();
    let (negative, body) = split_sign(s);
    let sign = if negative { -1.0 } else { 1.0 };
    match body.to_ascii_lowercase().as_str() {
        "inf" | "infinity" => return Some(sign * f64::INFINITY),
        "nan" => return Some(f64::NAN),
        _ => {}
    }
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let mut text = String::from(if negative { "-" } else { "" });
    if !int.is_empty() {
        text.push_str(&python_digits(int)?);
    }
    text.push('.');
    if !frac.is_empty() {
        text.push_str(&python_digits(frac)?);
    }
    text.push('0');
    if let Some(exp) = exponent {
        let (neg_exp, exp_digits) = split_sign(exp);
        text.push('e');
        if neg_exp {
            text.push('-');
        }
        text.push_str(&python_digits(exp_digits)?);
    }
    text.parse().ok()
}

fn split_sign(s: &str) -> (bool, &str) {
    match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    }
}

/// ASCII digits with single underscores between them, underscores removed.
fn python_digits(s: &str) -> Option<String> {
    let ok = !s.is_empty()
        && !s.starts_with('_')
        && !s.ends_with('_')
        && !s.contains("__")
        && s.bytes().all(|b| b.is_ascii_digit() || b == b'_');
    ok.then(|| s.replace('_', ""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lax_numbers_coerce_like_pydantic() {
        assert_eq!(lax_int(&json!(" 1_000 ")), Ok(json!(1000)));
        assert_eq!(lax_int(&json!("5.00")), Ok(json!(5)));
        assert_eq!(lax_int(&json!(true)), Ok(json!(1)));
        assert_eq!(lax_int(&json!(4.0)), Ok(json!(4)));
        assert_eq!(lax_int(&json!("5.")).map_err(|e| e.1), Err("int_parsing"));
        assert_eq!(lax_int(&json!(5.5)).map_err(|e| e.1), Err("int_from_float"));
        assert_eq!(
            lax_int(&json!(1e20)).map_err(|e| e.1),
            Err("int_parsing_size")
        );
        assert_eq!(lax_int(&json!(null)).map_err(|e| e.1), Err("int_type"));
        assert_eq!(lax_float(&json!(" .5 ")), Ok(0.5));
        assert_eq!(lax_float(&json!("1e3")), Ok(1000.0));
        assert_eq!(lax_float(&json!(false)), Ok(0.0));
        assert_eq!(
            lax_float(&json!("1__0")).map_err(|e| e.1),
            Err("float_parsing")
        );
        assert_eq!(lax_float(&json!([])).map_err(|e| e.1), Err("float_type"));
        let mut v = Validator::new();
        assert_eq!(v.int("amount", &json!("7")), Some(json!(7)));
        v.missing("dob", &json!({"first_name": "A"}));
        v.model_type("passengers.1", &json!("x"), "Passenger");
        v.list_type("flights", &json!(3));
        let err = v.finish("Reservation").expect_err("three errors");
        assert_eq!(
            err.to_string(),
            "3 validation errors for Reservation\ndob\n  Field required [type=missing, input_value={'first_name': 'A'}, input_type=dict]\n    For further information visit https://errors.pydantic.dev/2.14/v/missing\npassengers.1\n  Input should be a valid dictionary or instance of Passenger [type=model_type, input_value='x', input_type=str]\n    For further information visit https://errors.pydantic.dev/2.14/v/model_type\nflights\n  Input should be a valid list [type=list_type, input_value=3, input_type=int]\n    For further information visit https://errors.pydantic.dev/2.14/v/list_type"
        );
    }

    #[test]
    fn messages_match_pydantic() {
        let mut v = Validator::new();
        v.str("title", &json!({"a": "b".repeat(80)}));
        v.opt_str("description", &json!(3.5));
        v.literal("status", &json!("bogus"), &["pending", "completed"]);
        let err = v.finish("Task").expect_err("three errors");
        assert_eq!(
            err.to_string(),
            "3 validation errors for Task\ntitle\n  Input should be a valid string [type=string_type, input_value={'a': 'bbbbbbbbbbbbbbbbbb...bbbbbbbbbbbbbbbbbbbbbb'}, input_type=dict]\n    For further information visit https://errors.pydantic.dev/2.14/v/string_type\ndescription\n  Input should be a valid string [type=string_type, input_value=3.5, input_type=float]\n    For further information visit https://errors.pydantic.dev/2.14/v/string_type\nstatus\n  Input should be 'pending' or 'completed' [type=literal_error, input_value='bogus', input_type=str]\n    For further information visit https://errors.pydantic.dev/2.14/v/literal_error"
        );
    }
}
