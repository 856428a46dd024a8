//! Row "fan-out to subscribers": one update stream delivered to N clients, by a `mesh-node`
//! process over its WebSocket feed and by a NATS server to N subscribers, with the same JSON
//! payload, at the same rate, in the same run. Every client times every update from the moment
//! it was published (one clock: publisher and clients are in this process); the server's
//! memory is read before and after the clients connect.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use pricemesh::types::rust_decimal::Decimal;
use pricemesh::types::{CachedPriceData, FeedMessage, ServedPrice, ServedPriceMap};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken as Cancel;

use crate::node::{Injector, NodeProcess};
use crate::report::{Bytes, Latencies, ratio};
use crate::scenario::{sequence_of_price, signed_update};

/// The NATS server of the development machine.
const NATS_URL: &str = "nats://127.0.0.1:4222";
/// Clients connecting at once while a row sets up.
const CONNECT_CONCURRENCY: usize = 256;

/// What one side measured for N clients.
#[derive(Debug)]
struct Side {
    latencies: Latencies,
    expected: u64,
    memory_per_client: f64,
}

/// When each update was published, by sequence number, readable from every client task.
#[derive(Debug)]
struct Clock {
    start: Instant,
    published: Vec<AtomicU64>,
}

impl Clock {
    fn new(updates: usize) -> Self {
        Self { start: Instant::now(), published: (0..updates).map(|_| AtomicU64::new(0)).collect() }
    }

    fn mark(&self, seq: usize) {
        let nanos = u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX).max(1);
        if let Some(slot) = self.published.get(seq) {
            slot.store(nanos, Ordering::Release);
        }
    }

    /// The latency of `seq` seen now, if it was published.
    fn latency(&self, seq: usize) -> Option<Duration> {
        let published = self.published.get(seq)?.load(Ordering::Acquire);
        (published > 0).then(|| self.start.elapsed().saturating_sub(Duration::from_nanos(published)))
    }
}

/// Runs the row for each client count.
///
/// # Errors
/// When the node, the NATS server or the clients cannot be reached.
pub async fn run(client_counts: &[usize], rate: f64, duration: Duration) -> Result<(), String> {
    println!("## Fan-out: {rate:.0} updates/s for {duration:?} to N clients (same JSON payload)");
    println!(
        "| N | pricemesh WebSocket latency | NATS latency | p99 ours / NATS | delivered (ours / NATS) | server memory per client (ours / NATS) |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for &clients in client_counts {
        let ours = websocket(clients, rate, duration).await?;
        let theirs = nats(clients, rate, duration).await?;
        println!(
            "| {clients} | {} | {} | {} | {:.1} % / {:.1} % | {} / {} |",
            ours.latencies.summary(),
            theirs.latencies.summary(),
            ratio(ours.latencies.at(0.99).as_secs_f64(), theirs.latencies.at(0.99).as_secs_f64()),
            100.0 * ours.latencies.count() as f64 / ours.expected.max(1) as f64,
            100.0 * theirs.latencies.count() as f64 / theirs.expected.max(1) as f64,
            Bytes(ours.memory_per_client),
            Bytes(theirs.memory_per_client),
        );
    }
    Ok(())
}

/// The update for `seq` as the node's feed sends it: `PriceMeshUpdate` with one price.
fn feed_payload(seq: usize) -> Vec<u8> {
    let provider = pricemesh::types::NodeIdentity::from_secret_bytes(&[7; 32]);
    let update = signed_update(&provider, &pricemesh::types::NetworkId::mainnet(), seq);
    let prices: ServedPriceMap = update
        .cached_prices()
        .map(|price: CachedPriceData| (price.asset, ServedPrice::single(price)))
        .collect();
    serde_json::to_vec(&FeedMessage::PriceMeshUpdate(prices)).expect("a feed message serializes")
}

/// The sequence number in a feed message, read without parsing the whole message: clients
/// keep up with tens of thousands of messages a second on the cores the servers also use.
fn sequence_in(text: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(text).ok()?;
    if !text.contains("PriceMeshUpdate") {
        return None;
    }
    let start = text.find("\"price\":\"")? + "\"price\":\"".len();
    let end = start + text[start..].find('"')?;
    sequence_of_price(text[start..end].parse::<Decimal>().ok()?)
}

/// A client task's loop: records the latency of every update until cancelled.
async fn record<S, T>(
    mut messages: S,
    clock: Arc<Clock>,
    cancel: Cancel,
    payload: impl Fn(&T) -> Option<&[u8]>,
) -> Latencies
where
    S: futures::Stream<Item = T> + Unpin,
{
    let mut latencies = Latencies::new();
    loop {
        let message = tokio::select! {
            () = cancel.cancelled() => break,
            message = messages.next() => message,
        };
        let Some(message) = message else { break };
        if let Some(latency) = payload(&message).and_then(sequence_in).and_then(|seq| clock.latency(seq)) {
            latencies.record(latency);
        }
    }
    latencies
}

/// Publishes `rate` updates a second for `duration` through `publish`, marking each on `clock`.
async fn publish_all<F, Fut>(clock: &Clock, rate: f64, updates: usize, mut publish: F) -> Result<(), String>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    for seq in 0..updates {
        tokio::time::sleep_until(clock.start + Duration::from_secs_f64(seq as f64 / rate)).await;
        clock.mark(seq);
        publish(seq).await?;
    }
    Ok(())
}

