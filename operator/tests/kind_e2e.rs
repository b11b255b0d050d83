//! `tests/kind/e2e.sh` as a test, so CI shows its outcome: on a machine
//! without a Docker engine it prints "skipped: Docker engine not available"
//! and passes; with one it runs the whole kind end to end (images, chart,
//! tiny pipeline; tens of minutes), hence ignored outside tests/run.sh.
//! `TAU2_SKIP_KIND_E2E=1` skips it there too.

#[test]
#[ignore = "runs tests/kind/e2e.sh (needs a Docker engine, else it skips): tests/run.sh"]
fn kind_e2e() {
    if std::env::var_os("TAU2_SKIP_KIND_E2E").is_some_and(|v| v == "1") {
        eprintln!("skipped: TAU2_SKIP_KIND_E2E=1");
        return;
    }
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/kind/e2e.sh");
    // Inherited stdout and stderr: the script's progress and its closing
    // "skipped: ..." or "kind e2e: passed" line reach the test log directly.
    let status = std::process::Command::new("bash")
        .arg(&script)
        .status()
        .expect("running tests/kind/e2e.sh");
    assert!(status.success(), "tests/kind/e2e.sh failed: {status}");
}
