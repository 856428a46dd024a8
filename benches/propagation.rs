//! System benchmark: how fast and how redundantly an update spreads through a simulated mesh of
//! whole nodes (gossip engine, signatures, stores, connection manager) on the in-memory
//! transport, flooding and lazy push side by side on the same topology.
//!
//! Run: `cargo bench --bench propagation` (100 nodes, random 8-regular, 100 updates at
//! 100 a second); `cargo bench --bench propagation -- --quick` for 50 nodes, 6-regular and
//! 20 updates.

#![allow(clippy::print_stdout, reason = "a benchmark harness reports on standard output")]

use std::time::Duration;

use pricemesh::gossip::{PushConfig, PushMode};
use pricemesh::sim::{Report as SimReport, SimConfig, Topology, run};

fn main() {
    let quick = std::env::args().any(|arg| arg == "--quick");
    let degree = if quick { 6 } else { 8 };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let reports: Vec<(PushMode, SimReport)> = [PushMode::Flood, PushMode::Lazy]
        .into_iter()
        .map(|mode| {
            let config = SimConfig {
                nodes: if quick { 50 } else { 100 },
                providers: 1,
                topology: Topology::RandomRegular { degree },
                updates: if quick { 20 } else { 100 },
                interval: Duration::from_millis(10),
                settle: Duration::from_secs(20),
                push: PushConfig { mode, ..PushConfig::default() },
                ..SimConfig::default()
            };
            (mode, runtime.block_on(run(&config)).expect("the simulation runs"))
        })
        .collect();

    let (_, first) = &reports[0];
    println!(
        "propagation: {} nodes, {} links, random {degree}-regular, {} updates, 100 a second",
        first.nodes,
        first.links,
        first.spreads.len()
    );
    println!("| | flooding | lazy push |");
    println!("|---|---|---|");
    let row = |name: &str, value: &dyn Fn(&SimReport) -> String| {
        println!("| {name} | {} | {} |", value(&reports[0].1), value(&reports[1].1));
    };
    let ms = |duration: Option<Duration>| {
        duration.map_or("-".to_owned(), |d| format!("{:.2} ms", d.as_secs_f64() * 1000.0))
    };
    row("updates reaching every node", &|r| format!("{}/{}", r.complete(), r.spreads.len()));
    row("time to 50 % of nodes (median)", &|r| ms(median_half(r)));
    row("time to all nodes, p50", &|r| ms(r.time_to_all(0.5)));
    row("time to all nodes, p99", &|r| ms(r.time_to_all(0.99)));
    // Every node must receive one copy of each update; the rest is redundancy.
    row("copies received per node per update", &|r| format!("{:.2}", r.messages_per_node_per_update));
    row("copies over all links", &|r| r.update_copies.to_string());
    row("all nodes agree", &|r| r.agreement.to_string());
}

/// The median over updates of the time to reach half the nodes.
fn median_half(report: &SimReport) -> Option<Duration> {
    let mut halves: Vec<Duration> = report.spreads.iter().filter_map(|spread| spread.half).collect();
    halves.sort();
    halves.get(halves.len() / 2).copied()
}
