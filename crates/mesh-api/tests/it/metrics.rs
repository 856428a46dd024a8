//! `/metrics` renders the Prometheus handle: request counts per route and status, the
//! WebSocket gauge, and whatever else the process records; without a handle it is a 404
//! envelope. When `promtool` is installed, the output must pass `promtool check metrics`.

use std::io::Write;
use std::process::{Command, Stdio};

use mesh_api::ApiState;

use crate::support::{Server, error_message, get, metrics_handle, node};

async fn scrape(server: &Server) -> String {
    let response = reqwest::get(server.url("/metrics")).await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    response.text().await.unwrap()
}

#[tokio::test]
async fn requests_are_counted_by_route_and_status() {
    // The recorder comes first, as in the binary: the node describes its metrics when it starts.
    let handle = metrics_handle();
    let service = node().await;
    let state = ApiState::builder(service.clone()).metrics(handle).build();
    let server = Server::start(state).await;

    assert_eq!(get(&server.url("/health")).await.0, 200);
    assert_eq!(get(&server.url("/api/mesh/prices/XYZ")).await.0, 404);
    assert_eq!(get(&server.url("/nowhere/at/all")).await.0, 404);
    let (_client, _) = tokio_tungstenite::connect_async(server.ws_url("/ws")).await.unwrap();

    let text = scrape(&server).await;
    assert!(text.contains("mesh_api_requests_total{route=\"/health\",status=\"200\"}"), "{text}");
    assert!(
        text.contains("mesh_api_requests_total{route=\"/api/mesh/prices/{asset}\",status=\"404\"}"),
        "{text}"
    );
    assert!(text.contains("mesh_api_requests_total{route=\"unmatched\",status=\"404\"}"), "{text}");
    assert!(!text.contains("nowhere"), "unknown paths do not become labels");

    service.supervisor().spawn_worker("metrics_probe", async { panic!("probe") }).await.unwrap();
    let text = scrape(&server).await;
    assert!(text.contains("mesh_task_failures_total{task=\"metrics_probe\"} 1"), "{text}");
    assert!(text.contains("# HELP mesh_api_requests_total"), "{text}");
    assert!(text.contains("mesh_api_ws_clients"), "{text}");

    match Command::new("promtool")
        .arg("check")
        .arg("metrics")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(mut promtool) => {
            promtool.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
            let output = promtool.wait_with_output().unwrap();
            assert!(
                output.status.success(),
                "promtool check metrics: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Err(error) if std::env::var("MESH_REQUIRE_BACKENDS").is_ok_and(|v| v == "1") => {
            panic!("promtool is required (MESH_REQUIRE_BACKENDS=1) but cannot run: {error}")
        }
        Err(error) => eprintln!("skipping promtool check: promtool not available ({error})"),
    }
}

#[tokio::test]
async fn without_a_handle_metrics_is_a_404_envelope() {
    let server = Server::start(ApiState::builder(node().await).build()).await;
    let (status, body) = get(&server.url("/metrics")).await;
    assert_eq!(status, 404);
    assert!(error_message(&body).contains("metrics"), "{body}");
}
