//! `meshctl` against a node, end to end: the real binary talks to a stand-in axum server on
//! `127.0.0.1:0` that answers with JSON examples of the node's API and records what it was
//! sent, so the tests check both what meshctl prints and what it puts on the wire.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

const ADMIN_TOKEN: &str = "admin-secret-token";
const GOOD_KEY: &str = "birdeye-key-0123456789";
const NODE_ID: &str = "550e8400-e29b-41d4-a716-446655440000";
/// The longest any one meshctl run may take before the test calls it hung.
const DEADLINE: Duration = Duration::from_secs(20);

fn sol() -> Value {
    json!({"asset": "SOL", "price": "123.45", "timestamp": "2024-01-01T12:00:00Z",
           "source_node_id": NODE_ID, "blockchain": "Solana", "change_24h": "5.2"})
}

fn prices() -> Value {
    json!({
        "SOL": sol(),
        "ETH": {"asset": "ETH", "price": "2345.67", "timestamp": "2024-01-01T12:00:00Z",
                "source_node_id": "550e8400-e29b-41d4-a716-446655440001", "blockchain": "Ethereum",
                "change_24h": "-2.1"}
    })
}

fn network_status() -> Value {
    json!({
        "active_providers": [
            {"node_id": NODE_ID, "last_seen": "2024-01-01T12:00:00Z", "hop_count": 1},
            {"node_id": "550e8400-e29b-41d4-a716-446655440001", "last_seen": "2024-01-01T12:00:05Z", "hop_count": 2}
        ],
        "connected_peers": 5,
        "total_network_size": 10,
        "last_update_time": "2024-01-01T12:00:00Z",
        "data_freshness": "JustNow"
    })
}

fn feed() -> [Value; 3] {
    [
        json!({"type": "PriceMeshInitial", "data": prices()}),
        json!({"type": "PriceMeshUpdate", "data": {"SOL": {
            "asset": "SOL", "price": "124.50", "timestamp": "2024-01-01T12:00:30Z",
            "source_node_id": NODE_ID, "blockchain": "Solana", "change_24h": "6.1"}}}),
        json!({"type": "MeshWarning", "data": {"severity": "warning",
            "message": "Price data is older than 1 hour", "code": "STALE_DATA", "age_seconds": 3720}}),
    ]
}

fn ok(data: Value) -> Response {
    Json(json!({"success": true, "data": data})).into_response()
}

fn fail(status: StatusCode, error: &str) -> Response {
    (status, Json(json!({"success": false, "data": null, "error": error}))).into_response()
}

/// One request the stand-in received.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    query: Option<String>,
    authorization: Option<String>,
    body: String,
}

#[derive(Clone)]
struct Shared {
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Whether `/ws` closes after its three messages, or stays open until the client leaves.
    feed_closes: bool,
}

impl Shared {
    fn record(&self, path: &str, query: Option<String>, headers: &HeaderMap, body: String) {
        let authorization =
            headers.get("authorization").and_then(|value| value.to_str().ok()).map(str::to_owned);
        let seen = Seen { path: path.to_owned(), query, authorization, body };
        self.seen.lock().unwrap().push(seen);
    }

    fn admin_ok(headers: &HeaderMap) -> bool {
        headers.get("authorization").and_then(|value| value.to_str().ok())
            == Some(format!("Bearer {ADMIN_TOKEN}").as_str())
    }
}

/// The stand-in node; it stops when dropped.
struct StandIn {
    addr: SocketAddr,
    shared: Shared,
    _runtime: tokio::runtime::Runtime,
}

impl StandIn {
    fn start() -> Self {
        Self::with_feed(true)
    }

