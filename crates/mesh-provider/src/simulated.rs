//! [`SimulatedSource`]: realistic-looking prices with no key and no internet — a seeded random
//! walk per asset around a base price, so a node (or a test, or the simulator) can run a
//! provider anywhere.
//!
//! Each asset walks on its own generator, seeded from the source's seed and the symbol, so an
//! asset's sequence depends only on the seed and on how many fetches asked for it. Each fetch
//! moves the price by a small multiplicative step (stablecoins barely move) and pulls it a
//! little back towards the base price, which keeps it positive and in a realistic range;
//! `change_24h` is the change from the base price, which stands for "24 hours ago".

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use mesh_types::rust_decimal::Decimal;
use mesh_types::{Asset, PriceData};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::{PriceSource, Result};

/// Base prices in US dollars, the largest relative step per fetch, and the blockchain name.
const BASES: &[(&str, f64, f64, &str)] = &[
    ("BTC", 60_000.0, 0.004, "Bitcoin"),
    ("WBTC", 60_000.0, 0.004, "Ethereum"),
    ("ETH", 3_000.0, 0.005, "Ethereum"),
    ("WETH", 3_000.0, 0.005, "Ethereum"),
    ("SOL", 150.0, 0.006, "Solana"),
    ("MSOL", 180.0, 0.006, "Solana"),
    ("JITOSOL", 175.0, 0.006, "Solana"),
    ("USDC", 1.0, 0.0002, "Solana"),
    ("USDT", 1.0, 0.0002, "Solana"),
    ("DAI", 1.0, 0.0002, "Ethereum"),
    ("BONK", 0.000_025, 0.01, "Solana"),
    ("JUP", 0.9, 0.008, "Solana"),
    ("WIF", 2.2, 0.01, "Solana"),
    ("RAY", 2.0, 0.008, "Solana"),
    ("ORCA", 3.0, 0.008, "Solana"),
    ("LINK", 15.0, 0.006, "Ethereum"),
    ("UNI", 8.0, 0.006, "Ethereum"),
    ("BNB", 550.0, 0.005, "BNB Chain"),
    ("XRP", 0.55, 0.006, "XRP Ledger"),
    ("ADA", 0.45, 0.006, "Cardano"),
    ("DOGE", 0.12, 0.008, "Dogecoin"),
    ("AVAX", 30.0, 0.007, "Avalanche"),
    ("DOT", 6.5, 0.006, "Polkadot"),
    ("LTC", 80.0, 0.005, "Litecoin"),
];

/// Step size for symbols without a base price.
const DEFAULT_STEP: f64 = 0.006;
/// How strongly each step pulls back towards the base price.
const REVERSION: f64 = 0.02;
/// Significant digits kept in published prices.
const SIGNIFICANT_DIGITS: u32 = 10;

/// A deterministic, seeded random-walk price source.
#[derive(Debug)]
pub struct SimulatedSource {
    seed: u64,
    // A std Mutex: held for arithmetic only, never across an await.
    walks: Mutex<HashMap<Asset, Walk>>,
}

/// One asset's walk.
#[derive(Debug)]
struct Walk {
    rng: StdRng,
    base: f64,
    current: f64,
    step: f64,
    blockchain: &'static str,
}

impl Walk {
    fn start(seed: u64, asset: Asset) -> Self {
        let symbol = asset.as_str();
        let (base, step, blockchain) = BASES.iter().find(|(known, ..)| *known == symbol).map_or_else(
            || (derived_base(symbol), DEFAULT_STEP, "Simulated"),
            |&(_, base, step, chain)| (base, step, chain),
        );
        let mut rng = StdRng::seed_from_u64(seed ^ fnv1a(symbol.as_bytes()));
        // Start somewhere near the base (within two steps) so different seeds differ at once.
        let current = base * (1.0 + 2.0 * step * rng.random_range(-1.0..=1.0));
        Self { rng, base, current, step, blockchain }
    }

    /// The next price: a multiplicative step, then a pull towards the base. Both factors are
    /// positive, so the price stays positive.
    fn advance(&mut self) -> f64 {
        let step = self.step * self.rng.random_range(-1.0..=1.0);
        self.current = self.current * (1.0 + step) * (1.0 - REVERSION) + self.base * REVERSION;
        self.current
    }

    fn price_data(&self, asset: Asset) -> Option<PriceData> {
        let price = Decimal::try_from(self.current).ok()?.round_sf(SIGNIFICANT_DIGITS)?;
        if price <= Decimal::ZERO {
            return None;
        }
        let change = (self.current - self.base) / self.base * 100.0;
        let change_24h = Decimal::try_from(change).ok().map(|change| change.round_dp(4));
        Some(PriceData { asset, price, blockchain: self.blockchain.into(), change_24h })
    }
}

/// FNV-1a: a stable hash (unlike `DefaultHasher`, fixed across Rust versions).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325, |hash, &byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
}

/// A stable base price for an unknown symbol: between $1 and $1,000, from the symbol alone.
fn derived_base(symbol: &str) -> f64 {
    // The modulus keeps the value below 100,000, exactly representable as f64.
    let cents = (fnv1a(symbol.as_bytes()) % 99_900) as f64;
    1.0 + cents / 100.0
}

impl SimulatedSource {
    /// A source whose prices follow from `seed`: the same seed gives the same sequence.
    pub fn new(seed: u64) -> Self {
        Self { seed, walks: Mutex::new(HashMap::new()) }
    }

