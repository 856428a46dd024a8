//! Row "memory": the resident memory of a real `mesh-node` process, idle, and then holding
//! 10,000 assets with its seen-message cache full (an in-process node publishes them into it).

use std::time::Duration;

use pricemesh::types::rust_decimal::Decimal;
use pricemesh::types::{Asset, PriceData, PriceUpdate, chrono};

use crate::node::{Injector, NodeProcess};
use crate::report::Bytes;
use crate::scenario::signed_update;

/// Assets the loaded node holds.
const ASSETS: usize = 10_000;
/// The node's seen-message cache size (its default).
const SEEN_CACHE: usize = 10_000;
/// Prices per update while loading the assets (the protocol allows 1,024).
const PRICES_PER_UPDATE: usize = 1_000;

/// Runs the row.
///
/// # Errors
/// When the process cannot start or the load cannot be published.
pub async fn run() -> Result<(), String> {
    let idle = NodeProcess::start(None, &[])?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_rss = idle.rss();
    drop(idle);

    // The loader publishes faster than a peer normally may.
    let node = NodeProcess::start(None, &[("MESH_PEER_RATE_LIMIT", "1000000")])?;
    let loader = Injector::connect(node.peers).await?;
    let now = chrono::Utc::now();
    for chunk in 0..ASSETS / PRICES_PER_UPDATE {
        let prices = (0..PRICES_PER_UPDATE).map(|i| PriceData {
            asset: Asset::new(&format!("A{}", chunk * PRICES_PER_UPDATE + i)).expect("a valid symbol"),
            price: Decimal::new(12_345, 2),
            blockchain: "Solana".into(),
            change_24h: Some(Decimal::new(52, 1)),
        });
        loader
            .publish(PriceUpdate::new_signed(loader.identity(), loader.network_id(), prices, 10, now))
            .await?;
    }
    for seq in 0..SEEN_CACHE {
        loader.publish(signed_update(loader.identity(), loader.network_id(), seq)).await?;
        if seq % 500 == 0 {
            // Leave the connection's queue room: the node drops what a full queue cannot take.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (loaded_rss, loaded_peak) = (node.rss(), node.peak_rss());
    let (held, seen) = (held_assets(&node).await, accepted_updates(&node).await);
    loader.shutdown().await;

    println!("## Memory of one mesh-node process (VmRSS)");
    println!("| state | resident | peak |");
    println!("| --- | --- | --- |");
    println!("| idle, no peers | {} | |", Bytes(idle_rss as f64));
    println!(
        "| {held} assets held, {} updates seen (cache of {SEEN_CACHE}) | {} | {} |",
        seen.min(SEEN_CACHE as u64),
        Bytes(loaded_rss as f64),
        Bytes(loaded_peak as f64)
    );
    Ok(())
}

/// How many assets the node's REST API lists.
async fn held_assets(node: &NodeProcess) -> usize {
    let url = format!("http://{}/api/mesh/prices", node.api);
    let body: Option<serde_json::Value> = match reqwest::get(&url).await {
        Ok(response) => response.json().await.ok(),
        Err(_) => None,
    };
    body.and_then(|value| value.get("data")?.as_object().map(serde_json::Map::len)).unwrap_or(0)
}

/// How many updates the node accepted (and so remembers as seen), from its `/metrics`.
async fn accepted_updates(node: &NodeProcess) -> u64 {
    let url = format!("http://{}/metrics", node.api);
    let Ok(response) = reqwest::get(&url).await else { return 0 };
    let text = response.text().await.unwrap_or_default();
    text.lines()
        .find_map(|line| line.strip_prefix("mesh_gossip_updates_total{outcome=\"accepted\"} "))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .map_or(0, |value| value as u64)
}
