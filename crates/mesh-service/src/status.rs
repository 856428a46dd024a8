//! [`NetworkStatusTracker`]: how healthy this node's view of the mesh is — which providers are
//! live, how far away, how big the network is, how fresh the prices are — the prices it serves
//! (the quorum aggregate of its providers' quotes, see [`crate::quorum`]), and the warnings of
//! the API serves (`NO_PROVIDERS`, `STALE_DATA`, `PRICE_DISCREPANCY`).
//!
//! It is a plain data structure fed by the service and asked for a [`NetworkStatus`] and for
//! warnings; it does no I/O and reads no clock (every method takes `now`).
//!
//! Everything it keeps is bounded, since peers decide what flows into it: at most
//! [`MAX_TRACKED_NODES`] nodes and as many providers, and the quote book's bounds. Each status
//! check forgets what has gone offline or stale, and a full map drops the entry heard from
//! longest ago.

use std::collections::HashMap;
use std::time::Duration;

use mesh_types::chrono;
use mesh_types::rust_decimal::prelude::ToPrimitive;
use mesh_types::{
    Asset, CachedPriceData, DataFreshness, MeshWarning, NetworkStatus, NodeId, ProviderInfo, ServedPrice,
    ServedPriceMap, Timestamp, WarningCode,
};

use crate::quorum::{QuoteBook, aggregate};

/// Thresholds of the status and its warnings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StatusConfig {
    /// With no provider heard of for this long, `NO_PROVIDERS` is raised
    /// (`MESH_OFFLINE_INDICATOR_THRESHOLD_SECS`, default 600 s).
    pub offline_threshold: Duration,
    /// A node or provider unheard of for this long leaves the network size and the providers
    /// list (default 180 s, three default announcement intervals, since every live node
    /// announces itself once an interval; `NodeSettings` sets it from
    /// `MESH_ANNOUNCE_INTERVAL_SECS` with [`crate::ServiceConfig::liveness_for`]).
    pub liveness: Duration,
    /// Prices older than this are stale (`MESH_STALENESS_THRESHOLD_SECS`, default 3,600 s).
    pub staleness_threshold: Duration,
    /// Providers disagreeing by more than this percentage raise a warning
    /// (`MESH_PRICE_DISCREPANCY_THRESHOLD_PERCENT`, default 5.0).
    pub discrepancy_percent: f64,
    /// How many distinct providers' fresh (not stale) quotes an asset needs to be served
    /// (`MESH_PROVIDER_QUORUM`, default 1; 0 reads as 1).
    pub quorum: u32,
    /// A provider whose clock is further than this from this node's raises `CLOCK_SKEW`
    /// (`MESH_CLOCK_SKEW_THRESHOLD_MS`, default 1,000 ms).
    pub clock_skew_threshold: Duration,
}

impl Default for StatusConfig {
    fn default() -> Self {
        Self {
            offline_threshold: Duration::from_secs(600),
            liveness: Duration::from_secs(180),
            staleness_threshold: DataFreshness::DEFAULT_STALENESS_THRESHOLD,
            discrepancy_percent: 5.0,
            quorum: 1,
            clock_skew_threshold: Duration::from_secs(1),
        }
    }
}

/// One provider as last heard.
#[derive(Debug, Clone, Copy)]
struct Provider {
    /// Its last signed sign of life as a provider: an update, or an announcement saying it is
    /// one.
    last_seen: Timestamp,
    /// When its newest update arrived.
    last_fetch: Option<Timestamp>,
    /// The fewest hops seen recently (reset when older than the liveness window, so a
    /// topology change is reflected).
    hop_count: u32,
    hop_count_seen: Timestamp,
    /// The clock offset its announcements claim, in milliseconds.
    announced_offset_ms: Option<i64>,
}

/// This node's view of the mesh.
#[derive(Debug)]
pub struct NetworkStatusTracker {
    config: StatusConfig,
    me: NodeId,
    providers: HashMap<NodeId, Provider>,
    nodes: HashMap<NodeId, Timestamp>,
    connected_peers: u32,
    /// Whether this node is in provider mode (listed in its own status, fetching or not).
    self_provider: bool,
    /// The clock offsets of the connected peers, measured from heartbeats (in milliseconds).
    peer_offsets: HashMap<NodeId, i64>,
    /// `CLOCK_SKEW` raised per provider.
    raised_skews: HashMap<NodeId, bool>,
    last_update_time: Option<Timestamp>,
    newest_price: Option<Timestamp>,
    /// The latest quote per asset and provider: what is served, and what discrepancies are
    /// judged on.
    quotes: QuoteBook,
    /// The aggregate last reported as changed per asset (while at quorum), so a new quote
    /// that leaves it unchanged is not reported again.
    served: HashMap<Asset, ServedPrice>,
    /// Warnings currently raised, so each is sent when it starts, not on every check.
    raised_no_providers: bool,
    raised_stale: bool,
    raised_discrepancies: HashMap<Asset, bool>,
}

