//! [`NetworkStatusTracker`]: how healthy this node's view of the mesh is — which providers are
//! live, how far away, how big the network is, how fresh the prices are — and the warnings of
//! the API reference (`NO_PROVIDERS`, `STALE_DATA`, `PRICE_DISCREPANCY`).
//!
//! It is a plain data structure fed by the service and asked for a [`NetworkStatus`] and for
//! warnings; it does no I/O and reads no clock (every method takes `now`).
//!
//! Everything it keeps is bounded, since peers decide what flows into it: at most
//! [`MAX_TRACKED_NODES`] nodes and as many providers, quotes for at most [`MAX_QUOTED_ASSETS`]
//! assets from at most [`MAX_SOURCES_PER_ASSET`] providers each. Each status check forgets
//! what has gone offline or stale, and a full map drops the entry heard from longest ago.

use std::collections::HashMap;
use std::time::Duration;

use mesh_types::rust_decimal::Decimal;
use mesh_types::rust_decimal::prelude::ToPrimitive;
use mesh_types::{
    Asset, CachedPriceData, DataFreshness, MeshWarning, NetworkStatus, NodeId, ProviderInfo, Timestamp,
};

/// Thresholds of the status and its warnings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StatusConfig {
    /// A provider unheard of for this long is offline; so is a node for the network size
    /// (`MESH_OFFLINE_INDICATOR_THRESHOLD_SECS`, default 600 s).
    pub offline_threshold: Duration,
    /// Prices older than this are stale (`MESH_STALENESS_THRESHOLD_SECS`, default 3,600 s).
    pub staleness_threshold: Duration,
    /// Providers disagreeing by more than this percentage raise a warning
    /// (`MESH_PRICE_DISCREPANCY_THRESHOLD_PERCENT`, default 5.0).
    pub discrepancy_percent: f64,
}

impl Default for StatusConfig {
    fn default() -> Self {
        Self {
            offline_threshold: Duration::from_secs(600),
            staleness_threshold: DataFreshness::DEFAULT_STALENESS_THRESHOLD,
            discrepancy_percent: 5.0,
        }
    }
}

/// One provider as last heard.
#[derive(Debug, Clone, Copy)]
struct Provider {
    last_seen: Timestamp,
    /// The fewest hops seen recently (reset when older than the offline threshold, so a
    /// topology change is reflected).
    hop_count: u32,
    hop_count_seen: Timestamp,
}

/// This node's view of the mesh.
#[derive(Debug)]
pub struct NetworkStatusTracker {
    config: StatusConfig,
    me: NodeId,
    providers: HashMap<NodeId, Provider>,
    nodes: HashMap<NodeId, Timestamp>,
    connected_peers: u32,
    last_update_time: Option<Timestamp>,
    newest_price: Option<Timestamp>,
    /// The latest price per asset and provider, for discrepancy checks.
    quotes: HashMap<Asset, HashMap<NodeId, (Decimal, Timestamp)>>,
    /// Warnings currently raised, so each is sent when it starts, not on every check.
    raised_no_providers: bool,
    raised_stale: bool,
    raised_discrepancies: HashMap<Asset, bool>,
}

/// Most nodes (and, separately, providers) counted: beyond any real network's size, far below
/// what a stream of made-up announcements would fill.
pub const MAX_TRACKED_NODES: usize = 10_000;
/// Most assets whose quotes are compared.
pub const MAX_QUOTED_ASSETS: usize = 4096;
/// Most providers whose quotes are compared per asset.
pub const MAX_SOURCES_PER_ASSET: usize = 64;

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

/// How far `high` is above `low`, in percent of `low`: finite for every pair of prices.
///
/// Prices come from peers, so the arithmetic must not be able to fail: in `Decimal`,
/// `(150 - 1e-28) / 1e-28` overflows (and panics with the plain operators). In `f64` every
/// `Decimal` ratio is finite — the largest, `7.9e28 / 1e-28`, is about `1e57` — and the result
/// is clamped so that it can always be rendered as a JSON number.
pub(crate) fn spread_percent(low: Decimal, high: Decimal) -> f64 {
    let (Some(low), Some(high)) = (low.to_f64(), high.to_f64()) else { return 0.0 };
    if low <= 0.0 || high <= low {
        return 0.0;
    }
    let percent = (high - low) / low * 100.0;
    if percent.is_finite() { percent.min(MAX_REPORTED_PERCENT) } else { MAX_REPORTED_PERCENT }
}

/// The largest discrepancy a warning reports: beyond a billion percent the figure says
/// nothing more, and a bounded one renders the same everywhere.
const MAX_REPORTED_PERCENT: f64 = 1e9;

