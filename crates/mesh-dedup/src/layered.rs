//! [`LayeredTracker`]: a [`MemoryTracker`] that decides every message, in front of a durable,
//! shared tracker (Redis or PostgreSQL) that remembers the ids across restarts.
//!
//! - **Memory decides**: `check_and_mark`, `has_seen` and `mark_seen` answer from memory and
//!   never wait on the durable tracker, so the gossip engine, which calls them for every
//!   update it receives, does no I/O. `len` and `recent` describe memory too.
//! - **Write-behind**: every id memory takes as new is queued; a flusher task writes the queue
//!   with [`MessageTracker::mark_seen_many`], up to 4,096 ids per call, every flush interval
//!   (default 100 ms) and as soon as a batch's worth is queued. The queue holds at most the
//!   memory tracker's capacity; beyond it the oldest ids are dropped (memory would have
//!   evicted them too) and counted in `mesh_storage_dropped_total{store="dedup"}`.
//! - **Lag**: [`LayeredTracker::write_lag`] is the age of the oldest id not yet acknowledged by
//!   the durable tracker (zero when everything is written), published as the gauge
//!   `mesh_storage_write_lag_seconds{store="dedup"}`; `mesh_storage_written_total
//!   {store="dedup"}` counts the ids written.
//! - **The flusher** is a tokio task started by the first queued id, on the runtime that queued
//!   it; it holds only a weak reference and is stopped when the tracker is dropped.
//!   [`LayeredTracker::flush`] writes the queue now: await it before dropping the tracker (the
//!   service does at shutdown).
//! - **Warm start** is a choice: [`LayeredTracker::load_from_cache`] fills memory from the
//!   durable tracker; [`LayeredTracker::start`], what a node uses, does not (see there why).
//! - **Degradation**: when a write fails (or gets no answer within the write timeout, default
//!   5 s), one warning is logged, `mesh_storage_degraded_total{store="dedup"}` is counted, and
//!   the ids stay queued. The flusher then probes the durable tracker once per retry interval;
//!   the first success writes everything queued meanwhile, so nothing accepted during the
//!   outage is lost.
//!
//! **No cross-process atomicity.** Because memory decides, two processes sharing one Redis or
//! PostgreSQL no longer agree through the layered tracker on which of them handles a message: a
//! process learns the other's ids only if it warm-starts ([`LayeredTracker::load_from_cache`]),
//! so a message reaching both while they run is processed by both. Processing a price update twice is harmless — the price stores keep the
//! newest price whatever the order — but a service that needs the atomic decision uses the
//! durable tracker directly (it implements [`MessageTracker`] too), paying one round trip per
//! message.

use std::sync::Arc;

use async_trait::async_trait;
use mesh_storage_core::{Queue, Sink, WriteBehind, WriteStats, Written};
use mesh_types::{MessageId, Supervisor};
use tokio::time::Duration;

use crate::{Error, MemoryTracker, MessageTracker, Result, TrackerConfig};

/// Memory in front of a durable tracker, written behind and degrading to memory alone when the
/// durable one fails.
pub struct LayeredTracker {
    memory: MemoryTracker,
    /// The most ids memory holds: what a warm start loads.
    capacity: usize,
    /// Queues the ids memory took as new and writes them to the durable tracker.
    engine: WriteBehind<Durable>,
}

/// The durable tracker, as the write-behind engine writes to it.
struct Durable(Arc<dyn MessageTracker>);

#[async_trait]
impl Sink for Durable {
    type Pending = Queue<MessageId>;
    type Error = Error;

    const STORE: &'static str = "dedup";
    const TASK: &'static str = "tracker";
    const DURABLE: &'static str = "durable tracker";

    async fn write(&self, ids: &[MessageId]) -> Result<Written> {
        self.0.mark_seen_many(ids).await?;
        Ok(Written { entries: ids.len(), changed: ids.len() })
    }

    async fn probe(&self) -> Result<()> {
        self.0.has_seen(MessageId::new()).await.map(drop)
    }
}

impl std::fmt::Debug for LayeredTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayeredTracker").field("memory", &self.memory).field("engine", &self.engine).finish()
    }
}

