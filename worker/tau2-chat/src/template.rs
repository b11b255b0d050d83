//! Hugging Face chat templates rendered the way transformers renders them.
//!
//! transformers compiles `chat_template` with Jinja2 in a sandbox with
//! `trim_blocks=True`, `lstrip_blocks=True` and the `loopcontrols`
//! extension, adds a `tojson` filter (`json.dumps` with `ensure_ascii=False`),
//! and the globals `raise_exception` and `strftime_now`; templates also call
//! Python string methods (`.startswith`, `.split`, `.strip`...). MiniJinja
//! plus its `pycompat` method callback covers that language; the rest is
//! reproduced here.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Environment, Error, ErrorKind, Value as Jv};
use serde_json::{Map, Value};

use crate::message::Message;
use crate::pyjson::{self, DumpOptions};
use crate::{ChatError, Result};

const NAME: &str = "chat_template";

/// What a render needs besides the messages: `apply_chat_template`'s
/// `tools`, `add_generation_prompt` and extra keyword arguments.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RenderOptions {
    /// OpenAI function schemas (`{"type": "function", "function": {...}}`),
    /// rendered in their key order. `None` renders as Python's `None`.
    pub tools: Option<Vec<Value>>,
    pub add_generation_prompt: bool,
    /// Extra template variables such as `enable_thinking`.
    pub extra: Map<String, Value>,
}

impl RenderOptions {
    pub fn with_tools(tools: Vec<Value>) -> Self {
        Self {
            tools: Some(tools),
            ..Self::default()
        }
    }

    pub fn generation_prompt(mut self, on: bool) -> Self {
        self.add_generation_prompt = on;
        self
    }

    pub fn kwarg(mut self, key: impl Into<String>, value: Value) -> Self {
        self.extra.insert(key.into(), value);
        self
    }
}

/// A compiled chat template.
#[derive(Clone)]
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    /// `bos_token`, `eos_token`, ... as transformers passes them.
    special_tokens: BTreeMap<String, Jv>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("source_len", &self.source.len())
            .field("special_tokens", &self.special_tokens)
            .finish()
    }
}

/// Messages and options converted to template values once, so that
/// rendering many prefixes of one conversation does not re-convert them.
pub(crate) struct Prepared {
    messages: Vec<Jv>,
    tools: Jv,
    extra: BTreeMap<String, Jv>,
}

/// A serde value as a template value (maps keep their insertion order).
fn jv<T: serde::Serialize>(value: &T) -> Jv {
    Jv::from(minijinja::value::Serde(value))
}

/// A message as transformers hands it to the template: keys whose value is
/// null dropped (so `content: null` is undefined, not `None`), and the
/// reasoning also under `thinking` (first), which gpt-oss-style templates read.
fn message_value(message: &Message) -> Jv {
    let Ok(Value::Object(fields)) = serde_json::to_value(message) else {
        return jv(message);
    };
    let mut out = Map::new();
    if let Some(reasoning) = &message.reasoning_content {
        out.insert("thinking".into(), Value::String(reasoning.clone()));
    }
    out.extend(fields.into_iter().filter(|(_, v)| !v.is_null()));
    jv(&out)
}

/// Rewrites transformers' `{% generation %}` / `{% endgeneration %}` tags
/// (assistant-mask markers that render their body unchanged) into
/// `{% if true %}` / `{% endif %}`, which MiniJinja knows and which keep the
/// tags' whitespace control (`-`, trim_blocks, lstrip_blocks) exactly.
fn rewrite_generation_tags(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find("{%") {
        let (before, tag) = rest.split_at(start);
        out.push_str(before);
        let Some(end) = tag.find("%}") else {
            rest = tag;
            break;
        };
        let inner = &tag[2..end];
        let body = inner
            .trim_start_matches(['-', '+'])
            .trim_end_matches(['-', '+']);
        let replacement = match body.trim() {
            "generation" => Some("if true"),
            "endgeneration" => Some("endif"),
            _ => None,
        };
        match replacement {
            Some(r) => {
                out.push_str("{%");
                out.push_str(&inner.replacen(body.trim(), r, 1));
                out.push_str("%}");
            }
            None => out.push_str(&tag[..end + 2]),
        }
        rest = &tag[end + 2..];
    }
    out.push_str(rest);
    out
}

