//! Freshness that knows about clocks, with real processes: a provider whose clock runs 3 s
//! behind (the test-only clock offset) is flagged with `CLOCK_SKEW`, its offset is estimated
//! by its peer from heartbeats and by a node further away from its signed announcements, and
//! its prices' age is judged on when they were made, not on its clock's word.

mod support;

use std::time::Duration;

use futures::StreamExt as _;
use serde_json::Value;
use support::{Node, get, start_with, until};
use tokio_tungstenite::tungstenite::Message;

const QUICK: [(&str, &str); 2] =
    [("MESH_HEARTBEAT_INTERVAL_SECS", "1"), ("MESH_ANNOUNCE_INTERVAL_SECS", "2")];

fn offset_of_provider(body: &Value) -> Option<i64> {
    body["data"]["active_providers"].as_array()?.first()?["clock_offset_ms"].as_i64()
}

/// The node's `mesh_cache_data_age_seconds`, the age of the newest price it holds.
async fn data_age(client: &reqwest::Client, node: &Node) -> Option<f64> {
    support::metric(client, node, "mesh_cache_data_age_seconds").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_whose_clock_is_behind_is_flagged_and_its_prices_age_is_corrected() {
    let provider_settings =
        [QUICK[0], QUICK[1], ("MESH_PRICE_SOURCE", "simulated"), ("MESH_TEST_CLOCK_OFFSET_MS", "-3000")];
    let provider = start_with(None, &provider_settings);
    let peer = start_with(Some(provider.peers), &QUICK);
    let (mut feed, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", peer.api)).await.unwrap();
    let far = start_with(Some(peer.peers), &[QUICK[0], QUICK[1], ("MESH_MAX_PEER_CONNECTIONS", "1")]);
    let client = reqwest::Client::new();

    let near =
        |body: &Value| offset_of_provider(body).is_some_and(|offset| (-3400..=-2600).contains(&offset));
    let measured = until(&client, &peer, "/api/mesh/network/status", near).await;
    assert_eq!(
        measured["data"]["active_providers"][0]["node_id"],
        get(&client, &provider, "/health").await.unwrap()["data"]["node_id"]
    );
    // Two hops away, the offset comes from the provider's own signed claim.
    until(&client, &far, "/api/mesh/network/status", near).await;

    let warning = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(Ok(message)) = feed.next().await {
            let Message::Text(text) = message else { continue };
            let frame: Value = serde_json::from_str(&text).unwrap();
            if frame["type"] == "MeshWarning" && frame["data"]["code"] == "CLOCK_SKEW" {
                return frame;
            }
        }
        panic!("the feed ended");
    })
    .await
    .expect("a CLOCK_SKEW warning");
    let offset = warning["data"]["offset_ms"].as_i64().unwrap();
    assert!((-3400..=-2600).contains(&offset), "{warning}");
    assert!(warning["data"]["message"].as_str().unwrap().contains("behind"), "{warning}");

    // Prices arrive every second, stamped 3 s in the past by the provider's clock: judged by
    // when they were made, they are never more than a fetch interval and a hop old. (Those
    // that came before the offset was known were judged on the clock's word; give the next
    // ones two seconds to arrive.)
    tokio::time::sleep(Duration::from_secs(2)).await;
    for node in [&peer, &far] {
        let mut ages = Vec::new();
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(400)).await;
            ages.extend(data_age(&client, node).await);
        }
        let worst = ages.iter().copied().fold(0.0, f64::max);
        assert!(
            !ages.is_empty() && worst < 2.5,
            "the newest price looked {worst} s old on {}: {ages:?}",
            node.api
        );
    }
}
