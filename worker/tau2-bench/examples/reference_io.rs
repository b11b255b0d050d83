//! The Rust side of the parity harness: the same commands and JSON output as
//! `tests/reference/tau2_reference.py` runs on the official implementation.
//!
//!   cargo run -p tau2-bench --example reference_io -- schemas
//!   cargo run -p tau2-bench --example reference_io -- db airline
//!   cargo run -p tau2-bench --example reference_io -- calls airline < sessions.jsonl
//!
//! Data: `TAU2_DATA_DIR`, else `shared/tau2` beside the repository.

use std::io::{BufRead, Write};

use serde_json::{Value, json};
use tau2_api::bench::{DataVersion, Domain};
use tau2_bench::data::DataDir;
use tau2_bench::domains::LoadedDomain;
use tau2_bench::harness::run_session;

fn data_dir() -> DataDir {
    let root = std::env::var_os("TAU2_DATA_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/tau2")
        });
    DataDir::new(root, DataVersion::Recipe337326e)
}

fn domain(name: &str) -> Result<Domain, String> {
    Domain::ALL
        .into_iter()
        .find(|d| d.as_str() == name)
        .ok_or_else(|| format!("unknown domain {name}"))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let data = data_dir();
    let out = std::io::stdout();
    let mut out = out.lock();
    match args.first().map(String::as_str) {
        Some("schemas") => {
            let mut all = serde_json::Map::new();
            for d in Domain::ALL {
                let Ok(loaded) = LoadedDomain::load(&data, d) else {
                    continue;
                };
                let env = loaded.environment();
                let agent: Vec<Value> = env.tools().iter().map(|t| t.openai_schema()).collect();
                let user = env
                    .user_tools()
                    .map(|u| u.iter().map(|t| t.openai_schema()).collect::<Vec<_>>());
                all.insert(d.as_str().into(), json!({"agent": agent, "user": user}));
            }
            writeln!(out, "{}", tau2_bench::py::json::dumps(&Value::Object(all)))?;
        }
        Some("db") => {
            let loaded =
                LoadedDomain::load(&data, domain(args.get(1).map_or("", String::as_str))?)?;
            let env = loaded.environment();
            let v = json!({"agent": env.db(), "user": env.user_db(), "agent_hash": env.db_hash(), "user_hash": env.user_db_hash()});
            writeln!(out, "{}", tau2_bench::py::json::dumps(&v))?;
        }
        Some("calls") => {
            let loaded =
                LoadedDomain::load(&data, domain(args.get(1).map_or("", String::as_str))?)?;
            for line in std::io::stdin().lock().lines() {
                let line = line?;
                if line.trim().is_empty() {
                    continue;
                }
                let session: Value = serde_json::from_str(&line)?;
                writeln!(
                    out,
                    "{}",
                    tau2_bench::py::json::dumps(&run_session(&loaded, &session))
                )?;
            }
        }
        Some("calc") => {
            // One expression per line (a JSON string): `calculate`'s result or error.
            for line in std::io::stdin().lock().lines() {
                let expression: Value = serde_json::from_str(&line?)?;
                let result = match tau2_bench::py::calc::calculate(&expression) {
                    Ok(text) => json!({"ok": text}),
                    Err(e) => json!({"err": format!("{}: {}", e.kind, e.message)}),
                };
                writeln!(out, "{result}")?;
            }
        }
        _ => {
            return Err(
                "usage: reference_io schemas | db <domain> | calls <domain> < sessions.jsonl | calc < expressions.jsonl"
                    .into(),
            );
        }
    }
    Ok(())
}
