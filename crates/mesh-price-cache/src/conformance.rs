//! The behaviour every [`PriceStore`] must show, as plain async functions any backend's tests
//! can call — ours, and a service's own backend (enable the `conformance` feature).
//!
//! A backend gets the whole suite with one line in its tests,
//! [`price_store_conformance!`](crate::price_store_conformance): give it a name for the tests'
//! module and a setup — an async block that returns a [`Fixture`] of a fresh store, or `None`
//! to skip (a backend whose server URL is unset):
//!
//! ```ignore
//! mesh_price_cache::price_store_conformance!(memory, async {
//!     Some(Fixture::new(Arc::new(MemoryPriceStore::new())))
//! });
//! ```
//!
//! It expands to two tests: `passes_the_conformance_suite` ([`run_all`]) and
//! `behaves_like_the_reference_model` ([`check_against_model`] on 24 random workloads from
//! [`operations`], or `model_cases = N` after the setup, all against one store). A server
//! backend's setup creates its own namespace or schema and gives its cleanup to
//! [`Fixture::then`], which runs after the suite. Checks that only one backend needs (two
//! connection pools to one server, corrupt rows) stay tests of their own beside the line.
//!
//! Each check uses assets with a random prefix of its own, and compares `len` before and
//! after, so the checks do not need an empty backend and do not disturb each other.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;

pub use mesh_storage_core::conformance::Fixture;
use mesh_storage_core::conformance::{run_model, run_suite, runtime};
#[doc(hidden)]
pub use mesh_storage_core::conformance_tests;
use mesh_types::rust_decimal::Decimal;
use mesh_types::{Asset, CachedPriceData, NodeId, PublicKey, Timestamp};
use proptest::prelude::*;

use crate::{PriceStore, StoreOutcome};

/// The whole suite for one backend, as two tests in a module `$name`; see the [module
/// docs](crate::conformance).
#[macro_export]
macro_rules! price_store_conformance {
    ($name:ident, $setup:expr $(,)?) => {
        $crate::price_store_conformance!($name, $setup, model_cases = 24);
    };
    ($name:ident, $setup:expr, model_cases = $cases:expr $(,)?) => {
        $crate::conformance::conformance_tests!(
            $name,
            $setup,
            $crate::conformance::test_suite,
            $crate::conformance::test_model,
            $cases
        );
    };
}

/// Runs [`run_all`] on the store `setup` gives, then finishes the fixture; does nothing when
/// `setup` gives none. The first test of
/// [`price_store_conformance!`](crate::price_store_conformance).
///
/// # Panics
/// On the first behaviour that differs from the contract.
pub fn test_suite<S: PriceStore + 'static>(setup: impl Future<Output = Option<Fixture<S>>>) {
    run_suite(&runtime(), setup, |store| run_all(store));
}

/// Runs [`check_against_model`] on `cases` random workloads against the store `setup` gives,
/// then finishes the fixture; does nothing when `setup` gives none. Failing workloads are
/// saved in `proptest-regressions/` beside `source_file` (the `file!()` of the test). The
/// second test of [`price_store_conformance!`](crate::price_store_conformance).
///
/// # Panics
/// On the first disagreement, with the smallest workload that shows it.
pub fn test_model<S: PriceStore + 'static>(
    setup: impl Future<Output = Option<Fixture<S>>>,
    cases: u32,
    source_file: &'static str,
) {
    run_model(&runtime(), setup, operations(), cases, source_file, |store, ops| async move {
        check_against_model(store.as_ref(), &ops).await;
    });
}

/// A fresh namespace of asset symbols: `{random}{n}`.
#[derive(Debug, Clone)]
pub struct Assets {
    prefix: String,
}

impl Assets {
    /// A prefix no other run uses: the low 32 bits of a UUID v7 are random.
    pub fn fresh() -> Self {
        let random = mesh_types::MessageId::new().as_uuid().as_u128() as u32;
        Self { prefix: format!("T{random:08X}") }
    }