impl LayeredTracker {
    /// Default time between probes of a failed durable tracker.
    pub const DEFAULT_RETRY_INTERVAL: Duration = WriteBehind::<Durable>::DEFAULT_RETRY_INTERVAL;
    /// Default time between two writes of the queued ids.
    pub const DEFAULT_FLUSH_INTERVAL: Duration = WriteBehind::<Durable>::DEFAULT_FLUSH_INTERVAL;
    /// Default most ids per `mark_seen_many`; this many queued ids also wake the flusher
    /// before its interval.
    pub const DEFAULT_BATCH_SIZE: usize = WriteBehind::<Durable>::DEFAULT_BATCH_SIZE;
    /// Default time a write may take before the durable tracker counts as failed.
    pub const DEFAULT_WRITE_TIMEOUT: Duration = WriteBehind::<Durable>::DEFAULT_WRITE_TIMEOUT;

    /// Memory sized by `config` in front of `durable`; the queue holds at most the capacity.
    /// Needs no runtime: the flusher starts with the first queued id.
    pub fn new(config: TrackerConfig, durable: Arc<dyn MessageTracker>) -> Self {
        Self {
            memory: MemoryTracker::new(config),
            capacity: config.capacity.max(1),
            engine: WriteBehind::new(Durable(durable), Queue::new(config.capacity)),
        }
    }

    fn configure(self, change: impl FnOnce(WriteBehind<Durable>) -> WriteBehind<Durable>) -> Self {
        Self { engine: change(self.engine), ..self }
    }

    /// Sets how often a failed durable tracker is probed. Call before the first use.
    #[must_use]
    pub fn with_retry_interval(self, interval: Duration) -> Self {
        self.configure(|engine| engine.with_retry_interval(interval))
    }

    /// Sets how often queued ids are written (default 100 ms). Call before the first use.
    #[must_use]
    pub fn with_flush_interval(self, interval: Duration) -> Self {
        self.configure(|engine| engine.with_flush_interval(interval))
    }

    /// Sets the most ids one `mark_seen_many` carries (default 4,096); this many queued ids
    /// wake the flusher early. Call before the first use.
    #[must_use]
    pub fn with_batch_size(self, batch_size: usize) -> Self {
        self.configure(|engine| engine.with_batch_size(batch_size))
    }

    /// Sets how long one write may take before the durable tracker counts as failed (default
    /// 5 s). Call before the first use.
    #[must_use]
    pub fn with_write_timeout(self, timeout: Duration) -> Self {
        self.configure(|engine| engine.with_write_timeout(timeout))
    }

    /// Runs the write-behind flusher under `supervisor`, from now on (an idle tracker checks
    /// its backend too): a panic in it shows in the node's health, and it stops at the
    /// supervisor's shutdown. Call before the first change.
    pub fn supervise(&self, supervisor: &Supervisor) {
        self.engine.supervise(supervisor);
    }

    /// How far the durable tracker is behind memory: the age of the oldest id it has not
    /// acknowledged yet, zero when it holds everything.
    pub fn write_lag(&self) -> Duration {
        self.engine.write_lag()
    }

    /// Ids written so far and ids waiting.
    pub fn write_stats(&self) -> WriteStats {
        self.engine.stats()
    }

    /// Fills memory with the durable tracker's most recent ids (up to the capacity), so a
    /// restarted node recognises what it saw before. Returns how many were loaded.
    ///
    /// # Errors
    /// When the durable tracker cannot be read.
    pub async fn load_from_cache(&self) -> Result<usize> {
        let ids = self.engine.sink().0.recent(self.capacity).await?;
        for id in &ids {
            self.memory.mark_seen_now(*id);
        }
        Ok(ids.len())
    }

    /// Memory sized by `config` in front of `durable`, written behind every `flush_interval`
    /// by a flusher under `supervisor`: what a node starts with. Memory starts empty, not
    /// warmed from `durable` ([`LayeredTracker::load_from_cache`] does that for whoever wants
    /// it): a restarted node has lost what it held only in memory — every provider's quote but
    /// the newest per asset, which its price store keeps — and the seen ids would make it refuse
    /// the very updates its peers' greetings bring back. Taking a recent message again costs one
    /// signature check and changes nothing in a newest-wins store.
    pub async fn start(
        config: TrackerConfig,
        durable: Arc<dyn MessageTracker>,
        flush_interval: Duration,
        supervisor: &Supervisor,
    ) -> Self {
        let tracker = Self::new(config, durable).with_flush_interval(flush_interval);
        tracker.supervise(supervisor);
        tracker
    }
}

