//! The read endpoints over real HTTP: prices, one price, network status, provider status,
//! health and readiness, each compared with the shapes the API serves (the OpenAPI contract at
//! `/api/openapi.json`, `crates/mesh-types/src/openapi.rs`).

use mesh_api::ApiState;
use serde_json::{Value, json};

use crate::support::{Server, data, error_message, get, keys, node, price, publish};

#[tokio::test]
async fn published_prices_are_served_as_price_objects_with_the_quorum_fields() {
    let service = node().await;
    publish(&service, vec![price("SOL", 12_345), price("ETH", 234_567)]).await;
    let server = Server::start(ApiState::builder(service.clone()).build()).await;
    let node_id = service.node_id().to_string();

    let (status, body) = get(&server.url("/api/mesh/prices")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(keys(&body), ["data", "success"]);
    let prices = data(&body);
    assert_eq!(keys(prices), ["ETH", "SOL"]);
    let sol = &prices["SOL"];
    assert_eq!(
        keys(sol),
        ["asset", "blockchain", "change_24h", "price", "providers", "source_node_id", "spread", "timestamp"],
        "the price object's fields, and the quorum's beside them"
    );
    assert_eq!((sol["providers"].as_u64(), sol["spread"].as_str()), (Some(1), Some("0")));
    assert_eq!(sol["asset"], "SOL");
    assert_eq!(sol["price"], "123.45");
    assert_eq!(sol["blockchain"], "Solana");
    assert_eq!(sol["change_24h"], "5.2");
    assert_eq!(sol["source_node_id"], Value::String(node_id.clone()));
    assert!(sol["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')), "RFC 3339 UTC: {sol}");
    let eth = &prices["ETH"];
    assert_eq!(
        keys(eth),
        ["asset", "blockchain", "price", "providers", "source_node_id", "spread", "timestamp"],
        "no change_24h"
    );
    assert_eq!(eth["price"], "2345.67");

    let (status, body) = get(&server.url("/api/mesh/prices/sol")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(data(&body), sol, "the single-asset answer is the same price, symbol case-insensitive");
}

#[tokio::test]
async fn an_unknown_or_impossible_asset_is_not_found_in_cache() {
    let service = node().await;
    let server = Server::start(ApiState::builder(service).build()).await;

    let (status, body) = get(&server.url("/api/mesh/prices/XYZ")).await;
    assert_eq!(status, 404);
    assert_eq!(error_message(&body), "Asset 'XYZ' not found in cache");
    assert_eq!(body, json!({"success": false, "data": null, "error": "Asset 'XYZ' not found in cache"}));

    let (status, body) = get(&server.url("/api/mesh/prices/xyz")).await;
    assert_eq!((status, error_message(&body)), (404, "Asset 'XYZ' not found in cache"));

    // Not a possible symbol: documented as 404 with the same message.
    let (status, body) = get(&server.url("/api/mesh/prices/B%20TC")).await;
    assert_eq!((status, error_message(&body)), (404, "Asset 'B TC' not found in cache"));

    let (status, body) = get(&server.url("/api/mesh/prices")).await;
    assert_eq!((status, body), (200, json!({"success": true, "data": {}})), "an empty cache is an empty map");
}

#[tokio::test]
async fn network_status_lists_providers_with_hop_counts() {
    let service = node().await;
    publish(&service, vec![price("SOL", 100)]).await;
    let server = Server::start(ApiState::builder(service.clone()).build()).await;

    let (status, body) = get(&server.url("/api/mesh/network/status")).await;
    assert_eq!(status, 200, "{body}");
    let network = data(&body);
    assert_eq!(
        keys(network),
        ["active_providers", "connected_peers", "data_freshness", "last_update_time", "total_network_size"]
    );
    assert_eq!(network["connected_peers"], 0);
    assert_eq!(network["total_network_size"], 1);
    assert_eq!(network["data_freshness"], "JustNow");
    let providers = network["active_providers"].as_array().expect("a list");
    assert_eq!(providers.len(), 1, "this node published, so it is a provider");
    assert_eq!(
        keys(&providers[0]),
        ["hop_count", "last_fetch_time", "last_seen", "node_id"],
        "the provider info fields, and when it last fetched"
    );
    assert_eq!(providers[0]["node_id"], Value::String(service.node_id().to_string()));
    assert_eq!(providers[0]["hop_count"], 0);
}

#[tokio::test]
async fn provider_status_without_a_provider_loop_reports_disabled() {
    let service = node().await;
    let server = Server::start(ApiState::builder(service.clone()).build()).await;
    let (status, body) = get(&server.url("/api/mesh/provider/status")).await;
    assert_eq!(status, 200);
    assert_eq!(
        data(&body),
        &json!({"enabled": false, "node_id": service.node_id().to_string(), "last_fetch_time": null, "fetch_count": 0})
    );
}

#[tokio::test]
async fn health_is_always_up_and_ready_waits_for_the_flag() {
    let service = node().await;
    let state = ApiState::builder(service.clone()).build();
    let server = Server::start(state.clone()).await;

    let (status, body) = get(&server.url("/health")).await;
    assert_eq!(status, 200);
    assert_eq!(data(&body)["status"], "ok");
    assert_eq!(data(&body)["node_id"], Value::String(service.node_id().to_string()));

    let (status, body) = get(&server.url("/ready")).await;
    assert_eq!(status, 503);
    assert!(error_message(&body).contains("starting up"), "{body}");

    state.set_ready(true);
    let (status, body) = get(&server.url("/ready")).await;
    assert_eq!((status, body), (200, json!({"success": true, "data": {"ready": true, "degraded": []}})));

    // The flag can be shared with the code that decides readiness.
    state.ready_flag().store(false, std::sync::atomic::Ordering::Release);
    assert_eq!(get(&server.url("/ready")).await.0, 503);
}

#[tokio::test]
async fn a_dead_task_turns_health_and_readiness_to_503_with_its_name_within_a_second() {
    let service = node().await;
    let state = ApiState::builder(service.clone()).build();
    state.set_ready(true);
    let server = Server::start(state).await;
    assert_eq!(get(&server.url("/health")).await.0, 200);

    service.supervisor().spawn_service("doomed_loop", async { panic!("Division overflowed") });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    let (status, body) = loop {
        let (status, body) = get(&server.url("/health")).await;
        if status != 200 || std::time::Instant::now() > deadline {
            break (status, body);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(status, 503, "{body}");
    let message = error_message(&body);
    assert!(message.contains("doomed_loop") && message.contains("Division overflowed"), "{message}");
    assert_eq!(body["data"], Value::Null, "the envelope of every error");
    let (status, body) = get(&server.url("/ready")).await;
    assert_eq!(status, 503);
    assert!(error_message(&body).contains("doomed_loop"), "{body}");
}

#[tokio::test]
async fn below_quorum_a_price_is_withheld_unless_its_quotes_are_asked_for() {
    let service = crate::support::node_with(|config| config.status.quorum = 2).await;
    publish(&service, vec![price("SOL", 12_345)]).await;
    let server = Server::start(ApiState::builder(service.clone()).build()).await;

    let (status, body) = get(&server.url("/api/mesh/prices")).await;
    assert_eq!((status, data(&body)), (200, &json!({})), "one provider of two is not a price");
    let (status, body) = get(&server.url("/api/mesh/prices/SOL")).await;
    assert_eq!(status, 404);
    assert_eq!(
        error_message(&body),
        "Asset 'SOL' is below quorum: 1 fresh provider quote(s) of 2 required; add ?quotes=true to see them"
    );
    let (status, body) = get(&server.url("/api/mesh/prices/SOL?quotes=true")).await;
    assert_eq!(status, 200, "{body}");
    let sol = data(&body);
    assert_eq!((sol["below_quorum"].as_bool(), sol["providers"].as_u64()), (Some(true), Some(1)));
    assert_eq!(sol["quotes"][0]["price"], "123.45");
    assert_eq!(sol["quotes"][0]["source_node_id"], Value::String(service.node_id().to_string()));

    let (status, body) = get(&server.url("/api/mesh/prices/SOL?quotes=maybe")).await;
    assert_eq!(status, 400);
    assert!(error_message(&body).contains("?quotes=true"), "{body}");
}

#[tokio::test]
async fn at_quorum_the_quotes_come_with_the_price_on_request() {
    let service = node().await;
    publish(&service, vec![price("SOL", 12_345)]).await;
    let server = Server::start(ApiState::builder(service).build()).await;
    let (status, body) = get(&server.url("/api/mesh/prices/SOL?quotes=true")).await;
    assert_eq!(status, 200, "{body}");
    let sol = data(&body);
    assert!(sol.get("below_quorum").is_none(), "only flagged when below: {sol}");
    assert_eq!(sol["quotes"].as_array().map(Vec::len), Some(1));
    let (_, plain) = get(&server.url("/api/mesh/prices/SOL")).await;
    assert!(data(&plain).get("quotes").is_none(), "quotes only when asked for");
}