    /// A source with a seed from the operating system's randomness.
    pub fn with_random_seed() -> Self {
        Self::new(rand::rng().random())
    }

    /// The seed in use (log it to replay a run).
    pub const fn seed(&self) -> u64 {
        self.seed
    }

    /// The next prices of `assets`, synchronously.
    pub fn next_prices(&self, assets: &[Asset]) -> Vec<PriceData> {
        // The walks are plain numbers, consistent even if a holder panicked.
        let mut walks = self.walks.lock().unwrap_or_else(PoisonError::into_inner);
        let mut prices = Vec::with_capacity(assets.len());
        for &asset in assets {
            if prices.iter().any(|price: &PriceData| price.asset == asset) {
                continue;
            }
            let walk = walks.entry(asset).or_insert_with(|| Walk::start(self.seed, asset));
            walk.advance();
            prices.extend(walk.price_data(asset));
        }
        prices
    }
}

#[async_trait]
impl PriceSource for SimulatedSource {
    async fn fetch(&self, assets: &[Asset]) -> Result<Vec<PriceData>> {
        Ok(self.next_prices(assets))
    }

    async fn validate(&self) -> Result<()> {
        Ok(())
    }

    fn name(&self) -> &'static str {
        "simulated"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assets(symbols: &[&str]) -> Vec<Asset> {
        symbols.iter().map(|symbol| Asset::new(symbol).unwrap()).collect()
    }

    fn as_f64(price: Decimal) -> f64 {
        price.to_string().parse().unwrap()
    }

    #[tokio::test]
    async fn the_same_seed_gives_the_same_sequence_and_another_seed_does_not() {
        let wanted = assets(&["BTC", "ETH", "SOL", "BONK", "NEWCOIN"]);
        let (a, b, c) = (SimulatedSource::new(42), SimulatedSource::new(42), SimulatedSource::new(43));
        let mut differs = false;
        for _ in 0..50 {
            let (x, y, z) = (
                a.fetch(&wanted).await.unwrap(),
                b.fetch(&wanted).await.unwrap(),
                c.fetch(&wanted).await.unwrap(),
            );
            assert_eq!(x, y);
            differs |= x != z;
        }
        assert!(differs, "a different seed gives different prices");
    }

    #[test]
    fn an_assets_sequence_does_not_depend_on_the_other_assets_asked() {
        let (alone, together) = (SimulatedSource::new(9), SimulatedSource::new(9));
        for _ in 0..10 {
            let sol = alone.next_prices(&assets(&["SOL"]));
            let many = together.next_prices(&assets(&["ETH", "SOL", "BTC"]));
            assert_eq!(Some(&sol[0]), many.iter().find(|price| price.asset.as_str() == "SOL"));
        }
    }

    #[test]
    fn prices_stay_positive_realistic_and_move_between_fetches() {
        let source = SimulatedSource::new(7);
        let wanted = assets(&["BTC", "ETH", "SOL", "USDC", "BONK", "ZZZ"]);
        let mut previous = source.next_prices(&wanted);
        let mut moved = 0;
        for _ in 0..2_000 {
            let prices = source.next_prices(&wanted);
            assert_eq!(prices.len(), wanted.len());
            for (price, before) in prices.iter().zip(&previous) {
                assert!(price.price > Decimal::ZERO, "{price:?}");
                assert!(price.change_24h.is_some());
                let (now, then) = (as_f64(price.price), as_f64(before.price));
                assert!((now / then - 1.0).abs() < 0.05, "small steps: {then} -> {now}");
                moved += usize::from(price.price != before.price);
            }
            previous = prices;
        }
        assert!(moved > 2_000 * wanted.len() * 9 / 10, "prices move between fetches ({moved})");
        let by_symbol = |symbol: &str| {
            as_f64(previous.iter().find(|price| price.asset.as_str() == symbol).unwrap().price)
        };
        assert!((30_000.0..120_000.0).contains(&by_symbol("BTC")));
        assert!((1_500.0..6_000.0).contains(&by_symbol("ETH")));
        assert!((75.0..300.0).contains(&by_symbol("SOL")));
        assert!((0.99..1.01).contains(&by_symbol("USDC")));
        assert!(by_symbol("BONK") > 0.0 && by_symbol("BONK") < 0.001);
    }

    #[test]
    fn unknown_symbols_get_a_stable_price_from_the_symbol() {
        assert_eq!(derived_base("NEWCOIN"), derived_base("NEWCOIN"));
        assert_ne!(derived_base("NEWCOIN"), derived_base("OTHERCOIN"));
        assert!((1.0..=1_000.0).contains(&derived_base("NEWCOIN")));
        let first = SimulatedSource::new(1).next_prices(&assets(&["NEWCOIN"]));
        let price = as_f64(first[0].price);
        let base = derived_base("NEWCOIN");
        assert!((price / base - 1.0).abs() < 0.05, "{price} near {base}");
        assert_eq!(&*first[0].blockchain, "Simulated");
    }

    #[tokio::test]
    async fn validate_always_succeeds_and_duplicates_are_priced_once() {
        let source = SimulatedSource::new(3);
        assert_eq!(source.validate().await, Ok(()));
        assert_eq!(source.name(), "simulated");
        assert_eq!(source.fetch(&assets(&["SOL", "sol"])).await.unwrap().len(), 1);
        assert!(source.fetch(&[]).await.unwrap().is_empty());
    }
}
