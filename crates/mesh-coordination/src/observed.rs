//! [`ObservedCoordinator`]: coordination with no shared infrastructure, through the mesh
//! itself.
//!
//! Independent operators each run a provider; every provider's updates reach every node. This
//! coordinator hears of other providers' fetches through [`FetchCoordinator::observe`] (the
//! node calls it for each fresh update from another provider, with the update's timestamp) and
//! declines to fetch while another provider's fetch is younger than the window. Its own grants
//! are recorded too, so `last_fetch_time` covers both.
//!
//! Two providers can still both fetch when they ask within one propagation delay of each
//! other, before either update has arrived — a few milliseconds on a healthy mesh. When that
//! happens, both notice it from the other's update, and the one with the larger node id yields
//! the window, so the collision does not repeat; the provider loop also starts at a random point
//! of the window and jitters its schedule.

use std::time::Duration;

use async_trait::async_trait;
use mesh_types::{NodeId, Timestamp};
use tokio::time::Instant;

use crate::memory::FetchRecord;
use crate::{FetchCoordinator, MemoryCoordinator, Result};

/// Coordination learned from the updates other providers publish: a [`MemoryCoordinator`]
/// whose record of the last fetch also takes in the fetches observed on the mesh.
#[derive(Debug, Default)]
pub struct ObservedCoordinator {
    local: MemoryCoordinator,
}

impl ObservedCoordinator {
    /// A coordinator that has observed nothing yet.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl FetchCoordinator for ObservedCoordinator {
    async fn try_acquire(&self, node: NodeId, window: Duration) -> Result<bool> {
        self.local.try_acquire(node, window).await
    }

    async fn last_fetch_time(&self) -> Result<Option<Timestamp>> {
        self.local.last_fetch_time().await
    }

    async fn cleanup_stale_records(&self, max_age: Duration) -> Result<usize> {
        self.local.cleanup_stale_records(max_age).await
    }

    async fn observe(&self, source: NodeId, fetched_at: Timestamp) -> Result<()> {
        // The fetch happened `age` ago by the wall clock; place it on the monotonic clock.
        // A timestamp from the future (clock skew) counts as now.
        let age = mesh_types::chrono::Utc::now()
            .signed_duration_since(fetched_at)
            .to_std()
            .unwrap_or(Duration::ZERO);
        // A fetch older than this clock can express is long past any window: ignore it.
        if let Some(at) = Instant::now().checked_sub(age) {
            self.local.record_observed(FetchRecord { node: source, at, wall: fetched_at });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::conformance::{Fixture, WINDOW, fresh_node};

    // Without observations it behaves like the memory coordinator: one process.
    crate::fetch_coordinator_conformance!(suite, async {
        Some(Fixture::new(Arc::new(ObservedCoordinator::new())))
    });

    #[tokio::test(start_paused = true)]
    async fn an_observed_fetch_holds_back_other_providers_for_the_window() {
        let (mine, theirs) = (fresh_node(), fresh_node());
        let coordinator = ObservedCoordinator::new();
        coordinator.observe(theirs, mesh_types::chrono::Utc::now()).await.unwrap();
        assert!(!coordinator.try_acquire(mine, WINDOW).await.unwrap());
        assert!(coordinator.last_fetch_time().await.unwrap().is_some());
        tokio::time::advance(WINDOW).await;
        assert!(coordinator.try_acquire(mine, WINDOW).await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_collision_the_larger_id_yields() {
        let (x, y) = (fresh_node(), fresh_node());
        let (small, large) = (x.min(y), x.max(y));
        let window = Duration::from_secs(5);
        let (at_small, at_large) = (ObservedCoordinator::new(), ObservedCoordinator::new());
        // Both fetch at the same instant, then hear of each other.
        assert!(at_small.try_acquire(small, window).await.unwrap());
        assert!(at_large.try_acquire(large, window).await.unwrap());
        let now = mesh_types::chrono::Utc::now();
        at_small.observe(large, now).await.unwrap();
        at_large.observe(small, now).await.unwrap();
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(at_small.try_acquire(small, window).await.unwrap(), "the smaller id keeps the window");
        assert!(!at_large.try_acquire(large, window).await.unwrap(), "the larger id yields");
    }

    #[tokio::test]
    async fn an_old_observation_does_not_hold_back() {
        let coordinator = ObservedCoordinator::new();
        let long_ago = mesh_types::chrono::Utc::now() - mesh_types::chrono::Duration::seconds(60);
        coordinator.observe(fresh_node(), long_ago).await.unwrap();
        assert!(coordinator.try_acquire(fresh_node(), Duration::from_secs(5)).await.unwrap());
    }

    /// Two operators with nothing shared: each grant is published and observed by the other,
    /// as the mesh would deliver it. The first to fetch keeps the role while it is alive; the
    /// other stands by, and takes over one window after the holder goes quiet — never sooner.
    #[tokio::test(start_paused = true)]
    async fn two_independent_providers_fetch_once_per_window() {
        let nodes = [fresh_node(), fresh_node()];
        let coordinators = [ObservedCoordinator::new(), ObservedCoordinator::new()];
        let window = Duration::from_secs(5);
        let mut grants: Vec<(usize, Instant)> = Vec::new();
        for round in 0..200u64 {
            let who = usize::try_from(round % 2).unwrap();
            // Provider 0 goes offline halfway through.
            if who == 0 && round >= 100 {
                continue;
            }
            tokio::time::advance(Duration::from_millis(700 + (round * 7919) % 1300)).await;
            if coordinators[who].try_acquire(nodes[who], window).await.unwrap() {
                grants.push((who, Instant::now()));
                coordinators[1 - who].observe(nodes[who], mesh_types::chrono::Utc::now()).await.unwrap();
            }
        }
        let by = |who: usize| grants.iter().filter(|(holder, _)| *holder == who).count();
        assert!(by(0) > 10 && by(1) > 10, "each provider served a period: {} and {} grants", by(0), by(1));
        for pair in grants.windows(2).filter(|pair| pair[0].0 != pair[1].0) {
            assert!(pair[1].1 - pair[0].1 >= window, "two providers fetched within one window");
        }
    }
}
