//! The official NL-assertion judge: an LLM grades each assertion against the
//! conversation, with the official prompt, at temperature 0.

use serde_json::Value;

use crate::chat::{ChatMessage, ChatModel, Sampling};
use crate::evaluator::{NlAssertionCheck, NlJudge};
use crate::message::Message;
use crate::py;

const SYSTEM_PROMPT: &str = "
        TASK
        - You will be given a list of expected outcomes and a conversation that was collected during a test case run.
        - The conversation is between an agent and a customer.
        - Your job is to evaluate whether the agent satisfies each of the expected outcomes.
        - Grade each expected outcome individually.

        FORMAT
        - Your response should be a JSON object with the following fields:
        - `reasoning`: a short explanation for your classification
        - `metExpectation`: `true` if the agent satisfies the expected outcomes, `false` otherwise
        - `expectedOutcome`: repeat the expectation from the input that you are grading
        
        Example response structure:
        {
            \"results\": [
                {
                    \"expectedOutcome\": \"<one of the expected outcomes from the input>\",
                    \"reasoning\": \"<reasoning trace>\",
                    \"metExpectation\": <false or true>,
                }
            ]
        }
        ";

/// The conversation as the judge reads it: `role: content` lines.
pub fn transcript(trajectory: &[Message]) -> String {
    trajectory
        .iter()
        .map(|m| {
            let (role, content) = match m {
                Message::System(s) => ("system", s.content.as_deref()),
                Message::Assistant(a) => ("assistant", a.content.as_deref()),
                Message::User(u) => ("user", u.content.as_deref()),
                Message::Tool(t) => ("tool", t.content.as_deref()),
            };
            format!("{role}: {}", content.unwrap_or("None"))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The judge's user prompt (the assertions as a Python list literal).
pub fn user_prompt(trajectory: &[Message], assertions: &[String]) -> String {
    let list = Value::Array(
        assertions
            .iter()
            .map(|a| Value::String(a.clone()))
            .collect(),
    );
    format!(
        "\n        conversation:\n        {}\n        \n        expectedOutcomes:\n        {}\n        ",
        transcript(trajectory),
        py::repr(&list)
    )
}

/// An LLM judge over any chat model (the official default is gpt-4o-mini at temperature 0).
pub struct LlmJudge<M> {
    model: M,
    runtime: tokio::runtime::Handle,
}

impl<M: ChatModel> LlmJudge<M> {
    /// The judge blocks on `runtime` (the evaluator is synchronous); call it
    /// from a blocking thread, not from an async task of that runtime.
    pub fn new(model: M, runtime: tokio::runtime::Handle) -> Self {
        Self { model, runtime }
    }
}

impl<M: ChatModel> NlJudge for LlmJudge<M> {
    fn judge(
        &self,
        trajectory: &[Message],
        assertions: &[String],
    ) -> Result<Vec<NlAssertionCheck>, String> {
        let messages = [
            ChatMessage::System(SYSTEM_PROMPT.to_string()),
            ChatMessage::User(user_prompt(trajectory, assertions)),
        ];
        let reply = self
            .runtime
            .block_on(self.model.complete(&messages, &[], &Sampling::default()))
            .map_err(|e| e.to_string())?;
        parse_verdicts(reply.content.as_deref().unwrap_or_default())
    }
}

/// The judge's JSON answer: `{"results": [{expectedOutcome, reasoning, metExpectation}]}`.
pub fn parse_verdicts(text: &str) -> Result<Vec<NlAssertionCheck>, String> {
    let data: Value = serde_json::from_str(text)
        .map_err(|e| format!("the judge's answer is not JSON ({e}): {text}"))?;
    let results = data
        .get("results")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    results
        .iter()
        .map(|r| {
            let field = |k: &str| {
                r.get(k)
                    .ok_or_else(|| format!("a judge result lacks {k}: {r}"))
            };
            Ok(NlAssertionCheck {
                nl_assertion: field("expectedOutcome")?
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                met: field("metExpectation")?.as_bool().unwrap_or(false),
                justification: field("reasoning")?.as_str().unwrap_or_default().to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::ParticipantMessage;

    #[test]
    fn prompt_lists_messages_and_assertions_as_upstream() {
        let t = vec![
            Message::Assistant(ParticipantMessage::text("Hi!")),
            Message::User(ParticipantMessage::calls(vec![])),
        ];
        let p = user_prompt(&t, &["The agent greets".into(), "It's done".into()]);
        assert_eq!(
            p,
            "\n        conversation:\n        assistant: Hi!\nuser: None\n        \n        expectedOutcomes:\n        ['The agent greets', \"It's done\"]\n        "
        );
    }

    #[test]
    fn verdicts_parse_and_bad_answers_are_errors() {
        let v = parse_verdicts(
            r#"{"results": [{"expectedOutcome": "a", "reasoning": "r", "metExpectation": true}]}"#,
        )
        .expect("parses");
        assert_eq!((v[0].nl_assertion.as_str(), v[0].met), ("a", true));
        assert!(parse_verdicts("no json").is_err());
        assert!(parse_verdicts(r#"{"results": [{"reasoning": "r"}]}"#).is_err());
    }
}