async fn gather(tasks: Vec<JoinHandle<Latencies>>) -> Latencies {
    let mut total = Latencies::new();
    for task in tasks {
        if let Ok(latencies) = task.await {
            total.merge(&latencies);
        }
    }
    total
}

async fn websocket(clients: usize, rate: f64, duration: Duration) -> Result<Side, String> {
    let node = NodeProcess::start(None, &[])?;
    let injector = Injector::connect(node.peers).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let base_rss = node.rss();
    let updates = (rate * duration.as_secs_f64()).round() as usize;
    let clock = Arc::new(Clock::new(updates));
    let cancel = Cancel::new();
    let url = format!("ws://{}/ws", node.api);
    let mut connecting = FuturesUnordered::new();
    let mut tasks = Vec::with_capacity(clients);
    for _ in 0..clients {
        if connecting.len() >= CONNECT_CONCURRENCY
            && let Some(result) = connecting.next().await
        {
            tasks.push(spawn_ws_client(result, &clock, &cancel)?);
        }
        connecting.push(tokio_tungstenite::connect_async(url.clone()));
    }
    while let Some(result) = connecting.next().await {
        tasks.push(spawn_ws_client(result, &clock, &cancel)?);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let memory_per_client = node.rss().saturating_sub(base_rss) as f64 / clients as f64;
    publish_all(&clock, rate, updates, |seq| {
        let update = signed_update(injector.identity(), injector.network_id(), seq);
        let injector = &injector;
        async move { injector.publish(update).await }
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    cancel.cancel();
    let latencies = gather(tasks).await;
    injector.shutdown().await;
    Ok(Side { latencies, expected: (clients * updates) as u64, memory_per_client })
}

fn spawn_ws_client(
    connected: Result<
        (
            tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
            impl Sized,
        ),
        tokio_tungstenite::tungstenite::Error,
    >,
    clock: &Arc<Clock>,
    cancel: &Cancel,
) -> Result<JoinHandle<Latencies>, String> {
    let (socket, _) = connected.map_err(|err| format!("a WebSocket client cannot connect: {err}"))?;
    let (clock, cancel) = (clock.clone(), cancel.clone());
    Ok(tokio::spawn(async move {
        let (_, incoming) = socket.split();
        let messages = incoming.filter_map(|message| async move { message.ok() });
        record(Box::pin(messages), clock, cancel, |message: &Message| match message {
            Message::Text(text) => Some(text.as_bytes()),
            _ => None,
        })
        .await
    }))
}

async fn nats(clients: usize, rate: f64, duration: Duration) -> Result<Side, String> {
    let server = nats_server_pid();
    let base_rss = server.map_or(0, process_rss);
    let subject = format!("pricemesh.bench.{}", std::process::id());
    let updates = (rate * duration.as_secs_f64()).round() as usize;
    let clock = Arc::new(Clock::new(updates));
    let cancel = Cancel::new();
    let mut connecting = FuturesUnordered::new();
    let mut subscribers = Vec::with_capacity(clients);
    for _ in 0..clients {
        if connecting.len() >= CONNECT_CONCURRENCY
            && let Some(client) = connecting.next().await
        {
            subscribers.push(client);
        }
        let subject = subject.clone();
        connecting.push(async move {
            let client = async_nats::connect(NATS_URL)
                .await
                .map_err(|err| format!("cannot reach NATS at {NATS_URL}: {err}"))?;
            let subscription =
                client.subscribe(subject).await.map_err(|err| format!("cannot subscribe: {err}"))?;
            client.flush().await.map_err(|err| format!("cannot flush: {err}"))?;
            Ok::<_, String>((client, subscription))
        });
    }
    while let Some(client) = connecting.next().await {
        subscribers.push(client);
    }
    let mut tasks = Vec::with_capacity(clients);
    let mut connections = Vec::with_capacity(clients);
    for subscriber in subscribers {
        let (client, subscription) = subscriber?;
        connections.push(client);
        let (clock, cancel) = (clock.clone(), cancel.clone());
        tasks.push(tokio::spawn(async move {
            record(subscription, clock, cancel, |message: &async_nats::Message| Some(&message.payload[..]))
                .await
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let memory_per_client = server.map_or(0, process_rss).saturating_sub(base_rss) as f64 / clients as f64;
    let publisher = async_nats::connect(NATS_URL).await.map_err(|err| format!("cannot reach NATS: {err}"))?;
    publish_all(&clock, rate, updates, |seq| {
        let (publisher, subject) = (&publisher, subject.clone());
        async move {
            publisher.publish(subject, feed_payload(seq).into()).await.map_err(|err| err.to_string())?;
            publisher.flush().await.map_err(|err| err.to_string())
        }
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    cancel.cancel();
    let latencies = gather(tasks).await;
    drop(connections);
    Ok(Side { latencies, expected: (clients * updates) as u64, memory_per_client })
}

/// The local NATS server's process id.
fn nats_server_pid() -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        (name.trim() == "nats-server").then_some(pid)
    })
}

/// A process's resident memory in bytes.
fn process_rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}