impl Prepared {
    pub(crate) fn new(messages: &[Message], options: &RenderOptions) -> Self {
        Self {
            messages: messages.iter().map(message_value).collect(),
            tools: match &options.tools {
                Some(tools) => jv(tools),
                None => Jv::from(()),
            },
            extra: options
                .extra
                .iter()
                .map(|(k, v)| (k.clone(), jv(v)))
                .collect(),
        }
    }

    pub(crate) fn push(&mut self, message: &Message) {
        self.messages.push(message_value(message));
    }

    pub(crate) fn len(&self) -> usize {
        self.messages.len()
    }
}

impl ChatTemplate {
    /// Compiles `source` (a `chat_template` string).
    pub fn new(source: impl Into<String>) -> Result<Self> {
        let source = source.into();
        let mut env = Environment::new();
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .keep_trailing_newline(false)
            .build()
            .map_err(|e| ChatError::Template(describe(&e)))?;
        env.set_syntax(syntax);
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.set_formatter(python_formatter);
        env.add_filter("tojson", tojson);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", |format: String| {
            strftime(&chrono::Local::now().naive_local(), &format)
        });
        env.add_template_owned(NAME, rewrite_generation_tags(&source))
            .map_err(|e| ChatError::Template(describe(&e)))?;
        Ok(Self {
            env,
            source,
            special_tokens: BTreeMap::new(),
        })
    }

    /// Sets a special-token variable (`bos_token`, `eos_token`, ...).
    /// transformers passes only the tokens that are set, so `None` leaves
    /// the variable undefined (Qwen has no `bos_token`).
    pub fn with_special_token(mut self, name: impl Into<String>, token: Option<&str>) -> Self {
        let name = name.into();
        match token {
            Some(t) => self.special_tokens.insert(name, Jv::from(t)),
            None => self.special_tokens.remove(&name),
        };
        self
    }

    /// Makes `strftime_now` use a fixed time (reproducible renders).
    pub fn with_fixed_time(mut self, now: chrono::NaiveDateTime) -> Self {
        self.env
            .add_function("strftime_now", move |format: String| {
                strftime(&now, &format)
            });
        self
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// `tokenizer.apply_chat_template(messages, tokenize=False, ...)`,
    /// which refuses an empty conversation before rendering.
    pub fn render(&self, messages: &[Message], options: &RenderOptions) -> Result<String> {
        if messages.is_empty() {
            return Err(ChatError::Message(
                "cannot apply the chat template to an empty conversation".into(),
            ));
        }
        let prepared = Prepared::new(messages, options);
        self.render_prepared(&prepared, prepared.len(), options.add_generation_prompt)
    }

    /// Renders the first `end` prepared messages.
    pub(crate) fn render_prepared(
        &self,
        prepared: &Prepared,
        end: usize,
        add_generation_prompt: bool,
    ) -> Result<String> {
        let mut ctx = self.special_tokens.clone();
        ctx.extend(prepared.extra.iter().map(|(k, v)| (k.clone(), v.clone())));
        ctx.insert(
            "messages".into(),
            Jv::from(prepared.messages[..end].to_vec()),
        );
        ctx.insert("tools".into(), prepared.tools.clone());
        ctx.insert("documents".into(), Jv::from(()));
        ctx.insert(
            "add_generation_prompt".into(),
            Jv::from(add_generation_prompt),
        );
        let template = self
            .env
            .get_template(NAME)
            .map_err(|e| ChatError::Template(describe(&e)))?;
        template
            .render(Jv::from(ctx))
            .map_err(|e| ChatError::Template(describe(&e)))
    }
}

/// The error with its causes (MiniJinja nests the `raise_exception` text).
fn describe(e: &Error) -> String {
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let _ = write!(s, ": {cause}");
        source = cause.source();
    }
    s
}

