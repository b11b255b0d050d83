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
pub use error::{ChatError, Result};
pub use message::{Message, Role, ToolCall};
pub use template::{ChatTemplate, RenderOptions};
pub use tokenizer::{ChatTokenizer, Completion, MaskedIds};
pub use toolcall::{
    IssueKind, ParseIssue, ParsedTurn, TOOL_CALL_CLOSE, TOOL_CALL_OPEN, parse_tool_calls,
};