    fn with_feed(feed_closes: bool) -> Self {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let shared = Shared { seen: Arc::default(), feed_closes };
        let app = Router::new()
            .route("/api/mesh/prices", get(|| async { ok(prices()) }))
            .route("/api/mesh/prices/{asset}", get(price))
            .route("/api/mesh/network/status", get(|| async { ok(network_status()) }))
            .route("/api/mesh/provider/enable", post(enable))
            .route("/api/mesh/provider/disable", post(disable))
            .route("/api/mesh/provider/status", get(provider_status))
            .route("/ws", get(websocket))
            .with_state(shared.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let _guard = runtime.enter();
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        runtime.spawn(async move { axum::serve(listener, app).await });
        Self { addr, shared, _runtime: runtime }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn seen(&self, path: &str) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().iter().filter(|seen| seen.path == path).cloned().collect()
    }

    fn meshctl(&self, args: &[&str]) -> Command {
        let mut command = meshctl(args);
        command.env("MESHCTL_NODE", self.url());
        command
    }
}

async fn price(Path(asset): Path<String>) -> Response {
    if asset == "SOL" {
        ok(sol())
    } else {
        fail(StatusCode::NOT_FOUND, &format!("Asset '{asset}' not found in cache"))
    }
}

async fn enable(State(shared): State<Shared>, headers: HeaderMap, body: String) -> Response {
    shared.record("/api/mesh/provider/enable", None, &headers, body.clone());
    if !Shared::admin_ok(&headers) {
        return fail(StatusCode::UNAUTHORIZED, "Missing or invalid admin token");
    }
    let Ok(request) = serde_json::from_str::<Value>(&body) else {
        return fail(StatusCode::BAD_REQUEST, "Invalid request body");
    };
    if request["api_key"] == GOOD_KEY {
        ok(json!({"enabled": true, "node_id": NODE_ID}))
    } else {
        fail(StatusCode::UNAUTHORIZED, "Invalid API key: authentication failed with Birdeye API")
    }
}

async fn disable(State(shared): State<Shared>, headers: HeaderMap, body: String) -> Response {
    shared.record("/api/mesh/provider/disable", None, &headers, body);
    if !Shared::admin_ok(&headers) {
        return fail(StatusCode::UNAUTHORIZED, "Missing or invalid admin token");
    }
    ok(json!({"enabled": false, "node_id": NODE_ID}))
}

async fn provider_status() -> Response {
    ok(
        json!({"enabled": true, "node_id": NODE_ID, "last_fetch_time": "2024-01-01T12:00:00Z", "fetch_count": 42}),
    )
}

async fn websocket(
    State(shared): State<Shared>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    shared.record("/ws", query, &headers, String::new());
    upgrade.on_upgrade(move |mut socket| async move {
        for message in feed() {
            if socket.send(Message::Text(message.to_string().into())).await.is_err() {
                return;
            }
        }
        if shared.feed_closes {
            let _ = socket.send(Message::Close(None)).await;
        }
        // Wait for the client's close frame, or for it to leave.
        while let Some(Ok(message)) = socket.recv().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    })
}

/// `meshctl` with the given arguments and none of the settings of the surrounding shell.
fn meshctl(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_meshctl"));
    command.args(args);
    for var in ["MESHCTL_NODE", "MESH_ADMIN_TOKEN", "BIRDEYE_API_KEY"] {
        command.env_remove(var);
    }
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    command
}

/// Runs `command` to the end, failing the test if it takes past [`DEADLINE`].
fn finish(mut command: Command) -> Output {
    let child = command.spawn().expect("start meshctl");
    wait(child)
}

fn wait(mut child: Child) -> Output {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > DEADLINE {
            child.kill().unwrap();
            let output = child.wait_with_output().unwrap();
            panic!("meshctl hung; stdout: {}", String::from_utf8_lossy(&output.stdout));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

fn succeeded(output: &Output) -> bool {
    if !output.status.success() {
        eprintln!("stderr: {}", stderr(output));
    }
    output.status.success()
}

/// A loopback address where nothing listens.
fn closed_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    url
}

#[test]
fn prices_print_a_table_of_every_asset() {
    let node = StandIn::start();
    let output = finish(node.meshctl(&["prices"]));
    assert!(succeeded(&output));
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    for column in ["ASSET", "PRICE", "24H", "AGE", "SOURCE"] {
        assert!(lines[0].contains(column), "{text}");
    }
    // Sorted by asset, so ETH first.
    assert!(
        lines[1].starts_with("ETH ") && lines[1].contains("2345.67") && lines[1].contains("-2.1%"),
        "{text}"
    );
    assert!(
        lines[2].starts_with("SOL ") && lines[2].contains("123.45") && lines[2].contains("+5.2%"),
        "{text}"
    );
    assert!(lines[1].ends_with("550e8400") && lines[2].ends_with("550e8400"), "{text}");
    assert!(lines[2].contains("d ago"), "the 2024 timestamp is days old: {text}");
}

#[test]
fn prices_json_is_the_node_data() {
    let node = StandIn::start();
    let all = finish(node.meshctl(&["prices", "--json"]));
    assert!(succeeded(&all));
    assert_eq!(serde_json::from_str::<Value>(&stdout(&all)).unwrap(), prices());

    let one = finish(node.meshctl(&["--json", "prices", "SOL"]));
    assert!(succeeded(&one));
    assert_eq!(serde_json::from_str::<Value>(&stdout(&one)).unwrap(), sol());
}

#[test]
fn one_asset_prints_its_row() {
    let node = StandIn::start();
    // Lower case is the same asset.
    let output = finish(node.meshctl(&["prices", "sol"]));
    assert!(succeeded(&output));
    let text = stdout(&output);
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.lines().nth(1).unwrap().starts_with("SOL "), "{text}");
    assert!(!text.contains("ETH"), "{text}");
}

#[test]
fn an_unknown_asset_prints_the_node_error_and_fails() {
    let node = StandIn::start();
    let output = finish(node.meshctl(&["prices", "XYZ"]));
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stderr(&output), "meshctl: Asset 'XYZ' not found in cache\n");
    assert!(output.stdout.is_empty());

