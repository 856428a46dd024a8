//! Two provider loops that share a Redis server (as two processes of one operator would) fetch
//! at most once per coordination window between them.

use std::sync::Arc;
use std::time::Duration;

use mesh_coordination::RedisCoordinator;
use mesh_provider::{ProviderNode, SimulatedSource};
use mesh_testkit::{REDIS_URL_VAR, RedisNamespace, backend_url};
use mesh_types::{Asset, NodeIdentity, ProviderConfig};
use tokio::sync::mpsc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn providers_sharing_redis_fetch_once_per_window() {
    let Some(url) = backend_url(REDIS_URL_VAR, "providers sharing redis") else { return };
    let namespace = RedisNamespace::create(&url);
    let config = ProviderConfig {
        enabled: true,
        fetch_interval_secs: 1,
        coordination_window_secs: 1,
        message_ttl: 10,
        ..ProviderConfig::default()
    };
    let (updates, mut published) = mpsc::channel(64);
    let mut tasks = Vec::new();
    let mut providers = Vec::new();
    for seed in 0..2u64 {
        // Separate pools, as separate processes would have.
        let coordinator = Arc::new(RedisCoordinator::new(namespace.second_pool(), namespace.prefix()));
        let provider = ProviderNode::new(
            config.clone(),
            Arc::new(NodeIdentity::generate()),
            coordinator,
            vec![Asset::new("SOL").unwrap()],
            updates.clone(),
        )
        .unwrap();
        tasks.push(provider.start());
        provider.enable(Arc::new(SimulatedSource::new(seed))).await.unwrap();
        providers.push(provider);
    }
    tokio::time::sleep(Duration::from_millis(4500)).await;
    for provider in &providers {
        provider.disable().await;
    }
    drop(updates);

    let mut fetches = Vec::new();
    while let Ok(update) = published.try_recv() {
        fetches.push((update.source_node_id, update.timestamp));
    }
    fetches.sort_by_key(|(_, at)| *at);
    assert!(fetches.len() >= 3, "the providers kept fetching: {fetches:?}");
    for pair in fetches.windows(2).filter(|pair| pair[0].0 != pair[1].0) {
        let gap = (pair[1].1 - pair[0].1).to_std().unwrap_or_default();
        assert!(gap >= Duration::from_millis(990), "two providers fetched {gap:?} apart: {fetches:?}");
    }
    for task in tasks {
        task.shutdown().await;
    }
    namespace.cleanup().await;
}
