//! [`MemoryTracker`]: the embedded default — a bounded cache of seen ids with expiry, O(1) per
//! operation, shared safely between tasks.
//!
//! Built on `quick_cache`, which bounds the number of entries (evicting the least recently
//! used ones) but has no expiry of its own: each entry stores its expiry instant, an expired
//! entry counts as absent, and [`MessageTracker::cleanup_expired`] sweeps them.

use std::cell::Cell;

use async_trait::async_trait;
use mesh_types::MessageId;
use quick_cache::sync::{Cache, EntryAction, EntryResult};
use tokio::time::{Duration, Instant};

use crate::{MessageTracker, Result, TrackerConfig};

/// Seen ids in process memory, bounded and expiring.
#[derive(Debug)]
pub struct MemoryTracker {
    // Value: when the id stops counting as seen, in milliseconds since `epoch`. Eight bytes
    // instead of an `Instant`'s sixteen keep an entry within 64 bytes (`benches/dedup_memory.rs`).
    cache: Cache<MessageId, u64>,
    expiration: Duration,
    // tokio's Instant, so tests can pause time.
    epoch: Instant,
}

impl MemoryTracker {
    /// A tracker holding at most `config.capacity` ids for `config.expiration` each.
    pub fn new(config: TrackerConfig) -> Self {
        Self {
            cache: Cache::new(config.capacity.max(1)),
            expiration: config.expiration,
            epoch: Instant::now(),
        }
    }

    /// Milliseconds since the tracker was made.
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// When an id marked at `now` stops counting as seen.
    fn expiry(&self, now: u64) -> u64 {
        now.saturating_add(u64::try_from(self.expiration.as_millis()).unwrap_or(u64::MAX))
    }

    /// Marks `id` as seen or not, synchronously: the async trait methods call these, and the
    /// layered tracker uses them without an await.
    pub(crate) fn check_and_mark_now(&self, id: MessageId) -> bool {
        let now = self.now();
        let action = |_: &MessageId, expires: &mut u64| {
            if *expires > now { EntryAction::Retain(()) } else { EntryAction::ReplaceWithGuard }
        };
        match self.cache.entry(&id, None, action) {
            EntryResult::Retained(()) => false,
            EntryResult::Vacant(guard) | EntryResult::Replaced(guard, _) => {
                // The guard makes the insertion atomic: a concurrent caller for the same id
                // waits for it and then sees the id as seen. It only fails if the entry was
                // evicted meanwhile, and either way this call was the first.
                let _ = guard.insert(self.expiry(now));
                true
            }
            // Neither is produced: the action never removes, and there is no timeout.
            EntryResult::Removed(..) | EntryResult::Timeout => false,
        }
    }

    pub(crate) fn has_seen_now(&self, id: MessageId) -> bool {
        self.cache.get(&id).is_some_and(|expires| expires > self.now())
    }

    pub(crate) fn mark_seen_now(&self, id: MessageId) {
        self.cache.insert(id, self.expiry(self.now()));
    }

    pub(crate) fn len_now(&self) -> usize {
        let now = self.now();
        self.cache.iter().filter(|(_, expires)| *expires > now).count()
    }
}

#[async_trait]
impl MessageTracker for MemoryTracker {
    async fn check_and_mark(&self, id: MessageId) -> Result<bool> {
        Ok(self.check_and_mark_now(id))
    }

    async fn has_seen(&self, id: MessageId) -> Result<bool> {
        Ok(self.has_seen_now(id))
    }

    async fn mark_seen(&self, id: MessageId) -> Result<()> {
        self.mark_seen_now(id);
        Ok(())
    }

    async fn cleanup_expired(&self) -> Result<usize> {
        let now = self.now();
        let removed = Cell::new(0_usize);
        self.cache.retain(|_, expires| {
            let keep = *expires > now;
            removed.set(removed.get().saturating_add(usize::from(!keep)));
            keep
        });
        Ok(removed.get())
    }

    async fn len(&self) -> Result<usize> {
        Ok(self.len_now())
    }

    async fn recent(&self, limit: usize) -> Result<Vec<MessageId>> {
        let now = self.now();
        let mut ids: Vec<(MessageId, u64)> =
            self.cache.iter().filter(|(_, expires)| *expires > now).collect();
        // The latest expiry was marked most recently.
        ids.sort_unstable_by_key(|(_, expires)| std::cmp::Reverse(*expires));
        Ok(ids.into_iter().take(limit).map(|(id, _)| id).collect())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::conformance::Fixture;

    fn tracker(capacity: usize, expiration: Duration) -> MemoryTracker {
        MemoryTracker::new(TrackerConfig { capacity, expiration })
    }

    crate::message_tracker_conformance!(
        suite,
        |expiration| async move { Some(Fixture::new(Arc::new(tracker(100_000, expiration)))) },
        model_cases = 256
    );

    #[tokio::test(start_paused = true)]
    async fn ids_expire_and_are_swept() {
        let tracker = tracker(100, Duration::from_secs(300));
        let id = MessageId::new();
        assert!(tracker.check_and_mark(id).await.unwrap());
        tokio::time::advance(Duration::from_secs(299)).await;
        assert!(tracker.has_seen(id).await.unwrap());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(!tracker.has_seen(id).await.unwrap());
        assert_eq!(tracker.len().await.unwrap(), 0);
        assert_eq!(tracker.cleanup_expired().await.unwrap(), 1);
        assert!(tracker.check_and_mark(id).await.unwrap(), "an expired id counts as new");
    }

    #[tokio::test]
    async fn capacity_bounds_the_entries() {
        let tracker = tracker(1000, Duration::from_secs(300));
        for _ in 0..10_000 {
            tracker.mark_seen(MessageId::new()).await.unwrap();
        }
        let len = tracker.len().await.unwrap();
        assert!(len <= 1000 + 1000 / 10, "holds {len} ids for a capacity of 1000");
        assert!(len >= 500, "evicts only what it must, holds {len}");
    }
}
