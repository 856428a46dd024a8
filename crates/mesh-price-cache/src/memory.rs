//! [`MemoryPriceStore`]: the embedded default — a concurrent hash map from asset to price,
//! O(1) per lookup, with the newest-wins compare done under the asset's entry lock — and
//! [`PriceReader`], a synchronous read-only view of such a map.

use std::sync::Arc;

use async_trait::async_trait;
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use mesh_types::{Asset, CachedPriceData, PriceMap};

use crate::{PriceStore, Result, StoreOutcome};

// foldhash rather than the standard SipHash: an asset key hashes in a couple of nanoseconds,
// and its per-process random seed still keeps chosen symbols from colliding on purpose.
type Map = DashMap<Asset, CachedPriceData, foldhash::fast::RandomState>;

/// Prices in process memory.
#[derive(Debug, Default)]
pub struct MemoryPriceStore {
    prices: Arc<Map>,
}

/// A read-only view of the prices a store holds in process memory: lookups are synchronous
/// and take nanoseconds (no await, no round trip). Get one from [`PriceStore::reader`]; it
/// stays current as the store changes. Cloning is cheap.
#[derive(Debug, Clone)]
pub struct PriceReader {
    prices: Arc<Map>,
}

impl PriceReader {
    /// The held price of `asset`.
    pub fn get(&self, asset: Asset) -> Option<CachedPriceData> {
        self.prices.get(&asset).map(|price| price.clone())
    }

    /// Every held price.
    pub fn get_all(&self) -> PriceMap {
        self.prices.iter().map(|entry| (*entry.key(), entry.value().clone())).collect()
    }

    /// How many assets are held.
    pub fn len(&self) -> usize {
        self.prices.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.prices.is_empty()
    }
}

impl MemoryPriceStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn store_now(&self, price: CachedPriceData) -> StoreOutcome {
        match self.prices.entry(price.asset) {
            Entry::Vacant(slot) => {
                slot.insert(price);
                StoreOutcome::Inserted
            }
            Entry::Occupied(mut slot) if price.newer_than(slot.get()) => {
                slot.insert(price);
                StoreOutcome::Replaced
            }
            Entry::Occupied(_) => StoreOutcome::Ignored,
        }
    }

    /// A synchronous read-only view of this store.
    pub fn reader(&self) -> PriceReader {
        PriceReader { prices: Arc::clone(&self.prices) }
    }

    pub(crate) fn get_now(&self, asset: Asset) -> Option<CachedPriceData> {
        self.prices.get(&asset).map(|price| price.clone())
    }

    pub(crate) fn get_all_now(&self) -> PriceMap {
        self.prices.iter().map(|entry| (*entry.key(), entry.value().clone())).collect()
    }
}

#[async_trait]
impl PriceStore for MemoryPriceStore {
    async fn store(&self, price: CachedPriceData) -> Result<StoreOutcome> {
        Ok(self.store_now(price))
    }

    async fn get(&self, asset: Asset) -> Result<Option<CachedPriceData>> {
        Ok(self.get_now(asset))
    }

    async fn get_all(&self) -> Result<PriceMap> {
        Ok(self.get_all_now())
    }

    async fn len(&self) -> Result<usize> {
        Ok(self.prices.len())
    }

    fn reader(&self) -> Option<PriceReader> {
        Some(Self::reader(self))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::conformance::Fixture;

    crate::price_store_conformance!(
        suite,
        async { Some(Fixture::new(Arc::new(MemoryPriceStore::new()))) },
        model_cases = 256
    );
}
