//! A node with layered stores writes behind: publishing never waits on the durable stores, and
//! shutdown flushes what they have not been sent yet.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mesh_dedup::{LayeredTracker, MemoryTracker, MessageTracker, TrackerConfig};
use mesh_price_cache::{LayeredPriceStore, MemoryPriceStore, PriceStore};
use mesh_service::{MeshPriceService, ServiceConfig};
use mesh_transport::{ManagerConfig, MemoryNetwork};
use mesh_types::rust_decimal::Decimal;
use mesh_types::{Asset, NodeIdentity, PriceData, PriceUpdate};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_flushes_the_layered_stores() {
    let durable_prices = Arc::new(MemoryPriceStore::new());
    let durable_seen = Arc::new(MemoryTracker::new(TrackerConfig::default()));
    // An hour between flushes: only the shutdown writes.
    let never = Duration::from_secs(3600);
    let prices = Arc::new(LayeredPriceStore::new(durable_prices.clone()).with_flush_interval(never));
    let tracker = Arc::new(
        LayeredTracker::new(TrackerConfig::default(), durable_seen.clone()).with_flush_interval(never),
    );
    let network = MemoryNetwork::new();
    let addr = SocketAddr::from(([10, 0, 0, 1], 9470));
    let mut manager = ManagerConfig::new(mesh_types::NetworkId::devnet());
    manager.listen_addr = Some(addr);
    let node = MeshPriceService::builder(Arc::new(NodeIdentity::generate()), ServiceConfig::new(manager))
        .transport(Arc::new(network.transport(addr)))
        .prices(prices.clone())
        .tracker(tracker.clone())
        .start()
        .await
        .expect("node starts");

    let sol = Asset::new("SOL").unwrap();
    let price = PriceData {
        asset: sol,
        price: Decimal::new(12345, 2),
        blockchain: "Solana".into(),
        change_24h: None,
    };
    let update = PriceUpdate::new_signed(
        &node.identity(),
        node.network_id(),
        [price],
        10,
        mesh_types::chrono::Utc::now(),
    );
    // The seen cache remembers the update by its seen key (kind, author, id).
    let id = mesh_types::Gossiped::seen_key(&update);
    node.set_provider(true);
    node.publish(update).await.unwrap();
    assert!(node.prices().get(sol).await.unwrap().is_some(), "memory holds it at once");
    assert!(durable_prices.get(sol).await.unwrap().is_none(), "the durable store does not yet");
    assert!(prices.write_lag() > Duration::ZERO);

    node.shutdown().await;
    assert_eq!(durable_prices.get(sol).await.unwrap().map(|p| p.price), Some(Decimal::new(12345, 2)));
    assert!(durable_seen.has_seen(id).await.unwrap(), "the message id was flushed too");
    assert_eq!(prices.write_lag(), Duration::ZERO);
    assert_eq!(tracker.write_lag(), Duration::ZERO);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_builder_puts_memory_in_front_of_durable_stores_warms_and_flushes_them() {
    let durable_prices = Arc::new(MemoryPriceStore::new());
    let durable_seen = Arc::new(MemoryTracker::new(TrackerConfig::default()));
    let identity = Arc::new(NodeIdentity::generate());
    let eth = Asset::new("ETH").unwrap();
    let held = mesh_types::CachedPriceData {
        asset: eth,
        price: Decimal::new(3000, 0),
        timestamp: mesh_types::chrono::Utc::now(),
        source_node_id: identity.node_id(),
        blockchain: "Ethereum".into(),
        change_24h: None,
    };
    durable_prices.store(held.clone()).await.unwrap();
    let network = MemoryNetwork::new();
    let addr = SocketAddr::from(([10, 0, 0, 3], 9470));
    let mut manager = ManagerConfig::new(mesh_types::NetworkId::devnet());
    manager.listen_addr = Some(addr);
    let node = MeshPriceService::builder(identity, ServiceConfig::new(manager))
        .transport(Arc::new(network.transport(addr)))
        .with_durable_prices(durable_prices.clone())
        .with_durable_tracker(durable_seen.clone())
        .storage_flush_interval(Duration::from_secs(3600))
        .start()
        .await
        .expect("node starts");
    assert_eq!(node.prices().get(eth).await.unwrap(), Some(held), "memory was warmed from the durable store");
    assert!(node.prices().reader().is_some(), "memory in front");

    let sol = Asset::new("SOL").unwrap();
    let price = PriceData { asset: sol, price: Decimal::ONE, blockchain: "Solana".into(), change_24h: None };
    let update = PriceUpdate::new_signed(
        &node.identity(),
        node.network_id(),
        [price],
        10,
        mesh_types::chrono::Utc::now(),
    );
    let id = mesh_types::Gossiped::seen_key(&update);
    node.set_provider(true);
    node.publish(update).await.unwrap();
    assert!(durable_prices.get(sol).await.unwrap().is_none(), "written behind, not yet");
    assert!(node.degraded_backends().is_empty());

    node.shutdown().await;
    assert!(durable_prices.get(sol).await.unwrap().is_some(), "flushed at shutdown");
    assert!(durable_seen.has_seen(id).await.unwrap(), "the message id too");
}

/// A memory peer store that counts the sweeps it was asked for.
struct CountingPeers {
    inner: mesh_peer_store::MemoryPeerStore,
    sweeps: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl mesh_peer_store::PeerStore for CountingPeers {
    async fn create(&self, peer: mesh_peer_store::Peer) -> mesh_peer_store::Result<()> {
        self.inner.create(peer).await
    }
    async fn read(&self, id: mesh_peer_store::PeerId) -> mesh_peer_store::Result<mesh_peer_store::Peer> {
        self.inner.read(id).await
    }
    async fn update(&self, peer: mesh_peer_store::Peer) -> mesh_peer_store::Result<()> {
        self.inner.update(peer).await
    }
    async fn delete(&self, id: mesh_peer_store::PeerId) -> mesh_peer_store::Result<()> {
        self.inner.delete(id).await
    }
    async fn list_all(&self) -> mesh_peer_store::Result<Vec<mesh_peer_store::Peer>> {
        self.inner.list_all().await
    }
    async fn find_by_status(
        &self,
        status: mesh_peer_store::PeerStatus,
    ) -> mesh_peer_store::Result<Vec<mesh_peer_store::Peer>> {
        self.inner.find_by_status(status).await
    }
    async fn find_by_ip_port(
        &self,
        ip: std::net::IpAddr,
        port: u16,
    ) -> mesh_peer_store::Result<Option<mesh_peer_store::Peer>> {
        self.inner.find_by_ip_port(ip, port).await
    }
    async fn count_by_status(&self, status: mesh_peer_store::PeerStatus) -> mesh_peer_store::Result<usize> {
        self.inner.count_by_status(status).await
    }
    async fn ban(
        &self,
        id: mesh_peer_store::PeerId,
        reason: mesh_peer_store::BanReason,
        until: mesh_types::Timestamp,
    ) -> mesh_peer_store::Result<()> {
        self.inner.ban(id, reason, until).await
    }
    async fn unban_expired(&self) -> mesh_peer_store::Result<usize> {
        self.sweeps.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.unban_expired().await
    }
}

#[tokio::test(start_paused = true)]
async fn the_sweeps_run_every_interval() {
    // Nothing called the sweeps before, so PostgreSQL's seen ids and bans grew for ever.
    let peers = Arc::new(CountingPeers {
        inner: mesh_peer_store::MemoryPeerStore::new(),
        sweeps: std::sync::atomic::AtomicUsize::new(0),
    });
    let network = MemoryNetwork::new();
    let addr = SocketAddr::from(([10, 0, 0, 2], 9470));
    let mut manager = ManagerConfig::new(mesh_types::NetworkId::devnet());
    manager.listen_addr = Some(addr);
    let node = MeshPriceService::builder(Arc::new(NodeIdentity::generate()), ServiceConfig::new(manager))
        .transport(Arc::new(network.transport(addr)))
        .peer_store(peers.clone())
        .start()
        .await
        .expect("node starts");
    tokio::time::sleep(mesh_service::SWEEP_INTERVAL * 3 + Duration::from_secs(1)).await;
    assert_eq!(peers.sweeps.load(std::sync::atomic::Ordering::SeqCst), 3, "one sweep per interval");
    node.shutdown().await;
}