/// Most nodes (and, separately, providers) counted: beyond any real network's size, far below
/// what a stream of made-up announcements would fill.
pub const MAX_TRACKED_NODES: usize = 10_000;

fn within(at: Timestamp, now: Timestamp, limit: Duration) -> bool {
    now.signed_duration_since(at).to_std().unwrap_or(Duration::ZERO) <= limit
}

/// Makes room for `key` in `map` (at most `cap` entries) by dropping the entry whose
/// `age_of` is oldest, unless `key` is already there.
fn make_room<K: Eq + std::hash::Hash + Copy, V>(
    map: &mut HashMap<K, V>,
    key: &K,
    cap: usize,
    age_of: impl Fn(&V) -> Timestamp,
) {
    if map.len() < cap || map.contains_key(key) {
        return;
    }
    if let Some(oldest) = map.iter().min_by_key(|(_, value)| age_of(value)).map(|(key, _)| *key) {
        map.remove(&oldest);
    }
}

/// A spread as the percentage a `PRICE_DISCREPANCY` reports, at most a billion percent
/// (beyond that the figure says nothing more, and a bounded one renders the same everywhere).
fn spread_percent(served: &ServedPrice) -> f64 {
    let percent = served.spread.to_f64().unwrap_or(0.0) * 100.0;
    if percent.is_finite() { percent.clamp(0.0, MAX_REPORTED_PERCENT) } else { MAX_REPORTED_PERCENT }
}

const MAX_REPORTED_PERCENT: f64 = 1e9;

/// The largest clock offset taken into account, either way: a day, in milliseconds.
const MAX_CLOCK_OFFSET_MS: i64 = 86_400_000;

/// What an accepted update changed.
#[derive(Debug, Default, PartialEq)]
pub struct Recorded {
    /// The served prices it changed (assets at quorum whose aggregate moved).
    pub prices: Vec<ServedPrice>,
    /// The discrepancy warnings it started.
    pub warnings: Vec<MeshWarning>,
}

impl NetworkStatusTracker {
    /// A tracker for the node `me`.
    pub fn new(me: NodeId, config: StatusConfig) -> Self {
        Self {
            config,
            me,
            providers: HashMap::new(),
            nodes: HashMap::new(),
            connected_peers: 0,
            self_provider: false,
            peer_offsets: HashMap::new(),
            raised_skews: HashMap::new(),
            last_update_time: None,
            newest_price: None,
            quotes: QuoteBook::new(),
            served: HashMap::new(),
            raised_no_providers: false,
            raised_stale: false,
            raised_discrepancies: HashMap::new(),
        }
    }

    /// How many peers are connected right now.
    pub fn set_connected_peers(&mut self, peers: u32) {
        self.connected_peers = peers;
    }

    /// Whether this node is in provider mode.
    pub fn set_provider(&mut self, is_provider: bool) {
        self.self_provider = is_provider;
    }

    /// A node announced itself (or connected) at `now`.
    pub fn node_seen(&mut self, node: NodeId, now: Timestamp) {
        make_room(&mut self.nodes, &node, MAX_TRACKED_NODES, |seen| *seen);
        self.nodes.insert(node, now);
    }

    /// The clock offsets of the connected peers, measured from heartbeats, in milliseconds.
    pub fn set_peer_offsets(&mut self, offsets: impl IntoIterator<Item = (NodeId, i64)>) {
        self.peer_offsets = offsets.into_iter().collect();
    }

    /// How far `node`'s clock is ahead of this node's, in milliseconds: measured when it is a
    /// peer, else as its announcements claim.
    pub fn clock_offset_ms(&self, node: &NodeId) -> Option<i64> {
        self.peer_offsets
            .get(node)
            .copied()
            .or_else(|| self.providers.get(node).and_then(|provider| provider.announced_offset_ms))
    }

