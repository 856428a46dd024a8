//! Fetch coordination between providers: the [`FetchCoordinator`] trait, which grants at most
//! one provider a fetch from the price API per coordination window, so several providers
//! together stay within the API's rate limit.
//!
//! The trait is the contract the provider loop relies on; its backends (single process, Redis,
//! and one that coordinates through the mesh itself with no shared infrastructure) arrive with
//! the storage issue.

use std::time::Duration;

use async_trait::async_trait;
use mesh_types::{NodeId, Timestamp};
use thiserror::Error;

/// Why a coordination operation failed.
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

/// Result of coordination operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Decides which provider may fetch now.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait FetchCoordinator: Send + Sync {
    /// Asks to fetch now. `true` grants the fetch and records `node` as the window's holder;
    /// `false` means another node fetched less than `window` ago. The holder may fetch again.
    async fn try_acquire(&self, node: NodeId, window: Duration) -> Result<bool>;

    /// When the last granted fetch happened, by any node.
    async fn last_fetch_time(&self) -> Result<Option<Timestamp>>;

    /// Forgets records older than `max_age` and returns how many were removed.
    async fn cleanup_stale_records(&self, max_age: Duration) -> Result<usize>;
}
