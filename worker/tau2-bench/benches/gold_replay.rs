//! Gold replay throughput, ours against the official implementation in the
//! same run: every task of every domain is replayed and scored; prints
//! episodes per second for both and their ratio.
//!
//!   TAU2_REFERENCE_PYTHON=$(tests/reference/setup.sh) cargo bench -p tau2-bench --bench gold_replay
//!
//! Both sides load the domain data first and time only the replays (the
//! official side after one warm-up task; ours repeats small domains for a
//! second at least).

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use serde_json::Value;
use tau2_api::bench::{DataVersion, Domain};
use tau2_bench::data::DataDir;
use tau2_bench::domains::LoadedDomain;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn official(domain: Domain) -> Option<(usize, f64)> {
    let python = std::env::var("TAU2_REFERENCE_PYTHON").ok()?;
    let out = Command::new(python)
        .arg(repo().join("tests/reference/tau2_reference.py"))
        .args(["bench", domain.as_str()])
        .output()
        .ok()?;
    let line: Value = serde_json::from_slice(&out.stdout).ok()?;
    Some((line["tasks"].as_u64()? as usize, line["seconds"].as_f64()?))
}

fn main() {
    let root = std::env::var_os("TAU2_DATA_DIR")
        .map_or_else(|| repo().join("../shared/tau2"), PathBuf::from);
    let data = DataDir::new(root, DataVersion::Recipe337326e);
    println!(
        "{:<8} {:>6} {:>14} {:>14} {:>8}",
        "domain", "tasks", "ours ep/s", "official ep/s", "ratio"
    );
    let (mut ours_total, mut theirs_total) = ((0usize, 0.0f64), (0usize, 0.0f64));
    for domain in Domain::ALL {
        let loaded = match LoadedDomain::load(&data, domain) {
            Ok(l) => l,
            Err(e) => {
                println!("{domain:<8} unavailable: {e}");
                continue;
            }
        };
        // Whole passes over the tasks until a second has passed, so that
        // small domains give stable figures.
        let start = Instant::now();
        let (mut rewarded, mut n) = (0, 0);
        while n == 0 || start.elapsed().as_secs_f64() < 1.0 {
            rewarded = 0;
            for task in &loaded.tasks.tasks {
                if let Ok(r) = tau2_bench::gold::replay(&loaded, task) {
                    rewarded += usize::from(r.reward_info.is_success());
                }
            }
            n += loaded.tasks.tasks.len();
        }
        let secs = start.elapsed().as_secs_f64();
        let tasks = loaded.tasks.tasks.len();
        ours_total = (ours_total.0 + n, ours_total.1 + secs);
        let ours = n as f64 / secs;
        match official(domain) {
            Some((m, their_secs)) => {
                theirs_total = (theirs_total.0 + m, theirs_total.1 + their_secs);
                let theirs = m as f64 / their_secs;
                println!(
                    "{domain:<8} {tasks:>6} {ours:>14.1} {theirs:>14.1} {:>7.1}x   ({rewarded} rewarded)",
                    ours / theirs
                );
            }
            None => println!(
                "{domain:<8} {tasks:>6} {ours:>14.1} {:>14} {:>8}   ({rewarded} rewarded; set TAU2_REFERENCE_PYTHON for the official side)",
                "-", "-"
            ),
        }
    }
    if theirs_total.0 > 0 {
        let (ours, theirs) = (
            ours_total.0 as f64 / ours_total.1,
            theirs_total.0 as f64 / theirs_total.1,
        );
        println!(
            "{:<8} {:>6} {ours:>14.1} {theirs:>14.1} {:>7.1}x",
            "all",
            theirs_total.0,
            ours / theirs
        );
    }
}
