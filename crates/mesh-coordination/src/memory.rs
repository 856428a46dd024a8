//! [`MemoryCoordinator`]: coordination between providers in one process — one record of the
//! last fetch behind a mutex.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use mesh_types::{NodeId, Timestamp};
use tokio::time::Instant;

use crate::{FetchCoordinator, Result};

/// The last fetch: who, when (for the window, on tokio's clock so tests can pause time) and
/// the wall-clock time to report.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FetchRecord {
    pub(crate) node: NodeId,
    pub(crate) at: Instant,
    pub(crate) wall: Timestamp,
}

impl FetchRecord {
    pub(crate) fn now(node: NodeId) -> Self {
        Self { node, at: Instant::now(), wall: mesh_types::chrono::Utc::now() }
    }

    /// Whether this record stops `node` from fetching at `now`.
    pub(crate) fn blocks(&self, node: NodeId, window: Duration, now: Instant) -> bool {
        self.node != node && now.saturating_duration_since(self.at) < window
    }
}

/// Coordination within one process.
#[derive(Debug, Default)]
pub struct MemoryCoordinator {
    // A std Mutex: held for a comparison and an assignment, never across an await.
    last: Mutex<Option<FetchRecord>>,
    /// The window of the latest grant, to recognise a collision in `record_observed`.
    window: Mutex<Duration>,
}

impl MemoryCoordinator {
    /// A coordinator with no fetch recorded.
    pub fn new() -> Self {
        Self::default()
    }

    fn last(&self) -> std::sync::MutexGuard<'_, Option<FetchRecord>> {
        // The record is a plain value, consistent even if a holder panicked.
        self.last.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a fetch learned from elsewhere when it is later than the one known — or when it
    /// collided with the known one (both inside one window) and its node id is smaller: of two
    /// providers that fetched at once, the larger id yields, so the collision does not repeat.
    pub(crate) fn record_observed(&self, record: FetchRecord) {
        let window = *self.window.lock().unwrap_or_else(PoisonError::into_inner);
        let mut last = self.last();
        let take = last.is_none_or(|held| {
            let apart = if record.at > held.at {
                record.at.saturating_duration_since(held.at)
            } else {
                held.at.saturating_duration_since(record.at)
            };
            record.at > held.at || (apart < window && record.node < held.node)
        });
        if take {
            *last = Some(record);
        }
    }
}

#[async_trait]
impl FetchCoordinator for MemoryCoordinator {
    async fn try_acquire(&self, node: NodeId, window: Duration) -> Result<bool> {
        let mut last = self.last();
        if last.is_some_and(|record| record.blocks(node, window, Instant::now())) {
            return Ok(false);
        }
        *last = Some(FetchRecord::now(node));
        *self.window.lock().unwrap_or_else(PoisonError::into_inner) = window;
        Ok(true)
    }

    async fn last_fetch_time(&self) -> Result<Option<Timestamp>> {
        Ok(self.last().map(|record| record.wall))
    }

    async fn cleanup_stale_records(&self, max_age: Duration) -> Result<usize> {
        let mut last = self.last();
        let stale = last.is_some_and(|record| record.at.elapsed() > max_age);
        if stale {
            *last = None;
        }
        Ok(usize::from(stale))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::conformance::Fixture;

    crate::fetch_coordinator_conformance!(suite, async {
        Some(Fixture::new(Arc::new(MemoryCoordinator::new())))
    });
}
