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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
