//! What the process tests share: `mesh-node run` processes on loopback ports the system picks,
//! and polling their API.

#![allow(dead_code, reason = "each test binary uses its own part of the support")]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// A node process, killed when dropped.
pub(crate) struct Node {
    child: Child,
    pub(crate) api: SocketAddr,
    pub(crate) peers: SocketAddr,
    _data: tempfile::TempDir,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a node on ports the system picks, and learns them from its "node ready" log line.
pub(crate) fn start(bootstrap: Option<SocketAddr>, simulated: bool) -> Node {
    let line_end: &[(&str, &str)] =
        // One peer slot keeps the line a line: the provider, which would otherwise dial the
        // consumer it hears of, stays two hops from it.
        &[("MESH_PRICE_SOURCE", "simulated"), ("MESH_MAX_PEER_CONNECTIONS", "1")];
    start_with(bootstrap, if simulated { line_end } else { &[] })
}

/// [`start`] with more settings in the environment.
pub(crate) fn start_with(bootstrap: Option<SocketAddr>, settings: &[(&str, &str)]) -> Node {
    start_in(tempfile::tempdir().unwrap(), bootstrap, settings)
}

/// A data directory holding a fresh node key, and that node's id.
pub(crate) fn keyed_data_dir() -> (tempfile::TempDir, String) {
    let data = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_mesh-node"))
        .args(["keygen", "--data-dir"])
        .arg(data.path())
        .env_remove("MESH_DATA_DIR")
        .output()
        .expect("run mesh-node keygen");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let id = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    (data, id)
}

/// [`start_with`] on the data directory `data` (its key, if it holds one).
pub(crate) fn start_in(
    data: tempfile::TempDir,
    bootstrap: Option<SocketAddr>,
    settings: &[(&str, &str)],
) -> Node {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mesh-node"));
    let filter = std::env::var("E2E_LOG").unwrap_or_else(|_| "warn".into());
    command
        .arg("run")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", format!("{filter},mesh_node::run=info"))
        .env("MESH_LOG_FORMAT", "json")
        .env("MESH_NETWORK", "devnet")
        .env("MESH_API_ADDR", "127.0.0.1:0")
        .env("MESH_LISTEN_ADDR", "127.0.0.1:0")
        .env("MESH_DATA_DIR", data.path())
        .env("MESH_MIN_PEER_CONNECTIONS", "1")
        .env("MESH_PROVIDER_FETCH_INTERVAL_SECS", "1")
        .env("MESH_COORDINATION_WINDOW_SECS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(bootstrap) = bootstrap {
        command.env("MESH_BOOTSTRAP_PEERS", bootstrap.to_string());
    }
    command.envs(settings.iter().copied());
    let mut child = command.spawn().expect("start mesh-node");
    let stderr = child.stderr.take().expect("piped stderr");
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    // Passes the log on to the test's stderr, and the bound addresses back once ready.
    std::thread::spawn(move || {
        let mut ready = Some(ready_tx);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let entry: Value = serde_json::from_str(&line).unwrap_or_default();
            let fields = &entry["fields"];
            if fields["message"] == "node ready"
                && let (Some(api), Some(peers)) = (fields["api"].as_str(), fields["listen"].as_str())
                && let Some(sender) = ready.take()
            {
                let _ = sender.send((api.parse().unwrap(), peers.parse().unwrap()));
            }
            eprintln!("{line}");
        }
    });
    let (api, peers) = ready_rx.recv_timeout(Duration::from_secs(30)).expect("the node reports ready");
    Node { child, api, peers, _data: data }
}

pub(crate) async fn get(client: &reqwest::Client, node: &Node, path: &str) -> Option<Value> {
    let response = client.get(format!("http://{}{path}", node.api)).send().await.ok()?;
    response.json::<Value>().await.ok()
}

/// The value of the unlabelled metric `name` on the node's `/metrics`.
pub(crate) async fn metric(client: &reqwest::Client, node: &Node, name: &str) -> Option<f64> {
    let text = client.get(format!("http://{}/metrics", node.api)).send().await.ok()?.text().await.ok()?;
    text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Polls `path` on `node` until `accept` holds, for up to 30 s.
pub(crate) async fn until(
    client: &reqwest::Client,
    node: &Node,
    path: &str,
    accept: impl Fn(&Value) -> bool,
) -> Value {
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

/// A price API stand-in that quotes SOL at `value` dollars, always at the current time.
pub(crate) async fn birdeye_quoting(value: f64) -> wiremock::MockServer {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, Respond, ResponseTemplate};

    /// Answers with the current time, so the quote is always fresh.
    struct Quote(f64);
    impl Respond for Quote {
        fn respond(&self, _: &wiremock::Request) -> ResponseTemplate {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
            ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "success": true,
                "data": {"So11111111111111111111111111111111111111112": {"value": self.0, "updateUnixTime": now}},
            }))
        }
    }
    let server = MockServer::start().await;
    Mock::given(method("GET")).and(path("/defi/multi_price")).respond_with(Quote(value)).mount(&server).await;
    // The key check at start.
    Mock::given(method("GET"))
        .and(path("/defi/price"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "success": true, "data": {"value": 150.0, "updateUnixTime": 1}
        })))
        .mount(&server)
        .await;
    server
}
