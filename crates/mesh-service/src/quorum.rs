//! k-of-n provider quorum: the [`QuoteBook`] keeps every provider's latest quote per asset,
//! and [`aggregate`] turns the fresh ones into the [`ServedPrice`] the node serves — their
//! median, how many made it, and how far they spread.
//!
//! The median is the aggregate because it is what one liar cannot move: with `n` honest
//! quotes and fewer than `n` rogue ones, the median lies within the honest range. It is
//! computed over quotes sorted by (price, provider, time), so the order in which updates
//! arrived never changes the answer.
//!
//! Bounded like everything a peer can fill: at most [`MAX_QUOTED_ASSETS`] assets (the most the
//! gossip engine holds) and [`MAX_SOURCES_PER_ASSET`] providers each; a full map drops the
//! entry heard from longest ago.

use std::collections::HashMap;
use std::time::Duration;

use mesh_types::rust_decimal::Decimal;
use mesh_types::{Asset, CachedPriceData, NodeId, Quote, ServedPrice, Timestamp};

/// Most assets whose quotes are kept: as many as the gossip engine holds.
pub const MAX_QUOTED_ASSETS: usize = mesh_gossip::MAX_HELD_ASSETS;
/// Most providers whose quotes are kept per asset. A trusted set is rarely larger than a few
/// dozen; in open mode this is what a crowd of made-up providers can fill.
pub const MAX_SOURCES_PER_ASSET: usize = 32;

/// The largest spread reported: beyond a ratio of a billion the figure says nothing more.
const MAX_SPREAD: Decimal = Decimal::from_parts(1_000_000_000, 0, 0, false, 0);
/// Decimal places of a spread: a hundredth of a basis point.
const SPREAD_DP: u32 = 6;

/// Every provider's latest quote for every asset.
#[derive(Debug, Default)]
pub struct QuoteBook {
    assets: HashMap<Asset, HashMap<NodeId, CachedPriceData>>,
}

fn age(at: Timestamp, now: Timestamp) -> Duration {
    now.signed_duration_since(at).to_std().unwrap_or(Duration::ZERO)
}

impl QuoteBook {
    /// An empty book.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps `quote` as its provider's latest for its asset, unless that provider already
    /// quoted something newer.
    pub fn record(&mut self, quote: &CachedPriceData) {
        if !self.assets.contains_key(&quote.asset) && self.assets.len() >= MAX_QUOTED_ASSETS {
            let stalest = self
                .assets
                .iter()
                .min_by_key(|(_, sources)| sources.values().map(|quote| quote.timestamp).max())
                .map(|(asset, _)| *asset);
            if let Some(stalest) = stalest {
                self.assets.remove(&stalest);
            }
        }
        let sources = self.assets.entry(quote.asset).or_default();
        if sources.get(&quote.source_node_id).is_some_and(|held| !quote.newer_than(held)) {
            return;
        }
        if !sources.contains_key(&quote.source_node_id) && sources.len() >= MAX_SOURCES_PER_ASSET {
            let oldest = sources.iter().min_by_key(|(_, held)| held.timestamp).map(|(source, _)| *source);
            if let Some(oldest) = oldest {
                sources.remove(&oldest);
            }
        }
        sources.insert(quote.source_node_id, quote.clone());
    }

    /// The quotes for `asset` no older than `max_age` at `now`, one per provider.
    pub fn fresh(&self, asset: &Asset, now: Timestamp, max_age: Duration) -> Vec<CachedPriceData> {
        self.assets.get(asset).map_or_else(Vec::new, |sources| {
            sources.values().filter(|quote| age(quote.timestamp, now) <= max_age).cloned().collect()
        })
    }

    /// Every asset quoted.
    pub fn assets(&self) -> impl Iterator<Item = Asset> + '_ {
        self.assets.keys().copied()
    }

    /// How many assets are quoted.
    pub fn len(&self) -> usize {
        self.assets.len()
    }

    /// Whether nothing is quoted.
    pub fn is_empty(&self) -> bool {
        self.assets.is_empty()
    }

    /// Forgets quotes older than `max_age` at `now`, and assets left without any.
    pub fn forget_stale(&mut self, now: Timestamp, max_age: Duration) {
        self.assets.retain(|_, sources| {
            sources.retain(|_, quote| age(quote.timestamp, now) <= max_age);
            !sources.is_empty()
        });
    }
}

