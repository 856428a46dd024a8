//! **A planted bug, for tests only.** [`OverwritingStore`] is a price store without
//! newest-wins: it keeps whatever price arrived last. The seeded simulation puts it in one node
//! when [`crate::SeededConfig::planted_bug`] asks, so a test can show that the checker catches
//! a node that lets an older price replace a newer one, and that the failing seed replays.
//! Never use it to run a node.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use mesh_price_cache::{PriceStore, Result, StoreOutcome};
use mesh_types::{Asset, CachedPriceData, PriceMap};

/// A price store that always keeps the price stored last, older or not (the planted bug).
#[derive(Debug, Default)]
pub struct OverwritingStore {
    // A std Mutex: held for one map operation, never across an await.
    prices: Mutex<BTreeMap<Asset, CachedPriceData>>,
}

impl OverwritingStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn prices(&self) -> MutexGuard<'_, BTreeMap<Asset, CachedPriceData>> {
        self.prices.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl PriceStore for OverwritingStore {
    async fn store(&self, price: CachedPriceData) -> Result<StoreOutcome> {
        // The bug: no comparison with the held price.
        Ok(match self.prices().insert(price.asset, price) {
            Some(_) => StoreOutcome::Replaced,
            None => StoreOutcome::Inserted,
        })
    }

    async fn get(&self, asset: Asset) -> Result<Option<CachedPriceData>> {
        Ok(self.prices().get(&asset).cloned())
    }

    async fn get_all(&self) -> Result<PriceMap> {
        Ok(self.prices().iter().map(|(asset, price)| (*asset, price.clone())).collect())
    }

    async fn len(&self) -> Result<usize> {
        Ok(self.prices().len())
    }
}