    /// A signed announcement of `node` arrived at `now` after `hop_count` hops: it is alive,
    /// a provider or not, with its clock `clock_offset_ms` ahead of its peers'.
    pub fn announced(
        &mut self,
        node: NodeId,
        is_provider: bool,
        hop_count: u8,
        clock_offset_ms: i64,
        now: Timestamp,
    ) {
        self.node_seen(node, now);
        if is_provider {
            // A peer's claim: kept within a day, beyond which no clock is merely off, and
            // within what time arithmetic takes.
            let claim = clock_offset_ms.clamp(-MAX_CLOCK_OFFSET_MS, MAX_CLOCK_OFFSET_MS);
            self.provider_alive(node, hop_count, now).announced_offset_ms = Some(claim);
        } else {
            self.providers.remove(&node);
        }
    }

    /// Records a sign of life of provider `source`, `hop_count` hops away.
    fn provider_alive(&mut self, source: NodeId, hop_count: u8, now: Timestamp) -> &mut Provider {
        let liveness = self.config.liveness;
        let hops = u32::from(hop_count);
        make_room(&mut self.providers, &source, MAX_TRACKED_NODES, |provider| provider.last_seen);
        let provider = self.providers.entry(source).or_insert(Provider {
            last_seen: now,
            last_fetch: None,
            hop_count: hops,
            hop_count_seen: now,
            announced_offset_ms: None,
        });
        provider.last_seen = now;
        if hops <= provider.hop_count || !within(provider.hop_count_seen, now, liveness) {
            provider.hop_count = hops;
            provider.hop_count_seen = now;
        }
        provider
    }

    /// An update from provider `source` arrived at `now` after `hop_count` hops, carrying
    /// `quotes` (each price of the update). Returns the served prices it changed and the
    /// discrepancy warnings it started.
    pub fn update_received(
        &mut self,
        source: NodeId,
        hop_count: u8,
        quotes: &[CachedPriceData],
        now: Timestamp,
    ) -> Recorded {
        self.provider_alive(source, hop_count, now).last_fetch = Some(now);
        self.node_seen(source, now);
        self.last_update_time = Some(now);
        let mut recorded = Recorded::default();
        // A provider whose clock runs ahead stamps its prices in the future: its prices' age
        // is judged on when they were made by this node's clock.
        let offset = self.clock_offset_ms(&source).map_or_else(chrono::Duration::zero, |offset| {
            chrono::Duration::milliseconds(offset.clamp(-MAX_CLOCK_OFFSET_MS, MAX_CLOCK_OFFSET_MS))
        });
        for quote in quotes {
            let made = quote.timestamp.checked_sub_signed(offset).unwrap_or(quote.timestamp);
            self.newest_price = Some(self.newest_price.map_or(made, |newest| newest.max(made)));
            self.quotes.record(quote);
        }
        for quote in quotes {
            let Some(served) = self.aggregate(&quote.asset, now, false) else { continue };
            recorded.warnings.extend(self.check_discrepancy(&served));
            if served.below_quorum {
                self.served.remove(&quote.asset);
            } else if self.served.get(&quote.asset) != Some(&served) {
                self.served.insert(quote.asset, served.clone());
                recorded.prices.push(served);
            }
        }
        recorded
    }

    /// Prices this node held before it heard anything (from a durable store), each taken as
    /// its source's quote.
    pub fn restore(&mut self, held: impl IntoIterator<Item = CachedPriceData>) {
        for price in held {
            self.newest_price =
                Some(self.newest_price.map_or(price.timestamp, |newest| newest.max(price.timestamp)));
            self.quotes.record(&price);
        }
    }

    /// The aggregate of `asset`'s fresh quotes at `now`, flagged when below quorum; `None`
    /// when no quote is fresh.
    fn aggregate(&self, asset: &Asset, now: Timestamp, with_quotes: bool) -> Option<ServedPrice> {
        let fresh = self.quotes.fresh(asset, now, self.config.staleness_threshold);
        let mut served = aggregate(fresh, with_quotes)?;
        served.below_quorum = served.providers < self.config.quorum.max(1);
        Some(served)
    }

    /// The price served for `asset` at `now`, with its quotes when `with_quotes`. A price below
    /// quorum is returned flagged, for the caller to withhold or show.
    pub fn served(&self, asset: &Asset, now: Timestamp, with_quotes: bool) -> Option<ServedPrice> {
        self.aggregate(asset, now, with_quotes)
    }