    /// The `n`th asset of this namespace.
    pub fn nth(&self, n: usize) -> Asset {
        Asset::new(&format!("{}-{n}", self.prefix)).expect("generated symbols are valid")
    }

    /// Whether `asset` belongs to this namespace.
    pub fn contains(&self, asset: &Asset) -> bool {
        asset.as_str().starts_with(&self.prefix)
    }
}

/// The source node with the given number (a stable, distinct id per number).
pub fn source(n: u8) -> NodeId {
    NodeId::from_public_key(&PublicKey::from_bytes([n; 32]))
}

/// A price for `asset` at `seconds` + `nanos` after 2024-01-01, from source `n`.
pub fn price(asset: Asset, seconds: i64, nanos: u32, source_number: u8, value: Decimal) -> CachedPriceData {
    CachedPriceData {
        asset,
        price: value,
        timestamp: Timestamp::from_timestamp(1_704_067_200 + seconds, nanos).expect("in range"),
        source_node_id: source(source_number),
        blockchain: "Solana".into(),
        change_24h: if seconds % 2 == 0 { Some(Decimal::new(-21, 1)) } else { None },
    }
}

/// Runs every check below against `store`.
///
/// # Panics
/// On the first behaviour that differs from the contract.
pub async fn run_all(store: Arc<dyn PriceStore>) {
    newest_wins(store.as_ref()).await;
    ties_go_to_the_larger_source(store.as_ref()).await;
    equivocation_converges(store.as_ref()).await;
    values_round_trip_exactly(store.as_ref()).await;
    listing_and_len_agree(store.as_ref()).await;
    a_reader_sees_what_get_sees(store.as_ref()).await;
    concurrent_stores_keep_the_newest(store.clone()).await;
    store_many_matches_one_by_one(store.as_ref()).await;
    a_large_store_many_matches_one_by_one(store.as_ref()).await;
    converges_whatever_the_order(store.as_ref(), &Assets::fresh(), 2_000, 0x5eed, 7).await;
}

/// Inserted, then Replaced by a newer price, then Ignored for an older or equal one.
pub async fn newest_wins(store: &dyn PriceStore) {
    let assets = Assets::fresh();
    let sol = assets.nth(0);
    assert_eq!(store.get(sol).await.unwrap(), None, "an unknown asset has no price");
    let first = price(sol, 10, 0, 1, Decimal::new(100, 0));
    assert_eq!(store.store(first.clone()).await.unwrap(), StoreOutcome::Inserted);
    assert_eq!(store.get(sol).await.unwrap(), Some(first.clone()));

    let older = price(sol, 9, 999_999_999, 1, Decimal::new(90, 0));
    assert_eq!(store.store(older).await.unwrap(), StoreOutcome::Ignored);
    assert_eq!(store.store(first.clone()).await.unwrap(), StoreOutcome::Ignored, "an equal price is ignored");
    assert_eq!(store.get(sol).await.unwrap(), Some(first));

    let newer = price(sol, 10, 1, 1, Decimal::new(101, 0));
    assert_eq!(
        store.store(newer.clone()).await.unwrap(),
        StoreOutcome::Replaced,
        "one nanosecond newer wins"
    );
    assert_eq!(store.get(sol).await.unwrap(), Some(newer));
}

/// With equal timestamps, the larger source node id wins, whichever arrives first.
pub async fn ties_go_to_the_larger_source(store: &dyn PriceStore) {
    let assets = Assets::fresh();
    let (a, b) = (assets.nth(0), assets.nth(1));
    let (low, high) = if source(1) < source(2) { (1, 2) } else { (2, 1) };
    store.store(price(a, 5, 0, low, Decimal::ONE)).await.unwrap();
    assert_eq!(store.store(price(a, 5, 0, high, Decimal::TWO)).await.unwrap(), StoreOutcome::Replaced);
    store.store(price(b, 5, 0, high, Decimal::TWO)).await.unwrap();
    assert_eq!(store.store(price(b, 5, 0, low, Decimal::ONE)).await.unwrap(), StoreOutcome::Ignored);
    assert_eq!(store.get(a).await.unwrap().map(|p| p.price), Some(Decimal::TWO));
    assert_eq!(store.get(b).await.unwrap().map(|p| p.price), Some(Decimal::TWO));
}

