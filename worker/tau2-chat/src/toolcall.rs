//! Parsing the tool calls out of generated assistant text.
//!
//! Qwen3 emits `<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>`
//! blocks, possibly several and possibly after some text. Sampled output can
//! be anything, so parsing never fails: it returns what it could read plus a
//! list of issues (which RL can penalise or feed back to the model).

use serde::Serialize;
use serde_json::{Map, Value};

use crate::message::{Message, ToolCall};

pub const TOOL_CALL_OPEN: &str = "<tool_call>";
pub const TOOL_CALL_CLOSE: &str = "</tool_call>";

/// What went wrong with one block.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum IssueKind {
    /// `<tool_call>` without `</tool_call>` (the call is still taken if its
    /// JSON is valid, as vLLM's Hermes parser does).
    Unterminated,
    /// `</tool_call>` without an opening tag (kept as content).
    UnmatchedClose,
    /// The block is not valid JSON.
    InvalidJson,
    /// The JSON is not an object.
    NotAnObject,
    /// No `name`, or a `name` that is not a non-empty string.
    MissingName,
    /// `arguments` is not an object, nor a string holding one.
    InvalidArguments,
    /// `arguments` was a JSON string holding an object (accepted).
    ArgumentsAsString,
}

#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct ParseIssue {
    pub kind: IssueKind,
    /// Index of the `<tool_call>` block (in order of appearance).
    pub block: usize,
    pub message: String,
    /// The block's raw text.
    pub raw: String,
}

/// The parsed assistant turn.
#[derive(Serialize, Clone, Debug, PartialEq, Default)]
pub struct ParsedTurn {
    /// The text outside the blocks, trimmed; `None` when empty.
    pub content: Option<String>,
    pub calls: Vec<ToolCall>,
    pub issues: Vec<ParseIssue>,
}

impl ParsedTurn {
    /// True when every block parsed without any issue.
    pub fn is_clean(&self) -> bool {
        self.issues.is_empty()
    }

    /// Issues that lost a call (everything except the accepted oddities).
    pub fn errors(&self) -> impl Iterator<Item = &ParseIssue> {
        self.issues.iter().filter(|i| {
            !matches!(
                i.kind,
                IssueKind::ArgumentsAsString | IssueKind::Unterminated
            )
        })
    }

    /// The assistant message, with call ids `call_<prefix>_<n>` (OpenAI
    /// requires ids; tau2 matches results by position anyway). Its content
    /// is `""` rather than null when there is no text: templates that
    /// concatenate or search the content (Qwen3's hybrid one) fail on null,
    /// and the 2507 template renders both the same; an OpenAI response
    /// should map `""` with tool calls to null.
    pub fn into_message(self, id_prefix: &str) -> Message {
        let calls = self
            .calls
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                let id =
                    c.id.clone()
                        .unwrap_or_else(|| format!("call_{id_prefix}_{i}"));
                c.with_id(id)
            })
            .collect();
        Message::assistant_calls(Some(self.content.unwrap_or_default()), calls)
    }
}

/// Parses generated text (already stripped of `<|im_end|>`).
pub fn parse_tool_calls(text: &str) -> ParsedTurn {
    let mut turn = ParsedTurn::default();
    let mut content = String::new();
    let mut rest = text;
    let mut block = 0;
    loop {
        let open = rest.find(TOOL_CALL_OPEN);
        // Text before the next opening tag is content; a stray closing tag in it is reported.
        let (before, after_open) = match open {
            Some(i) => (&rest[..i], Some(&rest[i + TOOL_CALL_OPEN.len()..])),
            None => (rest, None),
        };
        if before.contains(TOOL_CALL_CLOSE) {
            turn.issues.push(ParseIssue {
                kind: IssueKind::UnmatchedClose,
                block,
                message: "`</tool_call>` without a matching `<tool_call>`".into(),
                raw: before.to_string(),
            });
        }
        content.push_str(before);
        let Some(inner_start) = after_open else { break };
        // A block ends at its closing tag, or unterminated at the next opening tag or the end.
        let close = inner_start.find(TOOL_CALL_CLOSE);
        let reopen = inner_start.find(TOOL_CALL_OPEN);
        let (raw, next, terminated) = match (close, reopen) {
            (Some(c), r) if r.is_none_or(|r| c < r) => (
                &inner_start[..c],
                &inner_start[c + TOOL_CALL_CLOSE.len()..],
                true,
            ),
            (_, Some(r)) => (&inner_start[..r], &inner_start[r..], false),
            _ => (inner_start, "", false),
        };
        parse_block(raw, block, terminated, &mut turn);
        block += 1;
        rest = next;
    }
    let trimmed = content.trim();
    turn.content = (!trimmed.is_empty()).then(|| trimmed.to_string());
    turn
}