    /// Every price served at `now`: the assets at quorum.
    pub fn served_prices(&self, now: Timestamp) -> ServedPriceMap {
        self.quotes
            .assets()
            .filter_map(|asset| self.aggregate(&asset, now, false))
            .filter(|served| !served.below_quorum)
            .map(|served| (served.asset(), served))
            .collect()
    }

    /// Forgets nodes and providers gone offline and quotes gone stale.
    fn forget_the_past(&mut self, now: Timestamp) {
        let (offline, staleness) = (self.config.offline_threshold, self.config.staleness_threshold);
        let liveness = self.config.liveness;
        self.nodes.retain(|_, seen| within(*seen, now, liveness));
        self.providers.retain(|_, provider| within(provider.last_seen, now, offline));
        self.quotes.forget_stale(now, staleness);
        let quoted: std::collections::HashSet<Asset> = self.quotes.assets().collect();
        self.raised_discrepancies.retain(|asset, _| quoted.contains(asset));
        self.served.retain(|asset, _| quoted.contains(asset));
    }

    /// `CLOCK_SKEW` for each live provider whose clock is off by more than the threshold,
    /// once when it starts.
    fn check_clock_skews(&mut self, now: Timestamp) -> Vec<MeshWarning> {
        let liveness = self.config.liveness;
        let threshold = self.config.clock_skew_threshold.as_millis();
        let live: Vec<NodeId> = self
            .providers
            .iter()
            .filter(|(node, provider)| **node != self.me && within(provider.last_seen, now, liveness))
            .map(|(node, _)| *node)
            .collect();
        self.raised_skews.retain(|node, _| live.contains(node));
        let mut warnings = Vec::new();
        for node in live {
            let Some(offset) = self.clock_offset_ms(&node) else { continue };
            let skewed = u128::from(offset.unsigned_abs()) > threshold;
            let was = self.raised_skews.insert(node, skewed).unwrap_or(false);
            if skewed && !was {
                tracing::warn!(%node, offset_ms = offset, "a provider's clock is off");
                warnings.push(MeshWarning::clock_skew(node, offset));
            }
        }
        warnings
    }

    /// The disagreement between the fresh quotes that made `served`, as a warning when it
    /// starts.
    fn check_discrepancy(&mut self, served: &ServedPrice) -> Option<MeshWarning> {
        let asset = served.asset();
        let percent = spread_percent(served);
        let diverging = served.providers >= 2 && percent > self.config.discrepancy_percent;
        let was = self.raised_discrepancies.insert(asset, diverging).unwrap_or(false);
        (diverging && !was).then(|| {
            tracing::warn!(%asset, percent, "price discrepancy between providers");
            MeshWarning::price_discrepancy(asset, (percent * 10.0).round() / 10.0)
        })
    }

    /// The network as seen at `now`.
    pub fn status(&self, now: Timestamp) -> NetworkStatus {
        let liveness = self.config.liveness;
        let mut active_providers: Vec<ProviderInfo> = self
            .providers
            .iter()
            .filter(|(node, provider)| **node != self.me && within(provider.last_seen, now, liveness))
            .map(|(node, provider)| ProviderInfo {
                node_id: *node,
                last_seen: provider.last_seen,
                hop_count: provider.hop_count,
                last_fetch_time: provider.last_fetch,
                clock_offset_ms: self.clock_offset_ms(node),
            })
            .collect();
        let own = self.providers.get(&self.me);
        if self.self_provider || own.is_some_and(|own| within(own.last_seen, now, liveness)) {
            active_providers.push(ProviderInfo {
                node_id: self.me,
                last_seen: now,
                hop_count: 0,
                last_fetch_time: own.and_then(|own| own.last_fetch),
                clock_offset_ms: None,
            });
        }
        active_providers.sort_by_key(|provider| (provider.hop_count, provider.node_id));
        let others = self
            .nodes
            .iter()
            .filter(|(node, seen)| **node != self.me && within(**seen, now, liveness))
            .count();
        NetworkStatus {
            active_providers,
            connected_peers: self.connected_peers,
            total_network_size: u32::try_from(others.saturating_add(1)).unwrap_or(u32::MAX),
            last_update_time: self.last_update_time,
            data_freshness: self.freshness(now),
        }
    }

    /// The timestamp of the newest price received.
    pub const fn newest_price(&self) -> Option<Timestamp> {
        self.newest_price
    }