/// Prints values as Python's `str()` does where Jinja2 and MiniJinja
/// differ: `None`, `True`/`False` and float reprs.
fn python_formatter(
    out: &mut minijinja::Output,
    state: &mut minijinja::State,
    value: &Jv,
) -> Result<(), Error> {
    match value.kind() {
        ValueKind::None => out.write_str("None")?,
        ValueKind::Bool => out.write_str(if value.is_true() { "True" } else { "False" })?,
        ValueKind::Number if !value.is_integer() => match f64::try_from(value.clone()) {
            Ok(f) => out.write_str(&pyjson::float_repr(f))?,
            Err(_) => minijinja::escape_formatter(out, state, value)?,
        },
        _ => minijinja::escape_formatter(out, state, value)?,
    }
    Ok(())
}

/// transformers' `tojson(x, ensure_ascii=False, indent=None,
/// separators=None, sort_keys=False)`.
fn tojson(value: &Jv, kwargs: Kwargs) -> Result<String, Error> {
    let mut options = DumpOptions::default();
    if let Some(ensure_ascii) = kwargs.get::<Option<bool>>("ensure_ascii")? {
        options.ensure_ascii = ensure_ascii;
    }
    let indent = match kwargs.get::<Option<Jv>>("indent")? {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => match (v.kind(), v.as_i64(), v.as_str()) {
            (ValueKind::Number, Some(n), _) => Some(" ".repeat(usize::try_from(n).unwrap_or(0))),
            (ValueKind::String, _, Some(s)) => Some(s.to_string()),
            _ => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    "indent must be an int or a string",
                ));
            }
        },
    };
    options = options.with_indent(indent);
    if let Some(seps) = kwargs
        .get::<Option<Jv>>("separators")?
        .filter(|v| !v.is_none())
    {
        let parts: Vec<Jv> = seps.try_iter()?.collect();
        match parts.as_slice() {
            [item, key] if item.as_str().is_some() && key.as_str().is_some() => {
                options.item_separator = item.as_str().unwrap_or_default().to_string();
                options.key_separator = key.as_str().unwrap_or_default().to_string();
            }
            _ => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    "separators must be two strings",
                ));
            }
        }
    }
    if let Some(sort_keys) = kwargs.get::<Option<bool>>("sort_keys")? {
        options.sort_keys = sort_keys;
    }
    kwargs.assert_all_used()?;
    pyjson::dumps(value, &options)
}

fn raise_exception(message: String) -> Result<Jv, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

