//! Whole nodes on the in-memory transport: prices cross the mesh with their signatures intact,
//! a late joiner and a healed partition converge by anti-entropy, and every node counts the
//! network from announcements.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mesh_service::{MeshPriceService, Sequenced, ServiceConfig, ServiceEvent};
use mesh_transport::{ManagerConfig, MemoryNetwork};
use mesh_types::rust_decimal::Decimal;
use mesh_types::{Asset, NodeIdentity, PriceData, PriceUpdate};

/// The anti-entropy interval of these nodes.
const SYNC: Duration = Duration::from_millis(300);
/// Scheduling slack for a loaded test machine.
const SLACK: Duration = Duration::from_millis(200);

pub(crate) fn addr(n: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, n], 9470))
}

async fn node(network: &Arc<MemoryNetwork>, n: u8, bootstrap: &[u8]) -> MeshPriceService {
    node_with(network, n, bootstrap, |_| {}).await
}

async fn node_with(
    network: &Arc<MemoryNetwork>,
    n: u8,
    bootstrap: &[u8],
    configure: impl FnOnce(&mut ServiceConfig),
) -> MeshPriceService {
    let mut config = quick_config(n, bootstrap);
    configure(&mut config);
    start_as(network, n, Arc::new(NodeIdentity::generate()), config).await
}

/// Node `n`'s settings: fast timers, so the tests take seconds.
pub(crate) fn quick_config(n: u8, bootstrap: &[u8]) -> ServiceConfig {
    let mut manager = ManagerConfig::new(mesh_types::NetworkId::devnet());
    manager.listen_addr = Some(addr(n));
    manager.bootstrap = bootstrap.iter().map(|peer| addr(*peer).to_string()).collect();
    manager.maintenance_interval = Duration::from_millis(50);
    manager.heartbeat_interval = Duration::from_millis(100);
    manager.heartbeat_timeout = Duration::from_millis(600);
    manager.backoff_initial = Duration::from_millis(100);
    manager.backoff_max = Duration::from_millis(400);
    manager.min_peers = 1;
    let mut config = ServiceConfig::new(manager);
    config.sync_interval = SYNC;
    config.announce_interval = Duration::from_millis(200);
    config.status_interval = Duration::from_millis(50);
    config
}

/// Starts node `n` with `identity` and `config`.
pub(crate) async fn start_as(
    network: &Arc<MemoryNetwork>,
    n: u8,
    identity: Arc<NodeIdentity>,
    config: ServiceConfig,
) -> MeshPriceService {
    MeshPriceService::builder(identity, config)
        .transport(Arc::new(network.transport(addr(n))))
        .start()
        .await
        .expect("node starts")
}

fn sol_update(provider: &MeshPriceService, cents: i64, ttl: u8) -> PriceUpdate {
    let price = PriceData {
        asset: Asset::new("SOL").unwrap(),
        price: Decimal::new(cents, 2),
        blockchain: "Solana".into(),
        change_24h: None,
    };
    PriceUpdate::new_signed(
        &provider.identity(),
        provider.network_id(),
        [price],
        ttl,
        mesh_types::chrono::Utc::now(),
    )
}

/// Asserts `condition` becomes true within two sync intervals (plus scheduling slack) of `since`:
/// the convergence bound anti-entropy promises.
async fn within_two_syncs(since: tokio::time::Instant, what: &str, condition: impl AsyncFnMut() -> bool) {
    assert!(eventually(Duration::from_secs(10), condition).await, "{what}");
    let took = since.elapsed();
    assert!(took <= SYNC * 2 + SLACK, "{what} after {took:?}; two sync intervals are {:?}", SYNC * 2);
}

