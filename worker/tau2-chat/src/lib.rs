//! The Qwen3 chat format without libtorch: the model's tokenizer
//! (`tokenizer.json`), its own chat template rendered as transformers renders
//! it, SFT sequences with assistant masks, id-exact multi-turn episodes for
//! RL, and tolerant parsing of generated tool calls.

mod episode;
mod error;
mod message;
pub mod pyjson;
mod template;
mod tokenizer;
mod toolcall;

pub use episode::{Episode, GeneratedTurn};

/// The chat format of Qwen3-Instruct-2507 (tools, `<tool_call>` blocks, no
/// `<think>`), written from its rules (see `templates/README.md`). Prefix-stable,
/// so SFT masks and multi-turn episodes work; `tau2-worker init-model` gives
/// tiny models this template.
pub const QWEN3_INSTRUCT_2507_TEMPLATE: &str =
    include_str!("../templates/qwen3_instruct_2507.jinja");
pub use error::{ChatError, Result};
pub use message::{Message, Role, ToolCall};
pub use template::{ChatTemplate, RenderOptions};
pub use tokenizer::{ChatTokenizer, Completion, MaskedIds};
pub use toolcall::{
    IssueKind, ParseIssue, ParsedTurn, TOOL_CALL_CLOSE, TOOL_CALL_OPEN, parse_tool_calls,
};
