//! The WebSocket feed with real clients: the initial snapshot then deltas, the asset filter,
//! status updates, a slow client disconnected without holding others back, a lagging
//! subscription resynchronized, the client limit, shutdown, and 1,000 clients at once.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use mesh_api::{ApiConfig, ApiState};
use mesh_types::chrono::{self, Utc};
use mesh_types::rust_decimal::Decimal;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

use crate::support::{Server, bulk, keys, node, node_with, price, publish, publish_at, quick_config};

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

const WAIT: Duration = Duration::from_secs(10);

/// The next feed message (pings and pongs skipped).
async fn next_message<S: AsyncRead + AsyncWrite + Unpin>(client: &mut WebSocketStream<S>) -> Value {
    tokio::time::timeout(WAIT, async {
        loop {
            match client.next().await.expect("the feed is open").expect("a frame") {
                Message::Text(text) => return serde_json::from_str(&text).expect("JSON"),
                Message::Close(frame) => panic!("the feed closed: {frame:?}"),
                _ => {}
            }
        }
    })
    .await
    .expect("a feed message in time")
}

/// The next message of `kind`, skipping the others.
async fn next_of<S: AsyncRead + AsyncWrite + Unpin>(client: &mut WebSocketStream<S>, kind: &str) -> Value {
    loop {
        let message = next_message(client).await;
        if message["type"] == kind {
            return message;
        }
    }
}

async fn connect(server: &Server, path: &str) -> Client {
    connect_async(server.ws_url(path)).await.expect("WebSocket handshake").0
}

#[tokio::test]
async fn a_client_gets_the_snapshot_then_only_what_changed() {
    let service = node().await;
    publish(&service, vec![price("SOL", 12_345), price("ETH", 234_567)]).await;
    let server = Server::start(ApiState::builder(service.clone()).build()).await;
    let mut client = connect(&server, "/ws").await;

    let initial = next_message(&mut client).await;
    assert_eq!(keys(&initial), ["data", "seq", "type"]);
    assert_eq!(initial["type"], "PriceMeshInitial");
    assert_eq!(keys(&initial["data"]), ["ETH", "SOL"]);
    assert_eq!(initial["data"]["SOL"]["price"], "123.45");
    assert_eq!(
        keys(&initial["data"]["SOL"]),
        ["asset", "blockchain", "change_24h", "price", "providers", "source_node_id", "spread", "timestamp"]
    );

    publish(&service, vec![price("SOL", 12_400)]).await;
    let update = next_of(&mut client, "PriceMeshUpdate").await;
    assert_eq!(keys(&update["data"]), ["SOL"], "only the changed asset: {update}");
    assert_eq!(update["data"]["SOL"]["price"], "124.00");
    assert_eq!(update["data"]["SOL"]["source_node_id"], Value::String(service.node_id().to_string()));

    // The node became a provider, which changes the network status.
    let status = next_of(&mut client, "NetworkStatusUpdate").await;
    assert_eq!(
        keys(&status["data"]),
        ["active_providers", "connected_peers", "data_freshness", "last_update_time", "total_network_size"]
    );
    assert_eq!(status["data"]["active_providers"], 1, "a count in the feed: {status}");
}

