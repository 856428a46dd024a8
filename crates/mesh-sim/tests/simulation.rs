//! A small simulated mesh delivers every update to every node and ends in agreement, and nodes
//! that prefer close peers end fewer hops from the providers.

use std::time::Duration;

use mesh_sim::{Peering, SimConfig, SimTransport, Topology, run};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_mesh_agrees_again_after_the_heal() {
    let config = SimConfig {
        nodes: 12,
        topology: Topology::Ring,
        updates: 6,
        interval: Duration::from_millis(100),
        partition: Some(mesh_sim::SimPartition { split_at: 6, from_update: 2, heal_before_update: 4 }),
        sync_interval: Duration::from_millis(200),
        // The split's updates never reach everyone (newer ones supersede them): do not wait long.
        settle: Duration::from_secs(2),
        ..SimConfig::default()
    };
    let report = run(&config).await.expect("the simulation runs");
    assert!(report.agreement, "anti-entropy repaired the partition: every node holds the newest price");
    // Updates published during the split reach only their side, and are superseded by the
    // newer ones before anti-entropy would carry them; the others reach everyone.
    for (index, spread) in report.spreads.iter().enumerate().filter(|(index, _)| !(2..4).contains(index)) {
        assert_eq!(spread.reached, 12, "update {index}: {spread:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tcp_and_over_wire_payloads_every_update_reaches_every_node() {
    for transport in [SimTransport::Tcp, SimTransport::MemoryWire] {
        let config = SimConfig {
            nodes: 10,
            topology: Topology::RandomRegular { degree: 4 },
            updates: 5,
            interval: Duration::from_millis(20),
            transport,
            ..SimConfig::default()
        };
        let report = run(&config).await.expect("the simulation runs");
        assert_eq!(report.complete(), 5, "{transport:?}: {:?}", report.spreads);
        assert!(report.agreement, "{transport:?}");
        // Every node but the provider needs one copy of each update; flooding sends more.
        assert!(report.update_copies >= 5 * 9, "{transport:?}: {} copies", report.update_copies);
        let has_bytes = transport == SimTransport::MemoryWire;
        assert_eq!(report.bytes > 0, has_bytes, "{transport:?}: {} bytes", report.bytes);
        assert!(report.cpu.is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_that_prefer_close_peers_end_fewer_hops_from_the_provider() {
    // A binary tree of 40 under one provider: tiers of 1, 2, 4, 8, 16 and 9 nodes.
    let tree = |peering| SimConfig {
        nodes: 40,
        providers: 1,
        topology: Topology::Tree { fanout: 2 },
        updates: 4,
        peering,
        ..SimConfig::default()
    };
    let before = run(&tree(Peering::Learning)).await.expect("the simulation runs");
    let after = run(&tree(Peering::PreferClose)).await.expect("the simulation runs");
    for report in [&before, &after] {
        assert_eq!(report.complete(), 4, "every update reached every node");
        assert!(report.provider_hops.iter().all(Option::is_some), "nobody is cut off");
        // Each node's own count, from heartbeats alone, is its true distance.
        let true_hops: Vec<Option<u8>> =
            report.provider_hops.iter().map(|hops| hops.and_then(|hops| u8::try_from(hops).ok())).collect();
        assert_eq!(report.estimated_hops, true_hops);
    }
    let (mean_before, mean_after) =
        (before.mean_provider_hops().unwrap(), after.mean_provider_hops().unwrap());
    assert!(mean_after < mean_before, "mean hops {mean_before} before, {mean_after} after");
    // Moves are spread over preference intervals, so whether the very last node has made its
    // move when the mesh settles depends on scheduling: the farthest may stay where it was
    // (a CI run saw that), but no node ends farther away.
    assert!(
        after.provider_hops_quantile(1.0) <= before.provider_hops_quantile(1.0),
        "no node ended farther from the provider"
    );
}
