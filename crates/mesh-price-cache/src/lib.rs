//! Newest-wins price storage for pricemesh: the [`PriceStore`] trait keeps the newest price
//! per asset, so every node converges on the same value whatever order updates arrive in.
//!
//! "Newest" is [`CachedPriceData::newer_than`]: the later timestamp wins, and equal timestamps
//! are decided by the larger source node id. Every backend applies it atomically per asset.
//!
//! | backend | type | feature | how the compare is atomic |
//! | --- | --- | --- | --- |
//! | in memory (the embedded default) | [`MemoryPriceStore`] | — | per-asset entry lock |
//! | Redis, one hash per asset with a TTL | `RedisPriceStore` | `redis` | a Lua script on the server |
//! | PostgreSQL, `mesh_price_cache` | `PostgresPriceStore` | `postgres` | a conditional upsert |
//! | memory in front of a durable one, written behind | [`LayeredPriceStore`] | — | memory decides; the durable writes compare again on the server |
//!
//! [`PriceStore::store_many`] stores a batch as if one price after another, in one round trip
//! on the durable backends; the layered store's flusher writes through it.
//!
//! Every backend passes the same suite, [`conformance`] (public with the `conformance`
//! feature).

use async_trait::async_trait;
pub use mesh_storage_core::{BackendError, Corrupt};
use mesh_types::{Asset, CachedPriceData, PriceMap};
use thiserror::Error;

mod layered;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redis")]
mod redis;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

pub use layered::LayeredPriceStore;
pub use memory::{MemoryPriceStore, PriceReader};
/// What a layered store's write-behind has done so far ([`LayeredPriceStore::write_stats`]).
pub use mesh_storage_core::WriteStats;
#[cfg(feature = "postgres")]
pub use postgres::PostgresPriceStore;
#[cfg(feature = "redis")]
pub use redis::RedisPriceStore;

/// What [`PriceStore::store`] did with a price.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreOutcome {
    /// The asset had no price; this one is now held.
    Inserted,
    /// The held price was older and has been replaced.
    Replaced,
    /// The held price is as new or newer; nothing changed.
    Ignored,
}

impl StoreOutcome {
    /// Whether the store now holds the given price (it was inserted or replaced the old one).
    pub const fn changed(&self) -> bool {
        !matches!(self, Self::Ignored)
    }
}

/// Why a store operation failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// A stored row or value could not be read back as a price.
    #[error(transparent)]
    Corrupt(#[from] Corrupt),
    /// The durable backend failed: [`Error::is_retryable`] when it could not be reached (the
    /// operation may succeed when retried), not when it refused the operation.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

impl Error {
    /// Whether retrying the same operation later may succeed.
    pub const fn is_retryable(&self) -> bool {
        matches!(self, Self::Backend(err) if err.is_retryable())
    }
}

/// Result of store operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How a [`Corrupt`] error names a price a backend holds under `key`.
#[cfg(any(feature = "redis", feature = "postgres"))]
fn price_under(key: &str) -> String {
    format!("price under {key:?}")
}

/// Holds the newest price per asset.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
// `len` is a count for metrics and warm starts; nothing asks whether a store is empty.
#[allow(clippy::len_without_is_empty)]
#[async_trait]
pub trait PriceStore: Send + Sync {
    /// Keeps `price` if it is newer than the held one ([`CachedPriceData::newer_than`]);
    /// atomic per asset, also across processes sharing a backend.
    async fn store(&self, price: CachedPriceData) -> Result<StoreOutcome>;

    /// Stores every price of `prices` as [`PriceStore::store`] would, one after another in
    /// order, and returns one outcome per price. Several prices of one asset in a batch are
    /// decided as if stored in turn: the newest wins, and each outcome is what that price's own
    /// `store` would have answered at its place in the sequence.
    ///
    /// Durable backends write a batch in one round trip; the default stores one price after
    /// another.
    ///
    /// # Errors
    /// When the backend fails. Some prices of the batch may already be stored then; storing
    /// them again is harmless, since newest-wins is idempotent.
    async fn store_many(&self, prices: Vec<CachedPriceData>) -> Result<Vec<StoreOutcome>> {
        let mut outcomes = Vec::with_capacity(prices.len());
        for price in prices {
            outcomes.push(self.store(price).await?);
        }
        Ok(outcomes)
    }

    /// The held price of `asset`.
    async fn get(&self, asset: Asset) -> Result<Option<CachedPriceData>>;

    /// Every held price.
    async fn get_all(&self) -> Result<PriceMap>;

    /// How many assets are held.
    async fn len(&self) -> Result<usize>;

    /// A synchronous read-only view of the prices, when this store keeps them in process
    /// memory (the memory and layered stores; not Redis or PostgreSQL alone). Readers that
    /// poll — an API, a trading loop — use it to read in nanoseconds; writes still go through
    /// [`PriceStore::store`].
    fn reader(&self) -> Option<PriceReader> {
        None
    }

    /// Writes what this store holds only in memory to its durable store now, and returns how
    /// many prices it wrote: a layered store's write-behind (the service awaits it at
    /// shutdown). Stores that write at once have nothing to flush: the default writes nothing.
    ///
    /// # Errors
    /// When the durable store fails; what was not written stays pending.
    async fn flush(&self) -> Result<usize> {
        Ok(0)
    }

    /// Whether a durable store behind this one is failing and memory alone serves; `false`
    /// for stores without one.
    fn is_degraded(&self) -> bool {
        false
    }
}
