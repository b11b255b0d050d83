//! Tool declarations: name, Python signature, docs and parameter types, from
//! which we derive both argument binding and the OpenAI function schema that
//! the official code generates with pydantic.

use serde_json::{Map, Value, json};

use crate::py::call::{Args, bind};
use crate::py::json::dumps;

/// The official tool categories.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ToolKind {
    Read,
    Write,
    Think,
    Generic,
}

/// A parameter's type, as its Python annotation.
#[derive(Clone, Copy, Debug)]
pub enum Ty {
    Str,
    Int,
    Float,
    Bool,
    /// `dict` (any JSON object).
    Dict,
    /// `list[T]`.
    List(&'static Ty),
    /// `Literal[...]` of strings.
    Literal(&'static [&'static str]),
    /// A schema written out by hand (nested models: `$ref`s into `defs`).
    Raw(fn() -> Value),
    /// No annotation (`Any`).
    Any,
}

/// One parameter of a tool.
#[derive(Clone, Copy, Debug)]
pub struct ParamSpec {
    pub name: &'static str,
    pub ty: Ty,
    /// The docstring's description of the parameter.
    pub doc: Option<&'static str>,
    /// The Python default, when the parameter has one (`Some(Value::Null)` for `= None`).
    pub default: Option<fn() -> Value>,
}

/// A tool as the official toolkit declares it.
#[derive(Clone, Copy, Debug)]
pub struct ToolSpec {
    pub name: &'static str,
    pub kind: ToolKind,
    /// `Class.method`, as CPython names it in argument errors.
    pub qualname: &'static str,
    /// The docstring's short description.
    pub short: &'static str,
    /// The docstring's long description ("" if none).
    pub long: &'static str,
    pub params: &'static [ParamSpec],
    /// Top-level `$defs` of the parameters schema (nested models), if any.
    pub defs: Option<fn() -> Value>,
}

/// What a tool returned, before the official `to_json_str` turns it into text.
#[derive(Clone, Debug, PartialEq)]
pub enum ToolResult {
    /// A `str` result, sent verbatim.
    Text(String),
    /// A pydantic model (or a list of them): `json.dumps(model_dump())`, native types.
    Model(Value),
    /// A plain Python value (dict, list, scalar): every int, float and bool in
    /// it becomes its `str()` before `json.dumps` (see [`plain`]).
    Plain(Value),
}

impl ToolResult {
    /// The tool message content.
    pub fn into_content(self) -> String {
        match self {
            ToolResult::Text(s) => s,
            ToolResult::Model(v) => dumps(&v),
            ToolResult::Plain(v) => dumps(&plain(v)),
        }
    }
}

/// Converts a plain Python value (dicts, lists, scalars) as the official
/// `to_json_str` does: every int, float and bool becomes its `str()`.
pub fn plain(v: Value) -> Value {
    match v {
        Value::Bool(_) | Value::Number(_) => Value::String(crate::py::str(&v)),
        Value::Array(items) => Value::Array(items.into_iter().map(plain).collect()),
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k, plain(v))).collect()),
        other => other,
    }
}

impl ToolSpec {
    /// Binds a call's arguments to the parameters, as CPython would.
    pub fn bind<'a>(&self, kwargs: &'a Map<String, Value>) -> Result<Args<'a>, String> {
        bind(
            self.qualname,
            self.params.iter().map(|p| (p.name, p.default.is_none())),
            kwargs,
        )
    }

    /// The OpenAI function schema (`Tool.openai_schema`).
    pub fn openai_schema(&self) -> Value {
        let description = if self.short.is_empty() {
            self.name.to_string()
        } else if self.long.is_empty() {
            self.short.to_string()
        } else {
            format!("{}\n\n{}", self.short, self.long)
        };
        json!({
            "type": "function",
            "function": {
                "name": self.name,
                "description": description,
                "parameters": self.parameters_schema(),
            }
        })
    }

    /// pydantic's `model_json_schema()` of the generated `parameters` model.
    pub fn parameters_schema(&self) -> Value {
        let mut properties = Map::new();
        let mut required = Vec::new();
        for p in self.params {
            let mut prop = match type_schema(p.ty) {
                Value::Object(m) => m,
                _ => Map::new(),
            };
            if let Some(default) = p.default {
                prop.insert("default".into(), default());
            } else {
                required.push(Value::String(p.name.into()));
            }
            if let Some(doc) = p.doc {
                prop.insert("description".into(), Value::String(doc.into()));
            }
            prop.insert("title".into(), Value::String(title(p.name)));
            properties.insert(p.name.into(), pydantic_sorted(Value::Object(prop)));
        }
        let mut schema = Map::new();
        if let Some(defs) = self.defs {
            schema.insert("$defs".into(), defs());
        }
        schema.insert("properties".into(), Value::Object(properties));
        if !required.is_empty() {
            schema.insert("required".into(), Value::Array(required));
        }
        schema.insert("title".into(), json!("parameters"));
        schema.insert("type".into(), json!("object"));
        Value::Object(schema)
    }
}