    let json = finish(node.meshctl(&["prices", "XYZ", "--json"]));
    assert_eq!(json.status.code(), Some(1));
    assert!(json.stdout.is_empty());

    // A symbol that cannot be an asset never reaches the node.
    let bad = finish(node.meshctl(&["prices", "../etc"]));
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("asset symbol"), "{}", stderr(&bad));
}

#[test]
fn status_shows_peers_freshness_and_providers() {
    let node = StandIn::start();
    let output = finish(node.meshctl(&["status"]));
    assert!(succeeded(&output));
    let text = stdout(&output);
    assert!(text.contains("connected peers:  5"), "{text}");
    assert!(text.contains("network size:     10 nodes"), "{text}");
    assert!(text.contains("last update:      2024-01-01 12:00:00 UTC ("), "{text}");
    assert!(text.contains("data freshness:   just now"), "{text}");
    assert!(text.contains("providers (2):"), "{text}");
    let first = text.lines().find(|line| line.starts_with(NODE_ID)).expect("first provider row");
    assert!(first.contains(" 1  2024-01-01 12:00:00 UTC"), "{text}");
    let second = text.lines().find(|line| line.starts_with("550e8400-e29b-41d4-a716-446655440001")).unwrap();
    assert!(second.contains(" 2  2024-01-01 12:00:05 UTC"), "{text}");

    let json = finish(node.meshctl(&["status", "--json"]));
    assert!(succeeded(&json));
    assert_eq!(serde_json::from_str::<Value>(&stdout(&json)).unwrap(), network_status());
}

#[test]
fn provider_enable_sends_the_key_in_the_body_and_the_token_in_the_header() {
    let node = StandIn::start();
    let mut command = node.meshctl(&["provider", "enable"]);
    command.env("BIRDEYE_API_KEY", GOOD_KEY).env("MESH_ADMIN_TOKEN", ADMIN_TOKEN);
    let output = finish(command);
    assert!(succeeded(&output));
    assert_eq!(stdout(&output), format!("provider mode enabled on node {NODE_ID}\n"));

    let seen = node.seen("/api/mesh/provider/enable");
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].authorization.as_deref(), Some(format!("Bearer {ADMIN_TOKEN}").as_str()));
    assert_eq!(serde_json::from_str::<Value>(&seen[0].body).unwrap(), json!({"api_key": GOOD_KEY}));
    for printed in [stdout(&output), stderr(&output)] {
        assert!(!printed.contains(GOOD_KEY) && !printed.contains(ADMIN_TOKEN), "{printed}");
    }
}

#[test]
fn a_refused_key_prints_the_node_error_but_never_the_key() {
    let node = StandIn::start();
    let bad_key = "wrong-birdeye-key-42";
    let output =
        finish(node.meshctl(&["provider", "enable", "--api-key", bad_key, "--admin-token", ADMIN_TOKEN]));
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stderr(&output), "meshctl: Invalid API key: authentication failed with Birdeye API\n");
    assert!(!stdout(&output).contains(bad_key) && !stderr(&output).contains(bad_key));
    assert_eq!(node.seen("/api/mesh/provider/enable")[0].body, json!({"api_key": bad_key}).to_string());

    // Without the admin token the node refuses, and says why.
    let output = finish(node.meshctl(&["provider", "enable", "--api-key", GOOD_KEY]));
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stderr(&output), "meshctl: Missing or invalid admin token\n");
    assert_eq!(node.seen("/api/mesh/provider/enable")[1].authorization, None);
}

#[test]
fn provider_disable_and_status() {
    let node = StandIn::start();
    let output = finish(node.meshctl(&["provider", "disable", "--admin-token", ADMIN_TOKEN]));
    assert!(succeeded(&output));
    assert_eq!(stdout(&output), format!("provider mode disabled on node {NODE_ID}\n"));
    let seen = node.seen("/api/mesh/provider/disable");
    assert_eq!(seen[0].authorization.as_deref(), Some(format!("Bearer {ADMIN_TOKEN}").as_str()));

    let json = finish(node.meshctl(&["provider", "disable", "--json", "--admin-token", ADMIN_TOKEN]));
    assert!(succeeded(&json));
    assert_eq!(
        serde_json::from_str::<Value>(&stdout(&json)).unwrap(),
        json!({"enabled": false, "node_id": NODE_ID})
    );

    let status = finish(node.meshctl(&["provider", "status"]));
    assert!(succeeded(&status));
    let text = stdout(&status);
    assert!(text.contains("provider mode:  enabled"), "{text}");
    assert!(text.contains(&format!("node:           {NODE_ID}")), "{text}");
    assert!(text.contains("last fetch:     2024-01-01 12:00:00 UTC ("), "{text}");
    assert!(text.contains("fetches:        42"), "{text}");
}