/// One source publishing two different prices for the same instant: whichever arrives first,
/// the same one is held.
pub async fn equivocation_converges(store: &dyn PriceStore) {
    let assets = Assets::fresh();
    let (a, b) = (assets.nth(0), assets.nth(1));
    let one = |asset| price(asset, 8, 0, 4, Decimal::ONE);
    let two = |asset| price(asset, 8, 0, 4, Decimal::TWO);
    store.store(one(a)).await.unwrap();
    store.store(two(a)).await.unwrap();
    store.store(two(b)).await.unwrap();
    store.store(one(b)).await.unwrap();
    let held_a = store.get(a).await.unwrap().map(|p| p.price);
    let held_b = store.get(b).await.unwrap().map(|p| p.price);
    assert_eq!(held_a, held_b, "the arrival order must not decide between equivocating prices");
}

/// Decimal scale, absent changes and nanosecond timestamps come back exactly.
pub async fn values_round_trip_exactly(store: &dyn PriceStore) {
    let assets = Assets::fresh();
    let mut exact = price(assets.nth(0), 3, 123_456_789, 7, "124.50".parse().unwrap());
    exact.change_24h = Some("-0.000001".parse().unwrap());
    exact.blockchain = "Ethereum Mainnet".into();
    store.store(exact.clone()).await.unwrap();
    let back = store.get(exact.asset).await.unwrap().expect("stored");
    assert_eq!(back, exact);
    assert_eq!(back.price.to_string(), "124.50", "the scale is preserved");

    let mut bare = price(assets.nth(1), 1, 0, 7, Decimal::new(5, 0));
    bare.change_24h = None;
    store.store(bare.clone()).await.unwrap();
    assert_eq!(store.get(bare.asset).await.unwrap(), Some(bare));
}

/// `get_all` and `len` describe the same prices.
pub async fn listing_and_len_agree(store: &dyn PriceStore) {
    let assets = Assets::fresh();
    let before = store.len().await.unwrap();
    let prices: Vec<CachedPriceData> =
        (0..5).map(|i| price(assets.nth(i), i as i64, 0, 3, Decimal::ONE)).collect();
    for p in &prices {
        store.store(p.clone()).await.unwrap();
    }
    assert_eq!(store.len().await.unwrap(), before + 5);
    let all = store.get_all().await.unwrap();
    for p in &prices {
        assert_eq!(all.get(&p.asset), Some(p));
    }
}

/// A store that offers a [`PriceStore::reader`] answers through it exactly as through `get`,
/// including changes made after the reader was taken.
pub async fn a_reader_sees_what_get_sees(store: &dyn PriceStore) {
    let Some(reader) = store.reader() else { return };
    let assets = Assets::fresh();
    let first = price(assets.nth(0), 1, 0, 1, Decimal::ONE);
    assert_eq!(reader.get(first.asset), None);
    store.store(first.clone()).await.unwrap();
    assert_eq!(reader.get(first.asset), Some(first.clone()));
    let newer = price(first.asset, 2, 0, 1, Decimal::TWO);
    store.store(newer.clone()).await.unwrap();
    assert_eq!(reader.get(first.asset), store.get(first.asset).await.unwrap());
    assert_eq!(reader.get(first.asset), Some(newer));
    assert_eq!(reader.get_all(), store.get_all().await.unwrap());
    assert_eq!(reader.len(), store.len().await.unwrap());
}

