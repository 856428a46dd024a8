//! The API against clients that mean harm: half-sent request heads, connection floods, heads
//! hyper cannot parse, foreign hosts and origins (DNS rebinding, cross-site pages), and
//! WebSocket clients that never read.

use std::time::Duration;

use mesh_api::{ApiConfig, ApiState, MAX_HEAD_BYTES};
use mesh_types::chrono::{self, Utc};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::support::{Server, bulk, error_message, node, publish_at, quick_config};

/// Reads the whole answer until the server closes; `None` if it stays open past `limit`.
async fn answer_within(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut bytes = Vec::new();
    tokio::time::timeout(limit, stream.read_to_end(&mut bytes)).await.ok()?.ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// The status and envelope of a raw HTTP answer.
fn parse(answer: &str) -> (u16, Value) {
    let status = answer.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

async fn raw(server: &Server, request: &[u8]) -> (u16, Value) {
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    parse(&answer_within(&mut stream, Duration::from_secs(5)).await.expect("an answer"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_request_heads_are_closed_at_the_header_deadline() {
    // The case: 500 connections each holding a partial header were all open after 10 s.
    let config = ApiConfig { header_timeout: Duration::from_millis(500), ..ApiConfig::default() };
    let server = Server::start(ApiState::builder(node().await).config(config).build()).await;
    let mut streams = Vec::new();
    for _ in 0..200 {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream.write_all(b"GET /api/mesh/prices HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ").await.unwrap();
        streams.push(stream);
    }
    for stream in &mut streams {
        let answer = answer_within(stream, Duration::from_secs(5)).await.expect("closed after the deadline");
        let (status, body) = parse(&answer);
        assert_eq!(status, 408, "{answer}");
        assert!(error_message(&body).contains("within"), "{body}");
    }
    // A request that keeps to the deadline is served as usual.
    let (status, _) =
        raw(&server, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_get_503_with_the_envelope() {
    let config = ApiConfig { max_connections: 5, ..ApiConfig::default() };
    let server = Server::start(ApiState::builder(node().await).config(config).build()).await;
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(TcpStream::connect(server.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, body) = raw(&server, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await;
    assert_eq!(status, 503, "{body}");
    assert!(error_message(&body).contains("too many connections"), "{body}");
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, _) =
        raw(&server, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status, 200, "slots come back when connections close");
}

#[tokio::test]
async fn heads_hyper_would_refuse_with_an_empty_body_get_the_envelope() {
    let server = Server::start(ApiState::builder(node().await).build()).await;
    let long = [b"GET /".as_slice(), &vec![b'a'; 1 << 20], b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"].concat();
    let (status, body) = raw(&server, &long).await;
    assert_eq!(status, 431);
    assert!(error_message(&body).contains(&format!("{} KiB", MAX_HEAD_BYTES / 1024)), "{body}");
    assert_eq!(body["success"], false);

    let (status, body) = raw(&server, b"GET /\xff\xfe HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await;
    assert_eq!(status, 400);
    assert!(error_message(&body).contains("visible ASCII"), "{body}");
}

#[tokio::test]
async fn a_foreign_host_or_a_foreign_page_is_refused_and_an_allowed_origin_passes() {
    let config = ApiConfig { allowed_origins: vec!["https://dash.example".into()], ..ApiConfig::default() };
    let server = Server::start(ApiState::builder(node().await).config(config).build()).await;
    let client = reqwest::Client::new();
    let url = server.url("/api/mesh/prices");

    // DNS rebinding: the page's name now points at 127.0.0.1, but the browser still says it.
    let response = client.get(&url).header("Host", "evil.example").send().await.unwrap();
    assert_eq!(response.status().as_u16(), 403);
    let body: Value = response.json().await.unwrap();
    assert!(error_message(&body).contains("MESH_API_ALLOWED_HOSTS"), "{body}");

    let response = client.get(&url).header("Origin", "http://evil.example").send().await.unwrap();
    assert_eq!(response.status().as_u16(), 403);
    let response = client.get(&url).header("Origin", "https://dash.example").send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200, "a listed dashboard origin");
    let own = format!("http://{}", server.addr);
    let response = client.get(&url).header("Origin", own).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200, "the node's own pages");
    assert_eq!(client.get(&url).send().await.unwrap().status().as_u16(), 200, "programs send no Origin");

    // A cross-site page opening the feed.
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(server.ws_url("/ws"))
            .unwrap();
    request.headers_mut().insert("Origin", "http://evil.example".parse().unwrap());
    let refused = tokio_tungstenite::connect_async(request).await.unwrap_err();
    assert!(refused.to_string().contains("403"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_clients_that_never_read_are_found_by_the_nodes_own_policy() {
    // The case: clients that never read were only dropped by the ping timeout, their
    // backlog sitting in kernel buffers. The listener here is an ordinary one: the node bounds
    // each socket's send buffer itself.
    let service = node().await;
    let state = ApiState::builder(service.clone()).config(quick_config()).build();
    let server = Server::start(state.clone()).await;
    let mut silent = Vec::new();
    for _ in 0..10 {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let stream = socket.connect(server.addr).await.unwrap();
        let (client, _) = tokio_tungstenite::client_async(server.ws_url("/ws"), stream).await.unwrap();
        silent.push(client);
    }
    let base = Utc::now();
    for round in 0..60 {
        publish_at(&service, bulk(round), base + chrono::Duration::milliseconds(round)).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while state.feed_stats().slow_disconnects < 10 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = state.feed_stats();
    assert_eq!(stats.slow_disconnects, 10, "every silent client was disconnected as slow: {stats:?}");
    drop(silent);
}
