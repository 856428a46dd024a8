//! Lazy push on whole nodes: every update reaches every node under 1 % loss and after a relay
//! is killed, with anti-entropy out of the way (its interval is an hour), so the tree and its
//! grafts alone carry them; and the tree sends fewer copies than flooding.

use std::sync::Arc;
use std::time::Duration;

use mesh_gossip::{PushConfig, PushMode};
use mesh_service::{MeshPriceService, ServiceConfig};
use mesh_transport::{LinkFaults, MemoryNetwork};
use mesh_types::rust_decimal::Decimal;
use mesh_types::{Asset, NodeIdentity, PriceData, PriceUpdate};

use crate::mesh::{eventually, quick_config, start_as};

const NODES: u8 = 10;

/// Node `n`'s bootstrap peers: its predecessor and two others before it, about six links a
/// node with the ones dialled to it.
fn bootstrap_of(n: u8) -> Vec<u8> {
    if n == 0 {
        return Vec::new();
    }
    let mut peers = vec![n - 1, n / 2, (n * 7 + 3) % n];
    peers.sort_unstable();
    peers.dedup();
    peers
}

async fn mesh(network: &Arc<MemoryNetwork>, push: PushConfig) -> Vec<MeshPriceService> {
    let mut nodes = Vec::new();
    for n in 0..NODES {
        let mut config: ServiceConfig =
            quick_config(n + 1, &bootstrap_of(n).iter().map(|p| p + 1).collect::<Vec<_>>());
        // Only the push tree and its grafts deliver here.
        config.sync_interval = Duration::from_secs(3600);
        config.push = push;
        config.network.min_peers = 4;
        // A loaded test machine must not drop links: nothing would repair what they carried.
        config.network.heartbeat_timeout = Duration::from_secs(5);
        nodes.push(start_as(network, n + 1, Arc::new(NodeIdentity::generate()), config).await);
    }
    let connected = eventually(Duration::from_secs(10), async || {
        nodes.iter().all(|node| node.network().peer_count() >= 3)
    })
    .await;
    let counts: Vec<usize> = nodes.iter().map(|node| node.network().peer_count()).collect();
    assert!(connected, "every node has three peers or more: {counts:?}");
    nodes
}

fn update(provider: &MeshPriceService, index: usize) -> PriceUpdate {
    let price = PriceData {
        asset: asset(index),
        price: Decimal::new(100 + index as i64, 2),
        blockchain: "Solana".into(),
        change_24h: None,
    };
    PriceUpdate::new_signed(
        &provider.identity(),
        provider.network_id(),
        [price],
        10,
        mesh_types::chrono::Utc::now(),
    )
}

/// One asset per update, so a lost update cannot hide behind a newer one.
fn asset(index: usize) -> Asset {
    Asset::new(&format!("L{index}")).unwrap()
}

async fn publish(provider: &MeshPriceService, range: std::ops::Range<usize>) {
    for index in range {
        provider.publish(update(provider, index)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The nodes among `nodes` that do not hold all of the first `count` updates' prices.
async fn lacking(nodes: &[&MeshPriceService], count: usize) -> Vec<usize> {
    let mut lacking = Vec::new();
    for (n, node) in nodes.iter().enumerate() {
        let held = node.prices().get_all().await.unwrap();
        if (0..count).any(|index| !held.contains_key(&asset(index))) {
            lacking.push(n);
        }
    }
    lacking
}

/// Copies of updates received over all nodes, per update delivered to a node.
fn copies_per_delivery(nodes: &[&MeshPriceService], updates: usize) -> f64 {
    let received: u64 = nodes.iter().map(|node| node.gossip_stats().total()).sum();
    let published = updates as u64;
    let deliveries = (updates * (nodes.len() - 1)) as f64;
    (received - published) as f64 / deliveries
}

async fn all_hold(nodes: &[&MeshPriceService], count: usize) {
    let mut missing = Vec::new();
    // A generous limit: a test machine running other suites can starve these nodes for a while.
    let delivered = eventually(Duration::from_secs(60), async || {
        missing = lacking(nodes, count).await;
        missing.is_empty()
    })
    .await;
    assert!(delivered, "nodes {missing:?} lack some of the {count} updates");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_update_reaches_every_node_under_loss_and_a_killed_relay() {
    let network = MemoryNetwork::new();
    let nodes = mesh(&network, PushConfig::default()).await;
    network.seed_losses(11);
    network.set_default_faults(LinkFaults { latency: Duration::from_millis(2), drop_probability: 0.01 });
    let provider = &nodes[0];
    publish(provider, 0..30).await;
    let everyone: Vec<&MeshPriceService> = nodes.iter().collect();
    all_hold(&everyone, 30).await;

    // The best-connected relay goes; the tree repairs around it.
    let relay = (1..nodes.len()).max_by_key(|n| nodes[*n].network().peer_count()).unwrap();
    nodes[relay].shutdown().await;
    publish(provider, 30..60).await;
    let rest: Vec<&MeshPriceService> =
        nodes.iter().enumerate().filter(|(n, _)| *n != relay).map(|(_, node)| node).collect();
    all_hold(&rest, 60).await;
    for node in &rest {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tree_sends_fewer_copies_than_flooding() {
    let mut copies = Vec::new();
    for mode in [PushMode::Flood, PushMode::Lazy] {
        let network = MemoryNetwork::new();
        // A payload late on a starved test machine must not count as lost: a graft for it
        // adds a copy, which is what this test counts.
        let push = PushConfig { mode, graft_timeout: Duration::from_secs(2), ..PushConfig::default() };
        let nodes = mesh(&network, push).await;
        publish(&nodes[0], 0..30).await;
        let everyone: Vec<&MeshPriceService> = nodes.iter().collect();
        all_hold(&everyone, 30).await;
        // Late copies still on their way count too.
        tokio::time::sleep(Duration::from_millis(300)).await;
        copies.push(copies_per_delivery(&everyone, 30));
        for node in &nodes {
            node.shutdown().await;
        }
    }
    let (flood, lazy) = (copies[0], copies[1]);
    assert!(flood >= 2.0, "flooding over about six links a node sends several copies: {flood:.2}");
    assert!(lazy < flood / 2.0, "lazy push: {lazy:.2} copies a delivery, flooding {flood:.2}");
}