impl NetworkStatusTracker {
    /// A tracker for the node `me`.
    pub fn new(me: NodeId, config: StatusConfig) -> Self {
        Self {
            config,
            me,
            providers: HashMap::new(),
            nodes: HashMap::new(),
            connected_peers: 0,
            last_update_time: None,
            newest_price: None,
            quotes: HashMap::new(),
            raised_no_providers: false,
            raised_stale: false,
            raised_discrepancies: HashMap::new(),
        }
    }

    /// How many peers are connected right now.
    pub fn set_connected_peers(&mut self, peers: u32) {
        self.connected_peers = peers;
    }

    /// A node announced itself (or connected) at `now`.
    pub fn node_seen(&mut self, node: NodeId, now: Timestamp) {
        make_room(&mut self.nodes, &node, MAX_TRACKED_NODES, |seen| *seen);
        self.nodes.insert(node, now);
    }

    /// An update from provider `source` arrived at `now` after `hop_count` hops, carrying
    /// `prices`. Returns the discrepancy warnings it starts.
    pub fn update_received(
        &mut self,
        source: NodeId,
        hop_count: u8,
        prices: &[CachedPriceData],
        now: Timestamp,
    ) -> Vec<MeshWarning> {
        let offline = self.config.offline_threshold;
        let hops = u32::from(hop_count);
        make_room(&mut self.providers, &source, MAX_TRACKED_NODES, |provider| provider.last_seen);
        let provider = self.providers.entry(source).or_insert(Provider {
            last_seen: now,
            hop_count: hops,
            hop_count_seen: now,
        });
        provider.last_seen = now;
        if hops <= provider.hop_count || !within(provider.hop_count_seen, now, offline) {
            provider.hop_count = hops;
            provider.hop_count_seen = now;
        }
        self.node_seen(source, now);
        self.last_update_time = Some(now);
        let mut warnings = Vec::new();
        for price in prices {
            self.newest_price =
                Some(self.newest_price.map_or(price.timestamp, |newest| newest.max(price.timestamp)));
            self.record_quote(price.asset, source, price.price, price.timestamp);
            warnings.extend(self.check_discrepancy(price.asset, now));
        }
        warnings
    }

    /// Keeps `source`'s quote for `asset`, within the bounds.
    fn record_quote(&mut self, asset: Asset, source: NodeId, price: Decimal, at: Timestamp) {
        if !self.quotes.contains_key(&asset) && self.quotes.len() >= MAX_QUOTED_ASSETS {
            let stalest = self
                .quotes
                .iter()
                .min_by_key(|(_, sources)| sources.values().map(|(_, at)| *at).max())
                .map(|(asset, _)| *asset);
            if let Some(stalest) = stalest {
                self.quotes.remove(&stalest);
                self.raised_discrepancies.remove(&stalest);
            }
        }
        let sources = self.quotes.entry(asset).or_default();
        make_room(sources, &source, MAX_SOURCES_PER_ASSET, |(_, at)| *at);
        sources.insert(source, (price, at));
    }

    /// Forgets nodes and providers gone offline and quotes gone stale.
    fn forget_the_past(&mut self, now: Timestamp) {
        let (offline, staleness) = (self.config.offline_threshold, self.config.staleness_threshold);
        self.nodes.retain(|_, seen| within(*seen, now, offline));
        self.providers.retain(|_, provider| within(provider.last_seen, now, offline));
        self.quotes.retain(|_, sources| {
            sources.retain(|_, (_, at)| within(*at, now, staleness));
            !sources.is_empty()
        });
        let quotes = &self.quotes;
        self.raised_discrepancies.retain(|asset, _| quotes.contains_key(asset));
    }

    /// The largest disagreement between fresh quotes for `asset`, as a warning when it starts.
    fn check_discrepancy(&mut self, asset: Asset, now: Timestamp) -> Option<MeshWarning> {
        let staleness = self.config.staleness_threshold;
        let fresh: Vec<Decimal> = self
            .quotes
            .get(&asset)?
            .values()
            .filter(|(_, at)| within(*at, now, staleness))
            .map(|(price, _)| *price)
            .collect();
        let (low, high) = (fresh.iter().min()?, fresh.iter().max()?);
        let percent = spread_percent(*low, *high);
        let diverging = fresh.len() >= 2 && percent > self.config.discrepancy_percent;
        let was = self.raised_discrepancies.insert(asset, diverging).unwrap_or(false);
        (diverging && !was).then(|| {
            tracing::warn!(%asset, percent, "price discrepancy between providers");
            MeshWarning::price_discrepancy(asset, (percent * 10.0).round() / 10.0)
        })
    }

