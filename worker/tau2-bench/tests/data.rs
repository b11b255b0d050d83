//! Loading tau2-bench data: both layouts, the recipe overlay, and clear
//! errors for missing or malformed files.

use std::path::{Path, PathBuf};

use tau2_api::bench::{DataVersion, Domain, Split};
use tau2_bench::data::{DataDir, TaskSet};
use tau2_bench::domains::LoadedDomain;

fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/tau2")
}

/// Copies the mock domain into a fresh tau2-bench-layout directory.
fn copy_mock(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tau2-data-{name}-{}", std::process::id()));
    let target = dir.join("mock");
    std::fs::create_dir_all(&target).expect("temp dir");
    for entry in std::fs::read_dir(shared().join("data/mock")).expect("mock data") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), target.join(entry.file_name())).expect("copy");
    }
    dir
}

/// The error of loading the mock domain from `dir`.
fn load_error(dir: &Path) -> String {
    match LoadedDomain::load(&DataDir::new(dir, DataVersion::Latest), Domain::Mock) {
        Ok(_) => panic!("loading {} should fail", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_recipe_overlay_replaces_only_the_files_that_differ() {
    let recipe = TaskSet::load(
        &DataDir::new(shared(), DataVersion::Recipe337326e),
        Domain::Mock,
    )
    .expect("loads");
    let latest =
        TaskSet::load(&DataDir::new(shared(), DataVersion::Latest), Domain::Mock).expect("loads");
    assert_eq!(recipe.tasks.len(), 9);
    assert_eq!(latest.tasks.len(), 10);
    assert_eq!(recipe.split(Split::Base).expect("base").len(), 9);
}

#[test]
fn a_plain_tau2_bench_layout_loads_too() {
    let dir = copy_mock("plain");
    let loaded =
        LoadedDomain::load(&DataDir::new(&dir, DataVersion::Latest), Domain::Mock).expect("loads");
    assert_eq!(loaded.tasks.tasks.len(), 10);
    assert!(loaded.policy.contains("task"));
}

#[test]
fn malformed_or_missing_files_are_named_in_the_error() {
    let dir = copy_mock("broken");
    std::fs::write(dir.join("mock/db.json"), "{\"tasks\": [}").expect("write");
    let msg = load_error(&dir);
    assert!(
        msg.contains("mock/db.json") && msg.contains("invalid JSON"),
        "{msg}"
    );

    std::fs::write(
        dir.join("mock/db.json"),
        "{\"tasks\": {}, \"users\": {\"u\": {\"name\": 1}}}",
    )
    .expect("write");
    let msg = load_error(&dir);
    assert!(
        msg.contains("mock/db.json") && msg.contains("invalid database"),
        "{msg}"
    );

    std::fs::remove_file(dir.join("mock/policy.md")).expect("remove");
    std::fs::write(
        dir.join("mock/db.json"),
        std::fs::read(shared().join("data/mock/db.json")).expect("read"),
    )
    .expect("write");
    let msg = load_error(&dir);
    assert!(
        msg.contains("mock/policy.md") && msg.contains("cannot read"),
        "{msg}"
    );

    let msg = LoadedDomain::load(
        &DataDir::new(dir.join("nowhere"), DataVersion::Latest),
        Domain::Mock,
    )
    .err()
    .expect("fails")
    .to_string();
    assert!(msg.contains("no tau2-bench data for domain mock"), "{msg}");
}

#[test]
fn a_split_naming_an_unknown_task_is_an_error() {
    let dir = copy_mock("split");
    std::fs::write(
        dir.join("mock/split_tasks.json"),
        r#"{"base": ["create_task_1", "ghost"]}"#,
    )
    .expect("write");
    let msg = TaskSet::load(&DataDir::new(&dir, DataVersion::Latest), Domain::Mock)
        .expect_err("fails")
        .to_string();
    assert!(
        msg.contains("split_tasks.json") && msg.contains("\"ghost\""),
        "{msg}"
    );
}

#[test]
fn every_domain_loads_both_data_versions_and_replays_gold_actions() {
    for version in [DataVersion::Recipe337326e, DataVersion::Latest] {
        for domain in Domain::ALL {
            let loaded = LoadedDomain::load(&DataDir::new(shared(), version), domain)
                .unwrap_or_else(|e| panic!("{domain} {version:?}: {e}"));
            let file = shared()
                .join("data")
                .join(domain.as_str())
                .join("tasks.json");
            let in_file: Vec<serde_json::Value> =
                serde_json::from_str(&std::fs::read_to_string(&file).expect("tasks.json"))
                    .expect("JSON");
            if version == DataVersion::Latest {
                assert_eq!(loaded.tasks.tasks.len(), in_file.len(), "{domain}");
            }
            // The first task's gold actions replay and are scored (newest retail
            // needs an NL judge, which is not configured here).
            let task = &loaded.tasks.tasks[0];
            let replay = tau2_bench::gold::replay(&loaded, task);
            assert!(
                replay.is_ok() || domain == Domain::Retail,
                "{domain} {version:?}: {replay:?}"
            );
        }
    }
}
