//! Rendering, SFT masks, episodes and completion decoding on a tiny
//! byte-level tokenizer (no downloads; the real tokenizer is in qwen3.rs).

mod common;

use common::*;
use serde_json::json;
use tau2_chat::{ChatError, ChatTokenizer, Message, RenderOptions, Role, ToolCall};

fn tools() -> RenderOptions {
    RenderOptions::with_tools(vec![weather_tool()])
}

#[test]
fn renders_the_documented_2507_example() {
    let chat = tiny(TEMPLATE_2507);
    let text = chat
        .render(&weather_conversation(), &tools())
        .expect("succeeds");
    assert_eq!(text, WEATHER_RENDERED);
    let prompt = chat
        .render(
            &weather_conversation()[..2],
            &tools().generation_prompt(true),
        )
        .expect("succeeds");
    assert!(prompt.ends_with("Weather in Paris?<|im_end|>\n<|im_start|>assistant\n"));
    // Without tools and without a system message there is no system turn at all.
    let bare = chat
        .render(
            &[Message::user("hi")],
            &RenderOptions::default().generation_prompt(true),
        )
        .expect("succeeds");
    assert_eq!(
        bare,
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn sft_mask_covers_exactly_assistant_turns() {
    let chat = tiny(TEMPLATE_2507);
    let conv = weather_conversation();
    let seq = chat.encode_sft(&conv, &tools()).expect("succeeds");
    assert_eq!(seq.ids, chat.encode(WEATHER_RENDERED).expect("succeeds"));
    assert_eq!(seq.mask.len(), seq.ids.len());
    assert_eq!(
        masked_spans(&chat, &seq.ids, &seq.mask),
        [
            "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call><|im_end|>",
            "It is 21°C in Paris.<|im_end|>",
        ]
    );
    // The token right before each span is the header's "\n", right after it the template's "\n".
    let im_end = chat.end_of_turn_id();
    for (i, (&id, &m)) in seq.ids.iter().zip(&seq.mask).enumerate() {
        if m && id == im_end {
            assert!(!seq.mask.get(i + 1).copied().unwrap_or(false));
        }
    }
    // A multi-call turn with content, consecutive tool results and a late system message.
    let conv = vec![
        Message::user("Two things"),
        Message::assistant_calls(
            Some("Checking both.".into()),
            vec![
                ToolCall::new("a", args(json!({"x": 1}))),
                ToolCall {
                    id: None,
                    name: "b".into(),
                    arguments: json!("{\"y\": \"é\"}"),
                },
            ],
        ),
        Message::tool("1", "ra"),
        Message::tool("2", "rb"),
        Message::system("be brief"),
        Message::assistant("Done."),
    ];
    let seq = chat
        .encode_sft(&conv, &RenderOptions::default())
        .expect("succeeds");
    assert_eq!(
        masked_spans(&chat, &seq.ids, &seq.mask),
        [
            "Checking both.\n<tool_call>\n{\"name\": \"a\", \"arguments\": {\"x\": 1}}\n</tool_call>\n<tool_call>\n{\"name\": \"b\", \"arguments\": {\"y\": \"é\"}}\n</tool_call><|im_end|>",
            "Done.<|im_end|>",
        ]
    );
    // No assistant turn: nothing to train on.
    let seq = chat
        .encode_sft(&[Message::user("x")], &RenderOptions::default())
        .expect("succeeds");
    assert!(!seq.mask.contains(&true));
}

#[test]
fn sft_rejects_templates_that_are_not_prefix_stable() {
    // Like Qwen3's hybrid template: only the last assistant turn gets a think block.
    let hybrid = "{% for m in messages %}<|im_start|>{{ m.role }}\n{% if m.role == 'assistant' and loop.last %}<think>\n\n</think>\n\n{% endif %}{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
    let chat = tiny(hybrid);
    let one = [Message::user("q"), Message::assistant("a")];
    let seq = chat
        .encode_sft(&one, &RenderOptions::default())
        .expect("succeeds");
    assert_eq!(
        masked_spans(&chat, &seq.ids, &seq.mask),
        ["<think>\n\n</think>\n\na<|im_end|>"]
    );
    let two = [
        Message::user("q"),
        Message::assistant("a"),
        Message::user("q2"),
        Message::assistant("b"),
    ];
    let err = chat
        .encode_sft(&two, &RenderOptions::default())
        .expect_err("fails");
    assert!(
        matches!(err, ChatError::NotPrefixStable { message: 1, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("not prefix-stable"));
}

#[test]
fn sft_rejects_merges_across_turn_boundaries() {
    // "assistant\n" + "\nHi": the tiny vocabulary merges "\n\n" across the header boundary.
    let chat = tiny(TEMPLATE_2507);
    let conv = [Message::user("q"), Message::assistant("\nHi")];
    let err = chat
        .encode_sft(&conv, &RenderOptions::default())
        .expect_err("fails");
    assert!(matches!(err, ChatError::TokenBoundary { .. }), "{err}");
}

#[test]
fn sft_reports_template_errors() {
    let chat = tiny("{{ raise_exception('only user/assistant') }}");
    let err = chat
        .encode_sft(&[Message::user("q")], &RenderOptions::default())
        .expect_err("fails");
    assert!(err.to_string().contains("only user/assistant"), "{err}");
}

#[test]
fn decode_completion_strips_stop_tokens() {
    let chat = tiny(TEMPLATE_2507);
    let mut ids = chat.encode("Hi <tool_call>").expect("succeeds");
    let eot = chat.end_of_turn_id();
    let eos = chat.token_to_id("<|endoftext|>").expect("succeeds");
    assert_eq!(chat.stop_ids(), [eot, eos]);
    ids.push(eot);
    ids.extend(chat.encode("ignored").expect("succeeds"));
    let c = chat.decode_completion(&ids).expect("succeeds");
    assert_eq!(c.text, "Hi <tool_call>");
    assert_eq!(c.stop, Some(eot));
    assert_eq!(c.ids.last(), Some(&eot));
    let c = chat.decode_completion(&[eos]).expect("succeeds");
    assert_eq!((c.text.as_str(), c.stop), ("", Some(eos)));
    // Special tokens in the middle are dropped from the text; no stop means truncated.
    let mut ids = chat.encode("a").expect("succeeds");
    ids.push(chat.token_to_id("<|im_start|>").expect("succeeds"));
    ids.extend(chat.encode("b").expect("succeeds"));
    let c = chat.decode_completion(&ids).expect("succeeds");
    assert_eq!((c.text.as_str(), c.stop), ("ab", None));
    assert!(
        chat.decode_completion(&[])
            .expect("succeeds")
            .text
            .is_empty()
    );
    // Ids outside the vocabulary are skipped by the decoder, not a panic.
    let _ = chat.decode_completion(&[u32::MAX, 3]);
}

/// The ids the model would generate for an assistant turn: its rendering, then <|im_end|>.
fn generated(chat: &ChatTokenizer, text: &str) -> Vec<u32> {
    let mut ids = chat.encode(text).expect("succeeds");
    ids.push(chat.end_of_turn_id());
    ids
}

#[test]
fn episodes_are_id_exact_and_mask_the_sampled_tokens() {
    let chat = tiny(TEMPLATE_2507);
    let conv = weather_conversation();
    let mut ep = chat
        .start_episode(conv[..2].to_vec(), tools())
        .expect("succeeds");
    let prompt_len = ep.context().len();
    assert_eq!(
        ep.context(),
        chat.render_ids(&conv[..2], &tools().generation_prompt(true))
            .expect("succeeds")
    );

    let call = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
    let first = generated(&chat, call);
    let turn = ep.push_generated(&first).expect("succeeds");
    assert!(turn.parsed.is_clean());
    assert_eq!(turn.message.tool_calls[0].name, "get_weather");
    assert_eq!(turn.message.tool_calls[0].id.as_deref(), Some("call_t0_0"));
    assert!(matches!(
        ep.push_generated(&first),
        Err(ChatError::State(_))
    ));

    ep.push_messages(&[Message::tool("call_t0_0", "{\"temp\": 21}")])
        .expect("succeeds");
    assert!(matches!(
        ep.push_messages(&[Message::user("x")]),
        Err(ChatError::State(_))
    ));
    let second = generated(&chat, "It is 21°C in Paris.");
    let turn = ep.push_generated(&second).expect("succeeds");
    assert_eq!(
        turn.message.content.as_deref(),
        Some("It is 21°C in Paris.")
    );
    assert_eq!(turn.message.role, Role::Assistant);

    // Same ids as tokenizing the whole rendered conversation (up to the final <|im_end|>).
    let whole = chat
        .encode(WEATHER_RENDERED.trim_end_matches('\n'))
        .expect("succeeds");
    let seq = ep.sequence().clone();
    assert_eq!(seq.ids, whole);
    assert_eq!(
        seq.mask.iter().filter(|m| **m).count(),
        first.len() + second.len()
    );
    assert!(!seq.mask[..prompt_len].contains(&true));
    assert_eq!(
        masked_spans(&chat, &seq.ids, &seq.mask),
        [
            format!("{call}<|im_end|>"),
            "It is 21°C in Paris.<|im_end|>".to_string()
        ]
    );
    assert_eq!(ep.messages().len(), 5);
}

#[test]
fn episodes_keep_generated_ids_verbatim() {
    let chat = tiny(TEMPLATE_2507);
    let mut ep = chat
        .start_episode(vec![Message::user("q")], RenderOptions::default())
        .expect("succeeds");
    // "\n" "\n" as two byte tokens, where tokenizing the text would give the merged id 256.
    let nl = chat.encode("\n").expect("succeeds")[0];
    let sampled = vec![
        chat.encode("a").expect("succeeds")[0],
        nl,
        nl,
        chat.end_of_turn_id(),
    ];
    ep.push_generated(&sampled).expect("succeeds");
    ep.push_messages(&[Message::user("more")])
        .expect("succeeds");
    let seq = ep.into_sequence();
    let start = seq.mask.iter().position(|m| *m).expect("succeeds");
    assert_eq!(&seq.ids[start..start + 4], &sampled[..]);
    assert_eq!(seq.mask[start..start + 4], [true; 4]);
    // The inserted part: "\n<|im_start|>user\nmore<|im_end|>\n<|im_start|>assistant\n".
    let tail = chat.decode(&seq.ids[start + 4..], false).expect("succeeds");
    assert_eq!(
        tail,
        "\n<|im_start|>user\nmore<|im_end|>\n<|im_start|>assistant\n"
    );
    assert!(!seq.mask[start + 4..].contains(&true));
}

#[test]
fn truncated_generations_get_an_inserted_end_of_turn() {
    let chat = tiny(TEMPLATE_2507);
    let mut ep = chat
        .start_episode(vec![Message::user("q")], RenderOptions::default())
        .expect("succeeds");
    let cut = chat
        .encode("<tool_call>\n{\"name\": \"get_we")
        .expect("succeeds");
    let turn = ep.push_generated(&cut).expect("succeeds");
    assert_eq!(turn.completion.stop, None);
    assert_eq!(turn.parsed.errors().count(), 1);
    assert!(turn.message.tool_calls.is_empty());
    let seq = ep.sequence();
    assert_eq!(seq.ids.last(), Some(&chat.end_of_turn_id()));
    assert_eq!(seq.mask.last(), Some(&false));
    assert_eq!(seq.mask.iter().filter(|m| **m).count(), cut.len());
    ep.push_messages(&[Message::user("again")])
        .expect("succeeds");
}

#[test]
fn episodes_work_with_templates_that_rewrite_the_last_turn() {
    // The hybrid-style template renders the last assistant turn differently;
    // the delta is still cut after the generated turn's <|im_end|>.
    let hybrid = "{% for m in messages %}<|im_start|>{{ m.role }}\n{% if m.role == 'assistant' and loop.last %}<think>\n\n</think>\n\n{% endif %}{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
    let chat = tiny(hybrid);
    let mut ep = chat
        .start_episode(vec![Message::user("q")], RenderOptions::default())
        .expect("succeeds");
    ep.push_generated(&generated(&chat, "a")).expect("succeeds");
    let before = ep.context().len();
    ep.push_messages(&[Message::user("q2")]).expect("succeeds");
    let tail = chat
        .decode(&ep.context()[before..], false)
        .expect("succeeds");
    assert_eq!(
        tail,
        "\n<|im_start|>user\nq2<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn named_templates_and_model_directories() {
    let dir = std::env::temp_dir().join(format!("tau2-chat-dir-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("succeeds");
    std::fs::write(dir.join("tokenizer.json"), tiny_tokenizer_json()).expect("succeeds");
    let mut config = tiny_config();
    config["chat_template"] = json!([
        {"name": "default", "template": "D{{ messages|length }}"},
        {"name": "tool_use", "template": "T{{ tools|length }}"}
    ]);
    config["eos_token"] = json!({"content": "<|im_end|>", "special": true});
    std::fs::write(dir.join("tokenizer_config.json"), config.to_string()).expect("succeeds");
    std::fs::write(
        dir.join("generation_config.json"),
        r#"{"eos_token_id": [259, 257]}"#,
    )
    .expect("succeeds");
    let chat = ChatTokenizer::from_dir(&dir).expect("succeeds");
    assert_eq!(chat.stop_ids(), [259, 257]);
    let msgs = [Message::user("x")];
    assert_eq!(
        chat.render(&msgs, &RenderOptions::default())
            .expect("succeeds"),
        "D1"
    );
    assert_eq!(chat.render(&msgs, &tools()).expect("succeeds"), "T1");
    // chat_template.jinja wins over the config, as in transformers.
    std::fs::write(dir.join("chat_template.jinja"), "J{{ eos_token }}").expect("succeeds");
    let chat = ChatTokenizer::from_dir(&dir).expect("succeeds");
    assert_eq!(
        chat.render(&msgs, &tools()).expect("succeeds"),
        "J<|im_end|>"
    );
    let chat = chat
        .with_template("W{{ eos_token }}{{ pad_token }}")
        .expect("succeeds");
    assert_eq!(
        chat.render(&msgs, &tools()).expect("succeeds"),
        "W<|im_end|><|endoftext|>"
    );
    std::fs::remove_dir_all(&dir).expect("succeeds");

    assert!(matches!(
        ChatTokenizer::from_dir("/nonexistent/tau2-chat"),
        Err(ChatError::Tokenizer(_))
    ));
    let no_eos = ChatTokenizer::from_json(&tiny_tokenizer_json(), &json!({}), None);
    assert!(matches!(no_eos, Err(ChatError::Config(_))));
    let no_template =
        ChatTokenizer::from_json(&tiny_tokenizer_json(), &tiny_config(), None).expect("succeeds");
    assert!(matches!(
        no_template.render(&msgs, &RenderOptions::default()),
        Err(ChatError::Config(_))
    ));
}
