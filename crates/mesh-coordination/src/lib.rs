//! Fetch coordination between providers: the [`FetchCoordinator`] trait grants at most one
//! provider a fetch from the price API per coordination window, so several providers together
//! stay within the API's rate limit.
//!
//! The rule: a node may fetch if nobody fetched within the window, or if it made the last
//! fetch itself (the holder keeps its schedule); another node's fetch inside the window means
//! "skip this round".
//!
//! | backend | type | feature | who it coordinates |
//! | --- | --- | --- | --- |
//! | one process (the embedded default) | [`MemoryCoordinator`] | — | providers in one process |
//! | Redis, a server-side script | `RedisCoordinator` | `redis` | providers sharing a Redis |
//! | the mesh itself | [`ObservedCoordinator`] | — | independent operators, no shared infrastructure |
//! | a shared one, the mesh while it is away | [`FallbackCoordinator`] | — | providers sharing a Redis that may go down |
//!
//! The mesh-observed coordinator learns of other providers' fetches through
//! [`FetchCoordinator::observe`], which the node calls for every fresh update from another
//! provider; the other backends ignore it.

use std::time::Duration;

use async_trait::async_trait;
pub use mesh_storage_core::{BackendError, Corrupt};
use mesh_types::{NodeId, Timestamp};
use thiserror::Error;

mod fallback;
mod memory;
mod observed;
#[cfg(feature = "redis")]
mod redis;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

pub use fallback::FallbackCoordinator;
pub use memory::MemoryCoordinator;
pub use observed::ObservedCoordinator;
#[cfg(feature = "redis")]
pub use redis::RedisCoordinator;

/// Why a coordination operation failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// The backend holds a fetch record it cannot read.
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

/// Result of coordination operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Decides which provider may fetch now.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait FetchCoordinator: Send + Sync {
    /// Asks for `node` to fetch now. `true` grants the fetch and records `node` as the last
    /// fetcher; `false` means another node fetched less than `window` ago.
    async fn try_acquire(&self, node: NodeId, window: Duration) -> Result<bool>;

    /// When the last granted (or observed) fetch happened, by any node.
    async fn last_fetch_time(&self) -> Result<Option<Timestamp>>;

    /// Forgets fetch records older than `max_age` and returns how many were removed.
    async fn cleanup_stale_records(&self, max_age: Duration) -> Result<usize>;

    /// Tells the coordinator that `source` published prices fetched at `fetched_at` (called
    /// for every fresh update from another provider). Backends with shared state ignore it.
    async fn observe(&self, source: NodeId, fetched_at: Timestamp) -> Result<()> {
        let _ = (source, fetched_at);
        Ok(())
    }

    /// Whether the shared server behind this coordinator is failing and a fallback decides
    /// (see [`FallbackCoordinator`]); `false` for backends without one.
    fn is_degraded(&self) -> bool {
        false
    }
}