#[async_trait]
impl MessageTracker for LayeredTracker {
    async fn check_and_mark(&self, id: MessageId) -> Result<bool> {
        let first = self.memory.check_and_mark_now(id);
        if first {
            self.engine.add([id]);
        }
        Ok(first)
    }

    async fn has_seen(&self, id: MessageId) -> Result<bool> {
        Ok(self.memory.has_seen_now(id))
    }

    async fn mark_seen(&self, id: MessageId) -> Result<()> {
        self.memory.mark_seen_now(id);
        self.engine.add([id]);
        Ok(())
    }

    async fn mark_seen_many(&self, ids: &[MessageId]) -> Result<()> {
        for id in ids {
            self.memory.mark_seen_now(*id);
        }
        self.engine.add(ids.iter().copied());
        Ok(())
    }

    async fn cleanup_expired(&self) -> Result<usize> {
        let local = self.memory.cleanup_expired().await?;
        // The durable tracker's own sweep: periodic, off the hot path, and left to the
        // flusher's probes while degraded.
        if self.engine.is_degraded() {
            return Ok(local);
        }
        match self.engine.sink().0.cleanup_expired().await {
            Ok(durable) => Ok(local.saturating_add(durable)),
            Err(err) => {
                self.engine.note_failure(&err);
                Ok(local)
            }
        }
    }

    async fn len(&self) -> Result<usize> {
        self.memory.len().await
    }

    async fn recent(&self, limit: usize) -> Result<Vec<MessageId>> {
        self.memory.recent(limit).await
    }

    /// Writes every queued id to the durable tracker now, whatever the flush interval or the
    /// tracker's health, and returns how many it wrote. When it returns `Ok`, every id queued
    /// before the call is durable.
    async fn flush(&self) -> Result<usize> {
        Ok(self.engine.flush().await?.entries)
    }