fn parse_block(raw: &str, block: usize, terminated: bool, turn: &mut ParsedTurn) {
    let mut issue = |kind: IssueKind, message: String| {
        turn.issues.push(ParseIssue {
            kind,
            block,
            message,
            raw: raw.to_string(),
        })
    };
    if !terminated {
        issue(
            IssueKind::Unterminated,
            "`<tool_call>` without `</tool_call>`".into(),
        );
    }
    let object = match serde_json::from_str::<Value>(raw.trim()) {
        Ok(Value::Object(o)) => o,
        Ok(other) => {
            issue(
                IssueKind::NotAnObject,
                format!("expected a JSON object, got {other}"),
            );
            return;
        }
        Err(e) => {
            issue(IssueKind::InvalidJson, format!("invalid JSON: {e}"));
            return;
        }
    };
    let name = match object.get("name") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        _ => {
            issue(
                IssueKind::MissingName,
                "the call has no string `name`".into(),
            );
            return;
        }
    };
    let arguments = match object.get("arguments") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(o)) => o.clone(),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(o)) => {
                issue(
                    IssueKind::ArgumentsAsString,
                    "`arguments` was a JSON string".into(),
                );
                o
            }
            _ => {
                issue(
                    IssueKind::InvalidArguments,
                    "`arguments` is a string that holds no JSON object".into(),
                );
                return;
            }
        },
        Some(other) => {
            issue(
                IssueKind::InvalidArguments,
                format!("`arguments` must be an object, got {other}"),
            );
            return;
        }
    };
    turn.calls.push(ToolCall::new(name, arguments));
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn kinds(t: &ParsedTurn) -> Vec<IssueKind> {
        t.issues.iter().map(|i| i.kind.clone()).collect()
    }

    #[test]
    fn several_calls_after_text() {
        let text = "Let me check.\n<tool_call>\n{\"name\": \"get_user\", \"arguments\": {\"id\": \"u1\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"list\", \"arguments\": {}}\n</tool_call>";
        let t = parse_tool_calls(text);
        assert!(t.is_clean(), "{t:?}");
        assert_eq!(t.content.as_deref(), Some("Let me check."));
        assert_eq!(t.calls.len(), 2);
        assert_eq!(t.calls[0].name, "get_user");
        assert_eq!(t.calls[0].arguments, json!({"id": "u1"}));
        assert_eq!(t.calls[1].arguments, json!({}));
        let m = t.into_message("x");
        assert_eq!(m.tool_calls[1].id.as_deref(), Some("call_x_1"));
    }

    #[test]
    fn plain_text_is_content_only() {
        let t = parse_tool_calls("  Hello there.\n");
        assert_eq!(t.content.as_deref(), Some("Hello there."));
        assert!(t.calls.is_empty() && t.is_clean());
        assert_eq!(parse_tool_calls("").content, None);
    }

    #[test]
    fn malformed_blocks_are_reported_not_fatal() {
        // Unterminated but valid JSON: accepted with an issue.
        let t = parse_tool_calls("<tool_call>\n{\"name\": \"a\", \"arguments\": {\"x\": 1}}\n");
        assert_eq!(t.calls.len(), 1);
        assert_eq!(kinds(&t), vec![IssueKind::Unterminated]);
        assert_eq!(t.errors().count(), 0);
        // Invalid JSON, then a good block.
        let t = parse_tool_calls(
            "<tool_call>{\"name\": \"a\", </tool_call><tool_call>{\"name\": \"b\"}</tool_call>",
        );
        assert_eq!(kinds(&t), vec![IssueKind::InvalidJson]);
        assert_eq!(t.calls.len(), 1);
        assert_eq!(t.calls[0].name, "b");
        // Arguments as a string holding an object.
        let t = parse_tool_calls(
            "<tool_call>{\"name\": \"a\", \"arguments\": \"{\\\"x\\\": 1}\"}</tool_call>",
        );
        assert_eq!(t.calls[0].arguments, json!({"x": 1}));
        assert_eq!(kinds(&t), vec![IssueKind::ArgumentsAsString]);
        // Missing name, bad arguments, not an object, unmatched close, reopened block.
        let t = parse_tool_calls(
            "a</tool_call>b<tool_call>{\"arguments\": {}}</tool_call><tool_call>{\"name\": \"f\", \"arguments\": [1]}</tool_call><tool_call>[1]</tool_call><tool_call>{\"name\": \"g\"}<tool_call>{\"name\": \"h\"}</tool_call>",
        );
        assert_eq!(
            kinds(&t),
            vec![
                IssueKind::UnmatchedClose,
                IssueKind::MissingName,
                IssueKind::InvalidArguments,
                IssueKind::NotAnObject,
                IssueKind::Unterminated,
            ]
        );
        let names: Vec<_> = t.calls.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["g", "h"]);
        assert_eq!(t.content.as_deref(), Some("a</tool_call>b"));
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_text(s in ".*") {
            let _ = parse_tool_calls(&s);
        }

        #[test]
        fn never_panics_on_tag_soup(parts in proptest::collection::vec(
            prop_oneof![
                Just("<tool_call>".to_string()),
                Just("</tool_call>".to_string()),
                Just("{\"name\": \"f\", \"arguments\": {\"a\": [1, \"é\"]}}".to_string()),
                Just("{\"name\": ".to_string()),
                Just("\n".to_string()),
                "[a-z{}\":, ]{0,12}",
            ],
            0..12,
        )) {
            let text = parts.concat();
            let t = parse_tool_calls(&text);
            // Every opening tag is a block that yields either a call or an error.
            let blocks = text.matches(TOOL_CALL_OPEN).count();
            let lost = t.errors().filter(|i| i.kind != IssueKind::UnmatchedClose).count();
            prop_assert_eq!(t.calls.len() + lost, blocks);
        }
    }
}
