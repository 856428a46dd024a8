//! [`FallbackCoordinator`]: a shared coordinator (Redis) with the mesh-observed one behind it,
//! so a provider keeps fetching while the shared server is away.
//!
//! Without it, a Redis outage froze the mesh: every round the provider's `try_acquire` failed,
//! the provider skipped the round, and every consumer's prices stayed where they were while
//! `/health` said 200. With it:
//!
//! - every observation of another provider's fetch goes to the [`ObservedCoordinator`] as well,
//!   so it is current when it is needed;
//! - an operation the primary fails (or does not answer within the timeout) is answered by the
//!   observed coordinator, and the primary is *degraded*: logged once, counted in
//!   `mesh_coordination_fallbacks_total`, shown by `mesh_coordination_degraded` (1 until it
//!   recovers), and then asked again only once per retry interval
//!   ([`BackendHealth`]), so a dead server does not cost every round a timeout;
//! - the first success after that returns coordination to the primary, logged once.
//!
//! While degraded, providers sharing the Redis coordinate as independent operators do, through
//! the updates they see from each other: a collision now and then, never a frozen mesh.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use mesh_storage_core::{BackendError, BackendHealth};
use mesh_types::{NodeId, Timestamp};

use crate::{Error, FetchCoordinator, ObservedCoordinator, Result};

/// A primary coordinator, and the mesh-observed one for when it fails.
pub struct FallbackCoordinator {
    primary: Arc<dyn FetchCoordinator>,
    /// What the primary is, for the log (e.g. `"redis"`).
    name: &'static str,
    fallback: ObservedCoordinator,
    health: BackendHealth,
    timeout: Duration,
}

impl std::fmt::Debug for FallbackCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FallbackCoordinator")
            .field("primary", &self.name)
            .field("degraded", &self.health.is_degraded())
            .finish_non_exhaustive()
    }
}

impl FallbackCoordinator {
    /// How long the primary may take to answer before the fallback answers instead.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

    /// `primary` (named `name` in the log), falling back to the mesh-observed coordinator.
    pub fn new(primary: Arc<dyn FetchCoordinator>, name: &'static str) -> Self {
        metrics::describe_counter!(
            "mesh_coordination_fallbacks_total",
            "Times the shared fetch coordinator failed and coordination fell back to the mesh-observed one"
        );
        metrics::describe_gauge!(
            "mesh_coordination_degraded",
            "1 while the shared fetch coordinator is failing and the mesh-observed one decides, else 0"
        );
        metrics::counter!("mesh_coordination_fallbacks_total").increment(0);
        metrics::gauge!("mesh_coordination_degraded").set(0.0);
        Self {
            primary,
            name,
            fallback: ObservedCoordinator::new(),
            health: BackendHealth::default(),
            timeout: Self::DEFAULT_TIMEOUT,
        }
    }

    /// How long the primary may take to answer (default [`Self::DEFAULT_TIMEOUT`]).
    #[must_use]
    pub const fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How often a degraded primary is asked again (default one second).
    #[must_use]
    pub fn with_retry_interval(mut self, interval: Duration) -> Self {
        self.health = BackendHealth::new(interval);
        self
    }

    /// The primary's answer, if it is healthy (or due for a probe) and answers in time;
    /// `None` means "ask the fallback".
    async fn ask_primary<T>(&self, operation: impl Future<Output = Result<T>> + Send) -> Option<T> {
        if !self.health.should_try(Instant::now()) {
            return None;
        }
        let outcome = match tokio::time::timeout(self.timeout, operation).await {
            Ok(outcome) => outcome,
            Err(_) => Err(Error::from(BackendError::no_answer(self.name, self.timeout))),
        };
        match outcome {
            Ok(value) => {
                if self.health.succeeded() {
                    metrics::gauge!("mesh_coordination_degraded").set(0.0);
                    tracing::info!(
                        coordinator = self.name,
                        "fetch coordinator is back; coordinating through it again"
                    );
                }
                Some(value)
            }
            Err(error) => {
                if self.health.failed(Instant::now()) {
                    metrics::counter!("mesh_coordination_fallbacks_total").increment(1);
                    metrics::gauge!("mesh_coordination_degraded").set(1.0);
                    tracing::warn!(
                        coordinator = self.name,
                        %error,
                        "fetch coordinator unavailable; coordinating through the updates seen on the mesh until it returns"
                    );
                }
                None
            }
        }
    }
}

#[async_trait]
impl FetchCoordinator for FallbackCoordinator {
    async fn try_acquire(&self, node: NodeId, window: Duration) -> Result<bool> {
        match self.ask_primary(self.primary.try_acquire(node, window)).await {
            Some(granted) => {
                if granted {
                    // The fallback learns of this node's own fetches too, so it holds the
                    // window as the primary did if the primary goes away.
                    self.fallback.observe(node, mesh_types::chrono::Utc::now()).await?;
                }
                Ok(granted)
            }
            None => self.fallback.try_acquire(node, window).await,
        }
    }

    async fn last_fetch_time(&self) -> Result<Option<Timestamp>> {
        match self.ask_primary(self.primary.last_fetch_time()).await {
            Some(time) => Ok(time),
            None => self.fallback.last_fetch_time().await,
        }
    }

