//! k-of-n provider quorum with real processes: three trusted providers, one of them quoting
//! ten times the others' price, and every node serving the median of the honest two.

mod support;

use serde_json::Value;
use std::net::SocketAddr;

use support::{Node, birdeye_quoting, keyed_data_dir, start_in, until};

fn start_owned(data: tempfile::TempDir, bootstrap: Option<SocketAddr>, settings: &[(&str, String)]) -> Node {
    let settings: Vec<(&str, &str)> = settings.iter().map(|(name, value)| (*name, value.as_str())).collect();
    start_in(data, bootstrap, &settings)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_trusted_providers_with_quorum_two_outvote_the_one_ten_times_off() {
    let honest = birdeye_quoting(150.0).await;
    let rogue = birdeye_quoting(1500.0).await;
    let keyed = [keyed_data_dir(), keyed_data_dir(), keyed_data_dir()];
    let trusted = keyed.iter().map(|(_, id)| id.as_str()).collect::<Vec<_>>().join(",");
    let common = |source: &str| -> Vec<(&'static str, String)> {
        vec![
            ("MESH_TRUSTED_PROVIDERS", trusted.clone()),
            ("MESH_PROVIDER_QUORUM", "2".to_owned()),
            ("MESH_PRICE_SOURCE", "birdeye".to_owned()),
            ("BIRDEYE_API_KEY", "test-key".to_owned()),
            ("MESH_BIRDEYE_BASE_URL", source.to_owned()),
            ("MESH_ASSETS", "SOL".to_owned()),
            // Every provider quotes every second: a quorum needs each one's own quote.
            ("MESH_COORDINATION_WINDOW_SECS", "0".to_owned()),
        ]
    };
    let [first, second, third] = keyed;
    let p1 = start_owned(first.0, None, &common(&honest.uri()));
    let p2 = start_owned(second.0, Some(p1.peers), &common(&honest.uri()));
    let p3 = start_owned(third.0, Some(p1.peers), &common(&rogue.uri()));
    // A consumer that only relays and serves, with the same trust and quorum.
    let consumer = start_owned(
        tempfile::tempdir().unwrap(),
        Some(p2.peers),
        &[("MESH_TRUSTED_PROVIDERS", trusted.clone()), ("MESH_PROVIDER_QUORUM", "2".to_owned())],
    );

    let client = reqwest::Client::new();
    for node in [&p1, &p2, &p3, &consumer] {
        let body = until(&client, node, "/api/mesh/prices/SOL?quotes=true", |body| {
            body["data"]["providers"].as_u64() == Some(3)
        })
        .await;
        let sol = &body["data"];
        assert_eq!(sol["price"], "150", "the median of 150, 150 and 1500 on {}: {sol}", node.api);
        assert_eq!(sol["spread"], "9", "1500 is nine times above 150: {sol}");
        let quoted: Vec<&str> =
            sol["quotes"].as_array().unwrap().iter().filter_map(|q| q["price"].as_str()).collect();
        assert_eq!(quoted, ["150", "150", "1500"], "lowest first");
        let all = until(&client, node, "/api/mesh/prices", |body| body["data"]["SOL"].is_object()).await;
        assert_eq!(all["data"]["SOL"]["price"], "150");
    }
    let _: Value = until(&client, &consumer, "/api/mesh/network/status", |body| {
        body["data"]["active_providers"].as_array().is_some_and(|providers| providers.len() == 3)
    })
    .await;
}