    fn is_degraded(&self) -> bool {
        self.engine.is_degraded()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use mesh_storage_core::BackendHealth;

    use super::*;
    use crate::conformance::Fixture;
    use crate::{MockMessageTracker, TrackerConfig};

    fn config(expiration: Duration) -> TrackerConfig {
        TrackerConfig { capacity: 100_000, expiration }
    }

    /// A durable tracker whose reachability the test controls: a memory tracker behind a
    /// switch, counting write attempts.
    struct Switchable {
        inner: MemoryTracker,
        up: AtomicBool,
        writes: AtomicUsize,
    }

    impl Switchable {
        fn check(&self) -> Result<()> {
            if self.up.load(Ordering::Acquire) {
                Ok(())
            } else {
                Err(Error::from(crate::BackendError::unavailable("test", "switched off")))
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
        async fn mark_seen_many(&self, ids: &[MessageId]) -> Result<()> {
            self.writes.fetch_add(1, Ordering::Relaxed);
            self.check()?;
            self.inner.mark_seen_many(ids).await
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
            writes: AtomicUsize::new(0),
        })
    }

    /// How long the durable tracker under the layered one in the suite keeps a mark.
    const DURABLE_EXPIRATION: Duration = Duration::from_secs(300);

    crate::message_tracker_conformance!(
        suite,
        |expiration| async move {
            let durable = Arc::new(MemoryTracker::new(config(DURABLE_EXPIRATION)));
            let layered = Arc::new(LayeredTracker::new(config(expiration), durable.clone()));
            Some(Fixture::new(layered.clone()).then(written_behind(layered, durable, expiration)))
        },
        model_cases = 128
    );

    /// After a flush the durable tracker holds every id the layered one remembers; and when the
    /// layered tracker keeps its marks as long as the durable one (so it has forgotten none the
    /// durable one still holds), exactly those.
    async fn written_behind(layered: Arc<LayeredTracker>, durable: Arc<MemoryTracker>, expiration: Duration) {
        let mut remembered = layered.recent(usize::MAX).await.unwrap();
        layered.flush().await.unwrap();
        for id in &remembered {
            assert!(durable.has_seen_now(*id), "written behind, all of it");
        }
        if expiration == DURABLE_EXPIRATION {
            let mut written = durable.recent(usize::MAX).await.unwrap();
            remembered.sort_unstable();
            written.sort_unstable();
            assert_eq!(remembered, written, "the durable tracker caught up");
        }
    }

    #[tokio::test]
    async fn the_hot_path_never_asks_the_durable_tracker() {
        let id = MessageId::new();
        // The mock expects no call at all: any would fail the test.
        let layered =
            LayeredTracker::new(config(Duration::from_secs(300)), Arc::new(MockMessageTracker::new()))
                .with_flush_interval(Duration::from_secs(3600));
        assert!(!layered.has_seen(id).await.unwrap());
        assert!(layered.check_and_mark(id).await.unwrap());
        assert!(!layered.check_and_mark(id).await.unwrap());
        assert!(layered.has_seen(id).await.unwrap());
        layered.mark_seen(MessageId::new()).await.unwrap();
        assert_eq!(layered.write_stats().pending, 2, "queued for the flusher");
    }

    #[tokio::test]
    async fn flush_writes_the_queued_ids_in_one_batch() {
        let ids: Vec<MessageId> = (0..10).map(|_| MessageId::new()).collect();
        let expected = ids.clone();
        let mut durable = MockMessageTracker::new();
        durable
            .expect_mark_seen_many()
            .withf(move |written: &[MessageId]| written == expected.as_slice())
            .times(1)
            .returning(|_| Ok(()));
        let layered = LayeredTracker::new(config(Duration::from_secs(300)), Arc::new(durable))
            .with_flush_interval(Duration::from_secs(3600));
        for id in &ids {
            assert!(layered.check_and_mark(*id).await.unwrap());
            assert!(!layered.check_and_mark(*id).await.unwrap(), "a duplicate is not queued again");
        }
        assert_eq!(layered.flush().await.unwrap(), 10);
        assert_eq!(layered.write_stats(), WriteStats { written: 10, batches: 1, pending: 0 });
        assert_eq!(layered.flush().await.unwrap(), 0, "an empty queue asks nobody");
    }

    #[tokio::test(start_paused = true)]
    async fn the_flusher_writes_within_the_flush_interval() {
        let durable = switchable();
        let layered = LayeredTracker::new(config(Duration::from_secs(300)), durable.clone());
        let id = MessageId::new();
        layered.check_and_mark(id).await.unwrap();
        tokio::time::advance(Duration::from_millis(30)).await;
        assert_eq!(layered.write_lag(), Duration::from_millis(30));
        tokio::time::sleep(LayeredTracker::DEFAULT_FLUSH_INTERVAL).await;
        assert!(durable.inner.has_seen_now(id), "written behind without a flush call");
        assert_eq!(layered.write_lag(), Duration::ZERO);
    }

    #[tokio::test]
    async fn processes_sharing_a_server_no_longer_decide_atomically() {
        let shared = switchable();
        let node_a = LayeredTracker::new(config(Duration::from_secs(300)), shared.clone());
        let node_b = LayeredTracker::new(config(Duration::from_secs(300)), shared.clone());
        let id = MessageId::new();
        assert!(node_a.check_and_mark(id).await.unwrap());
        assert!(
            node_b.check_and_mark(id).await.unwrap(),
            "memory decides: both processes take a message that reaches them both"
        );
        node_a.flush().await.unwrap();
        let node_c = LayeredTracker::new(config(Duration::from_secs(300)), shared.clone());
        node_c.load_from_cache().await.unwrap();
        assert!(!node_c.check_and_mark(id).await.unwrap(), "a warm start knows what was flushed");
        // The durable tracker still decides atomically for whoever asks it directly.
        let other = MessageId::new();
        assert!(shared.check_and_mark(other).await.unwrap());
        assert!(!shared.check_and_mark(other).await.unwrap());
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
        assert_eq!(layered.write_stats().pending, 0, "loaded ids are not written back");
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_tracker_notices_a_dead_server_and_its_return() {
        let durable = switchable();
        let layered = LayeredTracker::new(config(Duration::from_secs(300)), durable.clone());
        let supervisor = mesh_types::Supervisor::new();
        layered.supervise(&supervisor);
        durable.up.store(false, Ordering::Release);
        // Nothing is ever marked: only the idle check can find the outage.
        tokio::time::sleep(BackendHealth::IDLE_PROBE_INTERVAL + LayeredTracker::DEFAULT_FLUSH_INTERVAL * 2)
            .await;
        assert!(layered.is_degraded(), "the idle check found the dead server");
        assert_eq!(durable.writes.load(Ordering::Relaxed), 0, "without writing anything");
        durable.up.store(true, Ordering::Release);
        tokio::time::sleep(
            LayeredTracker::DEFAULT_RETRY_INTERVAL + LayeredTracker::DEFAULT_FLUSH_INTERVAL * 2,
        )
        .await;
        assert!(!layered.is_degraded(), "and its return");
        supervisor.shutdown(Duration::from_secs(1)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn degrades_to_memory_and_resyncs_when_the_server_returns() {
        let durable = switchable();
        let layered = LayeredTracker::new(config(Duration::from_secs(300)), durable.clone());
        let before = MessageId::new();
        assert!(layered.check_and_mark(before).await.unwrap());
        layered.flush().await.unwrap();

        durable.up.store(false, Ordering::Release);
        let during: Vec<MessageId> = (0..5).map(|_| MessageId::new()).collect();
        for id in &during {
            assert!(layered.check_and_mark(*id).await.unwrap(), "memory keeps deciding");
            assert!(!layered.check_and_mark(*id).await.unwrap(), "and still deduplicates");
        }
        tokio::time::sleep(LayeredTracker::DEFAULT_FLUSH_INTERVAL * 2).await;
        assert!(layered.is_degraded(), "the flusher's write failed");
        assert!(!durable.inner.has_seen_now(during[0]), "nothing reached the server yet");
        assert_eq!(layered.write_stats().pending, 5, "still queued");

        durable.up.store(true, Ordering::Release);
        tokio::time::sleep(LayeredTracker::DEFAULT_RETRY_INTERVAL + LayeredTracker::DEFAULT_FLUSH_INTERVAL)
            .await;
        assert!(!layered.is_degraded());
        for id in &during {
            assert!(durable.inner.has_seen_now(*id), "accepted during the outage, not lost");
        }
        assert_eq!(layered.write_lag(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_server_is_probed_once_per_interval_not_per_flush() {
        let durable = switchable();
        durable.up.store(false, Ordering::Release);
        let layered = LayeredTracker::new(config(Duration::from_secs(300)), durable.clone());
        for _ in 0..100 {
            layered.check_and_mark(MessageId::new()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(durable.writes.load(Ordering::Relaxed), 1, "five flush intervals, one failed write");
        tokio::time::sleep(LayeredTracker::DEFAULT_RETRY_INTERVAL).await;
        assert_eq!(durable.writes.load(Ordering::Relaxed), 2, "one probe per retry interval");
    }

    #[tokio::test]
    async fn the_queue_is_bounded_by_the_capacity() {
        let durable = switchable();
        durable.up.store(false, Ordering::Release);
        let config = TrackerConfig { capacity: 100, expiration: Duration::from_secs(300) };
        let layered =
            LayeredTracker::new(config, durable.clone()).with_flush_interval(Duration::from_secs(3600));
        let ids: Vec<MessageId> = (0..250).map(|_| MessageId::new()).collect();
        for id in &ids {
            layered.mark_seen(*id).await.unwrap();
        }
        assert_eq!(layered.write_stats().pending, 100);
        durable.up.store(true, Ordering::Release);
        layered.flush().await.unwrap();
        assert!(durable.inner.has_seen_now(ids[249]), "the newest are kept");
        assert!(!durable.inner.has_seen_now(ids[0]), "the oldest were dropped");
    }

    /// Marks ids through `layered` while `proxy` is frozen (connections open, no bytes pass):
    /// `check_and_mark` and `has_seen` must not wait on the server, and after the thaw the ids
    /// reach `direct`.
    async fn keeps_marking_while_the_server_is_frozen(
        layered: &LayeredTracker,
        direct: &dyn MessageTracker,
        proxy: &mesh_testkit::TcpProxy,
    ) {
        assert!(layered.check_and_mark(MessageId::new()).await.unwrap());
        layered.flush().await.unwrap();

        proxy.freeze();
        let ids: Vec<MessageId> = (0..2_000).map(|_| MessageId::new()).collect();
        tokio::time::timeout(Duration::from_secs(2), async {
            for id in &ids {
                assert!(layered.check_and_mark(*id).await.unwrap());
                assert!(layered.has_seen(*id).await.unwrap());
            }
        })
        .await
        .expect("check_and_mark waited on the frozen server");
        // The flusher is now stuck on its write; the lag grows.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(layered.write_lag() >= Duration::from_millis(300), "lag {:?}", layered.write_lag());

        proxy.thaw();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while layered.write_lag() > Duration::ZERO && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(layered.write_lag(), Duration::ZERO, "the flusher caught up after the thaw");
        for id in ids.iter().step_by(50) {
            assert!(direct.has_seen(*id).await.unwrap(), "written after the thaw");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_frozen_redis_does_not_hold_up_check_and_mark() {
        use mesh_testkit::{REDIS_URL_VAR, RedisNamespace, TcpProxy, backend_url};

        use crate::RedisTracker;

        let Some(url) = backend_url(REDIS_URL_VAR, "layered tracker over a frozen redis") else { return };
        let namespace = RedisNamespace::create(&url);
        let proxy = TcpProxy::start(&namespace.server_addr()).await;
        let expiration = Duration::from_secs(300);
        let through_proxy =
            RedisTracker::new(namespace.pool_via(proxy.addr()), namespace.prefix(), expiration);
        let layered = LayeredTracker::new(config(expiration), Arc::new(through_proxy))
            .with_retry_interval(Duration::from_millis(100));
        let direct = RedisTracker::new(namespace.pool().clone(), namespace.prefix(), expiration);
        keeps_marking_while_the_server_is_frozen(&layered, &direct, &proxy).await;
        namespace.cleanup().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_frozen_postgres_does_not_hold_up_check_and_mark() {
        use mesh_testkit::{DATABASE_URL_VAR, PgSchema, TcpProxy, backend_url};

        use crate::PostgresTracker;

        let Some(url) = backend_url(DATABASE_URL_VAR, "layered tracker over a frozen postgres") else {
            return;
        };
        let schema = PgSchema::create(&url).await;
        let proxy = TcpProxy::start(&schema.server_addr()).await;
        let expiration = Duration::from_secs(300);
        let through_proxy = PostgresTracker::new(schema.pool_via(proxy.addr()).await, expiration);
        let layered = LayeredTracker::new(config(expiration), Arc::new(through_proxy))
            .with_retry_interval(Duration::from_millis(100));
        let direct = PostgresTracker::new(schema.pool().clone(), expiration);
        keeps_marking_while_the_server_is_frozen(&layered, &direct, &proxy).await;
        schema.cleanup().await;
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
        layered.flush().await.unwrap();

        proxy.cut();
        let during: Vec<MessageId> = (0..5).map(|_| MessageId::new()).collect();
        for id in &during {
            assert!(layered.check_and_mark(*id).await.unwrap(), "memory keeps deciding");
            assert!(!layered.check_and_mark(*id).await.unwrap(), "and still deduplicates");
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !layered.is_degraded() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(layered.is_degraded(), "the flusher found the server gone");
        assert!(!direct.has_seen(during[0]).await.unwrap(), "nothing reached the server");

        proxy.restore().await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while (layered.is_degraded() || layered.write_lag() > Duration::ZERO)
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(!layered.is_degraded(), "recovers once the server is reachable again");
        for id in &during {
            assert!(direct.has_seen(*id).await.unwrap(), "accepted during the outage, written back");
        }
        namespace.cleanup().await;
    }
}
