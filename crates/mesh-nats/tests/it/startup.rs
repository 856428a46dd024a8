//! A node starts its bridge with NATS down: start returns at once, prices beyond the client's
//! buffer are dropped and counted, and shutdown does not hang. No server needed.

use std::time::Duration;

use mesh_nats::{NatsBridge, NatsConfig};
use mesh_transport::MemoryNetwork;

use crate::support::{eventually, fast_config, node, unique_network, update};

/// A loopback address where nothing listens.
fn closed_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("nats://{addr}")
}

async fn starts_with_nats_down(stream: Option<String>) {
    let mesh = MemoryNetwork::new();
    let provider = node(&mesh, &unique_network(), 1, &[]).await;
    let config = NatsConfig { client_capacity: 1, stream, ..fast_config(&closed_port()) };
    let started = tokio::time::Instant::now();
    let bridge = NatsBridge::start(config, &provider).await.expect("the bridge starts without NATS");
    assert!(started.elapsed() < Duration::from_secs(1), "start does not wait for NATS");
    assert!(!bridge.stats().connected);

    for cents in 1..=4 {
        provider.publish(update(&provider, &[("SOL", cents)])).await.unwrap();
    }
    assert!(
        eventually(Duration::from_secs(5), async || bridge.stats().publish_failures > 0).await,
        "prices NATS cannot take are counted: {:?}",
        bridge.stats()
    );
    // Plain publishes count once the client holds them: at most its one buffered price.
    // Stream publishes count when acknowledged: none.
    assert!(bridge.stats().published <= 1, "{:?}", bridge.stats());
    assert!(provider.supervisor().running().contains_key("nats_bridge"), "the bridge keeps running");

    let stopping = tokio::time::Instant::now();
    bridge.shutdown().await;
    assert!(
        stopping.elapsed() < Duration::from_secs(2),
        "shutdown gives up flushing after the flush timeout"
    );
    assert!(provider.supervisor().is_healthy(), "{:?}", provider.supervisor().failures());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_starts_its_bridge_with_nats_down() {
    starts_with_nats_down(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_starts_its_stream_bridge_with_nats_down() {
    starts_with_nats_down(Some("PRICEMESH_UNREACHABLE".into())).await;
}
