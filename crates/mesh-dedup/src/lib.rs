//! Message deduplication for pricemesh: the [`MessageTracker`] trait remembers the ids of
//! messages a node has already processed, for a bounded time, so each update is handled
//! exactly once per node.
//!
//! | backend | type | feature | shared between processes |
//! | --- | --- | --- | --- |
//! | bounded LRU with expiry (the embedded default) | [`MemoryTracker`] | — | no |
//! | Redis, `SET key NX PX` | `RedisTracker` | `redis` | yes |
//! | PostgreSQL, `mesh_seen_messages` | `PostgresTracker` | `postgres` | yes |
//! | memory in front of a durable one, written behind | [`LayeredTracker`] | — | no: memory decides, the durable one is written behind |
//!
//! The layered tracker keeps the gossip hot path free of I/O: it decides from memory and writes
//! the ids to the durable tracker in batches ([`MessageTracker::mark_seen_many`]). Two
//! processes sharing one server therefore no longer decide atomically between them which one
//! handles a message; a service that needs that uses the durable tracker directly.
//!
//! Every backend passes the same suite, [`conformance`] (public with the `conformance`
//! feature, so a service can check its own backend against it).

use std::time::Duration;

use async_trait::async_trait;
pub use mesh_storage_core::{BackendError, Corrupt};
use mesh_types::MessageId;
use thiserror::Error;

mod layered;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redis")]
mod redis;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

pub use layered::LayeredTracker;
pub use memory::MemoryTracker;
/// What a layered store's write-behind has done so far ([`LayeredTracker::write_stats`]).
pub use mesh_storage_core::WriteStats;
#[cfg(feature = "postgres")]
pub use postgres::PostgresTracker;
#[cfg(feature = "redis")]
pub use redis::RedisTracker;

/// Why a tracker operation failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// The backend holds a value that is not a message id.
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

/// Result of tracker operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Remembers which messages were seen, for a bounded time.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
// `len` is a count for metrics and warm starts; nothing asks whether a store is empty.
#[allow(clippy::len_without_is_empty)]
#[async_trait]
pub trait MessageTracker: Send + Sync {
    /// Marks `id` as seen and returns `true` if this call was the first to do so — atomically,
    /// also under concurrency and across processes that share a backend. An id whose mark has
    /// expired counts as unseen.
    async fn check_and_mark(&self, id: MessageId) -> Result<bool>;

    /// Whether `id` was seen and its mark has not expired.
    async fn has_seen(&self, id: MessageId) -> Result<bool>;

    /// Marks `id` as seen (again), starting a new expiry period.
    async fn mark_seen(&self, id: MessageId) -> Result<()>;

    /// Marks every id of `ids` as seen (again), each starting a new expiry period, as
    /// [`MessageTracker::mark_seen`] would one after another; an id may appear more than once.
    ///
    /// Durable backends write the ids in one round trip; the default marks one after another.
    ///
    /// # Errors
    /// When the backend fails. Some ids may be marked already then; marking them again is
    /// harmless.
    async fn mark_seen_many(&self, ids: &[MessageId]) -> Result<()> {
        for id in ids {
            self.mark_seen(*id).await?;
        }
        Ok(())
    }

    /// Forgets expired ids and returns how many were removed. Backends whose server expires
    /// entries itself (Redis) return 0.
    async fn cleanup_expired(&self) -> Result<usize>;

    /// How many unexpired ids are remembered right now.
    async fn len(&self) -> Result<usize>;

    /// Up to `limit` unexpired ids, most recent first where the backend knows the order; used
    /// to warm a memory tracker from a durable one on start.
    async fn recent(&self, limit: usize) -> Result<Vec<MessageId>>;

    /// Writes what this tracker holds only in memory to its durable tracker now, and returns
    /// how many ids it wrote: a layered tracker's write-behind (the service awaits it at
    /// shutdown). Trackers that write at once have nothing to flush: the default writes
    /// nothing.
    ///
    /// # Errors
    /// When the durable tracker fails; what was not written stays pending.
    async fn flush(&self) -> Result<usize> {
        Ok(0)
    }

    /// Whether a durable tracker behind this one is failing and memory alone remembers;
    /// `false` for trackers without one.
    fn is_degraded(&self) -> bool {
        false
    }
}

/// Size and lifetime of the remembered ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackerConfig {
    /// The most ids a memory tracker keeps (`MESH_SEEN_MESSAGES_CACHE_SIZE`, default 10,000);
    /// the least recently used are evicted beyond it.
    pub capacity: usize,
    /// How long an id stays seen (`MESH_SEEN_MESSAGES_EXPIRATION_SECS`, default 300 s).
    pub expiration: Duration,
}

/// A [`TrackerConfig`] value that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The capacity is zero.
    #[error("MESH_SEEN_MESSAGES_CACHE_SIZE must be at least 1")]
    ZeroCapacity,
    /// The expiration is zero.
    #[error("MESH_SEEN_MESSAGES_EXPIRATION_SECS must be at least 1")]
    ZeroExpiration,
}

impl TrackerConfig {
    /// Default capacity: 10,000 ids.
    pub const DEFAULT_CAPACITY: usize = 10_000;
    /// Default expiration: 300 s.
    pub const DEFAULT_EXPIRATION: Duration = Duration::from_secs(300);

    /// Checks the values can work.
    ///
    /// # Errors
    /// A zero capacity or expiration.
    pub const fn validate(&self) -> Result<(), ConfigError> {
        if self.capacity == 0 {
            return Err(ConfigError::ZeroCapacity);
        }
        if self.expiration.is_zero() {
            return Err(ConfigError::ZeroExpiration);
        }
        Ok(())
    }
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self { capacity: Self::DEFAULT_CAPACITY, expiration: Self::DEFAULT_EXPIRATION }
    }
}
