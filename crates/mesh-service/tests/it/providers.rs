//! Provider loops inside whole nodes: two independent operators, sharing no infrastructure,
//! coordinate through the mesh (the default mesh-observed coordinator) and fetch at most once
//! per window between them; their signed prices reach the other node.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mesh_provider::SimulatedSource;
use mesh_service::{MeshPriceService, ServiceConfig, ServiceEvent};
use mesh_transport::{ManagerConfig, MemoryNetwork};
use mesh_types::{Asset, NodeId, ProviderConfig, Timestamp};

fn addr(n: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 1, n], 9470))
}

async fn node(network: &Arc<MemoryNetwork>, n: u8, bootstrap: &[u8]) -> MeshPriceService {
    let mut manager = ManagerConfig::new(mesh_types::NetworkId::devnet());
    manager.listen_addr = Some(addr(n));
    manager.bootstrap = bootstrap.iter().map(|peer| addr(*peer).to_string()).collect();
    manager.maintenance_interval = Duration::from_millis(50);
    manager.min_peers = 1;
    MeshPriceService::builder(Arc::new(mesh_types::NodeIdentity::generate()), ServiceConfig::new(manager))
        .transport(Arc::new(network.transport(addr(n))))
        .start()
        .await
        .expect("node starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn independent_providers_fetch_once_per_window_through_the_mesh() {
    let network = MemoryNetwork::new();
    let a = node(&network, 1, &[]).await;
    let b = node(&network, 2, &[1]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while a.network().peer_count() == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Every fetch by either provider, as node A sees the published prices: each change of
    // the served SOL price is looked up with its quotes, one per provider.
    let fetches: Arc<Mutex<Vec<(NodeId, Timestamp)>>> = Arc::new(Mutex::new(Vec::new()));
    let mut events = a.subscribe();
    let seen = fetches.clone();
    let watcher = a.clone();
    let sol = Asset::new("SOL").unwrap();
    tokio::spawn(async move {
        while let Ok(event) = events.recv().await {
            if let ServiceEvent::Prices(_) = event.event
                && let Some(served) = watcher.served_price(&sol, true)
            {
                let mut seen = seen.lock().unwrap();
                for quote in served.quotes.unwrap_or_default() {
                    if !seen.contains(&(quote.source_node_id, quote.timestamp)) {
                        seen.push((quote.source_node_id, quote.timestamp));
                    }
                }
            }
        }
    });

    let config = ProviderConfig {
        enabled: true,
        fetch_interval_secs: 1,
        coordination_window_secs: 1,
        message_ttl: 10,
        ..ProviderConfig::default()
    };
    let assets = vec![Asset::new("SOL").unwrap(), Asset::new("ETH").unwrap()];
    let providers = [
        a.start_provider(config.clone(), assets.clone()).unwrap(),
        b.start_provider(config, assets).unwrap(),
    ];
    for (seed, provider) in (1..).zip(&providers) {
        provider.enable(Arc::new(SimulatedSource::new(seed))).await.expect("the simulated source is valid");
    }
    tokio::time::sleep(Duration::from_millis(4500)).await;
    for provider in &providers {
        provider.disable().await;
    }

    let mut fetches = fetches.lock().unwrap().clone();
    fetches.sort_by_key(|(_, at)| *at);
    assert!(fetches.len() >= 3, "the providers kept fetching: {fetches:?}");
    // Without shared state, two providers can only collide when they ask within one
    // propagation delay of each other; then the larger id yields, so it cannot repeat.
    let mut collisions = 0;
    for pair in fetches.windows(2).filter(|pair| pair[0].0 != pair[1].0) {
        let gap = (pair[1].1 - pair[0].1).to_std().unwrap_or_default();
        if gap < Duration::from_millis(50) {
            collisions += 1;
        } else {
            // The window, less the moment an update takes to cross the mesh.
            assert!(gap >= Duration::from_millis(950), "two providers fetched {gap:?} apart: {fetches:?}");
        }
    }
    assert!(collisions <= 1, "collisions repeated: {fetches:?}");
    assert!(
        a.network_status()
            .active_providers
            .iter()
            .any(|p| p.node_id == providers[0].node_id() || p.node_id == providers[1].node_id())
    );
}
