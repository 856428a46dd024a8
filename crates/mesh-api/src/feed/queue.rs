//! [`FeedQueue`]: what one WebSocket client has yet to be sent, conflated per asset.
//!
//! The client's task moves service events into it as they come (cheap, never blocked by the
//! socket); the writer takes everything pending as one [`Batch`] whenever the socket can take
//! more. A newer price of an asset replaces its pending price in place (the asset keeps its
//! place in the order), so a client that falls behind skips intermediate prices but always
//! gets the newest, and a price older than one it has already been given is dropped, so it
//! never goes back in time. Network status conflates to the latest; warnings queue in order.
//!
//! Bounded: at most `capacity` distinct assets and warnings wait at once ([`Overflow`]
//! beyond), and the record of what the client holds has one entry per asset it follows.

use std::collections::HashMap;
use std::time::Duration;

use mesh_types::{Asset, CachedPriceData, FeedMessage, MeshWarning, NetworkStatusSummary, PriceMap};
use tokio::time::Instant;

/// The client has more distinct items pending than its queue holds: it is too slow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Overflow;

/// Everything pending for a client, taken at once.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Batch {
    /// The newest pending price of each asset, in the order the assets first became pending.
    pub(crate) prices: Vec<CachedPriceData>,
    /// The latest network status, if it changed.
    pub(crate) status: Option<NetworkStatusSummary>,
    /// Warnings in the order they came.
    pub(crate) warnings: Vec<MeshWarning>,
}

impl Batch {
    pub(crate) fn is_empty(&self) -> bool {
        self.prices.is_empty() && self.status.is_none() && self.warnings.is_empty()
    }

    /// The feed messages: one `PriceMeshUpdate` with every changed asset, then the status,
    /// then the warnings.
    pub(crate) fn into_messages(self) -> Vec<FeedMessage> {
        let mut messages = Vec::with_capacity(self.warnings.len().saturating_add(2));
        if !self.prices.is_empty() {
            let prices: PriceMap = self.prices.into_iter().map(|price| (price.asset, price)).collect();
            messages.push(FeedMessage::PriceMeshUpdate(prices));
        }
        if let Some(status) = self.status {
            messages.push(FeedMessage::NetworkStatusUpdate(status));
        }
        messages.extend(self.warnings.into_iter().map(FeedMessage::MeshWarning));
        messages
    }
}

/// The pending items of one client.
#[derive(Debug)]
pub(crate) struct FeedQueue {
    capacity: usize,
    /// The newest price of each asset this client was sent or has pending.
    known: HashMap<Asset, CachedPriceData>,
    /// Pending assets, in the order they became pending.
    order: Vec<Asset>,
    pending: HashMap<Asset, CachedPriceData>,
    status: Option<NetworkStatusSummary>,
    warnings: Vec<MeshWarning>,
    /// When the oldest item still pending was queued.
    pending_since: Option<Instant>,
    /// When the oldest item of the batch being written was queued.
    in_flight_since: Option<Instant>,
}