    /// The network as seen at `now`.
    pub fn status(&self, now: Timestamp) -> NetworkStatus {
        let offline = self.config.offline_threshold;
        let mut active_providers: Vec<ProviderInfo> = self
            .providers
            .iter()
            .filter(|(_, provider)| within(provider.last_seen, now, offline))
            .map(|(node, provider)| ProviderInfo {
                node_id: *node,
                last_seen: provider.last_seen,
                hop_count: provider.hop_count,
            })
            .collect();
        active_providers.sort_by_key(|provider| (provider.hop_count, provider.node_id));
        let others = self
            .nodes
            .iter()
            .filter(|(node, seen)| **node != self.me && within(**seen, now, offline))
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

    /// `NO_PROVIDERS` and `STALE_DATA`, each returned once when its condition starts (and again
    /// after it cleared and started anew).
    pub fn check_warnings(&mut self, now: Timestamp) -> Vec<MeshWarning> {
        self.forget_the_past(now);
        let mut warnings = Vec::new();
        let no_providers = self.status(now).active_providers.is_empty();
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
        warnings
    }
}

#[cfg(test)]
mod tests {
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
    fn providers_are_active_until_the_offline_threshold_with_their_fewest_hops() {
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
        assert_eq!(status.total_network_size, 3, "two providers and this node");
        assert_eq!(status.last_update_time, Some(t(30)));
        assert_eq!(status.data_freshness, DataFreshness::JustNow);
        let later = tracker.status(t(20 + 601));
        assert_eq!(later.active_providers.len(), 1, "provider 1 went offline");
        assert_eq!(later.data_freshness, DataFreshness::MinutesAgo(10));
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
        assert!(tracker.update_received(node(1), 1, &[price("SOL", 100, t(0), node(1))], t(0)).is_empty());
        assert!(
            tracker.update_received(node(2), 1, &[price("SOL", 103, t(1), node(2))], t(1)).is_empty(),
            "3 % is fine"
        );
        let warnings = tracker.update_received(node(2), 1, &[price("SOL", 110, t(2), node(2))], t(2));
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].message, "Price discrepancy detected for SOL");
        assert!(
            tracker.update_received(node(2), 1, &[price("SOL", 111, t(3), node(2))], t(3)).is_empty(),
            "raised once"
        );
        // An old quote does not count once it is stale.
        assert!(
            tracker.update_received(node(2), 1, &[price("SOL", 200, t(4000), node(2))], t(4000)).is_empty()
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
        for n in 0..MAX_SOURCES_PER_ASSET + 5 {
            tracker.update_received(made_up(n), 1, &[price("SOL", 100, t(1), made_up(n))], t(1));
        }
        assert_eq!(tracker.quotes[&Asset::new("SOL").unwrap()].len(), MAX_SOURCES_PER_ASSET);
        for n in 0..MAX_QUOTED_ASSETS + 5 {
            tracker.update_received(node(1), 1, &[price(&format!("A{n}"), 1, t(2), node(1))], t(2));
        }
        assert_eq!(tracker.quotes.len(), MAX_QUOTED_ASSETS);
        tracker.check_warnings(t(2 + 3601));
        assert!(tracker.nodes.is_empty() && tracker.providers.is_empty() && tracker.quotes.is_empty());
    }

    #[test]
    fn a_tiny_price_beside_a_normal_one_raises_a_warning_instead_of_panicking() {
        let mut tracker = NetworkStatusTracker::new(node(9), StatusConfig::default());
        tracker.update_received(node(1), 1, &[price("SOL", 150, t(0), node(1))], t(0));
        let tiny = CachedPriceData { price: Decimal::new(1, 28), ..price("SOL", 1, t(1), node(2)) };
        let warnings = tracker.update_received(node(2), 1, &[tiny], t(1));
        assert_eq!(warnings.len(), 1, "the providers disagree wildly");
        let WarningKind::PriceDiscrepancy { discrepancy_percent, .. } = warnings[0].kind else {
            panic!("expected a discrepancy, got {:?}", warnings[0]);
        };
        assert!(discrepancy_percent.is_finite() && discrepancy_percent > 1e6, "{discrepancy_percent}");
    }

    proptest::proptest! {
        #[test]
        fn the_spread_of_any_two_prices_is_finite_and_never_negative(
            a in mesh_types::strategies::decimal(),
            b in mesh_types::strategies::decimal(),
        ) {
            let (a, b) = (a.abs(), b.abs());
            let (low, high) = if a <= b { (a, b) } else { (b, a) };
            let percent = spread_percent(low, high);
            proptest::prop_assert!(percent.is_finite() && percent >= 0.0, "{percent}");
        }
    }
}
