//! The operator's kit against real nodes: every metric the Grafana board in
//! `deploy/grafana/pricemesh.json` and the alert rules in `deploy/prometheus/alerts.yml` query
//! exists on a live mesh's `/metrics` — a provider with Redis behind it, and a consumer. A
//! renamed metric, or a panel over one that is never registered, fails here.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use support::{Node, start_with};

/// Every `mesh_…` name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("mesh_") {
        let preceded_by_word =
            rest[..at].chars().next_back().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        if !preceded_by_word && name.len() > "mesh_".len() {
            names.insert(name.clone());
        }
        rest = &rest[at + name.len().max(1)..];
    }
    names
}

/// The queries of every panel and template variable of a Grafana board.
fn board_queries(board: &serde_json::Value, queries: &mut Vec<String>) {
    match board {
        serde_json::Value::Object(object) => {
            for (key, value) in object {
                match (key.as_str(), value) {
                    ("expr" | "query" | "definition", serde_json::Value::String(text)) => {
                        queries.push(text.clone())
                    }
                    _ => board_queries(value, queries),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|item| board_queries(item, queries)),
        _ => {}
    }
}

/// The series names a scrape exposes (a summary's `_sum` and `_count` included).
fn exposed(scrape: &str) -> BTreeSet<String> {
    scrape
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

async fn scrape(client: &reqwest::Client, node: &Node) -> String {
    let url = format!("http://{}/metrics", node.api);
    client.get(url).send().await.unwrap().text().await.unwrap()
}

fn deploy_file(path: &str) -> String {
    let full = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/");
    std::fs::read_to_string(format!("{full}{path}")).unwrap_or_else(|err| panic!("deploy/{path}: {err}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_of_the_board_and_the_alerts_exists_on_a_live_mesh() {
    let Some(redis) = mesh_testkit::backend_url("MESH_TEST_REDIS_URL", "deploy metrics") else { return };
    let namespace = mesh_testkit::RedisNamespace::create(&redis);
    let provider = start_with(
        None,
        &[
            ("MESH_PRICE_SOURCE", "simulated"),
            ("MESH_MIN_PEER_CONNECTIONS", "0"),
            ("REDIS_URL", redis.as_str()),
            ("MESH_REDIS_PREFIX", namespace.prefix()),
        ],
    );
    let consumer = start_with(Some(provider.peers), &[]);

    let board: serde_json::Value = serde_json::from_str(&deploy_file("grafana/pricemesh.json")).unwrap();
    let mut queries = Vec::new();
    board_queries(&board, &mut queries);
    let board_metrics = metric_names(&queries.join("\n"));
    let alert_metrics = metric_names(&deploy_file("prometheus/alerts.yml"));
    assert!(board_metrics.len() > 15 && alert_metrics.len() > 8, "{board_metrics:?} {alert_metrics:?}");
    let wanted: BTreeSet<String> = board_metrics.union(&alert_metrics).cloned().collect();

    // Prices reach the consumer (propagation latency, gossip outcomes) and the status timers
    // run (price gauges, warnings): poll until every name is there, or say which are not.
    let client = reqwest::Client::new();
    let mut missing = wanted.clone();
    for _ in 0..150 {
        let mut seen = exposed(&scrape(&client, &provider).await);
        seen.extend(exposed(&scrape(&client, &consumer).await));
        missing = wanted.iter().filter(|name| !seen.contains(*name)).cloned().collect();
        if missing.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    namespace.cleanup().await;
    assert!(missing.is_empty(), "queried by deploy/ but on no live node's /metrics: {missing:?}");
}

#[test]
fn the_name_scan_finds_names_and_nothing_else() {
    let names = metric_names("rate(mesh_a_total[5m]) / mesh_b{x=\"mesh_c\"} + my_mesh_d");
    assert_eq!(names.into_iter().collect::<Vec<_>>(), ["mesh_a_total", "mesh_b", "mesh_c"]);
}