/// The aggregate of `quotes` (one per provider, all for one asset): their median, how many
/// there are, and their spread. `None` for no quotes. The quotes, sorted, are attached when
/// `with_quotes`.
pub fn aggregate(mut quotes: Vec<CachedPriceData>, with_quotes: bool) -> Option<ServedPrice> {
    quotes.sort_by(|a, b| {
        (a.price, a.source_node_id, a.timestamp).cmp(&(b.price, b.source_node_id, b.timestamp))
    });
    let count = quotes.len();
    let half = count / 2;
    let upper = quotes.get(half)?;
    let lower = half.checked_sub(1).filter(|_| count.is_multiple_of(2)).and_then(|lower| quotes.get(lower));
    let mut median = match lower {
        None => upper.clone(),
        Some(lower) => {
            // Halves first: the sum of two large prices could leave the decimal range.
            let halves = lower.price.checked_div(Decimal::TWO).zip(upper.price.checked_div(Decimal::TWO));
            let price = halves.and_then(|(a, b)| a.checked_add(b)).unwrap_or(lower.price).normalize();
            CachedPriceData { price, ..lower.clone() }
        }
    };
    // The newest input's time: it only moves forward as providers quote again (stale quotes,
    // the oldest, are the only ones that leave), so every node and client can order
    // aggregates newest-wins like single prices.
    median.timestamp = quotes.iter().map(|quote| quote.timestamp).max().unwrap_or(median.timestamp);
    let (low, high) = (quotes.first()?.price, quotes.last()?.price);
    Some(ServedPrice {
        price: median,
        providers: u32::try_from(count).unwrap_or(u32::MAX),
        spread: spread(low, high),
        below_quorum: false,
        quotes: with_quotes.then(|| quotes.iter().map(Quote::from).collect()),
    })
}

/// `(high - low) / low`, rounded to [`SPREAD_DP`] places: finite for every pair of prices.
///
/// Prices come from peers, so the arithmetic must not be able to fail: `(150 - 1e-28) /
/// 1e-28` leaves the decimal range, and is reported as [`MAX_SPREAD`] instead.
pub fn spread(low: Decimal, high: Decimal) -> Decimal {
    if low <= Decimal::ZERO || high <= low {
        return Decimal::ZERO;
    }
    high.checked_sub(low)
        .and_then(|range| range.checked_div(low))
        .map_or(MAX_SPREAD, |ratio| ratio.min(MAX_SPREAD))
        .round_dp(SPREAD_DP)
        .normalize()
}

#[cfg(test)]
mod tests {
    use mesh_types::PublicKey;
    use proptest::prelude::*;

    use super::*;

    fn node(n: u8) -> NodeId {
        NodeId::from_public_key(&PublicKey::from_bytes([n; 32]))
    }

    fn t(seconds: i64) -> Timestamp {
        Timestamp::from_timestamp(1_704_067_200 + seconds, 0).unwrap()
    }

    fn quote(source: u8, price: Decimal, at: i64) -> CachedPriceData {
        CachedPriceData {
            asset: Asset::new("SOL").unwrap(),
            price,
            timestamp: t(at),
            source_node_id: node(source),
            blockchain: "Solana".into(),
            change_24h: None,
        }
    }

    fn dec(text: &str) -> Decimal {
        text.parse().unwrap()
    }

    #[test]
    fn the_median_of_an_odd_count_is_the_middle_quote_itself() {
        let quotes = vec![quote(1, dec("150"), 0), quote(2, dec("1500"), 1), quote(3, dec("151"), 2)];
        let served = aggregate(quotes, true).unwrap();
        assert_eq!(served.price.price, dec("151"));
        assert_eq!(served.price.source_node_id, node(3));
        assert_eq!(served.price.timestamp, t(2), "the newest quote's time");
        assert_eq!(served.providers, 3);
        assert_eq!(served.spread, dec("9"), "1500 is nine times above 150");
        let listed: Vec<Decimal> = served.quotes.unwrap().iter().map(|quote| quote.price).collect();
        assert_eq!(listed, [dec("150"), dec("151"), dec("1500")], "lowest first");
    }

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_middle_two_at_the_newest_time() {
        let quotes = vec![quote(1, dec("150"), 5), quote(2, dec("151"), 3)];
        let served = aggregate(quotes, false).unwrap();
        assert_eq!(served.price.price, dec("150.5"));
        assert_eq!(served.price.timestamp, t(5));
        assert_eq!(served.price.source_node_id, node(1), "the lower middle quote's provider");
        assert_eq!(served.spread, dec("0.006667"));
        assert!(served.quotes.is_none());
        assert!(aggregate(Vec::new(), false).is_none());
    }

