//! Parity with transformers: `apply_chat_template` (string and ids) on the
//! real Qwen3 tokenizer, with its own (hybrid) template and with the 2507
//! template, for hand-made cases and real tau2 conversations. One Python
//! process answers all cases (tests/reference/chat/chat_reference.py).
//! Ignored by default; tests/run.sh sets TAU2_QWEN3_TOKENIZER_DIR and
//! TAU2_CHAT_REFERENCE_PYTHON and runs them.

mod common;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use serde_json::{Map, Value, json};
use tau2_api::bench::{DataVersion, Domain};
use tau2_bench::chat::agent_view;
use tau2_bench::data::DataDir;
use tau2_bench::domains::LoadedDomain;
use tau2_bench::gold::gold_trajectory;
use tau2_bench::participants::agent_system_prompt;
use tau2_chat::{ChatError, ChatTokenizer, Message, RenderOptions, ToolCall};

#[derive(Clone)]
struct Case {
    name: String,
    messages: Vec<Message>,
    options: RenderOptions,
    /// Use the 2507 fixture instead of the tokenizer's own template.
    use_2507: bool,
    /// Or another template (from TAU2_CHAT_EXTRA_TEMPLATES).
    extra: Option<String>,
}

fn case(name: &str, messages: Vec<Message>, options: RenderOptions) -> Case {
    Case {
        name: name.into(),
        messages,
        options,
        use_2507: false,
        extra: None,
    }
}

fn tool(name: &str, description: &str, properties: Value) -> Value {
    let required: Vec<&String> = properties
        .as_object()
        .map(|p| p.keys().collect())
        .unwrap_or_default();
    json!({"type": "function", "function": {"name": name, "description": description,
           "parameters": {"type": "object", "properties": properties, "required": required}}})
}

