//! End to end with the real binary: three `mesh-node run` processes on loopback in a line
//! (a simulated provider, a relay, a consumer); the consumer's REST API serves the provider's
//! prices in the reference shapes, its network status lists the provider two hops away, and
//! its WebSocket sends `PriceMeshInitial` then `PriceMeshUpdate`.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;

/// A node process, killed when dropped.
struct Node {
    child: Child,
    api: SocketAddr,
    peers: SocketAddr,
    _data: tempfile::TempDir,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

fn start(bootstrap: Option<SocketAddr>, simulated: bool) -> Node {
    let (api, peers) = (free_addr(), free_addr());
    let data = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_mesh-node"));
    command
        .arg("run")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .env("MESH_NETWORK", "devnet")
        .env("MESH_API_ADDR", api.to_string())
        .env("MESH_LISTEN_ADDR", peers.to_string())
        .env("MESH_DATA_DIR", data.path())
        .env("MESH_MIN_PEER_CONNECTIONS", "1")
        .env("MESH_PROVIDER_FETCH_INTERVAL_SECS", "1")
        .env("MESH_COORDINATION_WINDOW_SECS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    if let Some(bootstrap) = bootstrap {
        command.env("MESH_BOOTSTRAP_PEERS", bootstrap.to_string());
    }
    if simulated {
        command.env("MESH_PRICE_SOURCE", "simulated");
    }
    Node { child: command.spawn().expect("start mesh-node"), api, peers, _data: data }
}

async fn get(client: &reqwest::Client, node: &Node, path: &str) -> Option<Value> {
    let response = client.get(format!("http://{}{path}", node.api)).send().await.ok()?;
    response.json::<Value>().await.ok()
}

/// Polls `path` on `node` until `accept` holds, for up to 30 s.
async fn until(client: &reqwest::Client, node: &Node, path: &str, accept: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..300 {
        if let Some(body) = get(client, node, path).await
            && accept(&body)
        {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{path} on {} never became as expected", node.api);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prices_cross_three_processes_to_the_api_and_websocket() {
    let provider = start(None, true);
    let relay = start(Some(provider.peers), false);
    let consumer = start(Some(relay.peers), false);
    let client = reqwest::Client::new();

    let prices = until(&client, &consumer, "/api/mesh/prices", |body| {
        body["success"] == true && body["data"].as_object().is_some_and(|data| !data.is_empty())
    })
    .await;
    for (asset, price) in prices["data"].as_object().unwrap() {
        assert_eq!(price["asset"], Value::String(asset.clone()));
        assert!(price["price"].is_string(), "decimals are strings: {price}");
        assert!(
            price["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')),
            "RFC 3339 timestamps: {price}"
        );
        assert!(price["source_node_id"].is_string() && price["blockchain"].is_string());
    }

    let provider_id =
        until(&client, &provider, "/api/mesh/provider/status", |body| body["data"]["enabled"] == true).await
            ["data"]["node_id"]
            .clone();
    let status = until(&client, &consumer, "/api/mesh/network/status", |body| {
        body["data"]["active_providers"].as_array().is_some_and(|providers| !providers.is_empty())
    })
    .await;
    let listed =
        status["data"]["active_providers"].as_array().unwrap().iter().find(|p| p["node_id"] == provider_id);
    let hops = listed.expect("the provider is listed")["hop_count"].as_u64().unwrap();
    assert!(hops >= 1, "the provider is {hops} hops away");
    assert!(status["data"]["connected_peers"].as_u64().unwrap() >= 1);

    let (mut socket, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/ws", consumer.api)).await.expect("websocket");
    let mut kinds = Vec::new();
    while kinds.len() < 2 {
        let frame =
            tokio::time::timeout(Duration::from_secs(15), socket.next()).await.expect("a message in time");
        if let Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text))) = frame {
            let message: Value = serde_json::from_str(&text).unwrap();
            let kind = message["type"].as_str().unwrap_or_default().to_owned();
            if kind == "PriceMeshInitial" || kind == "PriceMeshUpdate" {
                kinds.push(kind);
            }
        }
    }
    assert_eq!(kinds, ["PriceMeshInitial", "PriceMeshUpdate"]);
}

#[test]
fn an_invalid_setting_fails_at_start_naming_it() {
    let output = Command::new(env!("CARGO_BIN_EXE_mesh-node"))
        .args(["run", "--min-peers", "20"])
        .env_remove("MESH_MIN_PEER_CONNECTIONS")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("invalid setting MESH_MIN_PEER_CONNECTIONS"), "{stderr}");
}
