//! Provider mode over real HTTP: a refused key is 401 with `INVALID_KEY_MESSAGE` and appears
//! in no answer and no log line; a good key enables, status follows, disable turns it off;
//! the same through a real `BirdeyeSource` against a wiremock stand-in.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use mesh_api::{ApiConfig, ApiState, birdeye_factory};
use mesh_provider::BirdeyeConfig;
use mesh_types::{Asset, ProviderConfig};
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{
    BAD_KEY, GOOD_KEY, LogBuffer, Server, data, error_message, get, node, send, with_provider,
};

const INVALID_KEY_MESSAGE: &str = "Invalid API key: authentication failed with Birdeye API";

async fn enable(server: &Server, key: &str) -> (u16, Value, String) {
    let response = reqwest::Client::new()
        .post(server.url("/api/mesh/provider/enable"))
        .json(&json!({ "api_key": key }))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap(), text)
}

// A current-thread runtime: the server's tasks run on this thread, so the thread-local log
// subscriber sees every line they write.
#[tokio::test]
async fn a_refused_key_is_401_and_never_logged_or_echoed() {
    let logs = LogBuffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let service = node().await;
    let server = Server::start(with_provider(&service).build()).await;

    let (status, body, text) = enable(&server, BAD_KEY).await;
    assert_eq!(status, 401);
    assert_eq!(body, json!({"success": false, "data": null, "error": INVALID_KEY_MESSAGE}));
    assert!(!text.contains(BAD_KEY));
    let (_, status_body) = get(&server.url("/api/mesh/provider/status")).await;
    assert_eq!(data(&status_body)["enabled"], false, "a refused key leaves provider mode off");

    // An empty or blank key is refused the same way.
    let (status, body, _) = enable(&server, "   ").await;
    assert_eq!((status, error_message(&body)), (401, INVALID_KEY_MESSAGE));

    let captured = logs.contents();
    assert!(captured.contains("refused the key"), "the refusal is logged: {captured}");
    assert!(!captured.contains(BAD_KEY), "the key leaked into the logs: {captured}");
}

#[tokio::test]
async fn a_good_key_enables_provider_mode_and_disable_turns_it_off() {
    let service = node().await;
    let server = Server::start(with_provider(&service).build()).await;
    let node_id = service.node_id().to_string();

    let (status, body, _) = enable(&server, GOOD_KEY).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"success": true, "data": {"enabled": true, "node_id": node_id}}));

    let (status, body) = get(&server.url("/api/mesh/provider/status")).await;
    assert_eq!(status, 200);
    let provider = data(&body);
    assert_eq!(
        crate::support::keys(provider),
        ["enabled", "fetch_count", "last_fetch_time", "node_id"],
        "the provider status fields"
    );
    assert_eq!(provider["enabled"], true);
    assert_eq!(provider["node_id"], Value::String(node_id.clone()));
    // The role changed in one place: the node lists itself as a provider, as its
    // announcements and heartbeats say.
    let lists_itself =
        || service.network_status().active_providers.iter().any(|p| p.node_id == service.node_id());
    assert!(lists_itself(), "enabled over the API, the node is a provider to the mesh");

    let (status, body) = send(reqwest::Client::new().post(server.url("/api/mesh/provider/disable"))).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"success": true, "data": {"enabled": false, "node_id": node_id}}));
    let (_, body) = get(&server.url("/api/mesh/provider/status")).await;
    assert_eq!(data(&body)["enabled"], false);
    assert!(!lists_itself(), "disabled, it no longer is");
}

#[tokio::test]
async fn without_a_provider_loop_enable_is_a_500_envelope() {
    let service = node().await;
    let server = Server::start(ApiState::builder(service).build()).await;
    let (status, body, _) = enable(&server, GOOD_KEY).await;
    assert_eq!(status, 500);
    assert!(error_message(&body).starts_with("Failed to enable provider mode: "), "{body}");
}

#[tokio::test]
async fn birdeye_answers_decide_through_a_real_client() {
    let birdeye = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/defi/price"))
        .and(header("X-API-KEY", GOOD_KEY))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": { "value": 150.1, "updateUnixTime": 1_692_181_644 },
            "success": true
        })))
        .mount(&birdeye)
        .await;
    Mock::given(path("/defi/price")).respond_with(ResponseTemplate::new(401)).mount(&birdeye).await;
    Mock::given(path("/defi/multi_price"))
        .and(header("X-API-KEY", GOOD_KEY))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": { "So11111111111111111111111111111111111111112": {
                "value": 150.1, "updateUnixTime": 1_692_181_644, "priceChange24h": -1.5
            } },
            "success": true
        })))
        .mount(&birdeye)
        .await;

    let service = node().await;
    // A short window, so the first fetch after enabling comes within a second.
    let quick =
        ProviderConfig { fetch_interval_secs: 2, coordination_window_secs: 1, ..ProviderConfig::default() };
    service.start_provider(quick, vec![Asset::new("SOL").unwrap()]).unwrap();
    let config = BirdeyeConfig {
        base_url: birdeye.uri(),
        timeout: Duration::from_secs(2),
        retry_delays: vec![],
        ..BirdeyeConfig::default()
    };
    let ready = Arc::new(AtomicBool::new(true));
    let factory = birdeye_factory(config);
    let state = ApiState::new(service.clone(), factory, None, ready, ApiConfig::default());
    let server = Server::start(state).await;

    let (status, body, text) = enable(&server, BAD_KEY).await;
    assert_eq!((status, error_message(&body)), (401, INVALID_KEY_MESSAGE));
    assert!(!text.contains(BAD_KEY));

    let (status, body, _) = enable(&server, GOOD_KEY).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(data(&body)["enabled"], true);

    // Fetches start: the stand-in is asked for prices with the key, and the node holds them.
    let mut fetched = false;
    for _ in 0..50 {
        let asked = birdeye.received_requests().await.unwrap_or_default();
        if asked.iter().any(|request| request.url.path() == "/defi/multi_price")
            && service.prices().get(Asset::new("SOL").unwrap()).await.unwrap().is_some()
        {
            fetched = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(fetched, "provider mode fetched from the stand-in and stored the price");
    let (_, status_body) = get(&server.url("/api/mesh/provider/status")).await;
    assert!(data(&status_body)["fetch_count"].as_u64().unwrap_or(0) >= 1, "{status_body}");

    // A base URL that cannot work is a server-side problem: 500 with the reason.
    let broken = BirdeyeConfig { base_url: "not a url".into(), ..BirdeyeConfig::default() };
    let service = node().await;
    service.start_provider(ProviderConfig::default(), vec![Asset::new("SOL").unwrap()]).unwrap();
    let state = ApiState::builder(service).source_factory(birdeye_factory(broken)).build();
    let server = Server::start(state).await;
    let (status, body, _) = enable(&server, GOOD_KEY).await;
    assert_eq!(status, 500);
    assert!(
        error_message(&body).starts_with("Failed to enable provider mode: invalid price source"),
        "{body}"
    );
}