fn hand_made() -> Vec<Case> {
    let weather = RenderOptions::with_tools(vec![weather_tool()]);
    let booking = tool(
        "book_flight",
        "Réserve un vol — 预订航班 ✈️",
        json!({"origin": {"type": "string", "description": "IATA, e.g. \"JFK\""},
               "passengers": {"type": "array", "items": {"type": "object",
                   "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}}}},
               "max_price": {"type": "number", "minimum": 0.5, "multipleOf": 1e-05},
               "refundable": {"type": "boolean", "default": false}}),
    );
    let both = RenderOptions::with_tools(vec![weather_tool(), booking]);
    let mut conv = weather_conversation();
    let multi = vec![
        Message::system("Tu es un agent. Réponds en français."),
        Message::user("Météo à Paris et à Zürich ? Puis réserve 2 places."),
        Message::assistant_calls(
            Some("Je vérifie les deux villes.".into()),
            vec![
                ToolCall::new("get_weather", args(json!({"city": "Paris"}))).with_id("a"),
                ToolCall::new("get_weather", args(json!({"city": "Zürich"}))).with_id("b"),
                ToolCall::new(
                    "book_flight",
                    args(json!({"origin": "CDG", "passengers": [{"name": "Zoë", "age": 7}], "max_price": 99.5, "refundable": true})),
                )
                .with_id("c"),
            ],
        ),
        Message::tool("a", "{\"temp\": 21.5, \"sky\": \"☀️\"}"),
        Message::tool("b", "{\"temp\": -3}"),
        Message::tool("c", "Error: no seats"),
        Message::assistant("Paris : 21,5 °C ☀️, Zürich : −3 °C. Plus de places, désolé."),
        Message::user("Merci 🙏"),
    ];
    let string_args = vec![
        Message::user("args as text"),
        Message::assistant_calls(
            Some(String::new()),
            vec![ToolCall {
                id: Some("s".into()),
                name: "get_weather".into(),
                arguments: json!("{\"city\":\"Köln\"}"),
            }],
        ),
        Message::tool("s", "ok"),
    ];
    conv[2].content = Some(String::new()); // the hybrid template needs string content
    let mut cases = vec![
        case("system+tools", conv.clone(), weather.clone()),
        case(
            "system+tools, prompt",
            conv[..2].to_vec(),
            weather.clone().generation_prompt(true),
        ),
        case(
            "after tool result, prompt",
            conv[..4].to_vec(),
            weather.clone().generation_prompt(true),
        ),
        case(
            "multi-call, consecutive results, non-ASCII",
            multi.clone(),
            both.clone(),
        ),
        case(
            "multi-call, prompt",
            multi[..6].to_vec(),
            both.clone().generation_prompt(true),
        ),
        case("no system, tools", conv[1..].to_vec(), weather.clone()),
        case(
            "no system, no tools",
            vec![Message::user("hi"), Message::assistant("hello")],
            RenderOptions::default(),
        ),
        case(
            "no system, prompt",
            vec![Message::user("hi")],
            RenderOptions::default().generation_prompt(true),
        ),
        case(
            "system only, no tools",
            vec![Message::system("S")],
            RenderOptions::default(),
        ),
        case(
            "empty tools list",
            conv.clone(),
            RenderOptions::with_tools(vec![]),
        ),
        case("arguments as string", string_args, weather.clone()),
        case(
            "late system message",
            vec![
                Message::user("a"),
                Message::system("late"),
                Message::user("b"),
            ],
            RenderOptions::default().generation_prompt(true),
        ),
        case(
            "enable_thinking false",
            vec![Message::user("hi")],
            RenderOptions::default()
                .generation_prompt(true)
                .kwarg("enable_thinking", json!(false)),
        ),
        case(
            "reasoning content",
            vec![
                Message::user("q"),
                Message {
                    reasoning_content: Some("think hard".into()),
                    ..Message::assistant("a")
                },
            ],
            RenderOptions::default(),
        ),
        case(
            "think in content",
            vec![
                Message::user("q"),
                Message::assistant("<think>\nhm\n</think>\n\nanswer"),
            ],
            RenderOptions::default(),
        ),
        case(
            "whitespace and digits",
            vec![Message::user(
                "  It is 21 degrees.  \n\n\t1234567 \r\n e\u{301} ",
            )],
            RenderOptions::default().generation_prompt(true),
        ),
        case(
            "null assistant content",
            vec![
                Message::user("q"),
                Message::assistant_calls(None, vec![ToolCall::new("get_weather", Map::new())]),
            ],
            weather.clone(),
        ),
        case("empty conversation", vec![], RenderOptions::default()),
    ];
    let also_2507: Vec<Case> = cases
        .iter()
        .map(|c| Case {
            name: format!("{} [2507]", c.name),
            use_2507: true,
            ..c.clone()
        })
        .collect();
    cases.extend(also_2507);
    cases
}

/// Real tau2 agent conversations: gold trajectories (with the environment's
/// actual tool outputs) in the agent's view, the policy as system prompt and
/// the domain's tool schemas.
fn tau2_cases() -> Vec<Case> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/tau2");
    let mut cases = Vec::new();
    for domain in [Domain::Airline, Domain::Telecom, Domain::Mock] {
        let loaded = LoadedDomain::load(&DataDir::new(&root, DataVersion::Recipe337326e), domain)
            .expect("tau2 data loads");
        let tools: Vec<Value> = loaded
            .environment()
            .tools()
            .iter()
            .map(|t| t.openai_schema())
            .collect();
        let system = agent_system_prompt(&loaded.policy);
        let tasks = loaded.tasks.tasks.iter().filter(|t| {
            t.evaluation_criteria
                .as_ref()
                .and_then(|c| c.actions.as_ref())
                .is_some_and(|a| a.len() >= 2)
        });
        for task in tasks.take(2) {
            let trajectory = gold_trajectory(&loaded, task).expect("gold replay");
            let messages: Vec<Message> = agent_view(&system, &trajectory)
                .iter()
                .map(|m| {
                    let mut m = Message::from_openai(m.to_openai()).expect("OpenAI message");
                    if m.content.is_none() {
                        m.content = Some(String::new());
                    }
                    m
                })
                .collect();
            let parsed: Vec<Message> = messages
                .iter()
                .cloned()
                .map(Message::with_parsed_arguments)
                .collect();
            let options = RenderOptions::with_tools(tools.clone());
            for (label, msgs) in [("string arguments", messages), ("object arguments", parsed)] {
                for use_2507 in [false, true] {
                    cases.push(Case {
                        name: format!(
                            "tau2 {} task {} ({label}){}",
                            domain.as_str(),
                            task.id,
                            if use_2507 { " [2507]" } else { "" }
                        ),
                        messages: msgs.clone(),
                        options: options.clone(),
                        use_2507,
                        extra: None,
                    });
                }
            }
        }
    }
    cases
}

/// A small deterministic generator (xorshift) for random conversations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn text(&mut self) -> String {
        const PIECES: [&str; 24] = [
            "",
            " ",
            "  ",
            "\n",
            "\n\n",
            "\t",
            "\r\n",
            "é",
            "中文",
            "😀",
            "\"q\"",
            "\\",
            "don't",
            "123",
            "1.5",
            "{",
            "}",
            "<tool_call>",
            "</tool_response>",
            "\u{1}",
            "\u{7f}",
            "Hello",
            "the flight",
            "e\u{301}",
        ];
        (0..self.below(6))
            .map(|_| PIECES[self.below(PIECES.len())])
            .collect()
    }

    fn json(&mut self, depth: usize) -> Value {
        match self.below(if depth > 2 { 6 } else { 8 }) {
            0 => Value::Null,
            1 => json!(self.chance(50)),
            2 => json!(self.next() as i64 >> self.below(60)),
            3 => {
                let floats = [0.5, -0.0, 1e-7, 2.5e16, 123.456, -3.0, 0.1 + 0.2, 1e300];
                json!(floats[self.below(floats.len())])
            }
            4 | 5 => json!(self.text()),
            6 => Value::Array((0..self.below(3)).map(|_| self.json(depth + 1)).collect()),
            _ => Value::Object(self.object(depth + 1)),
        }
    }

    fn object(&mut self, depth: usize) -> Map<String, Value> {
        (0..self.below(4))
            .map(|i| (format!("{}{i}", self.text()), self.json(depth)))
            .collect()
    }
}

