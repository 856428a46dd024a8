//! [`LayeredTracker`]: a [`MemoryTracker`] in front of a durable, shared tracker (Redis or
//! PostgreSQL).
//!
//! - **Fast path**: an id already in memory is answered without a round trip.
//! - **Write-through**: a new id is decided by the durable tracker (atomic across processes)
//!   and then remembered in memory.
//! - **Warm start**: [`LayeredTracker::load_from_cache`] fills memory from the durable store.
//! - **Degradation**: when the durable tracker fails, the layered one keeps deciding from
//!   memory, logs one warning, counts `mesh_storage_degraded_total{store="dedup"}`, and
//!   remembers what it accepted meanwhile. While degraded it probes the server at most once per
//!   retry interval instead of waiting on it for every message. On the first success it writes
//!   the remembered ids back ([`LayeredTracker::persist_to_cache`]), so nothing accepted during
//!   the outage is lost.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use mesh_types::{BackendHealth, MessageId};
use tokio::time::{Duration, Instant};

use crate::{Error, MemoryTracker, MessageTracker, Result, TrackerConfig};

/// Memory in front of a durable tracker, degrading to memory alone when the durable one fails.
pub struct LayeredTracker {
    memory: MemoryTracker,
    durable: Arc<dyn MessageTracker>,
    capacity: usize,
    health: BackendHealth,
    // Ids accepted while degraded, to write through once the durable tracker is back. A std
    // Mutex: it is never held across an await.
    pending: Mutex<VecDeque<MessageId>>,
}

impl std::fmt::Debug for LayeredTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayeredTracker")
            .field("memory", &self.memory)
            .field("degraded", &self.health.is_degraded())
            .finish_non_exhaustive()
    }
}

impl LayeredTracker {
    /// Default time between probes of a failed durable tracker.
    pub const DEFAULT_RETRY_INTERVAL: Duration = BackendHealth::DEFAULT_RETRY_INTERVAL;

    /// Memory sized by `config` in front of `durable`.
    pub fn new(config: TrackerConfig, durable: Arc<dyn MessageTracker>) -> Self {
        metrics::describe_counter!(
            "mesh_storage_degraded_total",
            "Times a durable store became unreachable and its layered store fell back to memory, by store"
        );
        Self {
            memory: MemoryTracker::new(config),
            durable,
            capacity: config.capacity,
            health: BackendHealth::default(),
            pending: Mutex::new(VecDeque::new()),
        }
    }

    /// Sets how often a failed durable tracker is probed.
    #[must_use]
    pub fn with_retry_interval(mut self, interval: Duration) -> Self {
        self.health = BackendHealth::new(interval);
        self
    }

    /// Whether the durable tracker is failing and memory alone is deciding.
    pub fn is_degraded(&self) -> bool {
        self.health.is_degraded()
    }

    /// Fills memory with the durable tracker's most recent ids (up to the capacity), so a
    /// restarted node recognises what it saw before. Returns how many were loaded.
    ///
    /// # Errors
    /// When the durable tracker cannot be read.
    pub async fn load_from_cache(&self) -> Result<usize> {
        let ids = self.durable.recent(self.capacity).await?;
        for id in &ids {
            self.memory.mark_seen_now(*id);
        }
        Ok(ids.len())
    }

    /// Writes the ids accepted while degraded to the durable tracker. Returns how many were
    /// written; on failure the rest stay queued.
    ///
    /// # Errors
    /// When the durable tracker fails.
    pub async fn persist_to_cache(&self) -> Result<usize> {
        let mut written = 0;
        loop {
            // Take the id in its own statement so the lock is released before the await.
            let next = self.lock_pending().pop_front();
            let Some(id) = next else { break };
            if let Err(err) = self.durable.mark_seen(id).await {
                self.lock_pending().push_front(id);
                return Err(err);
            }
            written += 1;
        }
        Ok(written)
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, VecDeque<MessageId>> {
        // The queue stays consistent even if a holder panicked: every update is one push/pop.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn remember_pending(&self, id: MessageId) {
        let mut pending = self.lock_pending();
        if pending.len() >= self.capacity {
            // Older ids than the memory tracker holds would be expired or evicted anyway.
            pending.pop_front();
        }
        pending.push_back(id);
    }

    /// Runs `operation` on the durable tracker unless it is degraded and not yet due for a
    /// probe. `None` means "decide from memory".
    async fn durable<T>(&self, operation: impl Future<Output = Result<T>>) -> Option<T> {
        if !self.health.should_try(now()) {
            return None;
        }
        match operation.await {
            Ok(value) => {
                if self.health.succeeded() {
                    tracing::info!("dedup store is reachable again");
                    match self.persist_to_cache().await {
                        Ok(count) => {
                            tracing::info!(count, "dedup store resynced the ids accepted during the outage")
                        }
                        Err(err) => self.failed(&err),
                    }
                }
                Some(value)
            }
            Err(err) => {
                self.failed(&err);
                None
            }
        }
    }

    fn failed(&self, err: &Error) {
        if self.health.failed(now()) {
            tracing::warn!(error = %err, "dedup store unavailable; deduplicating in memory until it returns");
            metrics::counter!("mesh_storage_degraded_total", "store" => "dedup").increment(1);
        }
    }
}

/// Now, on tokio's clock so tests can pause time.
fn now() -> std::time::Instant {
    Instant::now().into_std()
}

#[async_trait]
impl MessageTracker for LayeredTracker {
    async fn check_and_mark(&self, id: MessageId) -> Result<bool> {
        if self.memory.has_seen_now(id) {
            return Ok(false);
        }
        match self.durable(self.durable.check_and_mark(id)).await {
            Some(first) => {
                self.memory.mark_seen_now(id);
                Ok(first)
            }
            None => {
                let first = self.memory.check_and_mark_now(id);
                if first {
                    self.remember_pending(id);
                }
                Ok(first)
            }
        }
    }