    /// How fresh the newest price is (stale before the first).
    pub fn freshness(&self, now: Timestamp) -> DataFreshness {
        self.newest_price.map_or(DataFreshness::Stale, |newest| {
            DataFreshness::of(newest, now, self.config.staleness_threshold)
        })
    }

    /// How many warnings of each code hold right now (as the last check left them): one for
    /// `NO_PROVIDERS` and `STALE_DATA` while they hold, one per diverging asset and per skewed
    /// provider. Every code is listed, with 0 when it is clear.
    pub fn active_warnings(&self) -> [(WarningCode, usize); 4] {
        [
            (WarningCode::NoProviders, usize::from(self.raised_no_providers)),
            (WarningCode::StaleData, usize::from(self.raised_stale)),
            (WarningCode::PriceDiscrepancy, self.raised_discrepancies.values().filter(|flag| **flag).count()),
            (WarningCode::ClockSkew, self.raised_skews.values().filter(|flag| **flag).count()),
        ]
    }

    /// `NO_PROVIDERS` and `STALE_DATA`, each returned once when its condition starts (and again
    /// after it cleared and started anew).
    pub fn check_warnings(&mut self, now: Timestamp) -> Vec<MeshWarning> {
        self.forget_the_past(now);
        let mut warnings = Vec::new();
        // Its own threshold, longer than the list's: a provider that missed a few rounds is
        // not yet a reason to warn every user.
        let offline = self.config.offline_threshold;
        let no_providers = !self.self_provider
            && !self.providers.values().any(|provider| within(provider.last_seen, now, offline));
        if no_providers && !self.raised_no_providers {
            warnings.push(MeshWarning::no_providers());
        }
        self.raised_no_providers = no_providers;
        let stale = self.newest_price.is_some() && self.freshness(now).is_stale();
        if stale && !self.raised_stale {
            let age = self
                .newest_price
                .and_then(|newest| now.signed_duration_since(newest).to_std().ok())
                .unwrap_or_default();
            warnings.push(MeshWarning::stale_data(age, self.config.staleness_threshold));
        }
        self.raised_stale = stale;
        warnings.extend(self.check_clock_skews(now));
        warnings
    }
}

#[cfg(test)]
mod tests {
    use mesh_types::rust_decimal::Decimal;
    use mesh_types::{NodeIdentity, PublicKey, WarningCode, WarningKind};

    use super::*;

    fn node(n: u8) -> NodeId {
        NodeId::from_public_key(&PublicKey::from_bytes([n; 32]))
    }

    fn price(asset: &str, value: i64, at: Timestamp, source: NodeId) -> CachedPriceData {
        CachedPriceData {
            asset: Asset::new(asset).unwrap(),
            price: Decimal::from(value),
            timestamp: at,
            source_node_id: source,
            blockchain: "Solana".into(),
            change_24h: None,
        }
    }

    fn t(seconds: i64) -> Timestamp {
        Timestamp::from_timestamp(1_704_067_200 + seconds, 0).unwrap()
    }

    #[test]
    fn providers_are_listed_while_alive_with_their_fewest_hops() {
        let me = NodeIdentity::generate().node_id();
        let mut tracker = NetworkStatusTracker::new(me, StatusConfig::default());
        tracker.update_received(node(1), 3, &[price("SOL", 100, t(0), node(1))], t(0));
        tracker.update_received(node(1), 1, &[], t(10));
        tracker.update_received(node(1), 4, &[], t(20));
        tracker.update_received(node(2), 2, &[], t(30));
        let status = tracker.status(t(30));
        assert_eq!(status.active_providers.len(), 2);
        assert_eq!(status.active_providers[0].node_id, node(1));
        assert_eq!(status.active_providers[0].hop_count, 1, "the fewest hops seen");
        assert_eq!(status.active_providers[0].last_fetch_time, Some(t(20)));
        assert_eq!(status.total_network_size, 3, "two providers and this node");
        assert_eq!(status.last_update_time, Some(t(30)));
        assert_eq!(status.data_freshness, DataFreshness::JustNow);
        let later = tracker.status(t(20 + 181));
        assert_eq!(
            later.active_providers.len(),
            1,
            "provider 1 fell silent for three announcement intervals"
        );
        assert_eq!(later.total_network_size, 2, "and left the network size");
        assert_eq!(later.data_freshness, DataFreshness::MinutesAgo(3));
    }

