//! The quick chaos suite (`cargo run -p mesh-chaos -- --quick`) as a test: seven real nodes on
//! hosts in network namespaces, links with latency, jitter and loss, `kill -9` and restarts,
//! a partition, Redis and PostgreSQL outages and a provider whose clock runs ahead, with every
//! invariant checked after each. It needs root, iproute2 and ethtool, and skips with the reason
//! without them, unless `MESH_REQUIRE_BACKENDS=1` (as in CI), where a skip fails.

use mesh_chaos::{Options, report};

#[test]
fn every_invariant_holds_through_the_quick_chaos_suite() {
    if let Some(reason) = mesh_chaos::netns::unavailable_reason() {
        let required = std::env::var(mesh_testkit::REQUIRE_VAR).is_ok_and(|value| value == "1");
        assert!(!required, "the chaos suite cannot run: {reason}");
        eprintln!("skipping the chaos suite: {reason}");
        return;
    }
    let redis = mesh_testkit::backend_url(mesh_testkit::REDIS_URL_VAR, "chaos suite (Redis outage)");
    let database =
        mesh_testkit::backend_url(mesh_testkit::DATABASE_URL_VAR, "chaos suite (PostgreSQL outage)");
    let work = tempfile::tempdir().unwrap();
    let mut options = Options::quick(env!("CARGO_BIN_EXE_mesh-node").into(), work.path().to_owned());
    options.redis_url = redis;
    options.database_url = database;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let report = runtime.block_on(mesh_chaos::run(&options, None)).expect("the harness runs");
    eprint!("{}", report.figures());
    let failed: Vec<String> =
        report.checks.iter().filter(|check| !check.passed).map(report::check_line).collect();
    if !failed.is_empty() {
        // The logs explain a failure: keep them.
        let kept = work.keep();
        panic!(
            "{} invariant(s) failed (node logs in {}):\n{}",
            failed.len(),
            kept.display(),
            failed.join("\n")
        );
    }
    assert!(report.passed() >= 40, "every scenario ran: {} checks", report.passed());
}
