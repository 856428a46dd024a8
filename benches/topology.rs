//! System benchmark: what the preference for peers close to the providers does to a
//! hierarchy grown by joining. The same 100-node tree (fan-out 3 under 2 providers, 10 ms
//! links, each node with 6 peer slots beyond its links in the tree) runs twice: with peer exchange but no preference ("before"), then with
//! `MESH_PREFER_CLOSE_PEERS` on ("after"). Each run reports the hops from every node to the
//! nearest provider over the connections it settled on, and how long updates took to reach
//! every node.
//!
//! Run: `cargo bench --bench topology`; `cargo bench --bench topology -- --quick` for 40 nodes.

#![allow(clippy::print_stdout, reason = "a benchmark harness reports on standard output")]

use std::time::Duration;

use pricemesh::sim::{Peering, Report, SimConfig, Topology, run};

/// Slots above each node's links in the tree: its minimum is its links (1 to 4), so its
/// maximum is 7 to 10, near a real node's default of 10.
const SPARE_SLOTS: usize = 6;

fn main() {
    let quick = std::env::args().any(|arg| arg == "--quick");
    let config = |peering| SimConfig {
        nodes: if quick { 40 } else { 100 },
        providers: 2,
        topology: Topology::Tree { fanout: 3 },
        updates: if quick { 10 } else { 40 },
        interval: Duration::from_millis(100),
        latency: Duration::from_millis(10),
        spare_slots: SPARE_SLOTS,
        settle: Duration::from_secs(20),
        peering,
        ..SimConfig::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let nodes = config(Peering::Learning).nodes;
    println!(
        "topology preference: {nodes}-node tree, fan-out 3 under 2 providers, 10 ms links, {SPARE_SLOTS} spare slots"
    );
    for (label, peering) in
        [("before (no preference)", Peering::Learning), ("after (prefer close peers)", Peering::PreferClose)]
    {
        let report = runtime.block_on(run(&config(peering))).expect("the simulation runs");
        print_report(label, &report);
    }
}

fn print_report(label: &str, report: &Report) {
    let ms = |duration: Option<Duration>| {
        duration.map_or("-".to_owned(), |d| format!("{:.1} ms", d.as_secs_f64() * 1000.0))
    };
    let hops =
        |quantile| report.provider_hops_quantile(quantile).map_or("-".to_owned(), |hops| hops.to_string());
    println!("  {label}:");
    println!("    peers settled in {:.1} s", report.settled_in.as_secs_f64());
    println!(
        "    hops to the nearest provider: mean {:.2}, p99 {}, max {}",
        report.mean_provider_hops().unwrap_or(f64::NAN),
        hops(0.99),
        hops(1.0)
    );
    println!("    updates reaching every node: {}/{}", report.complete(), report.spreads.len());
    println!(
        "    time to all nodes: p50 {}, p99 {}, max {}",
        ms(report.time_to_all(0.5)),
        ms(report.time_to_all(0.99)),
        ms(report.time_to_all(1.0))
    );
    println!("    time to each node: p50 {}, p99 {}", ms(report.delivery(0.5)), ms(report.delivery(0.99)));
    println!("    copies per node per update: {:.2}", report.messages_per_node_per_update);
}