/// Many tasks storing prices of one asset concurrently leave the newest one.
pub async fn concurrent_stores_keep_the_newest(store: Arc<dyn PriceStore>) {
    let asset = Assets::fresh().nth(0);
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let store = store.clone();
            let p = price(asset, (i * 7919) % 200, 0, (i % 5) as u8, Decimal::from(i));
            tokio::spawn(async move { store.store(p).await.unwrap() })
        })
        .collect();
    let mut inserted = 0;
    for task in tasks {
        inserted += usize::from(task.await.unwrap() == StoreOutcome::Inserted);
    }
    assert_eq!(inserted, 1, "exactly one store inserts");
    let held = store.get(asset).await.unwrap().expect("stored");
    assert_eq!(held.timestamp, price(asset, 199, 0, 0, Decimal::ONE).timestamp, "the newest timestamp wins");
}

/// `store_many` decides a batch exactly as the same prices stored one after another: the same
/// outcome for every price, in order, and the same prices held afterwards. The batch holds
/// several prices of one asset (newer, older and equal ones, and two contents for one instant),
/// prices for assets already held, and new assets; an empty batch changes nothing.
pub async fn store_many_matches_one_by_one(store: &dyn PriceStore) {
    let before = store.len().await.unwrap();
    assert_eq!(store.store_many(Vec::new()).await.unwrap(), Vec::new(), "an empty batch has no outcomes");
    assert_eq!(store.len().await.unwrap(), before, "an empty batch changes nothing");

    // The same workload twice, in two namespaces: one price at a time, and as one batch.
    let (single, batched) = (Assets::fresh(), Assets::fresh());
    let held = |assets: &Assets| {
        [price(assets.nth(0), 10, 0, 1, Decimal::ONE), price(assets.nth(1), 10, 0, 1, Decimal::ONE)]
    };
    // (asset, second, nanos, source, value)
    let steps: [(usize, i64, u32, u8, i64); 12] = [
        (0, 9, 0, 1, 5),  // older than the held price
        (0, 11, 0, 1, 6), // newer than the held price
        (0, 11, 0, 1, 6), // equal to the batch's previous price
        (0, 10, 5, 1, 7), // older than the batch's previous price, newer than the held one
        (0, 12, 0, 1, 8), // newer again
        (1, 10, 0, 1, 1), // equal to the held price
        (2, 3, 0, 2, 9),  // a new asset
        (2, 3, 0, 2, 10), // the same instant and source, another content: the digest decides
        (2, 2, 0, 2, 11), // older
        (3, 1, 0, 1, 12), // another new asset
        (2, 4, 0, 1, 13), // newer, after another asset
        (3, 1, 0, 1, 12), // equal to the batch's earlier price
    ];
    let batch = |assets: &Assets| -> Vec<CachedPriceData> {
        steps
            .iter()
            .map(|&(asset, second, nanos, source, value)| {
                price(assets.nth(asset), second, nanos, source, Decimal::from(value))
            })
            .collect()
    };
    for p in held(&single).into_iter().chain(held(&batched)) {
        store.store(p).await.unwrap();
    }
    let mut one_by_one = Vec::new();
    for p in batch(&single) {
        one_by_one.push(store.store(p).await.unwrap());
    }
    let outcomes = store.store_many(batch(&batched)).await.unwrap();
    assert_eq!(outcomes, one_by_one, "store_many must answer what one store after another answers");
    use StoreOutcome::{Ignored, Inserted, Replaced};
    let known = [
        (0, Ignored),
        (1, Replaced),
        (2, Ignored),
        (3, Ignored),
        (4, Replaced),
        (5, Ignored),
        (6, Inserted),
        (8, Ignored),
        (9, Inserted),
        (10, Replaced),
        (11, Ignored),
    ];
    for (step, outcome) in known {
        assert_eq!(outcomes[step], outcome, "step {step}: {:?}", steps[step]);
    }
    for n in 0..4 {
        let renamed = store.get(single.nth(n)).await.unwrap().map(|mut p| {
            p.asset = batched.nth(n);
            p
        });
        assert_eq!(store.get(batched.nth(n)).await.unwrap(), renamed, "asset {n} after the batch");
    }
    assert_eq!(store.len().await.unwrap(), before + 8);
}