/// Random conversations (texts with whitespace, unicode, control characters
/// and tag-like strings; arguments with floats and nesting), for both templates.
fn random_cases(n: usize) -> Vec<Case> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut cases = Vec::new();
    for i in 0..n {
        let mut messages = Vec::new();
        if rng.chance(60) {
            messages.push(Message::system(rng.text()));
        }
        for _ in 0..1 + rng.below(3) {
            messages.push(Message::user(rng.text()));
            if rng.chance(60) {
                let calls: Vec<ToolCall> = (0..1 + rng.below(3))
                    .map(|k| {
                        ToolCall::new(format!("tool_{k}"), rng.object(0)).with_id(format!("c{k}"))
                    })
                    .collect();
                let content = if rng.chance(50) {
                    rng.text()
                } else {
                    String::new()
                };
                let results: Vec<Message> = calls
                    .iter()
                    .map(|c| Message::tool(c.id.clone().unwrap_or_default(), rng.text()))
                    .collect();
                messages.push(Message::assistant_calls(Some(content), calls));
                messages.extend(results);
            }
            if rng.chance(70) {
                messages.push(Message::assistant(rng.text()));
            }
        }
        let tools: Vec<Value> = (0..rng.below(3))
            .map(|k| {
                tool(
                    &format!("tool_{k}"),
                    &rng.text(),
                    Value::Object(rng.object(0)),
                )
            })
            .collect();
        let mut options = if tools.is_empty() && rng.chance(50) {
            RenderOptions::default()
        } else {
            RenderOptions::with_tools(tools)
        };
        options.add_generation_prompt = rng.chance(30);
        cases.push(Case {
            name: format!("random {i}"),
            messages,
            options,
            use_2507: i % 2 == 0,
            extra: None,
        });
    }
    cases
}