impl FeedQueue {
    /// An empty queue holding at most `capacity` distinct items (at least 1).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            known: HashMap::new(),
            order: Vec::new(),
            pending: HashMap::new(),
            status: None,
            warnings: Vec::new(),
            pending_since: None,
            in_flight_since: None,
        }
    }

    /// Records the prices sent in the client's `PriceMeshInitial`.
    pub(crate) fn sent_initial(&mut self, prices: &PriceMap) {
        for (asset, price) in prices {
            self.known.insert(*asset, price.clone());
        }
    }

    /// Distinct items pending (assets and warnings).
    pub(crate) fn len(&self) -> usize {
        self.order.len().saturating_add(self.warnings.len())
    }

    /// Queues `price` unless the client already has it or a newer one; replaces the pending
    /// price of the same asset in place. `Ok(true)` when it was queued.
    pub(crate) fn push_price(&mut self, price: CachedPriceData, now: Instant) -> Result<bool, Overflow> {
        if self.known.get(&price.asset).is_some_and(|known| !price.newer_than(known)) {
            return Ok(false);
        }
        let asset = price.asset;
        if let Some(pending) = self.pending.get_mut(&asset) {
            *pending = price.clone();
        } else {
            if self.len() >= self.capacity {
                return Err(Overflow);
            }
            self.order.push(asset);
            self.pending.insert(asset, price.clone());
        }
        self.known.insert(asset, price);
        self.pending_since.get_or_insert(now);
        Ok(true)
    }

    /// Queues the network status, replacing a pending one.
    pub(crate) fn push_status(&mut self, status: NetworkStatusSummary, now: Instant) {
        self.status = Some(status);
        self.pending_since.get_or_insert(now);
    }

    /// Queues a warning after the pending ones.
    pub(crate) fn push_warning(&mut self, warning: MeshWarning, now: Instant) -> Result<(), Overflow> {
        if self.len() >= self.capacity {
            return Err(Overflow);
        }
        self.warnings.push(warning);
        self.pending_since.get_or_insert(now);
        Ok(())
    }

    /// Takes everything pending; until [`FeedQueue::delivered`], the batch counts as not yet
    /// received for [`FeedQueue::lag`].
    pub(crate) fn take_batch(&mut self) -> Batch {
        let pending = &mut self.pending;
        let prices = self.order.drain(..).filter_map(|asset| pending.remove(&asset)).collect();
        let batch =
            Batch { prices, status: self.status.take(), warnings: std::mem::take(&mut self.warnings) };
        self.in_flight_since = earliest(self.in_flight_since, self.pending_since.take());
        batch
    }

    /// The batch taken last was written to the socket.
    pub(crate) fn delivered(&mut self) {
        self.in_flight_since = None;
    }

    /// How long the oldest item the client has not received yet has been waiting.
    pub(crate) fn lag(&self, now: Instant) -> Duration {
        earliest(self.in_flight_since, self.pending_since)
            .map_or(Duration::ZERO, |since| now.saturating_duration_since(since))
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use mesh_types::chrono::{TimeZone, Utc};
    use mesh_types::rust_decimal::Decimal;
    use mesh_types::{DataFreshness, NodeId, PublicKey};

    use super::*;

    fn price(symbol: &str, cents: i64, second: u32) -> CachedPriceData {
        CachedPriceData {
            asset: Asset::new(symbol).unwrap(),
            price: Decimal::new(cents, 2),
            timestamp: Utc.with_ymd_and_hms(2024, 1, 1, 12, 0, second).unwrap(),
            source_node_id: NodeId::from_public_key(&PublicKey::from_bytes([7; 32])),
            blockchain: "Solana".into(),
            change_24h: None,
        }
    }

    fn status(peers: u32) -> NetworkStatusSummary {
        NetworkStatusSummary {
            active_providers: 1,
            connected_peers: peers,
            total_network_size: peers + 1,
            last_update_time: None,
            data_freshness: DataFreshness::JustNow,
        }
    }

    fn symbols(batch: &Batch) -> Vec<&str> {
        batch.prices.iter().map(|price| price.asset.as_str()).collect()
    }

    #[test]
    fn the_newest_price_of_an_asset_wins_and_keeps_its_place() {
        let mut queue = FeedQueue::new(8);
        let now = Instant::now();
        assert_eq!(queue.push_price(price("SOL", 100, 1), now), Ok(true));
        assert_eq!(queue.push_price(price("ETH", 200, 1), now), Ok(true));
        assert_eq!(queue.push_price(price("SOL", 101, 2), now), Ok(true));
        assert_eq!(queue.push_price(price("BTC", 300, 1), now), Ok(true));
        assert_eq!(queue.len(), 3, "SOL is pending once");
        let batch = queue.take_batch();
        assert_eq!(symbols(&batch), ["SOL", "ETH", "BTC"], "first-pending order is kept");
        assert_eq!(batch.prices[0].price, Decimal::new(101, 2), "the newer SOL replaced the older");
        assert!(queue.take_batch().is_empty());
    }

    #[test]
    fn an_older_price_never_follows_a_newer_one() {
        let mut queue = FeedQueue::new(8);
        let now = Instant::now();
        queue.push_price(price("SOL", 101, 5), now).unwrap();
        assert_eq!(queue.push_price(price("SOL", 100, 4), now), Ok(false), "older than the pending one");
        let batch = queue.take_batch();
        assert_eq!(batch.prices[0].price, Decimal::new(101, 2));
        queue.delivered();
        assert_eq!(queue.push_price(price("SOL", 100, 4), now), Ok(false), "older than the one sent");
        assert_eq!(queue.push_price(price("SOL", 101, 5), now), Ok(false), "the same price again");
        assert!(queue.take_batch().is_empty());

        let mut initial = PriceMap::new();
        let eth = price("ETH", 200, 9);
        initial.insert(eth.asset, eth);
        queue.sent_initial(&initial);
        assert_eq!(queue.push_price(price("ETH", 199, 8), now), Ok(false), "older than the initial snapshot");
        assert_eq!(queue.push_price(price("ETH", 201, 10), now), Ok(true));
    }

    #[test]
    fn overflow_is_detected_for_new_assets_and_warnings_but_not_replacements() {
        let mut queue = FeedQueue::new(2);
        let now = Instant::now();
        queue.push_price(price("SOL", 1, 1), now).unwrap();
        queue.push_price(price("ETH", 1, 1), now).unwrap();
        assert_eq!(queue.push_price(price("SOL", 2, 2), now), Ok(true), "a replacement needs no room");
        queue.push_status(status(1), now);
        assert_eq!(queue.push_price(price("BTC", 1, 1), now), Err(Overflow));
        assert_eq!(queue.push_warning(MeshWarning::no_providers(), now), Err(Overflow));
        queue.take_batch();
        assert_eq!(queue.push_warning(MeshWarning::no_providers(), now), Ok(()));
        assert_eq!(queue.push_price(price("BTC", 1, 1), now), Ok(true));
        assert_eq!(queue.push_price(price("DOGE", 1, 1), now), Err(Overflow));
    }

    #[test]
    fn status_conflates_warnings_queue_and_messages_come_in_order() {
        let mut queue = FeedQueue::new(8);
        let now = Instant::now();
        queue.push_status(status(1), now);
        queue.push_warning(MeshWarning::no_providers(), now).unwrap();
        queue.push_status(status(2), now);
        queue.push_price(price("SOL", 1, 1), now).unwrap();
        let messages = queue.take_batch().into_messages();
        assert_eq!(messages.len(), 3);
        assert!(matches!(&messages[0], FeedMessage::PriceMeshUpdate(prices) if prices.len() == 1));
        assert_eq!(messages[1], FeedMessage::NetworkStatusUpdate(status(2)));
        assert_eq!(messages[2], FeedMessage::MeshWarning(MeshWarning::no_providers()));
    }

    #[test]
    fn lag_counts_from_the_oldest_item_not_yet_written() {
        let mut queue = FeedQueue::new(8);
        let start = Instant::now();
        assert_eq!(queue.lag(start + Duration::from_secs(60)), Duration::ZERO, "nothing pending");
        queue.push_price(price("SOL", 1, 1), start).unwrap();
        queue.push_price(price("ETH", 1, 1), start + Duration::from_secs(1)).unwrap();
        assert_eq!(queue.lag(start + Duration::from_secs(3)), Duration::from_secs(3));
        let _batch = queue.take_batch();
        assert_eq!(
            queue.lag(start + Duration::from_secs(4)),
            Duration::from_secs(4),
            "in flight still counts"
        );
        queue.push_price(price("BTC", 1, 1), start + Duration::from_secs(5)).unwrap();
        assert_eq!(queue.lag(start + Duration::from_secs(6)), Duration::from_secs(6));
        queue.delivered();
        assert_eq!(queue.lag(start + Duration::from_secs(6)), Duration::from_secs(1), "BTC is still pending");
        queue.take_batch();
        queue.delivered();
        assert_eq!(queue.lag(start + Duration::from_secs(60)), Duration::ZERO);
    }
}