    #[test]
    fn a_provider_on_standby_is_listed_from_its_announcements_and_leaves_when_they_stop() {
        let me = node(9);
        let mut tracker = NetworkStatusTracker::new(me, StatusConfig::default());
        tracker.announced(node(1), true, 2, 0, t(0));
        tracker.announced(node(2), false, 1, 0, t(0));
        let status = tracker.status(t(1));
        assert_eq!(status.active_providers.len(), 1, "only the one in provider mode");
        assert_eq!(
            (status.active_providers[0].hop_count, status.active_providers[0].last_fetch_time),
            (2, None)
        );
        assert_eq!(status.total_network_size, 3);
        tracker.announced(node(1), true, 2, 0, t(60));
        assert_eq!(tracker.status(t(200)).active_providers.len(), 1, "announced again at 60 s");
        assert!(tracker.status(t(241)).active_providers.is_empty(), "silent for three intervals");
        tracker.announced(node(3), true, 1, 0, t(250));
        tracker.announced(node(3), false, 1, 0, t(260));
        assert!(tracker.status(t(261)).active_providers.is_empty(), "it left provider mode");
        // This node itself, in provider mode, is listed at no distance, fetching or not.
        tracker.set_provider(true);
        let own = tracker.status(t(262));
        assert_eq!(
            own.active_providers.iter().map(|p| (p.node_id, p.hop_count)).collect::<Vec<_>>(),
            [(me, 0)]
        );
        assert!(tracker.check_warnings(t(262)).is_empty(), "a provider node is not without providers");
    }

    #[test]
    fn no_providers_and_stale_data_are_raised_once_when_they_start() {
        let mut tracker = NetworkStatusTracker::new(node(9), StatusConfig::default());
        let first = tracker.check_warnings(t(0));
        assert_eq!(first.iter().map(MeshWarning::code).collect::<Vec<_>>(), [WarningCode::NoProviders]);
        assert!(tracker.check_warnings(t(1)).is_empty(), "not repeated while it lasts");
        tracker.update_received(node(1), 1, &[price("SOL", 100, t(2), node(1))], t(2));
        assert!(tracker.check_warnings(t(3)).is_empty(), "a provider is live");
        let later = tracker.check_warnings(t(2 + 3700));
        let codes: Vec<WarningCode> = later.iter().map(MeshWarning::code).collect();
        assert!(
            codes.contains(&WarningCode::NoProviders) && codes.contains(&WarningCode::StaleData),
            "{codes:?}"
        );
    }

