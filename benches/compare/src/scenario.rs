//! What every side of a comparison shares: the scenario, the signed payload, the open-loop
//! schedule, the work a node does per update, the arrival tracker, and the process's CPU time
//! and peak memory.
//!
//! Each update carries its sequence number in its price (`seq + 1` hundredths), so any node
//! can tell which scheduled update arrived without a side table.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use pricemesh::price_cache::{MemoryPriceStore, PriceStore};
use pricemesh::types::rust_decimal::Decimal;
use pricemesh::types::rust_decimal::prelude::ToPrimitive;
use pricemesh::types::{
    Asset, AuthorKey, Codec, MeshMessage, NetworkId, NodeIdentity, PriceData, PriceUpdate, ValidationPolicy,
    chrono,
};
use tokio::time::Instant;

/// The mesh and the load offered to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Nodes in the mesh; node 0 publishes.
    pub nodes: usize,
    /// Links per node (a random regular graph).
    pub degree: usize,
    /// Seed of the topology.
    pub seed: u64,
    /// Updates offered per second, open loop: update `i` is due at `i / rate` seconds whether or
    /// not the earlier ones have arrived.
    pub rate: f64,
    /// How long updates are offered.
    pub duration: Duration,
    /// How long to wait after the last update for stragglers.
    pub settle: Duration,
}

impl Scenario {
    /// Updates offered in all.
    pub fn updates(&self) -> usize {
        (self.rate * self.duration.as_secs_f64()).round().max(1.0) as usize
    }

    /// When update `seq` is due, counted from the start of the run.
    pub fn due(&self, seq: usize) -> Duration {
        Duration::from_secs_f64(seq as f64 / self.rate)
    }

    /// The simulator's configuration for this scenario over `transport`, with node 0 the one
    /// provider.
    pub fn sim_config(&self, transport: pricemesh::sim::SimTransport) -> pricemesh::sim::SimConfig {
        pricemesh::sim::SimConfig {
            nodes: self.nodes,
            providers: 1,
            topology: pricemesh::sim::Topology::RandomRegular { degree: self.degree },
            updates: self.updates(),
            interval: Duration::from_secs_f64(1.0 / self.rate),
            settle: self.settle,
            seed: self.seed,
            transport,
            push: pricemesh::gossip::PushConfig {
                mode: push_mode(),
                ..pricemesh::gossip::PushConfig::default()
            },
            ..pricemesh::sim::SimConfig::default()
        }
    }

    /// The links of the mesh, as pairs of node indexes: the same graph for both sides.
    pub fn edges(&self) -> Vec<(usize, usize)> {
        pricemesh::sim::edges(
            pricemesh::sim::Topology::RandomRegular { degree: self.degree },
            self.nodes,
            1,
            self.seed,
        )
    }
}

/// What one side measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Which system ran.
    pub system: &'static str,
    /// Per update, from its due time to its arrival at the last of the other nodes; `None`
    /// when some node never received it.
    pub time_to_all: Vec<Option<Duration>>,
    /// Updates handed to the application, summed over the receiving nodes.
    pub deliveries: u64,
    /// Full copies of updates sent over all links (the first copy to each node included).
    pub copies_sent: u64,
    /// Bytes written to all links while updates were offered and settling, framing included.
    pub bytes_sent: u64,
    /// CPU seconds the process used while updates were offered and settling.
    pub cpu_seconds: f64,
    /// The process's peak resident memory during the run, in bytes.
    pub peak_rss: u64,
    /// What the report should say about this run beside the figures (the overlay a system
    /// built, frames a link dropped), if anything.
    pub note: Option<String>,
}