    async fn has_seen(&self, id: MessageId) -> Result<bool> {
        if self.memory.has_seen_now(id) {
            return Ok(true);
        }
        Ok(self.durable(self.durable.has_seen(id)).await.unwrap_or(false))
    }

    async fn mark_seen(&self, id: MessageId) -> Result<()> {
        self.memory.mark_seen_now(id);
        if self.durable(self.durable.mark_seen(id)).await.is_none() {
            self.remember_pending(id);
        }
        Ok(())
    }

    async fn cleanup_expired(&self) -> Result<usize> {
        let local = self.memory.cleanup_expired().await?;
        Ok(local + self.durable(self.durable.cleanup_expired()).await.unwrap_or(0))
    }

    async fn len(&self) -> Result<usize> {
        match self.durable(self.durable.len()).await {
            Some(len) => Ok(len),
            None => self.memory.len().await,
        }
    }

    async fn recent(&self, limit: usize) -> Result<Vec<MessageId>> {
        match self.durable(self.durable.recent(limit)).await {
            Some(ids) => Ok(ids),
            None => self.memory.recent(limit).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use proptest::prelude::*;

    use super::*;
    use crate::conformance;
    use crate::{MockMessageTracker, TrackerConfig};

    fn config(expiration: Duration) -> TrackerConfig {
        TrackerConfig { capacity: 100_000, expiration }
    }

    /// A durable tracker whose reachability the test controls: a memory tracker behind a
    /// switch.
    struct Switchable {
        inner: MemoryTracker,
        up: AtomicBool,
    }

    impl Switchable {
        fn check(&self) -> Result<()> {
            if self.up.load(Ordering::Acquire) {
                Ok(())
            } else {
                Err(Error::Unavailable { backend: "test", detail: "switched off".into() })
            }
        }
    }

    #[async_trait]
    impl MessageTracker for Switchable {
        async fn check_and_mark(&self, id: MessageId) -> Result<bool> {
            self.check()?;
            self.inner.check_and_mark(id).await
        }
        async fn has_seen(&self, id: MessageId) -> Result<bool> {
            self.check()?;
            self.inner.has_seen(id).await
        }
        async fn mark_seen(&self, id: MessageId) -> Result<()> {
            self.check()?;
            self.inner.mark_seen(id).await
        }
        async fn cleanup_expired(&self) -> Result<usize> {
            self.check()?;
            self.inner.cleanup_expired().await
        }
        async fn len(&self) -> Result<usize> {
            self.check()?;
            self.inner.len().await
        }
        async fn recent(&self, limit: usize) -> Result<Vec<MessageId>> {
            self.check()?;
            self.inner.recent(limit).await
        }
    }

    fn switchable() -> Arc<Switchable> {
        Arc::new(Switchable {
            inner: MemoryTracker::new(config(Duration::from_secs(300))),
            up: AtomicBool::new(true),
        })
    }

    #[tokio::test]
    async fn passes_the_conformance_suite() {
        let durable = Arc::new(MemoryTracker::new(config(conformance::EXPIRATION)));
        conformance::run_all(Arc::new(LayeredTracker::new(config(conformance::EXPIRATION), durable))).await;
    }

    #[tokio::test]
    async fn a_known_id_is_answered_from_memory_without_a_round_trip() {
        let id = MessageId::new();
        let mut durable = MockMessageTracker::new();
        durable.expect_check_and_mark().times(1).returning(|_| Ok(true));
        let layered = LayeredTracker::new(config(Duration::from_secs(300)), Arc::new(durable));
        assert!(layered.check_and_mark(id).await.unwrap());
        // The mock allows one call only: these must be answered from memory.
        assert!(!layered.check_and_mark(id).await.unwrap());
        assert!(layered.has_seen(id).await.unwrap());
    }

    #[tokio::test]
    async fn the_durable_tracker_decides_across_processes() {
        let shared = switchable();
        let node_a = LayeredTracker::new(config(Duration::from_secs(300)), shared.clone());
        let node_b = LayeredTracker::new(config(Duration::from_secs(300)), shared);
        let id = MessageId::new();
        assert!(node_a.check_and_mark(id).await.unwrap());
        assert!(!node_b.check_and_mark(id).await.unwrap(), "another process already took it");
    }

    #[tokio::test]
    async fn load_from_cache_warms_memory() {
        let durable = switchable();
        let ids: Vec<MessageId> = (0..3).map(|_| MessageId::new()).collect();
        for id in &ids {
            durable.mark_seen(*id).await.unwrap();
        }
        let layered = LayeredTracker::new(config(Duration::from_secs(300)), durable.clone());
        assert_eq!(layered.load_from_cache().await.unwrap(), 3);
        durable.up.store(false, Ordering::Release);
        for id in ids {
            assert!(!layered.check_and_mark(id).await.unwrap(), "known from the warm start");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn degrades_to_memory_and_resyncs_when_the_server_returns() {
        let durable = switchable();
        let layered = LayeredTracker::new(config(Duration::from_secs(300)), durable.clone());
        let before = MessageId::new();
        assert!(layered.check_and_mark(before).await.unwrap());

        durable.up.store(false, Ordering::Release);
        let during: Vec<MessageId> = (0..5).map(|_| MessageId::new()).collect();
        for id in &during {
            assert!(layered.check_and_mark(*id).await.unwrap(), "memory keeps deciding");
            assert!(!layered.check_and_mark(*id).await.unwrap(), "and still deduplicates");
        }
        assert!(layered.is_degraded());
        assert!(!durable.inner.has_seen(during[0]).await.unwrap(), "nothing reached the server yet");

        durable.up.store(true, Ordering::Release);
        tokio::time::advance(LayeredTracker::DEFAULT_RETRY_INTERVAL).await;
        // The next operation probes the server, succeeds, and writes back the outage's ids.
        assert!(layered.check_and_mark(MessageId::new()).await.unwrap());
        assert!(!layered.is_degraded());
        for id in &during {
            assert!(durable.inner.has_seen(*id).await.unwrap(), "accepted during the outage, not lost");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_server_is_probed_once_per_interval_not_per_message() {
        let mut durable = MockMessageTracker::new();
        durable
            .expect_check_and_mark()
            .times(2)
            .returning(|_| Err(Error::Unavailable { backend: "test", detail: "down".into() }));
        let layered = LayeredTracker::new(config(Duration::from_secs(300)), Arc::new(durable));
        for _ in 0..100 {
            layered.check_and_mark(MessageId::new()).await.unwrap();
        }
        tokio::time::advance(LayeredTracker::DEFAULT_RETRY_INTERVAL).await;
        for _ in 0..100 {
            layered.check_and_mark(MessageId::new()).await.unwrap();
        }
    }

    /// A real outage: the Redis server is reached through a proxy that the test cuts (every
    /// connection killed, the port closed) and restores.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn survives_a_real_redis_outage() {
        use mesh_testkit::{REDIS_URL_VAR, RedisNamespace, TcpProxy, backend_url};

        use crate::RedisTracker;

        let Some(url) = backend_url(REDIS_URL_VAR, "layered tracker over a redis outage") else { return };
        let namespace = RedisNamespace::create(&url);
        let proxy = TcpProxy::start(&namespace.server_addr()).await;
        let expiration = Duration::from_secs(300);
        let through_proxy =
            RedisTracker::new(namespace.pool_via(proxy.addr()), namespace.prefix(), expiration);
        let direct = RedisTracker::new(namespace.pool().clone(), namespace.prefix(), expiration);
        let layered = LayeredTracker::new(config(expiration), Arc::new(through_proxy))
            .with_retry_interval(Duration::from_millis(100));
        assert!(layered.check_and_mark(MessageId::new()).await.unwrap());

        proxy.cut();
        let during: Vec<MessageId> = (0..5).map(|_| MessageId::new()).collect();
        for id in &during {
            assert!(layered.check_and_mark(*id).await.unwrap(), "memory keeps deciding");
            assert!(!layered.check_and_mark(*id).await.unwrap(), "and still deduplicates");
        }
        assert!(layered.is_degraded());
        assert!(!direct.has_seen(during[0]).await.unwrap(), "nothing reached the server");

        proxy.restore().await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while layered.is_degraded() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(120)).await;
            layered.check_and_mark(MessageId::new()).await.unwrap();
        }
        assert!(!layered.is_degraded(), "recovers once the server is reachable again");
        for id in &during {
            assert!(direct.has_seen(*id).await.unwrap(), "accepted during the outage, written back");
        }
        namespace.cleanup().await;
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn behaves_like_the_reference_model(ops in conformance::operations()) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let durable = Arc::new(MemoryTracker::new(config(Duration::from_secs(300))));
            let layered = LayeredTracker::new(config(Duration::from_secs(300)), durable);
            runtime.block_on(conformance::check_against_model(&layered, &ops));
        }
    }
}
