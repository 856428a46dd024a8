//! A small simulated mesh delivers every update to every node and ends in agreement.

use std::time::Duration;

use mesh_sim::{SimConfig, Topology, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_nodes_deliver_every_update_everywhere() {
    let config = SimConfig {
        nodes: 30,
        providers: 2,
        topology: Topology::RandomRegular { degree: 4 },
        updates: 8,
        interval: Duration::from_millis(20),
        ..SimConfig::default()
    };
    let report = run(&config).await.expect("the simulation runs");
    assert_eq!(report.complete(), 8, "every update reached all 30 nodes: {:?}", report.spreads);
    assert!(report.agreement, "all nodes hold the same prices");
    assert!(report.messages_per_node_per_update >= 1.0, "each node received each update at least once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_with_latency_still_delivers_within_the_ttl() {
    let config = SimConfig {
        nodes: 8,
        topology: Topology::Line,
        updates: 3,
        latency: Duration::from_millis(5),
        ..SimConfig::default()
    };
    let report = run(&config).await.expect("the simulation runs");
    assert_eq!(report.complete(), 3);
    let slowest = report.time_to_all(1.0).expect("complete updates have a time");
    assert!(slowest >= Duration::from_millis(35), "seven hops of 5 ms each: {slowest:?}");
}