/// A and B both quote SOL, A first at 150.00, then B newer at 151.00, and A holds B's as the
/// newest: a newest-wins store and anti-entropy keep only B's, A's lives in the quote books.
async fn two_quotes(a: &MeshPriceService, b: &MeshPriceService) -> (PriceUpdate, PriceUpdate) {
    let older = sol_update(a, 15_000, 10);
    a.publish(older.clone()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    let newer = sol_update(b, 15_100, 10);
    b.publish(newer.clone()).await.unwrap();
    assert!(eventually(Duration::from_secs(5), async || holds(a, 15_100).await).await);
    (older, newer)
}

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

async fn holds(node: &MeshPriceService, cents: i64) -> bool {
    node.prices()
        .get(Asset::new("SOL").unwrap())
        .await
        .ok()
        .flatten()
        .is_some_and(|p| p.price == Decimal::new(cents, 2))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prices_cross_a_line_of_nodes_and_every_node_knows_its_provider() {
    let network = MemoryNetwork::new();
    let a = node(&network, 1, &[]).await;
    let b = node(&network, 2, &[1]).await;
    let c = node(&network, 3, &[2]).await;
    assert!(eventually(Duration::from_secs(5), async || b.network().peer_count() == 2).await);
    let mut events = c.subscribe();

    a.set_provider(true);
    a.publish(sol_update(&a, 12345, 10)).await.unwrap();
    assert!(eventually(Duration::from_secs(5), async || holds(&c, 12345).await).await, "C holds A's price");

    let delivered = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            if let Ok(Sequenced { event: ServiceEvent::Prices(prices), .. }) = events.recv().await {
                return prices;
            }
        }
    })
    .await
    .expect("C's subscribers hear of the price");
    assert_eq!(delivered[0].price.source_node_id, a.node_id());

    let status = c.network_status();
    let provider =
        status.active_providers.iter().find(|p| p.node_id == a.node_id()).expect("A is an active provider");
    assert_eq!(provider.hop_count, 2, "A is two hops from C");
    assert!(
        eventually(Duration::from_secs(5), async || c.network_status().total_network_size == 3).await,
        "announcements count the network"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_joiner_converges_by_anti_entropy() {
    let network = MemoryNetwork::new();
    let a = node(&network, 1, &[]).await;
    let b = node(&network, 2, &[1]).await;
    assert!(eventually(Duration::from_secs(5), async || a.network().peer_count() == 1).await);
    a.publish(sol_update(&a, 500, 10)).await.unwrap();
    assert!(eventually(Duration::from_secs(5), async || holds(&b, 500).await).await);

    // C joins after the update was gossiped: only anti-entropy can bring it, within two sync
    // intervals of the connection (plus scheduling slack).
    let c = node(&network, 3, &[2]).await;
    assert!(eventually(Duration::from_secs(5), async || c.network().peer_count() >= 1).await);
    let connected = tokio::time::Instant::now();
    within_two_syncs(connected, "C catches up by anti-entropy", async || holds(&c, 500).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healed_partition_converges() {
    let network = MemoryNetwork::new();
    let a = node(&network, 1, &[]).await;
    let b = node(&network, 2, &[1]).await;
    assert!(eventually(Duration::from_secs(5), async || a.network().peer_count() == 1).await);

    // A split shorter than the heartbeat timeout: the link survives, the update is lost on it.
    network.partition(&[addr(1)], &[addr(2)]);
    a.publish(sol_update(&a, 777, 10)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!holds(&b, 777).await, "nothing crosses the partition");

    network.heal();
    let healed = tokio::time::Instant::now();
    within_two_syncs(healed, "B converges after the heal", async || holds(&b, 777).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_joiner_meets_its_quorum_from_the_greeting_without_waiting_for_new_fetches() {
    let network = MemoryNetwork::new();
    let a = node(&network, 1, &[]).await;
    let b = node(&network, 2, &[1]).await;
    assert!(eventually(Duration::from_secs(5), async || a.network().peer_count() == 1).await);
    // Two providers quote SOL once; B's quote is the newer, so anti-entropy alone would bring
    // only B's.
    two_quotes(&a, &b).await;

    let c = node_with(&network, 3, &[2], |config| config.status.quorum = 2).await;
    let sol = Asset::new("SOL").unwrap();
    assert!(
        eventually(Duration::from_secs(3), async || c
            .served_price(&sol, false)
            .is_some_and(|p| !p.below_quorum))
        .await,
        "C serves SOL at quorum from its greeting: {:?}",
        c.served_price(&sol, true)
    );
    let served = c.served_price(&sol, false).unwrap();
    assert_eq!((served.providers, served.price.price), (2, Decimal::new(15_050, 2)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_provider_gets_its_own_last_quote_back_from_the_greeting() {
    let network = MemoryNetwork::new();
    let a = node(&network, 1, &[]).await;
    let b = node(&network, 2, &[1]).await;
    assert!(eventually(Duration::from_secs(5), async || a.network().peer_count() == 1).await);
    // A quotes, then B quotes newer: anti-entropy alone would bring a restarted A only B's.
    two_quotes(&a, &b).await;

    // A restarts with its key and nothing else, as after a crash with an in-memory store.
    let identity = a.identity();
    a.shutdown().await;
    drop(a);
    let mut config = quick_config(3, &[2]);
    config.status.quorum = 2;
    let restarted = start_as(&network, 3, identity, config).await;
    let sol = Asset::new("SOL").unwrap();
    assert!(
        eventually(Duration::from_secs(3), async || restarted
            .served_price(&sol, false)
            .is_some_and(|p| !p.below_quorum))
        .await,
        "the restarted provider counts its own quote toward the quorum: {:?}",
        restarted.served_price(&sol, true)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_healed_partition_brings_crosses_a_line_of_nodes_within_two_sync_intervals() {
    // A line of eight: anti-entropy answers are not relayed, so without an early digest the
    // price would move one hop per sync interval.
    let network = MemoryNetwork::new();
    let line = |config: &mut ServiceConfig| config.network.peer_exchange = false;
    let mut nodes = vec![node_with(&network, 1, &[], line).await];
    for n in 2..=8u8 {
        nodes.push(node_with(&network, n, &[n - 1], line).await);
    }
    let first = &nodes[0];
    assert!(
        eventually(Duration::from_secs(5), async || nodes.iter().all(|n| n.network().peer_count() >= 1))
            .await
    );
    first.set_provider(true);

    // A split shorter than the heartbeat timeout: the link survives, the update is lost on it.
    let rest: Vec<SocketAddr> = (2..=8).map(addr).collect();
    network.partition(&[addr(1)], &rest);
    first.publish(sol_update(first, 4_242, 10)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    network.heal();
    let healed = tokio::time::Instant::now();
    let last = &nodes[7];
    within_two_syncs(healed, "the far end converges", async || holds(last, 4_242).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_on_durable_stores_takes_back_every_providers_quote() {
    let network = MemoryNetwork::new();
    let a = node(&network, 1, &[]).await;
    let b = node(&network, 2, &[1]).await;
    assert!(eventually(Duration::from_secs(5), async || a.network().peer_count() == 1).await);
    // Two providers quote SOL; B's quote is the newer, so it is the one a newest-wins store
    // keeps. A's lives only in the quote books.
    a.set_provider(true);
    b.set_provider(true);
    let (older, newer) = two_quotes(&a, &b).await;

    // C restarts on durable stores that remember both updates' ids and the newest price, as a
    // node on Redis or PostgreSQL does after a crash.
    let seen = Arc::new(mesh_dedup::MemoryTracker::new(mesh_dedup::TrackerConfig::default()));
    let prices = Arc::new(mesh_price_cache::MemoryPriceStore::new());
    for update in [&older, &newer] {
        mesh_dedup::MessageTracker::mark_seen(&*seen, mesh_types::Gossiped::seen_key(update)).await.unwrap();
    }
    for price in newer.cached_prices() {
        mesh_price_cache::PriceStore::store(&*prices, price).await.unwrap();
    }
    let c = MeshPriceService::builder(Arc::new(NodeIdentity::generate()), quick_config(3, &[1]))
        .with_durable_tracker(seen)
        .with_durable_prices(prices)
        .transport(Arc::new(network.transport(addr(3))))
        .start()
        .await
        .expect("node starts");
    let sol = Asset::new("SOL").unwrap();
    let quoted_by_a = || {
        let quotes = c.served_price(&sol, true).and_then(|served| served.quotes).unwrap_or_default();
        quotes.iter().any(|quote| quote.source_node_id == a.node_id())
    };
    assert!(
        eventually(Duration::from_secs(3), async || quoted_by_a()).await,
        "C takes A's quote back from its peers' greeting although its durable tracker had seen it: {:?}",
        c.served_price(&sol, true)
    );
}