    #[test]
    fn fresh_disagreeing_providers_raise_a_discrepancy_once() {
        let mut tracker = NetworkStatusTracker::new(node(9), StatusConfig::default());
        let warned = |recorded: Recorded| recorded.warnings;
        assert!(
            warned(tracker.update_received(node(1), 1, &[price("SOL", 100, t(0), node(1))], t(0))).is_empty()
        );
        assert!(
            warned(tracker.update_received(node(2), 1, &[price("SOL", 103, t(1), node(2))], t(1))).is_empty(),
            "3 % is fine"
        );
        let warnings = warned(tracker.update_received(node(2), 1, &[price("SOL", 110, t(2), node(2))], t(2)));
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].message, "Price discrepancy detected for SOL");
        assert!(
            warned(tracker.update_received(node(2), 1, &[price("SOL", 111, t(3), node(2))], t(3))).is_empty(),
            "raised once"
        );
        // An old quote does not count once it is stale.
        assert!(
            warned(tracker.update_received(node(2), 1, &[price("SOL", 200, t(4000), node(2))], t(4000)))
                .is_empty()
        );
    }

    #[test]
    fn what_peers_can_fill_is_bounded_and_the_past_is_forgotten() {
        let mut tracker = NetworkStatusTracker::new(node(0), StatusConfig::default());
        let made_up = |n: usize| {
            let mut key = [0u8; 32];
            key[..8].copy_from_slice(&(n as u64).to_be_bytes());
            NodeId::from_public_key(&PublicKey::from_bytes(key))
        };
        for n in 0..MAX_TRACKED_NODES + 50 {
            tracker.node_seen(made_up(n), t(0));
        }
        assert_eq!(tracker.nodes.len(), MAX_TRACKED_NODES);
        for n in 0..50 {
            tracker.update_received(node(1), 1, &[price(&format!("A{n}"), 1, t(2), node(1))], t(2));
        }
        assert_eq!(tracker.served.len(), 50);
        tracker.check_warnings(t(2 + 3601));
        assert!(tracker.nodes.is_empty() && tracker.providers.is_empty() && tracker.quotes.is_empty());
        assert!(tracker.served.is_empty() && tracker.raised_discrepancies.is_empty());
    }

    #[test]
    fn an_absurd_clock_offset_claim_neither_panics_nor_moves_a_price_a_day_or_more() {
        let mut tracker = NetworkStatusTracker::new(node(9), StatusConfig::default());
        for claim in [i64::MIN, i64::MAX] {
            tracker.announced(node(1), true, 1, claim, t(0));
            tracker.update_received(node(1), 1, &[price("SOL", 150, t(0), node(1))], t(0));
            let offset = tracker.clock_offset_ms(&node(1)).unwrap();
            assert!(offset.unsigned_abs() <= 86_400_000, "{offset}");
            assert!(!tracker.check_warnings(t(1)).is_empty() || tracker.raised_skews[&node(1)]);
        }
    }

    #[test]
    fn a_tiny_price_beside_a_normal_one_raises_a_warning_instead_of_panicking() {
        let mut tracker = NetworkStatusTracker::new(node(9), StatusConfig::default());
        tracker.update_received(node(1), 1, &[price("SOL", 150, t(0), node(1))], t(0));
        let tiny = CachedPriceData { price: Decimal::new(1, 28), ..price("SOL", 1, t(1), node(2)) };
        let warnings = tracker.update_received(node(2), 1, &[tiny], t(1)).warnings;
        assert_eq!(warnings.len(), 1, "the providers disagree wildly");
        let WarningKind::PriceDiscrepancy { discrepancy_percent, .. } = warnings[0].kind else {
            panic!("expected a discrepancy, got {:?}", warnings[0]);
        };
        assert!(discrepancy_percent.is_finite() && discrepancy_percent > 1e6, "{discrepancy_percent}");
    }

    #[test]
    fn below_quorum_an_asset_is_withheld_and_at_quorum_the_median_is_served() {
        let config = StatusConfig { quorum: 2, ..StatusConfig::default() };
        let mut tracker = NetworkStatusTracker::new(node(9), config);
        let sol = Asset::new("SOL").unwrap();
        let first = tracker.update_received(node(1), 1, &[price("SOL", 150, t(0), node(1))], t(0));
        assert!(first.prices.is_empty(), "one quote of two is not reported");
        assert!(tracker.served_prices(t(0)).is_empty());
        let below = tracker.served(&sol, t(0), true).unwrap();
        assert!(below.below_quorum && below.providers == 1);
        let second = tracker.update_received(node(2), 1, &[price("SOL", 1500, t(1), node(2))], t(1));
        assert_eq!(second.prices.len(), 1);
        assert_eq!(second.prices[0].price.price, Decimal::from(825), "the median of two");
        tracker.update_received(node(3), 1, &[price("SOL", 151, t(2), node(3))], t(2));
        let served = tracker.served_prices(t(2));
        assert_eq!(served[&sol].price.price, Decimal::from(151), "the rogue provider is outvoted");
        assert_eq!(served[&sol].providers, 3);
        // Quotes go stale one by one; below quorum the asset is withheld again.
        let late = t(3602);
        assert!(tracker.served_prices(late).is_empty(), "only one quote is still fresh");
        assert!(tracker.served(&sol, late, false).is_some_and(|served| served.below_quorum));
    }

    #[test]
    fn the_same_aggregate_is_not_reported_twice() {
        let mut tracker = NetworkStatusTracker::new(node(9), StatusConfig::default());
        let quote = price("SOL", 150, t(0), node(1));
        assert_eq!(tracker.update_received(node(1), 1, std::slice::from_ref(&quote), t(0)).prices.len(), 1);
        assert!(tracker.update_received(node(1), 2, &[quote], t(1)).prices.is_empty(), "a second copy");
    }

    #[test]
    fn restored_prices_are_served_before_anything_is_heard() {
        let mut tracker = NetworkStatusTracker::new(node(9), StatusConfig::default());
        tracker.restore([price("SOL", 150, t(0), node(1))]);
        assert_eq!(tracker.served_prices(t(10)).len(), 1);
        assert_eq!(tracker.newest_price(), Some(t(0)));
    }
}