fn type_schema(ty: Ty) -> Value {
    match ty {
        Ty::Str => json!({"type": "string"}),
        Ty::Int => json!({"type": "integer"}),
        Ty::Float => json!({"type": "number"}),
        Ty::Bool => json!({"type": "boolean"}),
        Ty::Dict => json!({"additionalProperties": true, "type": "object"}),
        Ty::List(inner) => json!({"items": type_schema(*inner), "type": "array"}),
        Ty::Literal(values) => json!({"enum": values, "type": "string"}),
        Ty::Raw(f) => f(),
        Ty::Any => json!({}),
    }
}

/// pydantic's field title: `user_id` -> `User Id` (Python `str.title()` on spaced words).
pub fn title(name: &str) -> String {
    let spaced = name.replace('_', " ");
    let mut out = String::with_capacity(spaced.len());
    let mut prev_alpha = false;
    for c in spaced.chars() {
        if prev_alpha {
            out.extend(c.to_lowercase());
        } else {
            out.extend(c.to_uppercase());
        }
        prev_alpha = c.is_alphabetic();
    }
    out
}

/// Sorts keys as pydantic's JSON schema generator does: recursively, except
/// the field order under `properties` and values under `default`.
pub fn pydantic_sorted(v: Value) -> Value {
    sort_inner(v, false)
}

fn sort_inner(v: Value, keep_order: bool) -> Value {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            if !keep_order {
                entries.sort_by(|a, b| a.0.cmp(&b.0));
            }
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| {
                        let v = match k.as_str() {
                            "default" => v,
                            "properties" => sort_props(v),
                            _ => sort_inner(v, false),
                        };
                        (k, v)
                    })
                    .collect(),
            )
        }
        Value::Array(items) => {
            Value::Array(items.into_iter().map(|i| sort_inner(i, false)).collect())
        }
        other => other,
    }
}

fn sort_props(v: Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, sort_inner(v, false)))
                .collect(),
        ),
        other => other,
    }
}

/// Helpers to declare parameters tersely.
pub const fn p(name: &'static str, ty: Ty, doc: &'static str) -> ParamSpec {
    ParamSpec {
        name,
        ty,
        doc: Some(doc),
        default: None,
    }
}

/// A parameter whose Python default is `None`.
pub const fn p_none(name: &'static str, ty: Ty, doc: &'static str) -> ParamSpec {
    ParamSpec {
        name,
        ty,
        doc: Some(doc),
        default: Some(null),
    }
}

fn null() -> Value {
    Value::Null
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_follow_python_title_case() {
        assert_eq!(title("user_id"), "User Id");
        assert_eq!(title("total_baggages"), "Total Baggages");
        assert_eq!(title("gb_amount"), "Gb Amount");
        assert_eq!(title("item_ids"), "Item Ids");
    }

    #[test]
    fn plain_results_stringify_scalars_only() {
        let v = plain(json!({"a": 1, "b": [true, 8.7], "c": null, "d": "x"}));
        assert_eq!(
            v,
            json!({"a": "1", "b": ["True", "8.7"], "c": null, "d": "x"})
        );
    }
}
