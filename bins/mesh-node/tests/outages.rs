//! Backends going away, seen from outside as a user sees them, with real processes: PostgreSQL
//! down at start is refused at once with its cause, and a Redis outage no longer freezes the
//! mesh (the provider coordinates through the mesh while Redis is away), while `/ready` and the
//! metrics say what is degraded.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use mesh_types::chrono::DateTime;
use support::{metric, start_with};

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn postgres_refusing_at_start_is_reported_at_once_with_its_cause() {
    let port = closed_port();
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mesh-node"))
        .args(["run", "--network", "devnet", "--api-addr", "127.0.0.1:0", "--listen-addr", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(data.path())
        .env_clear()
        .env("DATABASE_URL", format!("postgres://postgres@127.0.0.1:{port}/test"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A guard against a hang, not a timing claim: the pool alone used to wait 30 s.
    let deadline = std::time::Instant::now() + Duration::from_secs(25);
    while child.try_wait().unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "the node still waits on a refusing PostgreSQL");
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.contains(&format!("127.0.0.1:{port}")), "{stderr}");
    assert!(last.to_lowercase().contains("refused"), "the cause, not a pool timeout: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_does_not_freeze_the_providers_prices() {
    let Some(redis) = mesh_testkit::backend_url("MESH_TEST_REDIS_URL", "redis outage") else { return };
    let namespace = mesh_testkit::RedisNamespace::create(&redis);
    let proxy = mesh_testkit::TcpProxy::start(&namespace.server_addr()).await;
    let through_proxy = format!("redis://{}", proxy.addr());
    let provider = start_with(
        None,
        &[
            ("MESH_PRICE_SOURCE", "simulated"),
            ("MESH_ASSETS", "SOL"),
            ("MESH_MIN_PEER_CONNECTIONS", "0"),
            ("REDIS_URL", through_proxy.as_str()),
            ("MESH_REDIS_PREFIX", namespace.prefix()),
        ],
    );
    let consumer = start_with(Some(provider.peers), &[]);
    let client = reqwest::Client::new();
    let time_of = |body: &serde_json::Value| {
        body["data"]["timestamp"].as_str().and_then(|text| DateTime::parse_from_rfc3339(text).ok())
    };
    let sol_time =
        async || support::get(&client, &consumer, "/api/mesh/prices/SOL").await.as_ref().and_then(time_of);
    let before =
        support::until(&client, &consumer, "/api/mesh/prices/SOL", |body| body["success"] == true).await;
    assert_eq!(metric(&client, &provider, "mesh_coordination_degraded").await, Some(0.0));

    proxy.cut();
    let cut_at = time_of(&before).expect("a served price has a time");
    let mut fresh = 0;
    let mut last = cut_at;
    for _ in 0..200 {
        if let Some(time) = sol_time().await
            && time > last
        {
            last = time;
            fresh += 1;
            if fresh == 3 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        fresh, 3,
        "the consumer keeps getting new prices while Redis is away (last {last}, cut at {cut_at})"
    );
    assert_eq!(
        metric(&client, &provider, "mesh_coordination_degraded").await,
        Some(1.0),
        "the fallback shows"
    );
    // /ready names what is degraded, and stays 200: the node serves from memory.
    let degraded = |body: &serde_json::Value| -> Vec<String> {
        let list = body["data"]["degraded"].as_array().into_iter().flatten();
        list.filter_map(|name| name.as_str().map(str::to_owned)).collect()
    };
    let ready = support::until(&client, &provider, "/ready", |body| degraded(body).len() == 3).await;
    assert_eq!(degraded(&ready), ["prices", "dedup", "coordination"], "{ready}");

    proxy.restore().await;
    let mut back = None;
    for _ in 0..100 {
        back = metric(&client, &provider, "mesh_coordination_degraded").await;
        if back == Some(0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(back, Some(0.0), "coordination returns to Redis");
    support::until(&client, &provider, "/ready", |body| body["success"] == true && degraded(body).is_empty())
        .await;
    namespace.cleanup().await;
}
