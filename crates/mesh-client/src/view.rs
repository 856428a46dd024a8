//! [`View`]: what the client's connections share — the newest price of every asset, which
//! connections are up and since when — and the rules that merge them: newest wins, each price
//! is delivered once, and a gap counts only when no other connection covered it.

use std::collections::HashMap;
use std::sync::Arc;

use mesh_types::{Asset, ServedPrice, ServedPriceMap};
use tokio::time::Instant;

use crate::ClientEvent;

/// One connection's state.
#[derive(Debug, Clone, Copy, Default)]
struct Link {
    /// Up since then, if up.
    up_since: Option<Instant>,
    /// Down since then, if it was ever up and is down now.
    down_since: Option<Instant>,
}

/// The merged state of every connection.
#[derive(Debug, Default)]
pub(crate) struct View {
    latest: HashMap<Asset, ServedPrice>,
    initial_sent: bool,
    links: HashMap<usize, Link>,
}

impl View {
    /// The newest price held for `asset`.
    pub(crate) fn latest(&self, asset: &Asset) -> Option<ServedPrice> {
        self.latest.get(asset).cloned()
    }

    /// Every newest price held.
    pub(crate) fn all(&self) -> ServedPriceMap {
        self.latest.iter().map(|(asset, price)| (*asset, price.clone())).collect()
    }

    /// Connection `link` came up at `now`.
    pub(crate) fn up(&mut self, link: usize, now: Instant) {
        let state = self.links.entry(link).or_default();
        state.up_since = Some(now);
        state.down_since = None;
    }

    /// Connection `link` went down at `now` (a failed attempt leaves an earlier time).
    pub(crate) fn down(&mut self, link: usize, now: Instant) {
        let state = self.links.entry(link).or_default();
        if state.up_since.take().is_some() {
            state.down_since = Some(now);
        }
    }

    /// Whether changes may really have been missed when `link` could not resume: no other
    /// connection was up from before `link` went down until now.
    pub(crate) fn gap_is_real(&self, link: usize) -> bool {
        let Some(down_since) = self.links.get(&link).and_then(|state| state.down_since) else {
            return true;
        };
        !self.links.iter().any(|(other, state)| {
            *other != link && state.up_since.is_some_and(|up_since| up_since <= down_since)
        })
    }

    /// A snapshot from `node`: the first snapshot the client gets becomes an `Initial`; later
    /// ones are merged, as updates of what they change.
    pub(crate) fn snapshot(&mut self, node: &Arc<str>, prices: ServedPriceMap) -> Vec<ClientEvent> {
        if self.initial_sent {
            return self.merge(prices.into_values());
        }
        self.initial_sent = true;
        for price in prices.values() {
            self.take(price);
        }
        vec![ClientEvent::Initial { node: node.clone(), prices }]
    }

    /// Prices from a node's update: each that is newer than what is held becomes an update.
    pub(crate) fn merge(&mut self, prices: impl IntoIterator<Item = ServedPrice>) -> Vec<ClientEvent> {
        prices.into_iter().filter(|price| self.take(price)).map(ClientEvent::Update).collect()
    }

    /// Keeps `price` if it is newer than the one held: the nodes' own newest-wins order.
    fn take(&mut self, price: &ServedPrice) -> bool {
        let asset = price.price.asset;
        if self.latest.get(&asset).is_some_and(|held| !price.price.newer_than(&held.price)) {
            return false;
        }
        self.latest.insert(asset, price.clone());
        true
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use mesh_types::rust_decimal::Decimal;
    use mesh_types::{CachedPriceData, NodeId, PublicKey, Timestamp};

    use super::*;

    fn price(symbol: &str, cents: i64, second: i64) -> ServedPrice {
        ServedPrice::single(CachedPriceData {
            asset: Asset::new(symbol).unwrap(),
            price: Decimal::new(cents, 2),
            timestamp: Timestamp::from_timestamp(1_704_067_200 + second, 0).unwrap(),
            source_node_id: NodeId::from_public_key(&PublicKey::from_bytes([1; 32])),
            blockchain: "Solana".into(),
            change_24h: None,
        })
    }

    fn map(prices: &[ServedPrice]) -> ServedPriceMap {
        prices.iter().map(|price| (price.asset(), price.clone())).collect()
    }

    #[test]
    fn the_first_snapshot_is_the_initial_and_later_ones_only_update() {
        let (a, b): (Arc<str>, Arc<str>) = ("ws://a".into(), "ws://b".into());
        let mut view = View::default();
        let first = view.snapshot(&a, map(&[price("SOL", 100, 1)]));
        assert!(matches!(&first[..], [ClientEvent::Initial { prices, .. }] if prices.len() == 1));
        let second = view.snapshot(&b, map(&[price("SOL", 100, 1), price("ETH", 200, 1)]));
        assert_eq!(second, [ClientEvent::Update(price("ETH", 200, 1))], "SOL was already held");
    }

    #[test]
    fn a_price_is_delivered_once_and_never_goes_back_in_time() {
        let mut view = View::default();
        assert_eq!(view.merge([price("SOL", 101, 2)]).len(), 1);
        assert!(view.merge([price("SOL", 101, 2)]).is_empty(), "the same price from a second node");
        assert!(view.merge([price("SOL", 100, 1)]).is_empty(), "an older price from a lagging node");
        assert_eq!(view.merge([price("SOL", 102, 3)]).len(), 1);
        assert_eq!(view.latest(&Asset::new("SOL").unwrap()), Some(price("SOL", 102, 3)));
    }

    #[test]
    fn a_gap_is_real_only_when_no_other_connection_covered_the_outage() {
        let start = Instant::now();
        let at = |seconds| start + Duration::from_secs(seconds);
        let mut view = View::default();
        view.up(0, at(0));
        view.up(1, at(1));
        view.down(0, at(5));
        assert!(!view.gap_is_real(0), "connection 1 was up all along");
        view.down(1, at(6));
        view.up(1, at(7));
        assert!(view.gap_is_real(0), "connection 1 was down for part of connection 0's outage");
        assert!(View::default().gap_is_real(3), "a connection never up before has no cover");
    }
}
