//! Binding a tool call's JSON arguments to a tool's parameters the way
//! CPython binds keyword arguments, with CPython's `TypeError` messages.

use serde_json::{Map, Value};

/// A tool's Python signature: its qualified name and parameters in order.
#[derive(Clone, Copy, Debug)]
pub struct Signature {
    /// `Class.method`, as CPython names it in argument errors.
    pub qualname: &'static str,
    pub params: &'static [Param],
}

/// One parameter; `required` is false when the Python signature has a default.
#[derive(Clone, Copy, Debug)]
pub struct Param {
    pub name: &'static str,
    pub required: bool,
}

/// A required parameter.
pub const fn req(name: &'static str) -> Param {
    Param {
        name,
        required: true,
    }
}

/// A parameter with a default.
pub const fn opt(name: &'static str) -> Param {
    Param {
        name,
        required: false,
    }
}

/// Arguments bound to a signature.
#[derive(Clone, Copy, Debug)]
pub struct Args<'a> {
    map: &'a Map<String, Value>,
}

impl<'a> Args<'a> {
    /// The argument, if the call passed it.
    pub fn get(&self, name: &str) -> Option<&'a Value> {
        self.map.get(name)
    }

    /// A required argument (binding guarantees it is present).
    pub fn req(&self, name: &str) -> &'a Value {
        self.map.get(name).unwrap_or(&Value::Null)
    }

    /// An optional argument; `None` (Python's default) when absent.
    pub fn opt(&self, name: &str) -> &'a Value {
        self.req(name)
    }
}

impl Signature {
    /// Binds keyword arguments as CPython does for `method(**kwargs)` on a
    /// bound method: an unknown keyword fails first, then missing ones.
    pub fn bind<'a>(&self, kwargs: &'a Map<String, Value>) -> Result<Args<'a>, String> {
        bind(
            self.qualname,
            self.params.iter().map(|p| (p.name, p.required)),
            kwargs,
        )
    }
}

/// Binds keyword arguments to `(name, required)` parameters of the method
/// `qualname`, with CPython's error for the first problem found.
pub fn bind<'a, I>(
    qualname: &str,
    params: I,
    kwargs: &'a Map<String, Value>,
) -> Result<Args<'a>, String>
where
    I: Iterator<Item = (&'static str, bool)> + Clone,
{
    for key in kwargs.keys() {
        if key == "self" {
            return Err(format!(
                "{qualname}() got multiple values for argument 'self'"
            ));
        }
        if !params.clone().any(|(name, _)| name == key) {
            return Err(format!(
                "{qualname}() got an unexpected keyword argument '{key}'"
            ));
        }
    }
    let missing: Vec<&str> = params
        .filter(|(name, required)| *required && !kwargs.contains_key(*name))
        .map(|(name, _)| name)
        .collect();
    if !missing.is_empty() {
        return Err(missing_message(qualname, &missing));
    }
    Ok(Args { map: kwargs })
}

fn missing_message(qualname: &str, missing: &[&str]) -> String {
    let quoted: Vec<String> = missing.iter().map(|m| format!("'{m}'")).collect();
    let names = match quoted.as_slice() {
        [one] => one.clone(),
        [a, b] => format!("{a} and {b}"),
        [init @ .., last] => format!("{}, and {last}", init.join(", ")),
        [] => String::new(),
    };
    let plural = if missing.len() == 1 { "" } else { "s" };
    format!(
        "{qualname}() missing {} required positional argument{plural}: {names}",
        missing.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SIG: Signature = Signature {
        qualname: "AirlineTools.search",
        params: &[req("origin"), req("destination"), req("date"), opt("cabin")],
    };

    fn bind(v: Value) -> Result<(), String> {
        let map = v.as_object().cloned().unwrap_or_default();
        SIG.bind(&map).map(|_| ())
    }

    #[test]
    fn errors_read_as_cpython_writes_them() {
        assert_eq!(
            bind(json!({"origin": "JFK"})),
            Err("AirlineTools.search() missing 2 required positional arguments: 'destination' and 'date'".into())
        );
        assert_eq!(
            bind(json!({})),
            Err("AirlineTools.search() missing 3 required positional arguments: 'origin', 'destination', and 'date'".into())
        );
        assert_eq!(
            bind(json!({"origin": "JFK", "dest": "LAX"})),
            Err("AirlineTools.search() got an unexpected keyword argument 'dest'".into())
        );
        assert_eq!(
            bind(json!({"self": 1})),
            Err("AirlineTools.search() got multiple values for argument 'self'".into())
        );
        assert_eq!(
            bind(json!({"origin": 1, "destination": 2, "date": 3})),
            Ok(())
        );
    }
}
