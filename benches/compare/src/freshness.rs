//! Row "end-to-end freshness": an update published by a provider reaches a WebSocket client
//! three real `mesh-node` processes away. The provider is an in-process node (so publish and
//! receipt are timed on one clock) feeding a line of three processes — relay, relay, and the
//! consumer the client watches; peer limits keep the line from short-cutting itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use pricemesh::types::FeedMessage;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::node::{Injector, NodeProcess};
use crate::report::{Latencies, Millis};
use crate::scenario::{sequence_of_price, signed_update};

/// Pyth Core's update interval, the yardstick the issue names.
const PYTH_CORE_INTERVAL: Duration = Duration::from_millis(400);

/// Runs the row: `rate` updates per second for `duration`.
///
/// # Errors
/// When a process cannot start or the client cannot connect.
pub async fn run(rate: f64, duration: Duration) -> Result<(), String> {
    // Started from the consumer back, each joining the one after it.
    let consumer = NodeProcess::start(None, &[("MESH_MAX_PEER_CONNECTIONS", "1")])?;
    let second = NodeProcess::start(Some(consumer.peers), &[("MESH_MAX_PEER_CONNECTIONS", "2")])?;
    let first = NodeProcess::start(Some(second.peers), &[("MESH_MAX_PEER_CONNECTIONS", "2")])?;
    let provider = Injector::connect(first.peers).await?;
    // Let the line settle (connections confirmed, first anti-entropy done).
    tokio::time::sleep(Duration::from_secs(1)).await;

    let (socket, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", consumer.api))
        .await
        .map_err(|err| format!("cannot open the consumer's WebSocket: {err}"))?;
    let published: Arc<Mutex<HashMap<usize, Instant>>> = Arc::default();
    let latencies: Arc<Mutex<Latencies>> = Arc::default();
    let reader = {
        let (published, latencies) = (published.clone(), latencies.clone());
        tokio::spawn(async move {
            let (_, mut incoming) = socket.split();
            while let Some(Ok(message)) = incoming.next().await {
                let received = Instant::now();
                let Message::Text(text) = message else { continue };
                let Ok(FeedMessage::PriceMeshUpdate(prices)) = serde_json::from_str(&text) else { continue };
                for price in prices.values() {
                    let sent = sequence_of_price(price.price.price)
                        .and_then(|seq| published.lock().expect("not poisoned").get(&seq).copied());
                    if let Some(sent) = sent {
                        latencies.lock().expect("not poisoned").record(received - sent);
                    }
                }
            }
        })
    };

    let updates = (rate * duration.as_secs_f64()).round() as usize;
    let cpu_before: Vec<f64> = [&consumer, &second, &first].iter().map(|node| node.cpu_seconds()).collect();
    let start = Instant::now();
    for seq in 0..updates {
        tokio::time::sleep_until(start + Duration::from_secs_f64(seq as f64 / rate)).await;
        let update = signed_update(provider.identity(), provider.network_id(), seq);
        published.lock().expect("not poisoned").insert(seq, Instant::now());
        provider.publish(update).await?;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    reader.abort();
    let cpu: Vec<String> = [&consumer, &second, &first]
        .iter()
        .zip(cpu_before)
        .map(|(node, before)| format!("{:.2}", node.cpu_seconds() - before))
        .collect();
    provider.shutdown().await;

    let latencies = latencies.lock().expect("not poisoned").clone();
    println!(
        "## End-to-end freshness: provider → 3 mesh-node processes → WebSocket client, {rate:.0} updates/s for {duration:?}"
    );
    println!("| measure | value |");
    println!("| --- | --- |");
    println!("| updates seen by the client | {} of {updates} |", latencies.count());
    println!("| publish → client | {} |", latencies.summary());
    println!("| CPU seconds used by each process (consumer, relay, relay) | {} |", cpu.join(", "));
    println!(
        "| p99 against Pyth Core's {} update interval | {:.0}× shorter |",
        Millis(PYTH_CORE_INTERVAL),
        PYTH_CORE_INTERVAL.as_secs_f64() / latencies.at(0.99).as_secs_f64().max(1e-9)
    );
    drop((first, second, consumer));
    Ok(())
}