/// The signed update for sequence number `seq` on `network`: one price, about 150 bytes on our
/// wire.
pub fn signed_update(provider: &NodeIdentity, network: &NetworkId, seq: usize) -> PriceUpdate {
    let price = PriceData {
        asset: Asset::new("SOL").expect("a valid symbol"),
        price: Decimal::new(i64::try_from(seq).unwrap_or(i64::MAX - 1) + 1, 2),
        blockchain: "Solana".into(),
        change_24h: Some(Decimal::new(52, 1)),
    };
    PriceUpdate::new_signed(provider, network, [price], 10, chrono::Utc::now())
}

/// The sequence number an update produced by [`signed_update`] carries.
pub fn sequence_of(update: &PriceUpdate) -> Option<usize> {
    let price = update.prices.values().next()?;
    sequence_of_price(price.price)
}

/// The sequence number carried by a price produced by [`signed_update`].
pub fn sequence_of_price(price: Decimal) -> Option<usize> {
    let hundredths = (price * Decimal::ONE_HUNDRED).to_u64()?;
    usize::try_from(hundredths.checked_sub(1)?).ok()
}

/// Signs update `i` and hands its encoded form to `publish` when it is due, whether or not the
/// earlier ones arrived.
pub async fn offer_open_loop(scenario: &Scenario, arrivals: &Arrivals, mut publish: impl FnMut(Vec<u8>)) {
    let provider = NodeIdentity::generate();
    let codec = Codec::default();
    for seq in 0..scenario.updates() {
        tokio::time::sleep_until(arrivals.start() + scenario.due(seq)).await;
        let update = signed_update(&provider, &NetworkId::mainnet(), seq);
        publish(codec.encode(&MeshMessage::from(update)).expect("a small update encodes"));
    }
}

/// The work every competitor's node does with a payload before it counts as delivered, the
/// work our engine does per node: decode, validate, verify the signature strictly with the
/// provider's key decoded once, store the prices newest-wins.
#[derive(Debug, Default)]
pub struct Application {
    prices: MemoryPriceStore,
    author: Option<AuthorKey>,
    codec: Codec,
    policy: ValidationPolicy,
}

impl Application {
    /// Decodes, validates, verifies and stores one payload; its sequence number if it is a
    /// valid update.
    pub async fn accept(&mut self, payload: &[u8]) -> Option<usize> {
        let MeshMessage::PriceUpdate(update) = self.codec.decode(payload).ok()? else { return None };
        update.validate(&self.policy, chrono::Utc::now()).ok()?;
        if self.author.as_ref().is_none_or(|key| key.node_id() != update.source_node_id) {
            self.author = Some(AuthorKey::new(update.source_node_id, &update.source_key).ok()?);
        }
        self.author.as_ref()?.verify(&*update, &NetworkId::mainnet()).ok()?;
        for price in update.cached_prices() {
            self.prices.store(price).await.ok()?;
        }
        sequence_of(&update)
    }
}

/// Counts arrivals per update and keeps the latest one, lock-free, from every node's task.
#[derive(Debug)]
pub struct Arrivals {
    start: Instant,
    receivers: u32,
    counts: Vec<AtomicU32>,
    last_nanos: Vec<AtomicU64>,
    deliveries: AtomicU64,
}

impl Arrivals {
    /// A tracker for `updates` updates, each expected at `receivers` nodes, timed from `start`.
    pub fn new(start: Instant, updates: usize, receivers: usize) -> Self {
        Self {
            start,
            receivers: u32::try_from(receivers).unwrap_or(u32::MAX),
            counts: (0..updates).map(|_| AtomicU32::new(0)).collect(),
            last_nanos: (0..updates).map(|_| AtomicU64::new(0)).collect(),
            deliveries: AtomicU64::new(0),
        }
    }

    /// The run's time zero.
    pub const fn start(&self) -> Instant {
        self.start
    }