/// Starts `meshctl` with `args` against `node`, reads `lines` lines of its output, then
/// interrupts it as Ctrl-C would; returns those lines and the rest of its output.
fn watch_lines(node: &StandIn, args: &[&str], lines: usize) -> (Vec<String>, Output) {
    let mut child = node.meshctl(args).spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut read = Vec::new();
    let start = Instant::now();
    while read.len() < lines {
        assert!(start.elapsed() < DEADLINE, "meshctl printed only {read:?}");
        let mut line = String::new();
        if out.read_line(&mut line).unwrap() == 0 {
            break;
        }
        read.push(line.trim_end().to_owned());
    }
    let interrupted = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(interrupted.success());
    (read, wait(child))
}

#[test]
fn watch_prints_readable_lines_and_reconnects_when_the_node_closes() {
    let node = StandIn::start();
    // The stand-in sends three messages and closes; meshctl comes back for more, and the
    // prices it already showed are not shown twice.
    let (lines, output) = watch_lines(&node, &["watch", "--assets", "sol,ETH"], 4);
    assert!(succeeded(&output));
    assert_eq!(
        lines,
        [
            "initial: 2 assets",
            "SOL 124.50 (+6.1%) from 550e8400…",
            "warning STALE_DATA: Price data is older than 1 hour (newest price 3720s old)",
            "warning STALE_DATA: Price data is older than 1 hour (newest price 3720s old)",
        ]
    );
    let errors = stderr(&output);
    assert!(errors.contains("the node closed the feed; reconnecting"), "{errors}");
    let feeds = node.seen("/ws");
    assert!(feeds.len() >= 2, "it reconnected: {feeds:?}");
    assert_eq!(feeds[0].query.as_deref(), Some("assets=SOL,ETH"));
}

#[test]
fn watch_json_prints_one_message_per_line() {
    let node = StandIn::start();
    let (lines, output) = watch_lines(&node, &["watch", "--json"], 3);
    assert!(succeeded(&output));
    let messages: Vec<Value> = lines.iter().map(|line| serde_json::from_str(line).unwrap()).collect();
    // The stand-in's messages, each price with a served price's two fields beside it.
    let mut expected = feed().to_vec();
    for message in &mut expected[..2] {
        for price in message["data"].as_object_mut().unwrap().values_mut() {
            price["providers"] = json!(1);
            price["spread"] = json!("0");
        }
    }
    assert_eq!(messages, expected);
    assert_eq!(node.seen("/ws")[0].query, None);
}

#[test]
fn watch_follows_several_nodes_and_shows_each_price_once() {
    let (first, second) = (StandIn::with_feed(false), StandIn::with_feed(false));
    let also = second.url();
    let (lines, output) = watch_lines(&first, &["watch", "--also", &also], 3);
    assert!(succeeded(&output));
    assert_eq!(lines[0], "initial: 2 assets");
    assert_eq!(lines.iter().filter(|line| line.starts_with("SOL 124.50")).count(), 1, "{lines:?}");
    assert!(!first.seen("/ws").is_empty() && !second.seen("/ws").is_empty(), "both nodes were followed");
}

#[test]
fn watch_stops_cleanly_on_ctrl_c() {
    let node = StandIn::with_feed(false);
    let mut child = node.meshctl(&["watch"]).spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert_eq!(first, "initial: 2 assets\n");
    let interrupted = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(interrupted.success());
    let output = wait(child);
    assert!(succeeded(&output), "{:?}", output.status);
}

#[test]
fn an_unreachable_node_is_one_clear_line() {
    let url = closed_port();
    for args in [&["prices"][..], &["status"], &["watch"], &["provider", "status"]] {
        let output = finish(meshctl(&[&["--node", &url], args].concat()));
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        assert_eq!(stderr(&output), format!("meshctl: cannot reach the node at {url}: connection refused\n"));
        assert!(output.stdout.is_empty());
    }

    let output = finish(meshctl(&["prices", "--node", "localhost:8080"]));
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).starts_with("meshctl: --node must be an http:// or https:// URL"));
}

#[test]
fn a_server_that_is_not_a_node_is_named_as_such() {
    let node = StandIn::start();
    let output = finish(meshctl(&["prices", "--node", &format!("{}/elsewhere", node.url())]));
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    assert!(text.contains("answered 404 Not Found with an empty body, not a pricemesh response"), "{text}");
    assert_eq!(text.lines().count(), 1, "{text}");

    let feed = finish(meshctl(&["watch", "--node", &format!("{}/elsewhere", node.url())]));
    assert_eq!(feed.status.code(), Some(1));
    assert!(stderr(&feed).contains("refused the feed at ws://"), "{}", stderr(&feed));
}
