//! [`FeedQueue`]: what one WebSocket client has yet to be sent, conflated per asset, and where
//! it stands in the node's sequence.
//!
//! The client's task moves numbered service events into it as they come (cheap, never blocked
//! by the socket); the writer takes everything pending as one [`Batch`] whenever the socket can
//! take more. A newer price of an asset replaces its pending price in place (the asset keeps its
//! place in the order), so a client that falls behind skips intermediate prices but always gets
//! the newest. Network status conflates to the latest; warnings queue in order.
//!
//! Every frame carries a watermark: once the client has it, it holds every change up to that
//! number (sent, superseded by a newer price of the same asset, or not for its filter). Events
//! at or below the watermark already reached are ignored, so a snapshot, a replay and the live
//! stream can overlap without a change being sent twice.
//!
//! Bounded: at most `capacity` distinct assets and warnings wait at once ([`Overflow`] beyond).

use std::collections::HashMap;
use std::time::Duration;

use mesh_types::{
    Asset, FeedFrame, FeedMessage, MeshWarning, NetworkStatusSummary, ServedPrice, ServedPriceMap,
};
use tokio::time::Instant;

/// The client has more distinct items pending than its queue holds: it is too slow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Overflow;

/// Everything pending for a client, taken at once.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Batch {
    /// The newest pending price of each asset with the number of the first change it carries,
    /// in the order the assets first became pending.
    pub(crate) prices: Vec<(u64, ServedPrice)>,
    /// The latest network status, with the number of the first status it replaced.
    pub(crate) status: Option<(u64, NetworkStatusSummary)>,
    /// Warnings in the order they came, each with its number.
    pub(crate) warnings: Vec<(u64, MeshWarning)>,
    /// The watermark once the whole batch is delivered.
    pub(crate) through: u64,
}

impl Batch {
    pub(crate) fn is_empty(&self) -> bool {
        self.prices.is_empty() && self.status.is_none() && self.warnings.is_empty()
    }

    /// The frames: one `PriceMeshUpdate` with every changed asset, then the status, then the
    /// warnings. Each frame's watermark stops short of the first change a later frame carries,
    /// so a client cut off mid-batch resumes from where it really is.
    pub(crate) fn into_frames(self) -> Vec<FeedFrame> {
        let mut messages: Vec<(u64, FeedMessage)> = Vec::with_capacity(self.warnings.len().saturating_add(2));
        if let Some(first) = self.prices.iter().map(|(seq, _)| *seq).min() {
            let prices: ServedPriceMap =
                self.prices.into_iter().map(|(_, price)| (price.asset(), price)).collect();
            messages.push((first, FeedMessage::PriceMeshUpdate(prices)));
        }
        if let Some((first, status)) = self.status {
            messages.push((first, FeedMessage::NetworkStatusUpdate(status)));
        }
        messages
            .extend(self.warnings.into_iter().map(|(seq, warning)| (seq, FeedMessage::MeshWarning(warning))));
        // Frame i's watermark: one below the earliest change still to come after it.
        let mut frames = Vec::with_capacity(messages.len());
        let mut earliest_after = self.through.saturating_add(1);
        for (first, message) in messages.into_iter().rev() {
            frames.push(FeedFrame::new(message, earliest_after.saturating_sub(1)));
            earliest_after = earliest_after.min(first);
        }
        frames.reverse();
        frames
    }
}

/// The pending items of one client.
#[derive(Debug)]
pub(crate) struct FeedQueue {
    capacity: usize,
    /// Every event up to this number has been taken in: queued, or not for this client.
    observed: u64,
    /// Pending assets, in the order they became pending.
    order: Vec<Asset>,
    pending: HashMap<Asset, (u64, ServedPrice)>,
    status: Option<(u64, NetworkStatusSummary)>,
    warnings: Vec<(u64, MeshWarning)>,
    /// When the oldest item still pending was queued.
    pending_since: Option<Instant>,
    /// When the oldest item of the batch being written was queued.
    in_flight_since: Option<Instant>,
}

impl FeedQueue {
    /// An empty queue holding at most `capacity` distinct items (at least 1), for a client that
    /// holds every change up to `observed` (from its snapshot or its own resume position).
    pub(crate) fn new(capacity: usize, observed: u64) -> Self {
        Self {
            capacity: capacity.max(1),
            observed,
            order: Vec::new(),
            pending: HashMap::new(),
            status: None,
            warnings: Vec::new(),
            pending_since: None,
            in_flight_since: None,
        }
    }

