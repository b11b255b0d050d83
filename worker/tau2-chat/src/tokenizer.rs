//! The model's tokenizer and chat template together: what a training phase
//! or the server needs to turn conversations into ids and ids back into
//! messages.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde_json::Value;
use tokenizers::Tokenizer;

use crate::message::Message;
use crate::template::{ChatTemplate, Prepared, RenderOptions};
use crate::toolcall::{ParsedTurn, parse_tool_calls};
use crate::{ChatError, Result};

/// Token ids with a per-token training mask.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct MaskedIds {
    pub ids: Vec<u32>,
    /// `true` where the token is trained on: assistant tokens for SFT,
    /// tokens the policy sampled for episodes.
    pub mask: Vec<bool>,
}

impl MaskedIds {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub(crate) fn push(&mut self, ids: &[u32], mask: bool) {
        self.ids.extend_from_slice(ids);
        self.mask.extend(std::iter::repeat_n(mask, ids.len()));
    }
}

/// Generated ids, cut at the first stop token, and their text.
#[derive(Clone, Debug, PartialEq)]
pub struct Completion {
    /// The ids up to and including the stop token (what the policy sampled
    /// and what training must use).
    pub ids: Vec<u32>,
    /// Decoded without the stop token and without special tokens
    /// (`<tool_call>` is not special and stays).
    pub text: String,
    /// The stop token that ended the turn; `None` when the generation was
    /// cut by the length limit.
    pub stop: Option<u32>,
}

/// A tokenizer with its chat template and stop tokens.
#[derive(Clone)]
pub struct ChatTokenizer {
    tokenizer: Tokenizer,
    template: Option<ChatTemplate>,
    /// The `tool_use` template of configs that ship several.
    tool_template: Option<ChatTemplate>,
    /// `bos_token`, `eos_token`, ... passed to templates.
    specials: Vec<(&'static str, Option<String>)>,
    end_of_turn: String,
    end_of_turn_id: u32,
    stop_ids: Vec<u32>,
}

impl std::fmt::Debug for ChatTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTokenizer")
            .field("end_of_turn", &self.end_of_turn)
            .field("stop_ids", &self.stop_ids)
            .finish_non_exhaustive()
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| ChatError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn read_json(path: &Path) -> Result<Value> {
    serde_json::from_str(&read(path)?).map_err(|source| ChatError::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// A special token in tokenizer_config.json: a string, null, or an
/// AddedToken object `{"content": ...}`.
fn token_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

impl ChatTokenizer {
    /// Loads a Hugging Face model directory: `tokenizer.json`,
    /// `tokenizer_config.json`, `chat_template.jinja` (which, as in
    /// transformers, wins over the config's `chat_template`) and, for the stop
    /// tokens, `generation_config.json` when present.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let tokenizer = Tokenizer::from_file(dir.join("tokenizer.json")).map_err(|e| {
            ChatError::Tokenizer(format!("{}: {e}", dir.join("tokenizer.json").display()))
        })?;
        let config = read_json(&dir.join("tokenizer_config.json"))?;
        let jinja: PathBuf = dir.join("chat_template.jinja");
        let template = if jinja.is_file() {
            Some(read(&jinja)?)
        } else {
            None
        };
        let generation = dir.join("generation_config.json");
        let generation = if generation.is_file() {
            Some(read_json(&generation)?)
        } else {
            None
        };
        Self::from_parts(tokenizer, &config, template, generation.as_ref())
    }

    /// Builds from an in-memory `tokenizer.json` text and config values.
    pub fn from_json(
        tokenizer_json: &str,
        config: &Value,
        template: Option<String>,
    ) -> Result<Self> {
        let tokenizer = Tokenizer::from_str(tokenizer_json).map_err(ChatError::tokenizer)?;
        Self::from_parts(tokenizer, config, template, None)
    }

