//! A network status that tells the truth, with real processes: a new node counts the whole
//! network within seconds, and a killed provider leaves the survivors' network size and
//! providers list within three announcement intervals.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Node, start_with, until};

fn size(body: &Value) -> u64 {
    body["data"]["total_network_size"].as_u64().unwrap_or(0)
}

fn providers(body: &Value) -> usize {
    body["data"]["active_providers"].as_array().map_or(0, Vec::len)
}

/// A provider and three more nodes in a line, each bootstrapping from the one before.
fn line(settings: &[(&str, &str)]) -> Vec<Node> {
    let provider_settings: Vec<(&str, &str)> =
        [("MESH_PRICE_SOURCE", "simulated")].into_iter().chain(settings.iter().copied()).collect();
    let mut nodes = vec![start_with(None, &provider_settings)];
    for _ in 0..3 {
        let previous = nodes.last().map(|node| node.peers);
        nodes.push(start_with(previous, settings));
    }
    nodes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_counts_the_whole_network_within_seconds_of_joining() {
    // Announcements every 60 s (the default): only the greeting on connect can do it.
    let started = Instant::now();
    let nodes = line(&[]);
    let client = reqwest::Client::new();
    for node in &nodes {
        let body =
            until(&client, node, "/api/mesh/network/status", |body| size(body) == 4 && providers(body) == 1)
                .await;
        assert_eq!(
            body["data"]["active_providers"][0]["hop_count"].as_u64().map(|hops| hops <= 3),
            Some(true)
        );
    }
    assert!(started.elapsed() < Duration::from_secs(15), "took {:?}", started.elapsed());
    // The provider lists itself.
    let own = until(&client, &nodes[0], "/api/mesh/network/status", |body| providers(body) == 1).await;
    assert_eq!(own["data"]["active_providers"][0]["hop_count"], 0, "{own}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_provider_leaves_the_size_and_the_providers_list_within_three_intervals() {
    let mut nodes = line(&[("MESH_ANNOUNCE_INTERVAL_SECS", "1")]);
    let client = reqwest::Client::new();
    for node in &nodes {
        until(&client, node, "/api/mesh/network/status", |body| size(body) == 4 && providers(body) == 1)
            .await;
    }
    let provider = nodes.remove(0);
    drop(provider);
    let killed = Instant::now();
    for node in &nodes {
        until(&client, node, "/api/mesh/network/status", |body| size(body) == 3 && providers(body) == 0)
            .await;
    }
    // Three intervals of 1 s, checked every status tick, plus the polling.
    assert!(killed.elapsed() < Duration::from_secs(10), "took {:?}", killed.elapsed());
}