/// `datetime.strftime`; chrono's specifiers are a superset of the common
/// Python ones. An invalid specifier is a template error, not a panic.
fn strftime(now: &chrono::NaiveDateTime, format: &str) -> Result<String, Error> {
    let mut out = String::new();
    write!(out, "{}", now.format(format)).map_err(|_| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("invalid strftime format {format:?}"),
        )
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(src: &str, messages: &[Message], options: &RenderOptions) -> Result<String> {
        ChatTemplate::new(src)?.render(messages, options)
    }

    #[test]
    fn python_values_and_tojson() {
        let src = "{{ none_value }}|{{ flag }}|{{ 1.5 }}|{{ 1e-5 }}|{{ 3 }}|{{ tools[0] | tojson }}|{{ tools[0] | tojson(indent=2) }}";
        let one = [Message::user("x")];
        let options = RenderOptions::with_tools(vec![json!({"é": [1, 2.0], "a": null})])
            .kwarg("none_value", Value::Null)
            .kwarg("flag", json!(true));
        assert_eq!(
            render(src, &one, &options).expect("succeeds"),
            "None|True|1.5|1e-05|3|{\"é\": [1, 2.0], \"a\": null}|{\n  \"é\": [\n    1,\n    2.0\n  ],\n  \"a\": null\n}"
        );
    }

    #[test]
    fn trim_and_lstrip_blocks_like_transformers() {
        let src = "{% for m in messages %}\n  {% if m.role == 'user' %}\n[{{ m.content }}]\n  {% endif %}\n{% endfor %}\n";
        let out = render(
            src,
            &[Message::user("a"), Message::user("b")],
            &RenderOptions::default(),
        )
        .expect("succeeds");
        assert_eq!(out, "[a]\n[b]\n");
    }

    #[test]
    fn python_string_methods_namespace_and_loop_controls() {
        let src = "{%- set ns = namespace(n=0) %}{% for m in messages[::-1] %}{% if m.content.startswith('<x>') %}{% continue %}{% endif %}{% set ns.n = ns.n + 1 %}{{ m.content.split('|')[-1].strip() }}{% endfor %}{{ ns.n }}";
        let msgs = [
            Message::user("a| b "),
            Message::user("<x>"),
            Message::user("c"),
        ];
        assert_eq!(
            render(src, &msgs, &RenderOptions::default()).expect("succeeds"),
            "cb2"
        );
    }

    #[test]
    fn raise_exception_and_bad_templates_are_errors() {
        let err = render(
            "{{ raise_exception('no system') }}",
            &[Message::user("x")],
            &RenderOptions::default(),
        )
        .expect_err("fails");
        assert!(err.to_string().contains("no system"), "{err}");
        assert!(ChatTemplate::new("{% if %}").is_err());
        let err = render(
            "{{ messages[1].role }}",
            &[Message::user("x")],
            &RenderOptions::default(),
        )
        .expect_err("fails");
        assert!(matches!(err, ChatError::Template(_)));
        let err = render("x", &[], &RenderOptions::default()).expect_err("fails");
        assert!(matches!(err, ChatError::Message(_)), "{err}");
    }

    #[test]
    fn generation_tags_render_their_body() {
        let src = "{%- for m in messages %}\n{%- generation %}\n  A{{ m.content }}\n{%- endgeneration %}\n{% endfor %}{% if x %}{%+ generation -%} B {%- endgeneration %}{% endif %}";
        let out = render(
            src,
            &[Message::user("x")],
            &RenderOptions::default().kwarg("x", json!(true)),
        );
        assert_eq!(out.expect("succeeds"), "  AxB");
    }

    #[test]
    fn null_fields_are_undefined_like_transformers() {
        let msg = Message::assistant_calls(None, vec![]);
        let src = "[{{ messages[0].content }}]{{ messages[0].content is none }}{{ messages[0].content is defined }}";
        assert_eq!(
            render(src, &[msg], &RenderOptions::default()).expect("succeeds"),
            "[]FalseFalse"
        );
        let msg = Message {
            reasoning_content: Some("r".into()),
            ..Message::assistant("a")
        };
        let src = "{{ messages[0].thinking }}{{ messages[0].reasoning_content }}{{ messages[0] | tojson }}";
        assert_eq!(
            render(src, &[msg], &RenderOptions::default()).expect("succeeds"),
            "rr{\"thinking\": \"r\", \"role\": \"assistant\", \"content\": \"a\", \"reasoning_content\": \"r\"}"
        );
    }

    #[test]
    fn strftime_now_and_special_tokens() {
        let now = chrono::NaiveDate::from_ymd_opt(2025, 7, 4)
            .and_then(|d| d.and_hms_opt(9, 5, 0))
            .expect("succeeds");
        let t = ChatTemplate::new("{{ bos_token }}{{ strftime_now('%d %B %Y') }}{{ eos_token }}")
            .expect("succeeds")
            .with_special_token("bos_token", None)
            .with_special_token("eos_token", Some("<e>"))
            .with_fixed_time(now);
        assert_eq!(
            t.render(&[Message::user("x")], &RenderOptions::default())
                .expect("succeeds"),
            "04 July 2025<e>"
        );
        let bad = ChatTemplate::new("{{ strftime_now('%Q') }}").expect("succeeds");
        assert!(
            bad.render(&[Message::user("x")], &RenderOptions::default())
                .is_err()
        );
    }
}