/// A batch larger than one statement or script call of the durable backends (1,300 prices over
/// 1,100 assets, some repeated, some already held) gives the same outcomes and prices as one
/// store after another.
pub async fn a_large_store_many_matches_one_by_one(store: &dyn PriceStore) {
    let (single, batched) = (Assets::fresh(), Assets::fresh());
    let mut next = xorshift(0xba7c4);
    let steps: Vec<(usize, i64, u8)> = (0..1_300)
        .map(|_| next())
        .map(|n| ((n % 1_100) as usize, ((n >> 16) % 8) as i64, (n >> 32) as u8 % 2))
        .collect();
    let batch = |assets: &Assets| -> Vec<CachedPriceData> {
        steps
            .iter()
            .map(|&(asset, second, source)| price(assets.nth(asset), second, 0, source, Decimal::ONE))
            .collect()
    };
    // A tenth of the assets is held before the batch.
    for assets in [&single, &batched] {
        for n in (0..1_100).step_by(10) {
            store.store(price(assets.nth(n), 4, 0, 0, Decimal::TWO)).await.unwrap();
        }
    }
    let mut one_by_one = Vec::new();
    for p in batch(&single) {
        one_by_one.push(store.store(p).await.unwrap());
    }
    let outcomes = store.store_many(batch(&batched)).await.unwrap();
    assert_eq!(outcomes.len(), one_by_one.len());
    for (step, (got, expected)) in outcomes.iter().zip(&one_by_one).enumerate() {
        assert_eq!(got, expected, "step {step}: {:?}", steps[step]);
    }
    let all = store.get_all().await.unwrap();
    for n in 0..1_100 {
        let renamed = all.get(&single.nth(n)).cloned().map(|mut p| {
            p.asset = batched.nth(n);
            p
        });
        assert_eq!(all.get(&batched.nth(n)).cloned(), renamed, "asset {n} after the batch");
    }
}

/// A deterministic xorshift sequence: reproducible workloads without another dependency.
fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    let mut state = seed | 1;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}

/// `count` prices over 100 assets of `assets` (drawn from `prices_seed`), plus every tenth
/// again as a duplicate, arrive in an order drawn from `order_seed`; the store must end with
/// exactly the newest price per asset. Returns what it holds for those assets, so callers can
/// compare backends fed the same prices in different orders.
pub async fn converges_whatever_the_order(
    store: &dyn PriceStore,
    assets: &Assets,
    count: usize,
    prices_seed: u64,
    order_seed: u64,
) -> BTreeMap<Asset, CachedPriceData> {
    let mut next = xorshift(prices_seed);
    let mut prices: Vec<CachedPriceData> = (0..count)
        .map(|_| {
            let n = next();
            price(
                assets.nth((n % 100) as usize),
                ((n >> 8) % 50) as i64,
                ((n >> 16) % 3) as u32,
                (n >> 24) as u8 % 4,
                Decimal::from(n % 1000),
            )
        })
        .collect();
    let duplicates: Vec<CachedPriceData> = prices.iter().step_by(10).cloned().collect();
    prices.extend(duplicates);
    let mut next = xorshift(order_seed);
    for i in (1..prices.len()).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        prices.swap(i, j);
    }

    let mut expected: HashMap<Asset, CachedPriceData> = HashMap::new();
    for p in &prices {
        match expected.get(&p.asset) {
            Some(held) if !p.newer_than(held) => {}
            _ => {
                expected.insert(p.asset, p.clone());
            }
        }
    }
    for p in prices {
        store.store(p).await.unwrap();
    }
    let held: BTreeMap<Asset, CachedPriceData> =
        store.get_all().await.unwrap().into_iter().filter(|(asset, _)| assets.contains(asset)).collect();
    let expected: BTreeMap<Asset, CachedPriceData> = expected.into_iter().collect();
    assert_eq!(held, expected, "the store must hold exactly the newest price per asset");
    held
}

