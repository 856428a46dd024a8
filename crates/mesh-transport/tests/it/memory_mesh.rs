//! The connection manager on the in-memory transport, as the simulator runs it: a partition
//! silences links until heartbeats time out, and healing reconnects the nodes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mesh_peer_store::MemoryPeerStore;
use mesh_transport::{ConnectionManager, ManagerConfig, MemoryNetwork};
use mesh_types::{NetworkId, NodeIdentity};

async fn node(network: &Arc<MemoryNetwork>, addr: &str, bootstrap: &[&str]) -> ConnectionManager {
    let addr: SocketAddr = addr.parse().unwrap();
    let mut config = ManagerConfig::new(NetworkId::devnet());
    config.listen_addr = Some(addr);
    config.bootstrap = bootstrap.iter().map(|entry| (*entry).to_owned()).collect();
    config.maintenance_interval = Duration::from_millis(50);
    config.heartbeat_interval = Duration::from_millis(100);
    config.heartbeat_timeout = Duration::from_millis(600);
    config.backoff_initial = Duration::from_millis(100);
    config.backoff_max = Duration::from_millis(400);
    let (manager, mut events) = ConnectionManager::start(
        config,
        Arc::new(NodeIdentity::generate()),
        Arc::new(network.transport(addr)),
        Arc::new(MemoryPeerStore::new()),
    )
    .await
    .unwrap();
    tokio::spawn(async move { while events.recv().await.is_some() {} });
    manager
}

async fn eventually(limit: Duration, condition: impl Fn() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while !condition() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    condition()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_times_out_the_links_and_healing_reconnects() {
    let network = MemoryNetwork::new();
    let a = node(&network, "10.0.0.1:9470", &[]).await;
    let b = node(&network, "10.0.0.2:9470", &["10.0.0.1:9470"]).await;
    assert!(eventually(Duration::from_secs(5), || a.peer_count() == 1 && b.peer_count() == 1).await);

    network.partition(&["10.0.0.1:9470".parse().unwrap()], &["10.0.0.2:9470".parse().unwrap()]);
    assert!(
        eventually(Duration::from_secs(5), || a.peer_count() == 0 && b.peer_count() == 0).await,
        "heartbeats time out across the partition"
    );

    network.heal();
    assert!(
        eventually(Duration::from_secs(10), || a.peer_count() == 1 && b.peer_count() == 1).await,
        "the nodes reconnect once the partition heals"
    );
}
