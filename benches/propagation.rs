//! System benchmark: how fast and how redundantly an update spreads through a simulated mesh of
//! whole nodes (gossip engine, signatures, stores, connection manager) on the in-memory
//! transport.
//!
//! Run: `cargo bench --bench propagation` (200 nodes, random 6-regular, 20 updates);
//! `cargo bench --bench propagation -- --quick` for 50 nodes and 10 updates.

#![allow(clippy::print_stdout, reason = "a benchmark harness reports on standard output")]

use std::time::Duration;

use pricemesh::sim::{SimConfig, Topology, run};

fn main() {
    let quick = std::env::args().any(|arg| arg == "--quick");
    let config = SimConfig {
        nodes: if quick { 50 } else { 200 },
        providers: 1,
        topology: Topology::RandomRegular { degree: 6 },
        updates: if quick { 10 } else { 20 },
        interval: Duration::from_millis(100),
        settle: Duration::from_secs(20),
        ..SimConfig::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let report = runtime.block_on(run(&config)).expect("the simulation runs");

    let ms = |duration: Option<Duration>| {
        duration.map_or("-".to_owned(), |d| format!("{:.2} ms", d.as_secs_f64() * 1000.0))
    };
    let halves: Vec<Duration> = report.spreads.iter().filter_map(|spread| spread.half).collect();
    let median_half = {
        let mut halves = halves.clone();
        halves.sort();
        halves.get(halves.len() / 2).copied()
    };
    println!(
        "propagation: {} nodes, {} links, random 6-regular, {} updates",
        report.nodes,
        report.links,
        report.spreads.len()
    );
    println!("  updates reaching every node: {}/{}", report.complete(), report.spreads.len());
    println!("  time to 50 % of nodes (median over updates): {}", ms(median_half));
    println!(
        "  time to all nodes: p50 {}, p99 {}, max {}",
        ms(report.time_to_all(0.5)),
        ms(report.time_to_all(0.99)),
        ms(report.time_to_all(1.0))
    );
    // Redundancy: every node must receive one copy of each update; the rest is the price of
    // eager push that lazy push (Plumtree-style) would try to cut.
    println!(
        "  redundancy: {:.2} copies received per node per update, {:.2} of them duplicates",
        report.messages_per_node_per_update, report.duplicates_per_node_per_update
    );
    println!(
        "  duplicate ratio: {:.1} % of all copies sent ({} copies over all links)",
        100.0 * report.duplicates_per_node_per_update
            / report.messages_per_node_per_update.max(f64::MIN_POSITIVE),
        report.update_copies
    );
    println!("  all nodes agree: {}", report.agreement);
}