    #[test]
    fn extreme_prices_aggregate_without_overflow() {
        let quotes = vec![quote(1, Decimal::MAX, 0), quote(2, Decimal::MAX, 0)];
        assert_eq!(aggregate(quotes, false).unwrap().price.price, Decimal::MAX);
        assert_eq!(spread(Decimal::new(1, 28), dec("150")), MAX_SPREAD);
        assert_eq!(spread(dec("150"), dec("150")), Decimal::ZERO);
    }

    #[test]
    fn each_provider_keeps_its_newest_quote_and_stale_ones_are_not_fresh() {
        let mut book = QuoteBook::new();
        book.record(&quote(1, dec("150"), 10));
        book.record(&quote(1, dec("149"), 5));
        book.record(&quote(2, dec("152"), 0));
        let sol = Asset::new("SOL").unwrap();
        let mut fresh: Vec<Decimal> =
            book.fresh(&sol, t(20), Duration::from_secs(60)).iter().map(|q| q.price).collect();
        fresh.sort();
        assert_eq!(
            fresh,
            [dec("150"), dec("152")],
            "an older quote from provider 1 does not replace its newer one"
        );
        assert_eq!(
            book.fresh(&sol, t(65), Duration::from_secs(60)).len(),
            1,
            "provider 2's quote went stale"
        );
        book.forget_stale(t(200), Duration::from_secs(60));
        assert!(book.is_empty());
    }

    #[test]
    fn what_peers_can_fill_is_bounded() {
        let mut book = QuoteBook::new();
        let made_up = |n: usize| {
            let mut key = [0u8; 32];
            key[..8].copy_from_slice(&(n as u64).to_be_bytes());
            NodeId::from_public_key(&PublicKey::from_bytes(key))
        };
        for n in 0..MAX_SOURCES_PER_ASSET + 5 {
            book.record(&CachedPriceData { source_node_id: made_up(n), ..quote(0, dec("1"), 0) });
        }
        assert_eq!(book.fresh(&Asset::new("SOL").unwrap(), t(0), Duration::MAX).len(), MAX_SOURCES_PER_ASSET);
        for n in 0..MAX_QUOTED_ASSETS + 5 {
            book.record(&CachedPriceData {
                asset: Asset::new(&format!("A{n}")).unwrap(),
                ..quote(1, dec("1"), 1)
            });
        }
        assert_eq!(book.len(), MAX_QUOTED_ASSETS);
    }

    fn positive() -> impl Strategy<Value = Decimal> {
        mesh_types::strategies::decimal()
            .prop_map(|d| d.abs())
            .prop_filter("a price is positive", |d| *d > Decimal::ZERO)
    }

    fn honest_and_rogue() -> impl Strategy<Value = (Vec<Decimal>, Decimal)> {
        (proptest::collection::vec(positive(), 3..=3), positive())
    }

    proptest! {
        #[test]
        fn one_rogue_among_three_honest_never_moves_the_median_outside_the_honest_range(
            (honest, rogue) in honest_and_rogue(),
        ) {
            let mut quotes: Vec<CachedPriceData> =
                honest.iter().enumerate().map(|(n, price)| quote(n as u8, *price, 0)).collect();
            quotes.push(quote(9, rogue, 0));
            let median = aggregate(quotes, false).unwrap().price.price;
            let (low, high) = (*honest.iter().min().unwrap(), *honest.iter().max().unwrap());
            prop_assert!(low <= median && median <= high, "{median} outside {low}..={high}");
        }

        #[test]
        fn the_aggregate_does_not_depend_on_arrival_order(
            prices in proptest::collection::vec(mesh_types::strategies::decimal(), 1..8),
            seed in any::<u64>(),
        ) {
            let quotes: Vec<CachedPriceData> =
                prices.iter().enumerate().map(|(n, price)| quote(n as u8, price.abs(), n as i64)).collect();
            let mut shuffled = quotes.clone();
            // A deterministic shuffle from the seed.
            let len = shuffled.len();
            for i in (1..len).rev() {
                let j = (seed.wrapping_mul(i as u64 + 1) >> 7) as usize % (i + 1);
                shuffled.swap(i, j);
            }
            prop_assert_eq!(aggregate(quotes, true), aggregate(shuffled, true));
        }

        #[test]
        fn the_spread_of_any_two_prices_is_never_negative_and_never_panics(
            a in mesh_types::strategies::decimal(),
            b in mesh_types::strategies::decimal(),
        ) {
            let (a, b) = (a.abs(), b.abs());
            let (low, high) = if a <= b { (a, b) } else { (b, a) };
            let spread = spread(low, high);
            prop_assert!(spread >= Decimal::ZERO && spread <= MAX_SPREAD, "{spread}");
        }
    }
}