    /// Every event up to this number has been taken in.
    pub(crate) const fn observed(&self) -> u64 {
        self.observed
    }

    /// Whether the event numbered `seq` is new to this client; if so, it counts as taken in
    /// from now on (the caller queues what of it the client follows).
    pub(crate) fn begin(&mut self, seq: u64) -> bool {
        if seq <= self.observed {
            return false;
        }
        self.observed = seq;
        true
    }

    /// Distinct items pending (assets and warnings).
    pub(crate) fn len(&self) -> usize {
        self.order.len().saturating_add(self.warnings.len())
    }

    /// Queues `price`, changed in event `seq`; replaces the pending price of the same asset in
    /// place.
    pub(crate) fn push_price(&mut self, seq: u64, price: ServedPrice, now: Instant) -> Result<(), Overflow> {
        let asset = price.asset();
        if let Some((_, pending)) = self.pending.get_mut(&asset) {
            *pending = price;
        } else {
            if self.len() >= self.capacity {
                return Err(Overflow);
            }
            self.order.push(asset);
            self.pending.insert(asset, (seq, price));
        }
        self.pending_since.get_or_insert(now);
        Ok(())
    }

    /// Queues the network status of event `seq`, replacing a pending one.
    pub(crate) fn push_status(&mut self, seq: u64, status: NetworkStatusSummary, now: Instant) {
        let first = self.status.as_ref().map_or(seq, |(first, _)| *first);
        self.status = Some((first, status));
        self.pending_since.get_or_insert(now);
    }

    /// Queues the warning of event `seq` after the pending ones.
    pub(crate) fn push_warning(
        &mut self,
        seq: u64,
        warning: MeshWarning,
        now: Instant,
    ) -> Result<(), Overflow> {
        if self.len() >= self.capacity {
            return Err(Overflow);
        }
        self.warnings.push((seq, warning));
        self.pending_since.get_or_insert(now);
        Ok(())
    }