    async fn cleanup_stale_records(&self, max_age: Duration) -> Result<usize> {
        // The fallback mirrors the primary's records while it is healthy: the primary's count
        // is the one that means something then.
        let local = self.fallback.cleanup_stale_records(max_age).await?;
        Ok(self.ask_primary(self.primary.cleanup_stale_records(max_age)).await.unwrap_or(local))
    }

    fn is_degraded(&self) -> bool {
        self.health.is_degraded()
    }

    async fn observe(&self, source: NodeId, fetched_at: Timestamp) -> Result<()> {
        self.fallback.observe(source, fetched_at).await?;
        // Backends with shared state ignore observations; a failing one is not worth a probe.
        if !self.health.is_degraded() {
            let _ = tokio::time::timeout(self.timeout, self.primary.observe(source, fetched_at)).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::conformance::{Fixture, WINDOW, fresh_node};
    use crate::{MemoryCoordinator, MockFetchCoordinator};

    /// A primary that works like the memory coordinator until it is switched off.
    #[derive(Default)]
    struct Switchable {
        inner: MemoryCoordinator,
        down: AtomicBool,
        hangs: AtomicBool,
    }

    impl Switchable {
        async fn check(&self) -> Result<()> {
            if self.hangs.load(Ordering::Relaxed) {
                std::future::pending::<()>().await;
            }
            if self.down.load(Ordering::Relaxed) {
                return Err(Error::from(BackendError::unavailable("test", "connection refused")));
            }
            Ok(())
        }
    }

    #[async_trait]
    impl FetchCoordinator for Switchable {
        async fn try_acquire(&self, node: NodeId, window: Duration) -> Result<bool> {
            self.check().await?;
            self.inner.try_acquire(node, window).await
        }
        async fn last_fetch_time(&self) -> Result<Option<Timestamp>> {
            self.check().await?;
            self.inner.last_fetch_time().await
        }
        async fn cleanup_stale_records(&self, max_age: Duration) -> Result<usize> {
            self.check().await?;
            self.inner.cleanup_stale_records(max_age).await
        }
    }

    fn over(primary: &Arc<Switchable>) -> FallbackCoordinator {
        FallbackCoordinator::new(Arc::clone(primary) as Arc<dyn FetchCoordinator>, "test")
            .with_timeout(Duration::from_millis(50))
            .with_retry_interval(Duration::from_millis(100))
    }

    crate::fetch_coordinator_conformance!(suite, async {
        Some(Fixture::new(Arc::new(over(&Arc::new(Switchable::default())))))
    });

    #[tokio::test]
    async fn a_dead_primary_no_longer_stops_the_provider_from_fetching() {
        let primary = Arc::new(Switchable::default());
        let coordinator = over(&primary);
        primary.down.store(true, Ordering::Relaxed);
        let (me, other) = (fresh_node(), fresh_node());
        assert!(coordinator.try_acquire(me, WINDOW).await.unwrap(), "the fallback grants the fetch");
        assert!(coordinator.is_degraded());
        // Another provider's update seen on the mesh takes the window, as it would between
        // independent operators.
        coordinator.observe(other, mesh_types::chrono::Utc::now()).await.unwrap();
        assert!(!coordinator.try_acquire(me, WINDOW).await.unwrap(), "the observed fetch holds the window");
    }

    #[tokio::test]
    async fn a_hanging_primary_is_answered_for_within_the_timeout() {
        let primary = Arc::new(Switchable::default());
        let coordinator = over(&primary);
        primary.hangs.store(true, Ordering::Relaxed);
        let answer =
            tokio::time::timeout(Duration::from_secs(5), coordinator.try_acquire(fresh_node(), WINDOW))
                .await
                .expect("the primary's silence is not waited out");
        assert!(answer.unwrap());
    }

    #[tokio::test]
    async fn coordination_returns_to_the_primary_when_it_is_back() {
        let primary = Arc::new(Switchable::default());
        let coordinator = over(&primary);
        let (me, other) = (fresh_node(), fresh_node());
        primary.down.store(true, Ordering::Relaxed);
        assert!(coordinator.try_acquire(me, WINDOW).await.unwrap());
        primary.down.store(false, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(150)).await;
        // Another node took the window at the primary meanwhile: the primary's word counts.
        assert!(primary.try_acquire(other, WINDOW).await.unwrap());
        assert!(!coordinator.try_acquire(me, WINDOW).await.unwrap(), "the primary decides again");
        assert!(!coordinator.is_degraded());
    }

    #[tokio::test]
    async fn a_degraded_primary_is_asked_once_per_retry_interval() {
        let mut primary = MockFetchCoordinator::new();
        primary
            .expect_try_acquire()
            .times(1)
            .returning(|_, _| Err(Error::from(BackendError::unavailable("mock", "refused"))));
        let coordinator = FallbackCoordinator::new(Arc::new(primary), "mock")
            .with_retry_interval(Duration::from_secs(3600));
        for _ in 0..5 {
            coordinator.try_acquire(fresh_node(), Duration::ZERO).await.unwrap();
        }
    }
}