/// The hand-made cases on every `*.jinja` of the directory named by
/// TAU2_CHAT_EXTRA_TEMPLATES (optional: for checking other models'
/// templates locally without committing them).
fn extra_cases(base: &[Case]) -> Vec<Case> {
    let Some(dir) = std::env::var_os("TAU2_CHAT_EXTRA_TEMPLATES") else {
        return Vec::new();
    };
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .expect("TAU2_CHAT_EXTRA_TEMPLATES is a directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "jinja"))
        .collect();
    paths.sort();
    let mut cases = Vec::new();
    for path in paths {
        let source = std::fs::read_to_string(&path).expect("template readable");
        for c in base.iter().filter(|c| !c.use_2507) {
            cases.push(Case {
                name: format!("{} [{}]", c.name, path.display()),
                extra: Some(source.clone()),
                ..c.clone()
            });
        }
    }
    cases
}

const ENCODE: [&str; 8] = [
    "It is 21 degrees.  \n",
    "don't I'll we've THEY'RE",
    "12345678901234567890 3.14159",
    "   leading\n\n\n   trailing   ",
    "日本語のテキストと中文 한국어 😀👍🏽 e\u{301}",
    "tab\tcr\r\nff\u{c}",
    "<tool_call>\n{\"name\": \"x\"}\n</tool_call><|im_end|><|endoftext|>",
    "mixed<think>a</think>b<tool_response>c</tool_response>",
];

fn run_reference(chat_dir: &Path, cases: &[Case]) -> Value {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/reference/chat/chat_reference.py");
    let request = json!({
        "tokenizer_dir": chat_dir,
        "cases": cases.iter().map(|c| json!({
            "messages": c.messages,
            "tools": c.options.tools,
            "add_generation_prompt": c.options.add_generation_prompt,
            "chat_template": c.extra.as_deref().or(c.use_2507.then_some(TEMPLATE_2507)),
            "kwargs": c.options.extra,
        })).collect::<Vec<_>>(),
        "encode": ENCODE,
    });
    let mut child = Command::new(reference_python())
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the reference python starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(request.to_string().as_bytes())
        .expect("request written");
    let out = child.wait_with_output().expect("the reference runs");
    assert!(
        out.status.success(),
        "chat_reference.py failed: {}",
        out.status
    );
    serde_json::from_slice(&out.stdout).expect("the reference answers JSON")
}

#[test]
#[ignore = "needs TAU2_QWEN3_TOKENIZER_DIR and TAU2_CHAT_REFERENCE_PYTHON (tests/run.sh)"]
fn templates_and_ids_match_transformers() {
    let dir = qwen3_dir();
    let own = ChatTokenizer::from_dir(&dir).expect("Qwen3 tokenizer loads");
    let v2507 = own
        .clone()
        .with_template(TEMPLATE_2507)
        .expect("2507 template compiles");
    let mut cases = hand_made();
    let tau2 = tau2_cases();
    assert!(
        tau2.len() >= 16,
        "expected tau2 conversations, got {}",
        tau2.len()
    );
    cases.extend(tau2);
    cases.extend(random_cases(60));
    let extra = extra_cases(&hand_made());
    let extra_chats: std::collections::HashMap<String, ChatTokenizer> = extra
        .iter()
        .filter_map(|c| c.extra.clone())
        .map(|source| {
            let chat = own
                .clone()
                .with_template(source.clone())
                .expect("extra template compiles");
            (source, chat)
        })
        .collect();
    cases.extend(extra);
    let reference = run_reference(&dir, &cases);
    eprintln!("reference versions: {}", reference["versions"]);

    let mut failures = Vec::new();
    let (mut compared, mut sft_checked, mut sft_refused) = (0, 0, 0);
    for (case, want) in cases
        .iter()
        .zip(reference["cases"].as_array().expect("cases"))
    {
        let chat = match &case.extra {
            Some(source) => &extra_chats[source],
            None if case.use_2507 => &v2507,
            None => &own,
        };
        let got = chat.render(&case.messages, &case.options);
        match (&got, want.get("error")) {
            (Err(ours), Some(theirs)) => {
                // Both refuse (an empty conversation; null content in the hybrid template).
                eprintln!("{}: both fail: {ours} / {theirs}", case.name);
                continue;
            }
            (Err(e), None) => {
                failures.push(format!(
                    "{}: we fail ({e}), transformers renders",
                    case.name
                ));
                continue;
            }
            (Ok(_), Some(e)) => {
                failures.push(format!(
                    "{}: we render, transformers fails ({e})",
                    case.name
                ));
                continue;
            }
            (Ok(text), None) => {
                compared += 1;
                if want["text"].as_str() != Some(text.as_str()) {
                    failures.push(format!(
                        "{}: text differs\n--- ours\n{text}\n--- transformers\n{}",
                        case.name,
                        want["text"].as_str().unwrap_or_default()
                    ));
                    continue;
                }
            }
        }
        let ids = chat.render_ids(&case.messages, &case.options).expect("ids");
        let want_ids: Vec<u32> = serde_json::from_value(want["ids"].clone()).expect("ids");
        if ids != want_ids {
            failures.push(format!("{}: ids differ", case.name));
        }
        // SFT ids are the whole rendering's ids wherever the template is
        // prefix-stable (random texts may start a turn with whitespace that
        // merges across the header: refused, never silently different).
        if case.use_2507 && !case.options.add_generation_prompt {
            match chat.encode_sft(&case.messages, &case.options) {
                Ok(seq) if seq.ids == want_ids => sft_checked += 1,
                Ok(_) => failures.push(format!("{}: SFT ids differ", case.name)),
                Err(ChatError::TokenBoundary { .. }) if case.name.starts_with("random") => {
                    sft_refused += 1
                }
                Err(e) => failures.push(format!("{}: SFT failed: {e}", case.name)),
            }
        }
    }
    for (text, want) in ENCODE
        .iter()
        .zip(reference["encode"].as_array().expect("encode"))
    {
        let want: Vec<u32> = serde_json::from_value(want.clone()).expect("ids");
        if own.encode(text).expect("encodes") != want {
            failures.push(format!("encode {text:?} differs"));
        }
    }
    eprintln!(
        "{compared} of {} cases rendered on both sides; SFT ids checked on {sft_checked}, refused on {sft_refused}",
        cases.len()
    );
    assert!(
        compared >= 100,
        "only {compared} cases rendered on both sides"
    );
    assert!(sft_checked >= 30, "SFT checked on only {sft_checked} cases");
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
