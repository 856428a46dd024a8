//! Nodes on the in-memory transport, signed updates, and polling helpers shared by the tests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mesh_nats::NatsConfig;
use mesh_service::{MeshPriceService, ServiceConfig};
use mesh_transport::{ManagerConfig, MemoryNetwork};
use mesh_types::rust_decimal::Decimal;
use mesh_types::{Asset, NetworkId, NodeIdentity, PriceData, PriceUpdate};

/// Variable holding the URL of the NATS server (with JetStream) the tests use.
pub(crate) const NATS_URL_VAR: &str = "MESH_TEST_NATS_URL";

/// The server's URL, or `None` after printing why `test` skips.
pub(crate) fn nats_url(test: &str) -> Option<String> {
    mesh_testkit::backend_url(NATS_URL_VAR, test)
}

/// A network no other test (or earlier run) publishes on, so subjects never mix.
pub(crate) fn unique_network() -> NetworkId {
    let id = uuid::Uuid::new_v4().simple().to_string();
    NetworkId::new(&format!("nats-test-{}", &id[..16])).expect("a valid network name")
}

/// Bridge settings that notice trouble and recover quickly.
pub(crate) fn fast_config(url: &str) -> NatsConfig {
    NatsConfig {
        publish_timeout: Duration::from_secs(1),
        flush_timeout: Duration::from_millis(500),
        connect_timeout: Duration::from_secs(1),
        reconnect_delay_max: Duration::from_millis(100),
        ..NatsConfig::new(url)
    }
}

fn addr(n: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, n], 9470))
}

/// Node `n` of `mesh` on `network`, dialing `bootstrap`.
pub(crate) async fn node(
    mesh: &Arc<MemoryNetwork>,
    network: &NetworkId,
    n: u8,
    bootstrap: &[u8],
) -> MeshPriceService {
    let mut manager = ManagerConfig::new(network.clone());
    manager.listen_addr = Some(addr(n));
    manager.bootstrap = bootstrap.iter().map(|peer| addr(*peer).to_string()).collect();
    manager.maintenance_interval = Duration::from_millis(50);
    manager.heartbeat_interval = Duration::from_millis(100);
    manager.heartbeat_timeout = Duration::from_millis(600);
    manager.backoff_initial = Duration::from_millis(100);
    manager.backoff_max = Duration::from_millis(400);
    manager.min_peers = 1;
    let mut config = ServiceConfig::new(manager);
    config.sync_interval = Duration::from_millis(300);
    config.announce_interval = Duration::from_millis(200);
    config.status_interval = Duration::from_millis(50);
    MeshPriceService::builder(Arc::new(NodeIdentity::generate()), config)
        .transport(Arc::new(mesh.transport(addr(n))))
        .start()
        .await
        .expect("node starts")
}

/// An update signed by `provider` now, with `(symbol, cents)` prices.
pub(crate) fn update(provider: &MeshPriceService, prices: &[(&str, i64)]) -> PriceUpdate {
    let prices = prices.iter().map(|(symbol, cents)| PriceData {
        asset: Asset::new(symbol).unwrap(),
        price: Decimal::new(*cents, 2),
        blockchain: "Solana".into(),
        change_24h: Some(Decimal::new(-42, 1)),
    });
    PriceUpdate::new_signed(
        &provider.identity(),
        provider.network_id(),
        prices,
        10,
        mesh_types::chrono::Utc::now(),
    )
}

/// Whether `node` holds `cents` as the price of `symbol`.
pub(crate) async fn holds(node: &MeshPriceService, symbol: &str, cents: i64) -> bool {
    node.prices()
        .get(Asset::new(symbol).unwrap())
        .await
        .ok()
        .flatten()
        .is_some_and(|held| held.price == Decimal::new(cents, 2))
}

/// Polls `condition` until it holds or `limit` passes; its last answer.
pub(crate) async fn eventually(limit: Duration, mut condition: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if condition().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    condition().await
}

/// The next message on `subscription`, within `limit`.
pub(crate) async fn next_message(
    subscription: &mut async_nats::Subscriber,
    limit: Duration,
) -> async_nats::Message {
    use futures::StreamExt;
    tokio::time::timeout(limit, subscription.next())
        .await
        .expect("a message arrives in time")
        .expect("the subscription stays open")
}

/// The price in a bridged payload.
pub(crate) fn payload_price(payload: &[u8]) -> mesh_types::CachedPriceData {
    serde_json::from_slice(payload).expect("a JSON price object")
}
