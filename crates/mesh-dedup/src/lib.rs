//! Message deduplication for pricemesh: the [`MessageTracker`] trait, which remembers the ids
//! of messages a node has already processed so each update is handled exactly once per node.
//!
//! The trait is the contract the gossip engine relies on; its backends (a bounded in-memory
//! LRU with expiry, Redis, PostgreSQL and a layered combination) arrive with the storage issue.
//! A service can implement the trait for its own store.

use async_trait::async_trait;
use mesh_types::MessageId;
use thiserror::Error;

/// Why a tracker operation failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// The backing server could not be reached; the operation may succeed when retried.
    #[error("{backend} unavailable: {detail}")]
    Unavailable {
        /// Which backend, e.g. `"redis"`.
        backend: &'static str,
        /// What went wrong.
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

/// Result of tracker operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Remembers which messages were seen, for a bounded time.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait MessageTracker: Send + Sync {
    /// Marks `id` as seen and returns `true` if this call was the first to do so — atomically,
    /// also under concurrency and across processes that share a backend.
    async fn check_and_mark(&self, id: MessageId) -> Result<bool>;

    /// Whether `id` was seen and has not expired.
    async fn has_seen(&self, id: MessageId) -> Result<bool>;

    /// Marks `id` as seen.
    async fn mark_seen(&self, id: MessageId) -> Result<()>;

    /// Forgets expired ids and returns how many were removed.
    async fn cleanup_expired(&self) -> Result<usize>;

    /// How many ids are remembered right now.
    async fn len(&self) -> Result<usize>;

    /// Whether nothing is held.
    async fn is_empty(&self) -> Result<bool> {
        Ok(self.len().await? == 0)
    }
}