    /// `template` overrides the config's `chat_template`.
    pub fn from_parts(
        tokenizer: Tokenizer,
        config: &Value,
        template: Option<String>,
        generation_config: Option<&Value>,
    ) -> Result<Self> {
        let end_of_turn = token_text(config.get("eos_token"))
            .ok_or_else(|| ChatError::Config("tokenizer_config.json has no eos_token".into()))?;
        let end_of_turn_id = tokenizer.token_to_id(&end_of_turn).ok_or_else(|| {
            ChatError::Config(format!(
                "eos_token {end_of_turn:?} is not in the vocabulary"
            ))
        })?;
        let specials: Vec<(&str, Option<String>)> =
            ["bos_token", "eos_token", "unk_token", "pad_token"]
                .into_iter()
                .map(|k| (k, token_text(config.get(k))))
                .collect();
        let pad_id = specials
            .iter()
            .find(|(k, _)| *k == "pad_token")
            .and_then(|(_, t)| t.as_deref())
            .and_then(|t| tokenizer.token_to_id(t));
        let compile = |source: String| compile(source, &specials);
        let (mut template_src, mut tool_src) = (template, None);
        if template_src.is_none() {
            match config.get("chat_template") {
                Some(Value::String(s)) => template_src = Some(s.clone()),
                // A list of named templates: "default", and "tool_use" for requests with tools.
                Some(Value::Array(named)) => {
                    for entry in named {
                        let source = entry
                            .get("template")
                            .and_then(Value::as_str)
                            .map(str::to_string);
                        match entry.get("name").and_then(Value::as_str) {
                            Some("default") => template_src = source,
                            Some("tool_use") => tool_src = source,
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        // Stop on generation_config's eos ids; without one, on eos and pad
        // (Qwen's instruct generation_config stops on <|im_end|> and <|endoftext|>).
        let mut stop_ids = match generation_config.and_then(|g| g.get("eos_token_id")) {
            Some(Value::Number(n)) => n.as_u64().map(|n| vec![n]).unwrap_or_default(),
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_u64).collect(),
            _ => Vec::new(),
        }
        .into_iter()
        .filter_map(|n| u32::try_from(n).ok())
        .collect::<Vec<u32>>();
        if stop_ids.is_empty() {
            stop_ids.push(end_of_turn_id);
            stop_ids.extend(pad_id.filter(|p| *p != end_of_turn_id));
        }
        Ok(Self {
            tokenizer,
            template: template_src.map(compile).transpose()?,
            tool_template: tool_src.map(compile).transpose()?,
            specials,
            end_of_turn,
            end_of_turn_id,
            stop_ids,
        })
    }

    /// Replaces the chat template (e.g. a model's newer template).
    pub fn with_template(mut self, source: impl Into<String>) -> Result<Self> {
        self.template = Some(compile(source.into(), &self.specials)?);
        self.tool_template = None;
        Ok(self)
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The turn terminator (`<|im_end|>` for Qwen).
    pub fn end_of_turn(&self) -> &str {
        &self.end_of_turn
    }

    pub fn end_of_turn_id(&self) -> u32 {
        self.end_of_turn_id
    }

    /// Tokens that end a generation.
    pub fn stop_ids(&self) -> &[u32] {
        &self.stop_ids
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.tokenizer.token_to_id(token)
    }

    /// Number of ids the tokenizer can produce or decode (Qwen3: 151669;
    /// embedding rows beyond it must never be sampled).
    pub fn vocab_size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }

    /// The template transformers would pick for these options.
    pub fn template(&self, options: &RenderOptions) -> Result<&ChatTemplate> {
        let tool = if options.tools.is_some() {
            self.tool_template.as_ref()
        } else {
            None
        };
        tool.or(self.template.as_ref())
            .ok_or_else(|| ChatError::Config("the tokenizer has no chat_template".into()))
    }

    /// `encode(text, add_special_tokens=False)`, as `apply_chat_template` tokenizes.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self
            .tokenizer
            .encode_fast(text, false)
            .map_err(ChatError::tokenizer)?
            .get_ids()
            .to_vec())
    }

    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.tokenizer
            .decode(ids, skip_special_tokens)
            .map_err(ChatError::tokenizer)
    }

    /// `apply_chat_template(messages, tools=..., tokenize=False, ...)`.
    pub fn render(&self, messages: &[Message], options: &RenderOptions) -> Result<String> {
        self.template(options)?.render(messages, options)
    }

    /// `apply_chat_template(messages, tools=..., tokenize=True, ...)`.
    pub fn render_ids(&self, messages: &[Message], options: &RenderOptions) -> Result<Vec<u32>> {
        self.encode(&self.render(messages, options)?)
    }

    /// Generated ids -> the turn's ids (cut after the first stop token)
    /// and its text without the stop token.
    pub fn decode_completion(&self, generated: &[u32]) -> Result<Completion> {
        let stop_at = generated.iter().position(|id| self.stop_ids.contains(id));
        let (ids, text_ids, stop) = match stop_at {
            Some(i) => (&generated[..=i], &generated[..i], Some(generated[i])),
            None => (generated, generated, None),
        };
        Ok(Completion {
            ids: ids.to_vec(),
            text: self.decode(text_ids, true)?,
            stop,
        })
    }

    /// Generated ids -> the parsed assistant turn (content, tool calls,
    /// parse issues) and the completion it came from.
    pub fn parse_completion(&self, generated: &[u32]) -> Result<(Completion, ParsedTurn)> {
        let completion = self.decode_completion(generated)?;
        let parsed = parse_tool_calls(&completion.text);
        Ok((completion, parsed))
    }

    /// Token ids of a whole conversation with the SFT loss mask.
    ///
    /// The mask is true on exactly the tokens an assistant turn generates:
    /// its content, its `<tool_call>` blocks and the end-of-turn token
    /// `<|im_end|>`. It is false on the `<|im_start|>assistant\n` header
    /// (the prompt supplies it at inference), on the `\n` after
    /// `<|im_end|>` (the model stops before it) and on all system, user and
    /// tool text. This is the same set of tokens an RL episode marks as
    /// policy-generated, so SFT and RFT/GRPO train on the same positions.
    ///
    /// Turn spans come from rendering prefixes: messages[..i] with the
    /// generation prompt gives where assistant turn i starts, messages[..=i]
    /// where it ends; both must be prefixes of the whole rendering
    /// ([`ChatError::NotPrefixStable`] otherwise, e.g. Qwen3's hybrid
    /// template, which adds an empty `<think>` block only to the last turn).
    /// The segments are tokenized separately and must concatenate to the
    /// ids of the whole text ([`ChatError::TokenBoundary`] otherwise).
    pub fn encode_sft(&self, messages: &[Message], options: &RenderOptions) -> Result<MaskedIds> {
        let template = self.template(options)?;
        let prepared = Prepared::new(messages, options);
        let full = template.render_prepared(&prepared, messages.len(), false)?;
        // (end byte, trained) segments in order.
        let mut cuts: Vec<(usize, bool)> = Vec::new();
        let mut cursor = 0;
        for (i, message) in messages.iter().enumerate() {
            if message.role != crate::Role::Assistant {
                continue;
            }
            let start = template.render_prepared(&prepared, i, true)?;
            check_prefix(&start, &full, i, i)?;
            let turn = template.render_prepared(&prepared, i + 1, false)?;
            check_prefix(&turn, &full, i, i + 1)?;
            if start.len() < cursor || turn.len() < start.len() {
                return Err(not_prefix(&start, &full, i, i));
            }
            let body = &full[start.len()..turn.len()];
            let end = body
                .rfind(&self.end_of_turn)
                .map(|p| start.len() + p + self.end_of_turn.len())
                .ok_or_else(|| ChatError::NoEndOfTurn {
                    message: i,
                    token: self.end_of_turn.clone(),
                })?;
            cuts.push((start.len(), false));
            cuts.push((end, true));
            cursor = end;
        }
        cuts.push((full.len(), false));

        let mut out = MaskedIds::default();
        let mut begin = 0;
        let whole = self.encode(&full)?;
        for (end, trained) in cuts {
            if end > begin {
                let before = out.ids.len();
                out.push(&self.encode(&full[begin..end])?, trained);
                // Each boundary must fall between tokens of the whole text.
                let n = out.ids.len();
                if whole.get(..n) != Some(&out.ids[..]) {
                    let token = out
                        .ids
                        .iter()
                        .zip(&whole)
                        .take_while(|(a, b)| a == b)
                        .count();
                    // A first token that differs points at the opening boundary.
                    let at = if token == before { begin } else { end };
                    return Err(ChatError::TokenBoundary {
                        at,
                        token,
                        near: snippet(&full, at),
                    });
                }
            }
            begin = end;
        }
        if out.ids != whole {
            return Err(ChatError::TokenBoundary {
                at: full.len(),
                token: out.ids.len().min(whole.len()),
                near: snippet(&full, full.len()),
            });
        }
        Ok(out)
    }
}

fn compile(source: String, specials: &[(&'static str, Option<String>)]) -> Result<ChatTemplate> {
    let mut t = ChatTemplate::new(source)?;
    for (name, token) in specials {
        t = t.with_special_token(*name, token.as_deref());
    }
    Ok(t)
}

/// Up to 20 bytes of context on each side of `at`, on char boundaries.
fn snippet(text: &str, at: usize) -> String {
    let mut lo = at.saturating_sub(20).min(text.len());
    while !text.is_char_boundary(lo) {
        lo -= 1;
    }
    let mut hi = (at + 20).min(text.len());
    while !text.is_char_boundary(hi) {
        hi += 1;
    }
    text[lo..hi].to_string()
}

fn not_prefix(prefix: &str, full: &str, message: usize, end: usize) -> ChatError {
    let at = prefix
        .bytes()
        .zip(full.bytes())
        .take_while(|(a, b)| a == b)
        .count();
    ChatError::NotPrefixStable {
        message,
        end,
        at,
        prefix: snippet(prefix, at),
        full: snippet(full, at),
    }
}

fn check_prefix(prefix: &str, full: &str, message: usize, end: usize) -> Result<()> {
    if full.starts_with(prefix) {
        Ok(())
    } else {
        Err(not_prefix(prefix, full, message, end))
    }
}
