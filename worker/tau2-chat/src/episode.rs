//! Multi-turn episodes as one id sequence, for RFT and GRPO.
//!
//! A rollout is prompt ids + generated ids + ids the environment inserts +
//! generated ids + ... Generated ids are kept exactly as sampled (BPE is not
//! compositional, so re-tokenizing the decoded text can give other ids than
//! the ones whose log-probabilities were computed); only the inserted text
//! is tokenized, as the delta the template renders for the new messages.

use crate::message::Message;
use crate::template::{Prepared, RenderOptions};
use crate::tokenizer::{ChatTokenizer, Completion, MaskedIds};
use crate::toolcall::ParsedTurn;
use crate::{ChatError, Result};

/// One generated assistant turn, parsed.
#[derive(Clone, Debug, PartialEq)]
pub struct GeneratedTurn {
    pub completion: Completion,
    pub parsed: ParsedTurn,
    /// The assistant message added to the conversation (call ids `call_t<turn>_<n>`).
    pub message: Message,
}

/// An episode in progress: the context to generate from, and the sequence
/// with its policy mask (true on sampled tokens, false on prompt and
/// environment tokens).
pub struct Episode<'a> {
    chat: &'a ChatTokenizer,
    options: RenderOptions,
    prepared: Prepared,
    messages: Vec<Message>,
    seq: MaskedIds,
    awaiting_generation: bool,
    turns: usize,
}

impl ChatTokenizer {
    /// Starts an episode from the opening messages (system, first user
    /// message...): its ids are the template with the generation prompt.
    pub fn start_episode(
        &self,
        messages: Vec<Message>,
        options: RenderOptions,
    ) -> Result<Episode<'_>> {
        let options = RenderOptions {
            add_generation_prompt: true,
            ..options
        };
        let prepared = Prepared::new(&messages, &options);
        let prompt = self
            .template(&options)?
            .render_prepared(&prepared, messages.len(), true)?;
        let mut seq = MaskedIds::default();
        seq.push(&self.encode(&prompt)?, false);
        Ok(Episode {
            chat: self,
            options,
            prepared,
            messages,
            seq,
            awaiting_generation: true,
            turns: 0,
        })
    }
}

impl Episode<'_> {
    /// The ids to generate the next assistant turn from.
    pub fn context(&self) -> &[u32] {
        &self.seq.ids
    }

    pub fn sequence(&self) -> &MaskedIds {
        &self.seq
    }

    pub fn into_sequence(self) -> MaskedIds {
        self.seq
    }

    /// The conversation so far, with generated turns as parsed messages.
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// Appends what the model generated (cut after the first stop token; the
    /// rest is ignored) as policy tokens, and parses it into an assistant
    /// message. A turn cut by the length limit, or ended by another stop
    /// token, gets the end-of-turn token appended as a non-policy token so
    /// that the next turn's context stays well-formed. The returned
    /// `completion.ids` are exactly the ids appended as policy tokens, so
    /// sampling log-probabilities of the first `completion.ids.len()`
    /// generated tokens line up with the mask.
    pub fn push_generated(&mut self, generated: &[u32]) -> Result<GeneratedTurn> {
        if !self.awaiting_generation {
            return Err(ChatError::State(
                "push_generated: the last turn was generated; push the environment's messages first".into(),
            ));
        }
        let (completion, parsed) = self.chat.parse_completion(generated)?;
        self.seq.push(&completion.ids, true);
        let eot = self.chat.end_of_turn_id();
        if completion.stop != Some(eot) {
            self.seq.push(&[eot], false);
        }
        let message = parsed.clone().into_message(&format!("t{}", self.turns));
        self.prepared.push(&message);
        self.messages.push(message.clone());
        self.awaiting_generation = false;
        self.turns += 1;
        Ok(GeneratedTurn {
            completion,
            parsed,
            message,
        })
    }

    /// Appends the environment's reply (tool results, the user's next
    /// message) and the next generation prompt as non-policy tokens.
    ///
    /// The inserted text is the template's rendering of the whole
    /// conversation with the generation prompt, after the end-of-turn token
    /// that closed the last generated turn (found by counting end-of-turn
    /// tokens in the rendering without the new messages). Counting, rather
    /// than string prefixes, also works for templates that render the last
    /// assistant turn differently once it is no longer last (Qwen3's hybrid
    /// template). The `\n` after `<|im_end|>` belongs to this part.
    pub fn push_messages(&mut self, messages: &[Message]) -> Result<()> {
        if self.awaiting_generation {
            return Err(ChatError::State(
                "push_messages: the episode is waiting for a generated turn".into(),
            ));
        }
        if messages.is_empty() {
            return Err(ChatError::State("push_messages: no messages".into()));
        }
        let template = self.chat.template(&self.options)?;
        let eot = self.chat.end_of_turn();
        let before = template.render_prepared(&self.prepared, self.prepared.len(), false)?;
        let closed = before.matches(eot).count();
        let tail = before.rfind(eot).map_or("", |p| &before[p + eot.len()..]);
        if !tail.trim().is_empty() {
            return Err(ChatError::State(format!(
                "push_messages: the template renders {tail:?} after the last generated turn's end-of-turn token"
            )));
        }
        for m in messages {
            self.prepared.push(m);
        }
        self.messages.extend_from_slice(messages);
        let after = template.render_prepared(&self.prepared, self.prepared.len(), true)?;
        let cut = after
            .match_indices(eot)
            .nth(closed.saturating_sub(1))
            .map(|(p, _)| p + eot.len())
            .filter(|_| closed > 0)
            .ok_or_else(|| {
                ChatError::State(format!(
                    "the template rendered fewer than {closed} end-of-turn tokens"
                ))
            })?;
        let inserted = self.chat.encode(&after[cut..])?;
        self.seq.push(&inserted, false);
        self.awaiting_generation = true;
        Ok(())
    }
}
