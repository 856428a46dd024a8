//! Row "100 nodes over real TCP": whole pricemesh nodes in one process, each with its own
//! listener on 127.0.0.1 and a TCP connection per link of a random regular mesh, with updates
//! offered open loop. Reports each node's delivery latency and the time to reach all nodes.

use pricemesh::sim::{SimTransport, run as simulate};

use crate::report::{Bytes, Latencies};
use crate::scenario::{Scenario, peak_rss, reset_peak_rss};

/// Runs the row and prints its lines.
///
/// # Errors
/// When the mesh does not form or a node cannot start.
pub async fn run(scenario: &Scenario) -> Result<(), String> {
    reset_peak_rss();
    let config = scenario.sim_config(SimTransport::Tcp);
    let report = simulate(&config).await.map_err(|err| err.to_string())?;
    let mut deliveries = Latencies::new();
    let mut time_to_all = Latencies::new();
    for spread in &report.spreads {
        // The first arrival is the provider's own copy, at once; the others crossed TCP.
        for arrival in spread.arrivals.iter().skip(1) {
            deliveries.record(*arrival);
        }
        time_to_all.record_all([spread.all]);
    }
    println!(
        "## {} nodes over TCP on 127.0.0.1, random {}-regular ({} connections), {:.0} updates/s for {:?} (open loop)",
        report.nodes, scenario.degree, report.links, scenario.rate, scenario.duration
    );
    println!("| measure | value |");
    println!("| --- | --- |");
    println!("| delivery latency per node | {} |", deliveries.summary());
    println!("| time to all nodes | {} |", time_to_all.summary());
    println!("| updates reaching every node | {} of {} |", report.complete(), report.spreads.len());
    println!("| copies received per node per update | {:.2} |", report.messages_per_node_per_update);
    println!("| CPU seconds while offered | {:.2} |", report.cpu.map_or(0.0, |cpu| cpu.as_secs_f64()));
    println!("| peak RSS, whole process | {} |", Bytes(peak_rss() as f64));
    Ok(())
}
