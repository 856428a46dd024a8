//! Newest-wins price storage for pricemesh: the [`PriceStore`] trait, which keeps the newest
//! price per asset so every node converges on the same value whatever order updates arrive in.
//!
//! The trait is the contract the gossip engine and the API rely on; its backends (memory,
//! Redis with a server-side compare, PostgreSQL and a layered combination) arrive with the
//! storage issue. The ordering every backend must apply is
//! [`CachedPriceData::newer_than`](mesh_types::CachedPriceData::newer_than).

use std::collections::BTreeMap;

use async_trait::async_trait;
use mesh_types::{Asset, CachedPriceData, PriceMap, Timestamp};
use thiserror::Error;

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

/// Why a store operation failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// The backing server could not be reached; the operation may succeed when retried.
    #[error("{backend} unavailable: {detail}")]
    Unavailable {
        /// Which backend, e.g. `"postgres"`.
        backend: &'static str,
        /// What went wrong.
        detail: String,
    },
    /// A stored row or value could not be read back as a price.
    #[error("{backend} holds an invalid price for {key}: {detail}")]
    Corrupt {
        /// Which backend.
        backend: &'static str,
        /// The key or row.
        key: String,
        /// What was wrong with it.
        detail: String,
    },
    /// The backend failed in another way.
    #[error("{backend} error: {source}")]
    Backend {
        /// Which backend.
        backend: &'static str,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    /// Whether retrying the same operation later may succeed.
    pub const fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// Result of store operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Holds the newest price per asset.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait PriceStore: Send + Sync {
    /// Keeps `price` if it is newer than the held one (see
    /// [`CachedPriceData::newer_than`]); atomic per asset.
    async fn store(&self, price: CachedPriceData) -> Result<StoreOutcome>;

    /// The held price of `asset`.
    async fn get(&self, asset: Asset) -> Result<Option<CachedPriceData>>;

    /// Every held price.
    async fn get_all(&self) -> Result<PriceMap>;

    /// The newest timestamp held per asset, for anti-entropy.
    async fn digest(&self) -> Result<BTreeMap<Asset, Timestamp>>;

    /// How many assets are held.
    async fn len(&self) -> Result<usize>;

    /// Whether nothing is held.
    async fn is_empty(&self) -> Result<bool> {
        Ok(self.len().await? == 0)
    }
}
