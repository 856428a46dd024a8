//! `GET /` serves the self-contained dashboard: the price table, the providers, the `/ws`
//! connection, and nothing loaded from another host.

use mesh_api::ApiState;

use crate::support::{Server, node};

#[tokio::test]
async fn the_dashboard_is_one_self_contained_page() {
    let server = Server::start(ApiState::builder(node().await).build()).await;
    let response = reqwest::get(server.url("/")).await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let page = response.text().await.unwrap();

    assert!(page.starts_with("<!doctype html>"));
    for part in [
        "<table id=\"prices\"",
        "<table id=\"providers\"",
        "id=\"network-size\"",
        "id=\"peers\"",
        "id=\"warnings\"",
    ] {
        assert!(page.contains(part), "the page has {part}");
    }
    assert!(page.contains("new WebSocket(") && page.contains("\"/ws\""), "it connects to the feed");
    assert!(page.contains("/api/mesh/network/status"), "it polls the providers");
    assert!(page.contains("PriceMeshUpdate") && page.contains("MeshWarning"));
    assert!(page.contains("<svg"), "sparklines are inline SVG");
    for external in ["http://", "https://", "<script src", "<link ", "@import", "url("] {
        assert!(!page.contains(external), "nothing is loaded from elsewhere: found {external:?}");
    }
}