    /// Takes everything pending; until [`FeedQueue::delivered`], the batch counts as not yet
    /// received for [`FeedQueue::lag`].
    pub(crate) fn take_batch(&mut self) -> Batch {
        let pending = &mut self.pending;
        let prices = self.order.drain(..).filter_map(|asset| pending.remove(&asset)).collect();
        let batch = Batch {
            prices,
            status: self.status.take(),
            warnings: std::mem::take(&mut self.warnings),
            through: self.observed,
        };
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
    use mesh_types::{CachedPriceData, DataFreshness, NodeId, PublicKey};

    use super::*;

    fn price(symbol: &str, cents: i64, second: u32) -> ServedPrice {
        ServedPrice::single(CachedPriceData {
            asset: Asset::new(symbol).unwrap(),
            price: Decimal::new(cents, 2),
            timestamp: Utc.with_ymd_and_hms(2024, 1, 1, 12, 0, second).unwrap(),
            source_node_id: NodeId::from_public_key(&PublicKey::from_bytes([7; 32])),
            blockchain: "Solana".into(),
            change_24h: None,
        })
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
        batch.prices.iter().map(|(_, price)| price.price.asset.as_str()).collect()
    }

    /// Takes event `seq` in and queues `price` from it.
    fn event(queue: &mut FeedQueue, seq: u64, price: ServedPrice) -> Result<(), Overflow> {
        assert!(queue.begin(seq), "event {seq} is new");
        queue.push_price(seq, price, Instant::now())
    }

    #[test]
    fn the_newest_price_of_an_asset_wins_and_keeps_its_place() {
        let mut queue = FeedQueue::new(8, 0);
        event(&mut queue, 1, price("SOL", 100, 1)).unwrap();
        event(&mut queue, 2, price("ETH", 200, 1)).unwrap();
        event(&mut queue, 3, price("SOL", 101, 2)).unwrap();
        event(&mut queue, 4, price("BTC", 300, 1)).unwrap();
        assert_eq!(queue.len(), 3, "SOL is pending once");
        let batch = queue.take_batch();
        assert_eq!(symbols(&batch), ["SOL", "ETH", "BTC"], "first-pending order is kept");
        assert_eq!(batch.prices[0], (1, price("SOL", 101, 2)), "the newer SOL replaced the older");
        assert_eq!(batch.through, 4);
        assert!(queue.take_batch().is_empty());
    }

    #[test]
    fn an_event_already_taken_in_is_ignored() {
        let mut queue = FeedQueue::new(8, 10);
        assert!(!queue.begin(10), "in the client's snapshot");
        assert!(queue.begin(11));
        assert!(!queue.begin(11), "a replayed event seen live again");
        assert_eq!(queue.observed(), 11);
    }

    #[test]
    fn each_frame_of_a_batch_claims_only_what_it_and_the_frames_before_it_carry() {
        let mut queue = FeedQueue::new(8, 0);
        let now = Instant::now();
        queue.begin(1);
        queue.push_warning(1, MeshWarning::no_providers(), now).unwrap();
        queue.begin(2);
        queue.push_status(2, status(1), now);
        event(&mut queue, 3, price("SOL", 1, 1)).unwrap();
        queue.begin(4);
        queue.push_status(4, status(2), now);
        queue.begin(5); // not for this client
        let frames = queue.take_batch().into_frames();
        let seqs: Vec<u64> = frames.iter().map(|frame| frame.seq).collect();
        // Prices (change 3) go first but the warning (1) and status (2) come after them: the
        // prices frame can only claim up to 0, the status up to 0, the warning the whole batch.
        assert_eq!(seqs, [0, 0, 5]);
        assert!(matches!(&frames[0].message, FeedMessage::PriceMeshUpdate(prices) if prices.len() == 1));
        assert_eq!(frames[1].message, FeedMessage::NetworkStatusUpdate(status(2)));
        assert_eq!(frames[2].message, FeedMessage::MeshWarning(MeshWarning::no_providers()));

        event(&mut queue, 6, price("ETH", 1, 1)).unwrap();
        queue.begin(7);
        queue.push_status(7, status(3), now);
        let seqs: Vec<u64> = queue.take_batch().into_frames().iter().map(|frame| frame.seq).collect();
        assert_eq!(seqs, [6, 7], "in order, each frame claims up to the next one's first change");
    }

    #[test]
    fn overflow_is_detected_for_new_assets_and_warnings_but_not_replacements() {
        let mut queue = FeedQueue::new(2, 0);
        let now = Instant::now();
        event(&mut queue, 1, price("SOL", 1, 1)).unwrap();
        event(&mut queue, 2, price("ETH", 1, 1)).unwrap();
        assert_eq!(event(&mut queue, 3, price("SOL", 2, 2)), Ok(()), "a replacement needs no room");
        queue.push_status(4, status(1), now);
        assert_eq!(event(&mut queue, 5, price("BTC", 1, 1)), Err(Overflow));
        assert_eq!(queue.push_warning(6, MeshWarning::no_providers(), now), Err(Overflow));
        queue.take_batch();
        assert_eq!(queue.push_warning(7, MeshWarning::no_providers(), now), Ok(()));
        assert_eq!(event(&mut queue, 8, price("BTC", 1, 1)), Ok(()));
        assert_eq!(event(&mut queue, 9, price("DOGE", 1, 1)), Err(Overflow));
    }

    #[test]
    fn lag_counts_from_the_oldest_item_not_yet_written() {
        let mut queue = FeedQueue::new(8, 0);
        let start = Instant::now();
        assert_eq!(queue.lag(start + Duration::from_secs(60)), Duration::ZERO, "nothing pending");
        queue.push_price(1, price("SOL", 1, 1), start).unwrap();
        queue.push_price(2, price("ETH", 1, 1), start + Duration::from_secs(1)).unwrap();
        assert_eq!(queue.lag(start + Duration::from_secs(3)), Duration::from_secs(3));
        let _batch = queue.take_batch();
        assert_eq!(
            queue.lag(start + Duration::from_secs(4)),
            Duration::from_secs(4),
            "in flight still counts"
        );
        queue.push_price(3, price("BTC", 1, 1), start + Duration::from_secs(5)).unwrap();
        assert_eq!(queue.lag(start + Duration::from_secs(6)), Duration::from_secs(6));
        queue.delivered();
        assert_eq!(queue.lag(start + Duration::from_secs(6)), Duration::from_secs(1), "BTC is still pending");
        queue.take_batch();
        queue.delivered();
        assert_eq!(queue.lag(start + Duration::from_secs(60)), Duration::ZERO);
    }
}