/// One step of a random workload over a few assets and sources.
#[derive(Debug, Clone)]
pub enum Operation {
    /// `store` a price for asset `asset` at `second`, from source `source`.
    Store {
        /// Asset index.
        asset: usize,
        /// Seconds after the epoch of the run.
        second: i64,
        /// Source number.
        source: u8,
    },
    /// `store_many` of these prices, as `(asset, second, source)` like [`Operation::Store`].
    StoreMany(Vec<(usize, i64, u8)>),
    /// `get` asset `asset`.
    Get(usize),
    /// `len()`, compared as the change since the run started.
    Len,
    /// `get_all()`, compared on this run's assets.
    GetAll,
}

/// Number of distinct assets a workload draws from.
pub const MODEL_ASSETS: usize = 4;

/// Random workloads of up to 48 operations.
pub fn operations() -> impl Strategy<Value = Vec<Operation>> {
    let op = prop_oneof![
        3 => (0..MODEL_ASSETS, 0i64..6, 0u8..3).prop_map(|(asset, second, source)| Operation::Store { asset, second, source }),
        1 => prop::collection::vec((0..MODEL_ASSETS, 0i64..6, 0u8..3), 0..8).prop_map(Operation::StoreMany),
        2 => (0..MODEL_ASSETS).prop_map(Operation::Get),
        1 => Just(Operation::Len),
        1 => Just(Operation::GetAll),
    ];
    prop::collection::vec(op, 1..48)
}

/// Applies `operations` to `store` (with fresh assets) and to a reference model — a map kept by
/// the newest-wins rule — and asserts every observation agrees.
///
/// # Panics
/// On the first disagreement.
pub async fn check_against_model(store: &dyn PriceStore, operations: &[Operation]) {
    let assets = Assets::fresh();
    let base_len = store.len().await.unwrap();
    let mut model: BTreeMap<Asset, CachedPriceData> = BTreeMap::new();
    let model_price = |asset: usize, second: i64, source: u8| {
        price(assets.nth(asset), second, 0, source, Decimal::from(second * 10 + i64::from(source)))
    };
    // What storing `p` does to the model, newest-wins.
    let apply = |model: &mut BTreeMap<Asset, CachedPriceData>, p: &CachedPriceData| {
        let expected = match model.get(&p.asset) {
            None => StoreOutcome::Inserted,
            Some(held) if p.newer_than(held) => StoreOutcome::Replaced,
            Some(_) => StoreOutcome::Ignored,
        };
        if expected.changed() {
            model.insert(p.asset, p.clone());
        }
        expected
    };
    for (step, op) in operations.iter().enumerate() {
        match op {
            &Operation::Store { asset, second, source } => {
                let p = model_price(asset, second, source);
                let expected = apply(&mut model, &p);
                assert_eq!(store.store(p).await.unwrap(), expected, "step {step}: {op:?}");
            }
            Operation::StoreMany(prices) => {
                let prices: Vec<CachedPriceData> = prices
                    .iter()
                    .map(|&(asset, second, source)| model_price(asset, second, source))
                    .collect();
                let expected: Vec<StoreOutcome> = prices.iter().map(|p| apply(&mut model, p)).collect();
                assert_eq!(store.store_many(prices).await.unwrap(), expected, "step {step}: {op:?}");
            }
            &Operation::Get(asset) => {
                let asset = assets.nth(asset);
                assert_eq!(
                    store.get(asset).await.unwrap().as_ref(),
                    model.get(&asset),
                    "step {step}: {op:?}"
                );
            }
            Operation::Len => {
                assert_eq!(store.len().await.unwrap(), base_len + model.len(), "step {step}: {op:?}");
            }
            Operation::GetAll => {
                let held: BTreeMap<Asset, Timestamp> = store
                    .get_all()
                    .await
                    .unwrap()
                    .into_values()
                    .filter(|p| assets.contains(&p.asset))
                    .map(|p| (p.asset, p.timestamp))
                    .collect();
                let expected: BTreeMap<Asset, Timestamp> =
                    model.values().map(|p| (p.asset, p.timestamp)).collect();
                assert_eq!(held, expected, "step {step}: {op:?}");
            }
        }
    }
}