#[tokio::test]
async fn the_asset_filter_keeps_other_assets_out() {
    let service = node().await;
    publish(&service, vec![price("SOL", 100), price("ETH", 200)]).await;
    let server = Server::start(ApiState::builder(service.clone()).build()).await;
    let mut client = connect(&server, "/ws?assets=eth").await;

    let initial = next_of(&mut client, "PriceMeshInitial").await;
    assert_eq!(keys(&initial["data"]), ["ETH"]);

    publish(&service, vec![price("SOL", 101)]).await;
    publish(&service, vec![price("ETH", 201), price("SOL", 102)]).await;
    let update = next_of(&mut client, "PriceMeshUpdate").await;
    assert_eq!(keys(&update["data"]), ["ETH"], "SOL never reaches this client: {update}");
    assert_eq!(update["data"]["ETH"]["price"], "2.01");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_disconnected_without_holding_back_others() {
    let service = node().await;
    let state = ApiState::builder(service.clone()).config(quick_config()).build();
    // Small socket buffers (accepted sockets inherit the listener's) so a client that stops
    // reading blocks the server's writes after a few kilobytes.
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_send_buffer_size(4096).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let server = Server::on(socket.listen(1024).unwrap(), state.clone());

    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(server.addr).await.unwrap();
    let (mut slow, _) = tokio_tungstenite::client_async(server.ws_url("/ws"), stream).await.unwrap();
    next_of(&mut slow, "PriceMeshInitial").await;

    let mut fast = connect(&server, "/ws").await;
    next_of(&mut fast, "PriceMeshInitial").await;
    const ROUNDS: i64 = 40;
    let reader = tokio::spawn(async move {
        // Reads everything until the newest price of the last round arrives.
        loop {
            let update = next_of(&mut fast, "PriceMeshUpdate").await;
            if update["data"]["A099"]["price"] == format!("10.{:02}", ROUNDS - 1) {
                return fast;
            }
        }
    });

    let base = Utc::now();
    for round in 0..ROUNDS {
        publish_at(&service, bulk(round), base + chrono::Duration::milliseconds(round)).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _fast = tokio::time::timeout(WAIT, reader).await.expect("the fast client kept up").unwrap();

    let deadline = tokio::time::Instant::now() + WAIT;
    while state.feed_stats().slow_disconnects == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stats = state.feed_stats();
    assert_eq!(stats.slow_disconnects, 1, "{stats:?}");
    assert_eq!(stats.clients, 1, "the fast client is still connected: {stats:?}");
    drop(slow);
}

#[tokio::test]
async fn a_client_whose_queue_would_overflow_is_disconnected() {
    let service = node().await;
    let config = ApiConfig { ws_queue: 2, ..ApiConfig::default() };
    let state = ApiState::builder(service.clone()).config(config).build();
    let server = Server::start(state.clone()).await;
    let mut client = connect(&server, "/ws").await;
    next_of(&mut client, "PriceMeshInitial").await;

    // Three distinct assets at once cannot wait in a queue of two.
    publish(&service, vec![price("SOL", 1), price("ETH", 2), price("BTC", 3)]).await;
    let ended = tokio::time::timeout(WAIT, async {
        loop {
            match client.next().await {
                None | Some(Err(_) | Ok(Message::Close(_))) => return,
                Some(Ok(Message::Text(text))) => panic!("no update fits: {text}"),
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the client was disconnected");
    assert_eq!(state.feed_stats().slow_disconnects, 1);
}

// A current-thread runtime: while this test publishes without yielding, the client's task
// cannot take the node's events, so its subscription (room for 2 events) lags.
#[tokio::test]
async fn a_client_that_missed_node_events_is_sent_the_current_state() {
    let service = node_with(|config| config.event_capacity = 2).await;
    let state = ApiState::builder(service.clone()).build();
    let server = Server::start(state.clone()).await;
    let mut client = connect(&server, "/ws").await;
    next_of(&mut client, "PriceMeshInitial").await;

    let base = Utc::now();
    let expected: BTreeSet<String> = (0..20).map(|i| format!("X{i:02}")).collect();
    for (i, symbol) in (0_i64..).zip(&expected) {
        publish_at(&service, vec![price(symbol, 100 + i)], base + chrono::Duration::milliseconds(i)).await;
    }

    let mut seen = BTreeSet::new();
    while seen != expected {
        let update = next_of(&mut client, "PriceMeshUpdate").await;
        for (asset, price) in update["data"].as_object().unwrap() {
            let i: i64 = asset[1..].parse().unwrap();
            assert_eq!(price["price"], Decimal::new(100 + i, 2).to_string(), "the newest price of {asset}");
            seen.insert(asset.clone());
        }
    }
    assert!(state.feed_stats().resyncs >= 1, "{:?}", state.feed_stats());
}

#[tokio::test]
async fn clients_beyond_the_limit_get_503_and_shutdown_closes_the_feed() {
    let service = node().await;
    let config = ApiConfig { ws_max_clients: 1, ..ApiConfig::default() };
    let state = ApiState::builder(service).config(config).build();
    let server = Server::start(state.clone()).await;

    let mut first = connect(&server, "/ws").await;
    next_of(&mut first, "PriceMeshInitial").await;
    match connect_async(server.ws_url("/ws")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 503);
            let body: Value = serde_json::from_slice(response.body().as_deref().unwrap_or_default()).unwrap();
            assert_eq!(body["success"], false);
        }
        other => panic!("expected 503, got {other:?}"),
    }
    assert_eq!(state.feed_stats().clients, 1);

    let stopping = tokio::spawn(server.stop());
    let frame = tokio::time::timeout(WAIT, async {
        loop {
            match first.next().await {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => {}
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    })
    .await
    .expect("closed in time");
    assert_eq!(frame.expect("a close frame").code, CloseCode::Away);
    let _ = first.close(None).await;
    stopping.await.unwrap().expect("serve ends cleanly");
    assert_eq!(state.feed_stats().clients, 0);
}

#[tokio::test]
async fn clients_are_pinged_and_a_client_answering_nothing_is_dropped() {
    let service = node().await;
    let config = ApiConfig { ws_ping_interval: Duration::from_millis(100), ..ApiConfig::default() };
    let state = ApiState::builder(service).config(config).build();
    let server = Server::start(state.clone()).await;

    let mut client = connect(&server, "/ws").await;
    next_of(&mut client, "PriceMeshInitial").await;
    let ping = tokio::time::timeout(WAIT, async {
        loop {
            if let Message::Ping(payload) = client.next().await.unwrap().unwrap() {
                return payload;
            }
        }
    })
    .await
    .expect("a ping");
    assert!(!ping.is_empty());
    // Reading answers pings (tungstenite replies with a pong), so this client stays.
    for _ in 0..4 {
        let _ = tokio::time::timeout(Duration::from_millis(100), client.next()).await;
    }
    assert_eq!(state.feed_stats().clients, 1, "a client answering pings stays connected");

    // A client that reads nothing answers no ping and is dropped after two intervals.
    let mut silent = connect(&server, "/ws").await;
    next_of(&mut silent, "PriceMeshInitial").await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while state.feed_stats().clients > 1 && tokio::time::Instant::now() < deadline {
        let _ = tokio::time::timeout(Duration::from_millis(20), client.next()).await;
    }
    assert_eq!(state.feed_stats().clients, 1, "the silent client was dropped");
    assert_eq!(state.feed_stats().slow_disconnects, 0, "silence is not slowness");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_clients_all_receive_an_update() {
    const CLIENTS: usize = 1000;
    let service = node().await;
    publish(&service, vec![price("SOL", 100)]).await;
    let state = ApiState::builder(service.clone()).build();
    let server = Arc::new(Server::start(state.clone()).await);

    // Connect with bounded concurrency so the listen backlog never overflows.
    let connecting = Arc::new(tokio::sync::Semaphore::new(100));
    let (ready, mut readied) = tokio::sync::mpsc::channel::<()>(CLIENTS);
    let mut clients = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        let (server, connecting, ready) = (server.clone(), connecting.clone(), ready.clone());
        clients.push(tokio::spawn(async move {
            let permit = connecting.acquire_owned().await.unwrap();
            let mut client = connect(&server, "/ws").await;
            let initial = next_of(&mut client, "PriceMeshInitial").await;
            assert_eq!(initial["data"]["SOL"]["price"], "1.00");
            drop(permit);
            ready.send(()).await.unwrap();
            let update = next_of(&mut client, "PriceMeshUpdate").await;
            update["data"]["SOL"]["price"] == "2.00"
        }));
    }
    drop(ready);
    tokio::time::timeout(Duration::from_secs(60), async {
        for _ in 0..CLIENTS {
            readied.recv().await.expect("every client connects");
        }
    })
    .await
    .expect("all clients connected in time");
    assert_eq!(state.feed_stats().clients, CLIENTS);

    publish(&service, vec![price("SOL", 200)]).await;
    let received = tokio::time::timeout(Duration::from_secs(60), futures::future::join_all(clients))
        .await
        .expect("every client heard of the update in time");
    let got = received.into_iter().filter(|result| matches!(result, Ok(true))).count();
    assert_eq!(got, CLIENTS);
    assert_eq!(state.feed_stats().slow_disconnects, 0);
}

fn seq(frame: &Value) -> u64 {
    frame["seq"].as_u64().unwrap_or_else(|| panic!("a frame carries its sequence number: {frame}"))
}

#[tokio::test]
async fn sequence_numbers_only_grow_and_a_client_resumes_where_it_left_off() {
    let service = node().await;
    publish(&service, vec![price("SOL", 100)]).await;
    let server = Server::start(ApiState::builder(service.clone()).build()).await;
    let mut client = connect(&server, "/ws").await;
    let initial = next_of(&mut client, "PriceMeshInitial").await;
    assert!(initial.get("gap").is_none(), "a fresh connection is no gap: {initial}");
    publish(&service, vec![price("SOL", 101)]).await;
    let update = next_of(&mut client, "PriceMeshUpdate").await;
    assert!(seq(&update) > seq(&initial), "{initial} then {update}");
    let position = seq(&update);
    drop(client);

    // While the client is away: SOL moves twice, ETH appears.
    publish(&service, vec![price("SOL", 102)]).await;
    publish(&service, vec![price("SOL", 103), price("ETH", 200)]).await;
    let mut client = connect(&server, &format!("/ws?since={position}")).await;
    let replay = next_message(&mut client).await;
    assert_eq!(replay["type"], "PriceMeshUpdate", "a resumed feed starts with what it missed: {replay}");
    assert_eq!(keys(&replay["data"]), ["ETH", "SOL"]);
    assert_eq!(replay["data"]["SOL"]["price"], "1.03", "conflated to the newest");
    // A frame claims only what it and the frames before it carry; status changes of the
    // same time may follow it in the replay.
    assert!(seq(&replay) >= position);

    // Nothing new since: an empty update acknowledges the resume.
    let position = service.snapshot().0;
    drop(client);
    let mut client = connect(&server, &format!("/ws?since={position}")).await;
    let ack = next_message(&mut client).await;
    assert_eq!((ack["type"].as_str(), keys(&ack["data"]).len()), (Some("PriceMeshUpdate"), 0), "{ack}");
    assert_eq!(seq(&ack), position);
    publish(&service, vec![price("ETH", 201)]).await;
    let live = next_of(&mut client, "PriceMeshUpdate").await;
    assert_eq!((keys(&live["data"]), seq(&live) > position), (vec!["ETH"], true), "{live}");
}

#[tokio::test]
async fn a_resume_beyond_the_history_gets_a_snapshot_flagged_as_a_gap() {
    let service = node_with(|config| config.feed_history = 2).await;
    publish(&service, vec![price("SOL", 100)]).await;
    let server = Server::start(ApiState::builder(service.clone()).build()).await;
    let mut client = connect(&server, "/ws").await;
    let position = seq(&next_of(&mut client, "PriceMeshInitial").await);
    drop(client);
    for cents in 101..106 {
        publish(&service, vec![price("SOL", cents)]).await;
    }
    let mut client = connect(&server, &format!("/ws?since={position}")).await;
    let snapshot = next_message(&mut client).await;
    assert_eq!(
        (snapshot["type"].as_str(), snapshot["gap"].as_bool()),
        (Some("PriceMeshInitial"), Some(true))
    );
    assert_eq!(snapshot["data"]["SOL"]["price"], "1.05");

    // A position this run never gave out (an earlier run's, or made up) is a gap too.
    let mut client = connect(&server, &format!("/ws?since={}", u64::MAX)).await;
    assert_eq!(next_message(&mut client).await["gap"], true);
    let mut client = connect(&server, "/ws?since=5").await;
    assert_eq!(next_message(&mut client).await["gap"], true);
}

#[tokio::test]
async fn a_malformed_resume_position_is_refused_with_a_clear_error() {
    let service = node().await;
    let server = Server::start(ApiState::builder(service).build()).await;
    for bad in ["abc", "-1", "1.5", "18446744073709551616"] {
        let response = reqwest::get(server.url(&format!("/ws?since={bad}"))).await.unwrap();
        assert_eq!(response.status(), 400, "since={bad}");
        let body: Value = response.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().contains("?since=N"), "{body}");
    }
}

#[tokio::test]
async fn a_resume_with_only_a_warning_to_replay_acknowledges_without_claiming_the_warning() {
    let service = node().await;
    let server = Server::start(ApiState::builder(service.clone()).build()).await;
    let position = service.snapshot().0;
    // A node with no provider raises NO_PROVIDERS at its first status check.
    tokio::time::timeout(WAIT, async {
        while service.snapshot().0 == position {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("a warning or status change after the position");
    let mut client = connect(&server, &format!("/ws?since={position}")).await;
    let ack = next_message(&mut client).await;
    assert_eq!((ack["type"].as_str(), keys(&ack["data"]).len()), (Some("PriceMeshUpdate"), 0), "{ack}");
    assert_eq!(seq(&ack), position, "the ack claims only what the client had: {ack}");
    // The replayed changes follow; by the last of them the watermark has moved past them.
    let mut frames = vec![next_message(&mut client).await];
    while seq(frames.last().unwrap()) <= position && frames.len() < 3 {
        frames.push(next_message(&mut client).await);
    }
    assert!(seq(frames.last().unwrap()) > position, "{frames:?}");
    assert!(frames.windows(2).all(|pair| seq(&pair[0]) <= seq(&pair[1])), "watermarks only grow: {frames:?}");
}