    /// One node received update `seq` now.
    pub fn record(&self, seq: usize) {
        let (Some(count), Some(last)) = (self.counts.get(seq), self.last_nanos.get(seq)) else { return };
        let nanos = u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        last.fetch_max(nanos, Ordering::Relaxed);
        count.fetch_add(1, Ordering::Relaxed);
        self.deliveries.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether every update has reached every receiver.
    pub fn complete(&self) -> bool {
        self.counts.iter().all(|count| count.load(Ordering::Relaxed) >= self.receivers)
    }

    /// Per update, the time from `due(seq)` to its last arrival, if it reached every receiver.
    pub fn time_to_all(&self, due: impl Fn(usize) -> Duration) -> Vec<Option<Duration>> {
        self.counts
            .iter()
            .zip(&self.last_nanos)
            .enumerate()
            .map(|(seq, (count, last))| {
                (count.load(Ordering::Relaxed) >= self.receivers)
                    .then(|| Duration::from_nanos(last.load(Ordering::Relaxed)).saturating_sub(due(seq)))
            })
            .collect()
    }

    /// Updates handed to applications so far, over all nodes.
    pub fn deliveries(&self) -> u64 {
        self.deliveries.load(Ordering::Relaxed)
    }
}

/// Waits, after the last update was offered, until every update is everywhere or `settle`
/// has passed.
pub async fn settle(arrivals: &Arrivals, settle: Duration) {
    let deadline = Instant::now() + settle;
    while Instant::now() < deadline && !arrivals.complete() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// CPU seconds (user + system) this process has used, from `/proc/self/stat`.
pub fn cpu_seconds() -> f64 {
    // Fields 14 and 15 (utime, stime) in clock ticks; Linux reports them at 100 ticks/s.
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |index: usize| fields.get(index).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    // After the name, field 3 (state) is index 0, so utime (14) is 11 and stime (15) is 12.
    (ticks(11) + ticks(12)) as f64 / 100.0
}

/// The process's peak resident memory in bytes (`VmHWM`).
pub fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Resets the peak resident memory to the current size, so the next side is measured alone.
pub fn reset_peak_rss() {
    // Writing 5 to clear_refs resets VmHWM (Linux 4.0 and later); without it the peak is the
    // process's whole life, which the report says.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// How pricemesh relays in this run: lazy push, or flooding with `PRICEMESH_COMPARE_FLOOD=1`
/// (to measure the two against each other in the same harness).
fn push_mode() -> pricemesh::gossip::PushMode {
    if std::env::var("PRICEMESH_COMPARE_FLOOD").is_ok_and(|value| value == "1") {
        pricemesh::gossip::PushMode::Flood
    } else {
        pricemesh::gossip::PushMode::Lazy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sequence_travels_in_the_price() {
        let provider = NodeIdentity::generate();
        for seq in [0, 1, 99, 123_456] {
            assert_eq!(sequence_of(&signed_update(&provider, &NetworkId::mainnet(), seq)), Some(seq));
        }
    }

    #[tokio::test]
    async fn the_application_accepts_a_signed_update_and_refuses_others() {
        let provider = NodeIdentity::generate();
        let codec = Codec::default();
        let encode = |update| codec.encode(&MeshMessage::from(update)).unwrap();
        let mut application = Application::default();
        let valid = encode(signed_update(&provider, &NetworkId::mainnet(), 41));
        assert_eq!(application.accept(&valid).await, Some(41));
        // Signed for another network: the signature does not verify on mainnet.
        let foreign = encode(signed_update(&provider, &NetworkId::testnet(), 42));
        assert_eq!(application.accept(&foreign).await, None);
        assert_eq!(application.accept(b"not an update").await, None);
    }

    #[test]
    fn arrivals_complete_only_when_every_receiver_has_every_update() {
        let arrivals = Arrivals::new(Instant::now(), 2, 2);
        arrivals.record(0);
        arrivals.record(0);
        arrivals.record(1);
        assert!(!arrivals.complete());
        arrivals.record(1);
        assert!(arrivals.complete());
        assert_eq!(arrivals.deliveries(), 4);
        assert!(arrivals.time_to_all(|_| Duration::ZERO).iter().all(Option::is_some));
    }
}
