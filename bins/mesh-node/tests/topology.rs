//! Topology that prefers peers close to the providers, with real processes: in a line
//! provider – relay – relay – node, the node at the end counts its hops from heartbeats and,
//! with one slot above its minimum, swaps its way up until it sits next to the provider,
//! keeping the peer it joined through. `/metrics` shows every node's count.

mod support;

use std::time::{Duration, Instant};

use support::{Node, metric, start_with};

const HOPS: &str = "mesh_network_provider_hops";

/// Heartbeats and moves every second; relays keep their places.
const QUICK: [(&str, &str); 2] =
    [("MESH_HEARTBEAT_INTERVAL_SECS", "1"), ("MESH_PREFERENCE_INTERVAL_SECS", "1")];

async fn hops_become(client: &reqwest::Client, node: &Node, expected: f64, within: Duration) -> Option<f64> {
    let deadline = Instant::now() + within;
    loop {
        let hops = metric(client, node, HOPS).await;
        if hops == Some(expected) || Instant::now() > deadline {
            return hops;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_at_the_end_of_a_line_moves_next_to_the_provider() {
    let relay: Vec<(&str, &str)> = [QUICK[0], QUICK[1], ("MESH_PREFER_CLOSE_PEERS", "false")].into();
    // With no minimum the provider never dials anyone itself, so the line stays a line.
    let provider_settings: Vec<(&str, &str)> =
        [("MESH_PRICE_SOURCE", "simulated"), ("MESH_MIN_PEER_CONNECTIONS", "0")]
            .into_iter()
            .chain(relay.clone())
            .collect();
    let provider = start_with(None, &provider_settings);
    let first = start_with(Some(provider.peers), &relay);
    let second = start_with(Some(first.peers), &relay);
    let client = reqwest::Client::new();
    for (node, expected) in [(&provider, 0.0), (&first, 1.0), (&second, 2.0)] {
        let hops = hops_become(&client, node, expected, Duration::from_secs(20)).await;
        assert_eq!(hops, Some(expected), "{HOPS} on {}", node.api);
    }

    // One peer to start (its minimum), one more of its choosing.
    let end = start_with(Some(second.peers), &[QUICK[0], QUICK[1], ("MESH_MAX_PEER_CONNECTIONS", "2")]);
    let hops = hops_become(&client, &end, 1.0, Duration::from_secs(30)).await;
    assert_eq!(hops, Some(1.0), "the end of the line moved next to the provider");
    let status = support::get(&client, &end, "/api/mesh/network/status").await.unwrap();
    assert_eq!(status["data"]["connected_peers"], 2, "{status}");
    // The relays it passed through stay where they were.
    assert_eq!(metric(&client, &second, HOPS).await, Some(2.0));
}
