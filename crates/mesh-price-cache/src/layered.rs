//! [`LayeredPriceStore`]: a [`MemoryPriceStore`] that answers every read and decides every
//! write, in front of a durable store (Redis or PostgreSQL) that keeps prices across restarts.
//!
//! - **Write-behind**: [`PriceStore::store`] decides newest-wins in memory and returns; it never
//!   waits on the durable store. A price that changes memory marks its asset dirty (the asset
//!   only). A flusher task writes the current memory price of every dirty asset with
//!   [`PriceStore::store_many`], one call per batch of up to 4,096 assets, every flush interval
//!   (default 100 ms) and as soon as a batch's worth is dirty. Updates of one asset between two
//!   flushes coalesce into one write of the newest. A price memory ignores is not sent on.
//! - **Lag**: [`LayeredPriceStore::write_lag`] is the age of the oldest change not yet
//!   acknowledged by the durable store (zero when everything is written), published as the
//!   gauge `mesh_storage_write_lag_seconds{store="prices"}`; `mesh_storage_written_total
//!   {store="prices"}` counts the prices the durable store acknowledged.
//! - **The flusher** is a tokio task started by the first change, on the runtime that made it,
//!   so the constructor needs no runtime; it holds only a weak reference to the store and is
//!   stopped when the store is dropped. [`LayeredPriceStore::flush`] writes everything dirty now:
//!   await it before dropping the store (the service does at shutdown), or the changes of the
//!   last flush interval reach only memory.
//! - **Restart**: [`LayeredPriceStore::load_from_storage`] fills memory from the durable store;
//!   [`LayeredPriceStore::persist_to_storage`] writes all of memory back (both are idempotent
//!   under newest-wins).
//! - **Degradation**: when a write fails (or gets no answer within the write timeout, default
//!   5 s), memory keeps serving and accepting prices, one warning is logged,
//!   `mesh_storage_degraded_total{store="prices"}` is counted, and the assets stay dirty. The
//!   flusher then probes the durable store once per retry interval; the first success writes
//!   every asset changed meanwhile, so nothing accepted during the outage is lost.
//!
//! Several processes may share the durable store: each write is still newest-wins on the
//! server, so they converge on the newest price whatever order their flushes land in.

use std::sync::Arc;

use async_trait::async_trait;
use mesh_storage_core::{DirtySet, Sink, WriteBehind, WriteStats, Written};
use mesh_types::{Asset, CachedPriceData, PriceMap, Supervisor};
use tokio::time::Duration;

use crate::{Error, MemoryPriceStore, PriceReader, PriceStore, Result, StoreOutcome};

/// Memory in front of a durable price store, written behind and degrading to memory when the
/// durable one fails.
pub struct LayeredPriceStore {
    /// Marks the assets memory changed and writes their current prices.
    engine: WriteBehind<Durable>,
}

/// The durable store, as the write-behind engine writes to it: the current memory price of
/// each dirty asset.
struct Durable {
    memory: MemoryPriceStore,
    store: Arc<dyn PriceStore>,
}

/// The asset an idle store reads to check its durable store (whether it is held or not).
const PROBE_ASSET: &str = "PRICEMESH-PROBE";

#[async_trait]
impl Sink for Durable {
    type Pending = DirtySet<Asset>;
    type Error = Error;

    const STORE: &'static str = "prices";
    const TASK: &'static str = "price store";
    const DURABLE: &'static str = "durable price store";

    async fn write(&self, assets: &[Asset]) -> Result<Written> {
        // The price held now: every change up to this read is in it. A change after the read
        // marks its asset dirty again.
        let prices: Vec<CachedPriceData> =
            assets.iter().filter_map(|asset| self.memory.get_now(*asset)).collect();
        let entries = prices.len();
        let outcomes = self.store.store_many(prices).await?;
        Ok(Written { entries, changed: outcomes.iter().filter(|outcome| outcome.changed()).count() })
    }

    async fn probe(&self) -> Result<()> {
        let Ok(asset) = Asset::new(PROBE_ASSET) else { return Ok(()) };
        self.store.get(asset).await.map(drop)
    }
}

impl std::fmt::Debug for LayeredPriceStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayeredPriceStore")
            .field("memory", self.memory())
            .field("engine", &self.engine)
            .finish()
    }
}

impl LayeredPriceStore {
    /// Default time between probes of a failed durable store.
    pub const DEFAULT_RETRY_INTERVAL: Duration = WriteBehind::<Durable>::DEFAULT_RETRY_INTERVAL;
    /// Default time between two writes of the dirty prices.
    pub const DEFAULT_FLUSH_INTERVAL: Duration = WriteBehind::<Durable>::DEFAULT_FLUSH_INTERVAL;
    /// Default most prices per `store_many`; this many dirty assets also wake the flusher
    /// before its interval.
    pub const DEFAULT_BATCH_SIZE: usize = WriteBehind::<Durable>::DEFAULT_BATCH_SIZE;
    /// Default time a write may take before the durable store counts as failed.
    pub const DEFAULT_WRITE_TIMEOUT: Duration = WriteBehind::<Durable>::DEFAULT_WRITE_TIMEOUT;

    /// An empty memory store in front of `durable`; call
    /// [`LayeredPriceStore::load_from_storage`] to restore what `durable` holds. Needs no
    /// runtime: the flusher starts with the first change.
    pub fn new(durable: Arc<dyn PriceStore>) -> Self {
        let sink = Durable { memory: MemoryPriceStore::new(), store: durable };
        Self { engine: WriteBehind::new(sink, DirtySet::default()) }
    }

    fn memory(&self) -> &MemoryPriceStore {
        &self.engine.sink().memory
    }

    /// Sets how often a failed durable store is probed. Call before the first store.
    #[must_use]
    pub fn with_retry_interval(self, interval: Duration) -> Self {
        Self { engine: self.engine.with_retry_interval(interval) }
    }

    /// Sets how often dirty prices are written (default 100 ms): the lag a healthy durable
    /// store runs behind memory. Call before the first store.
    #[must_use]
    pub fn with_flush_interval(self, interval: Duration) -> Self {
        Self { engine: self.engine.with_flush_interval(interval) }
    }

    /// Sets the most prices one `store_many` carries (default 4,096); this many dirty assets
    /// wake the flusher early. Call before the first store.
    #[must_use]
    pub fn with_batch_size(self, batch_size: usize) -> Self {
        Self { engine: self.engine.with_batch_size(batch_size) }
    }

    /// Sets how long one write may take before the durable store counts as failed (default
    /// 5 s): a server that accepts connections but never answers degrades the store like one
    /// that refuses them. Call before the first store.
    #[must_use]
    pub fn with_write_timeout(self, timeout: Duration) -> Self {
        Self { engine: self.engine.with_write_timeout(timeout) }
    }

    /// Runs the write-behind flusher under `supervisor`, from now on (an idle store checks its
    /// backend too): a panic in it shows in the node's health, and it stops at the
    /// supervisor's shutdown. Call before the first change.
    pub fn supervise(&self, supervisor: &Supervisor) {
        self.engine.supervise(supervisor);
    }

    /// How far the durable store is behind memory: the age of the oldest change it has not
    /// acknowledged yet, zero when it holds everything.
    pub fn write_lag(&self) -> Duration {
        self.engine.write_lag()
    }

    /// Prices written so far and assets waiting.
    pub fn write_stats(&self) -> WriteStats {
        self.engine.stats()
    }

    /// Restores memory from the durable store (after a restart). Returns how many prices
    /// were loaded.
    ///
    /// # Errors
    /// When the durable store cannot be read.
    pub async fn load_from_storage(&self) -> Result<usize> {
        let prices = self.engine.sink().store.get_all().await?;
        let count = prices.len();
        for price in prices.into_values() {
            self.memory().store_now(price);
        }
        Ok(count)
    }

    /// An empty memory store in front of `durable`, written behind every `flush_interval` by
    /// a flusher under `supervisor`, with the prices `durable` holds restored: what a node
    /// starts with (a durable store that cannot be read is logged, and memory starts empty).
    pub async fn start(
        durable: Arc<dyn PriceStore>,
        flush_interval: Duration,
        supervisor: &Supervisor,
    ) -> Self {
        let store = Self::new(durable).with_flush_interval(flush_interval);
        match store.load_from_storage().await {
            Ok(count) => tracing::info!(count, "restored prices from durable storage"),
            Err(err) => {
                tracing::warn!(error = %err, "cannot load prices from durable storage; starting empty")
            }
        }
        store.supervise(supervisor);
        store
    }

    /// Writes every price in memory to the durable store (e.g. after the durable store lost
    /// its data). Returns how many the durable store took as new.
    ///
    /// # Errors
    /// When the durable store fails; the prices not written stay dirty.
    pub async fn persist_to_storage(&self) -> Result<usize> {
        self.engine.add(self.memory().get_all_now().into_keys());
        Ok(self.engine.flush().await?.changed)
    }

    /// Decides `price` in memory and marks its asset dirty when it changed.
    fn store_now(&self, price: CachedPriceData) -> StoreOutcome {
        let asset = price.asset;
        let outcome = self.memory().store_now(price);
        if outcome.changed() {
            self.engine.add([asset]);
        }
        outcome
    }
}

#[async_trait]
impl PriceStore for LayeredPriceStore {
    async fn store(&self, price: CachedPriceData) -> Result<StoreOutcome> {
        Ok(self.store_now(price))
    }

    async fn store_many(&self, prices: Vec<CachedPriceData>) -> Result<Vec<StoreOutcome>> {
        Ok(prices.into_iter().map(|price| self.store_now(price)).collect())
    }

    async fn get(&self, asset: Asset) -> Result<Option<CachedPriceData>> {
        Ok(self.memory().get_now(asset))
    }

    async fn get_all(&self) -> Result<PriceMap> {
        Ok(self.memory().get_all_now())
    }

    async fn len(&self) -> Result<usize> {
        self.memory().len().await
    }

    fn reader(&self) -> Option<PriceReader> {
        Some(self.memory().reader())
    }

    /// Writes every dirty price to the durable store now, whatever the flush interval or the
    /// store's health, and returns how many prices it wrote. When it returns `Ok`, every
    /// change made before the call is durable.
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
    use mesh_types::rust_decimal::Decimal;
    use tokio::time::Instant;

    use super::*;
    use crate::conformance::{Assets, Fixture, price};

    /// A durable store whose reachability the test controls, counting write attempts.
    #[derive(Default)]
    struct Switchable {
        inner: MemoryPriceStore,
        down: AtomicBool,
        attempts: AtomicUsize,
    }

    impl Switchable {
        fn check(&self) -> Result<()> {
            if self.down.load(Ordering::Acquire) {
                Err(Error::from(crate::BackendError::unavailable("test", "switched off")))
            } else {
                Ok(())
            }
        }
    }

    #[async_trait]
    impl PriceStore for Switchable {
        async fn store(&self, price: CachedPriceData) -> Result<StoreOutcome> {
            self.attempts.fetch_add(1, Ordering::Relaxed);
            self.check()?;
            self.inner.store(price).await
        }
        async fn store_many(&self, prices: Vec<CachedPriceData>) -> Result<Vec<StoreOutcome>> {
            self.attempts.fetch_add(1, Ordering::Relaxed);
            self.check()?;
            self.inner.store_many(prices).await
        }
        async fn get(&self, asset: Asset) -> Result<Option<CachedPriceData>> {
            self.check()?;
            self.inner.get(asset).await
        }
        async fn get_all(&self) -> Result<PriceMap> {
            self.check()?;
            self.inner.get_all().await
        }
        async fn len(&self) -> Result<usize> {
            self.check()?;
            self.inner.len().await
        }
    }

    crate::price_store_conformance!(
        suite,
        async {
            let durable = Arc::new(MemoryPriceStore::new());
            let layered = Arc::new(LayeredPriceStore::new(durable.clone()));
            Some(Fixture::new(layered.clone()).then(async move {
                layered.flush().await.unwrap();
                assert_eq!(
                    durable.get_all_now(),
                    layered.get_all().await.unwrap(),
                    "written behind, all of it"
                );
            }))
        },
        model_cases = 128
    );

    #[tokio::test]
    async fn store_returns_before_the_durable_store_has_the_price_and_flush_writes_it() {
        let durable = Arc::new(Switchable::default());
        let layered = LayeredPriceStore::new(durable.clone()).with_flush_interval(Duration::from_secs(3600));
        let assets = Assets::fresh();
        let first = price(assets.nth(0), 1, 0, 1, Decimal::ONE);
        assert_eq!(layered.store(first.clone()).await.unwrap(), StoreOutcome::Inserted);
        assert_eq!(durable.attempts.load(Ordering::Relaxed), 0, "store did not wait on the durable store");
        assert_eq!(layered.write_stats().pending, 1);
        assert_eq!(layered.flush().await.unwrap(), 1);
        assert_eq!(durable.inner.get_now(first.asset), Some(first));
        assert_eq!(layered.write_stats(), WriteStats { written: 1, batches: 1, pending: 0 });
        assert_eq!(layered.flush().await.unwrap(), 0, "nothing dirty, nothing written");
        assert_eq!(durable.attempts.load(Ordering::Relaxed), 1, "an empty flush asks nobody");
    }

    #[tokio::test]
    async fn updates_between_flushes_coalesce_into_the_newest() {
        let durable = Arc::new(Switchable::default());
        let layered = LayeredPriceStore::new(durable.clone()).with_flush_interval(Duration::from_secs(3600));
        let asset = Assets::fresh().nth(0);
        for second in 1..=100 {
            layered.store(price(asset, second, 0, 1, Decimal::from(second))).await.unwrap();
        }
        layered.store(price(asset, 7, 0, 1, Decimal::ONE)).await.unwrap();
        assert_eq!(layered.flush().await.unwrap(), 1, "one write for 100 updates of one asset");
        assert_eq!(durable.inner.get_now(asset).map(|p| p.price), Some(Decimal::from(100)));
    }

    #[tokio::test(start_paused = true)]
    async fn the_flusher_writes_within_the_flush_interval() {
        let durable = Arc::new(Switchable::default());
        let layered = LayeredPriceStore::new(durable.clone());
        let assets = Assets::fresh();
        for n in 0..10 {
            layered.store(price(assets.nth(n), 1, 0, 1, Decimal::ONE)).await.unwrap();
        }
        tokio::time::advance(Duration::from_millis(40)).await;
        assert_eq!(layered.write_lag(), Duration::from_millis(40), "the age of the oldest unwritten change");
        tokio::time::sleep(LayeredPriceStore::DEFAULT_FLUSH_INTERVAL).await;
        assert_eq!(durable.inner.get_all_now().len(), 10, "written behind without a flush call");
        assert_eq!(layered.write_lag(), Duration::ZERO);
        assert_eq!(durable.attempts.load(Ordering::Relaxed), 1, "one batch for the ten");
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_batch_wakes_the_flusher_early() {
        let durable = Arc::new(Switchable::default());
        let layered = LayeredPriceStore::new(durable.clone())
            .with_flush_interval(Duration::from_secs(3600))
            .with_batch_size(50);
        let assets = Assets::fresh();
        layered.store(price(assets.nth(0), 1, 0, 1, Decimal::ONE)).await.unwrap();
        // The interval's first tick fires at once and writes that one.
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(durable.inner.get_all_now().len(), 1);
        for n in 1..50 {
            layered.store(price(assets.nth(n), 1, 0, 1, Decimal::ONE)).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(durable.inner.get_all_now().len(), 1, "49 dirty assets wait for the interval");
        layered.store(price(assets.nth(50), 1, 0, 1, Decimal::ONE)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(durable.inner.get_all_now().len(), 51, "the 50th dirty asset woke the flusher");
    }

    #[tokio::test]
    async fn a_restarted_node_restores_its_prices() {
        let durable = Arc::new(MemoryPriceStore::new());
        let assets = Assets::fresh();
        let before = LayeredPriceStore::new(durable.clone());
        for i in 0..3 {
            before.store(price(assets.nth(i), 1, 0, 1, Decimal::ONE)).await.unwrap();
        }
        before.flush().await.unwrap();
        drop(before);
        let after = LayeredPriceStore::new(durable);
        assert_eq!(after.load_from_storage().await.unwrap(), 3);
        assert_eq!(after.get_all().await.unwrap().len(), 3);
        assert_eq!(after.write_stats().pending, 0, "loaded prices are not written back");
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_the_store_stops_its_flusher() {
        let durable = Arc::new(Switchable::default());
        let layered = LayeredPriceStore::new(durable.clone());
        layered.store(price(Assets::fresh().nth(0), 1, 0, 1, Decimal::ONE)).await.unwrap();
        let flusher = layered.engine.task().expect("started by the first change");
        drop(layered);
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(flusher.is_finished());
    }

    #[tokio::test(start_paused = true)]
    async fn degrades_to_memory_and_resyncs_when_the_server_returns() {
        let durable = Arc::new(Switchable::default());
        let layered = LayeredPriceStore::new(durable.clone());
        let assets = Assets::fresh();

        durable.down.store(true, Ordering::Release);
        let during = price(assets.nth(0), 5, 0, 1, Decimal::TWO);
        assert_eq!(
            layered.store(during.clone()).await.unwrap(),
            StoreOutcome::Inserted,
            "memory keeps accepting"
        );
        assert_eq!(layered.get(during.asset).await.unwrap(), Some(during.clone()), "and serving");
        tokio::time::sleep(LayeredPriceStore::DEFAULT_FLUSH_INTERVAL * 2).await;
        assert!(layered.is_degraded(), "the flusher's write failed");
        assert!(durable.inner.get_now(during.asset).is_none());
        assert_eq!(layered.write_stats().pending, 1, "still dirty");
        assert!(layered.write_lag() >= LayeredPriceStore::DEFAULT_FLUSH_INTERVAL);

        durable.down.store(false, Ordering::Release);
        tokio::time::sleep(
            LayeredPriceStore::DEFAULT_RETRY_INTERVAL + LayeredPriceStore::DEFAULT_FLUSH_INTERVAL,
        )
        .await;
        assert!(!layered.is_degraded(), "the next probe succeeded");
        assert_eq!(durable.inner.get_now(during.asset), Some(during), "accepted during the outage, not lost");
        assert_eq!(layered.write_lag(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_store_notices_a_dead_server_and_its_return() {
        let durable = Arc::new(Switchable::default());
        let layered = LayeredPriceStore::new(durable.clone());
        let supervisor = mesh_types::Supervisor::new();
        layered.supervise(&supervisor);
        durable.down.store(true, Ordering::Release);
        // Nothing is ever stored: only the idle check can find the outage.
        tokio::time::sleep(
            BackendHealth::IDLE_PROBE_INTERVAL + LayeredPriceStore::DEFAULT_FLUSH_INTERVAL * 2,
        )
        .await;
        assert!(layered.is_degraded(), "the idle check found the dead server");
        assert_eq!(durable.attempts.load(Ordering::Relaxed), 0, "without writing anything");
        durable.down.store(false, Ordering::Release);
        tokio::time::sleep(
            LayeredPriceStore::DEFAULT_RETRY_INTERVAL + LayeredPriceStore::DEFAULT_FLUSH_INTERVAL * 2,
        )
        .await;
        assert!(!layered.is_degraded(), "and its return");
        supervisor.shutdown(Duration::from_secs(1)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_server_is_probed_once_per_interval_not_per_flush() {
        let durable = Arc::new(Switchable::default());
        durable.down.store(true, Ordering::Release);
        let layered = LayeredPriceStore::new(durable.clone());
        let assets = Assets::fresh();
        for n in 0..100 {
            layered.store(price(assets.nth(n), 1, 0, 1, Decimal::ONE)).await.unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // 500 ms: five flush intervals, one failed write.
        assert_eq!(durable.attempts.load(Ordering::Relaxed), 1);
        tokio::time::sleep(LayeredPriceStore::DEFAULT_RETRY_INTERVAL).await;
        assert_eq!(durable.attempts.load(Ordering::Relaxed), 2, "one probe per retry interval");
    }

    #[tokio::test(start_paused = true)]
    async fn persist_to_storage_flushes_everything() {
        let durable = Arc::new(Switchable::default());
        durable.down.store(true, Ordering::Release);
        let layered = LayeredPriceStore::new(durable.clone());
        let assets = Assets::fresh();
        for i in 0..4 {
            layered.store(price(assets.nth(i), 1, 0, 1, Decimal::ONE)).await.unwrap();
        }
        assert!(layered.persist_to_storage().await.is_err(), "still down");
        assert_eq!(layered.write_stats().pending, 4, "kept dirty");
        durable.down.store(false, Ordering::Release);
        assert_eq!(layered.persist_to_storage().await.unwrap(), 4);
        assert_eq!(durable.inner.get_all_now().len(), 4);
        assert_eq!(layered.persist_to_storage().await.unwrap(), 0, "all of memory again, nothing new");
    }

    #[test]
    fn the_lag_gauge_returns_to_zero_after_a_flush() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let gauge = |text: &str| -> Option<f64> {
            text.lines()
                .find(|line| line.starts_with("mesh_storage_write_lag_seconds{store=\"prices\"}"))
                .and_then(|line| line.rsplit(' ').next())
                .and_then(|value| value.parse().ok())
        };
        // A local recorder sees what this thread records: a current-thread runtime keeps the
        // store and its flusher here.
        metrics::with_local_recorder(&recorder, || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .start_paused(true)
                .build()
                .unwrap();
            runtime.block_on(async {
                let durable = Arc::new(Switchable::default());
                durable.down.store(true, Ordering::Release);
                let layered = LayeredPriceStore::new(durable.clone());
                layered.store(price(Assets::fresh().nth(0), 1, 0, 1, Decimal::ONE)).await.unwrap();
                tokio::time::sleep(Duration::from_millis(350)).await;
                let lagging = gauge(&handle.render()).expect("the gauge is published");
                assert!(lagging >= 0.3, "{lagging}");
                assert!(layered.write_lag() >= Duration::from_millis(350));

                durable.down.store(false, Ordering::Release);
                layered.flush().await.unwrap();
                assert_eq!(layered.write_lag(), Duration::ZERO);
                let text = handle.render();
                assert_eq!(gauge(&text), Some(0.0), "{text}");
                assert!(text.contains("# HELP mesh_storage_write_lag_seconds"), "{text}");
                assert!(text.contains("mesh_storage_written_total{store=\"prices\"} 1"), "{text}");
                assert!(text.contains("mesh_storage_degraded_total{store=\"prices\"} 1"), "{text}");
            });
        });
    }

    /// Stores through `layered` while `proxy` is frozen (connections open, no bytes pass):
    /// `store` must not wait on the server, and after the thaw everything reaches `direct`.
    async fn keeps_storing_while_the_server_is_frozen(
        layered: &LayeredPriceStore,
        direct: &dyn PriceStore,
        proxy: &mesh_testkit::TcpProxy,
    ) {
        let assets = Assets::fresh();
        layered.store(price(assets.nth(0), 1, 0, 1, Decimal::ONE)).await.unwrap();
        layered.flush().await.unwrap();

        proxy.freeze();
        let prices: Vec<CachedPriceData> =
            (1..=2_000).map(|n| price(assets.nth(n), 2, 0, 1, Decimal::from(n))).collect();
        tokio::time::timeout(Duration::from_secs(2), async {
            for p in &prices {
                assert!(layered.store(p.clone()).await.unwrap().changed());
            }
        })
        .await
        .expect("store waited on the frozen server");
        // The flusher is now stuck on its write; the lag grows.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(layered.write_lag() >= Duration::from_millis(300), "lag {:?}", layered.write_lag());

        proxy.thaw();
        let deadline = Instant::now() + Duration::from_secs(20);
        while layered.write_lag() > Duration::ZERO && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(layered.write_lag(), Duration::ZERO, "the flusher caught up after the thaw");
        let held = direct.get_all().await.unwrap();
        for p in &prices {
            assert_eq!(held.get(&p.asset), Some(p), "written after the thaw");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_frozen_postgres_does_not_hold_up_store() {
        use mesh_testkit::{DATABASE_URL_VAR, PgSchema, TcpProxy, backend_url};

        use crate::PostgresPriceStore;

        let Some(url) = backend_url(DATABASE_URL_VAR, "layered price store over a frozen postgres") else {
            return;
        };
        let schema = PgSchema::create(&url).await;
        let proxy = TcpProxy::start(&schema.server_addr()).await;
        let layered =
            LayeredPriceStore::new(Arc::new(PostgresPriceStore::new(schema.pool_via(proxy.addr()).await)))
                .with_retry_interval(Duration::from_millis(100));
        let direct = PostgresPriceStore::new(schema.pool().clone());
        keeps_storing_while_the_server_is_frozen(&layered, &direct, &proxy).await;
        schema.cleanup().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_frozen_redis_does_not_hold_up_store() {
        use mesh_testkit::{REDIS_URL_VAR, RedisNamespace, TcpProxy, backend_url};

        use crate::RedisPriceStore;

        let Some(url) = backend_url(REDIS_URL_VAR, "layered price store over a frozen redis") else { return };
        let namespace = RedisNamespace::create(&url);
        let proxy = TcpProxy::start(&namespace.server_addr()).await;
        let ttl = RedisPriceStore::DEFAULT_TTL;
        let through_proxy = RedisPriceStore::new(namespace.pool_via(proxy.addr()), namespace.prefix(), ttl);
        let layered =
            LayeredPriceStore::new(Arc::new(through_proxy)).with_retry_interval(Duration::from_millis(100));
        let direct = RedisPriceStore::new(namespace.pool().clone(), namespace.prefix(), ttl);
        keeps_storing_while_the_server_is_frozen(&layered, &direct, &proxy).await;
        namespace.cleanup().await;
    }

    /// A real outage: PostgreSQL is reached through a proxy that the test cuts (every
    /// connection killed, the port closed) and restores.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn survives_a_real_postgres_outage() {
        use mesh_testkit::{DATABASE_URL_VAR, PgSchema, TcpProxy, backend_url};

        use crate::PostgresPriceStore;

        let Some(url) = backend_url(DATABASE_URL_VAR, "layered price store over a postgres outage") else {
            return;
        };
        let schema = PgSchema::create(&url).await;
        let proxy = TcpProxy::start(&schema.server_addr()).await;
        let durable = PostgresPriceStore::new(schema.pool_via(proxy.addr()).await);
        let direct = PostgresPriceStore::new(schema.pool().clone());
        let layered =
            LayeredPriceStore::new(Arc::new(durable)).with_retry_interval(Duration::from_millis(100));
        let assets = Assets::fresh();
        layered.store(price(assets.nth(0), 1, 0, 1, Decimal::ONE)).await.unwrap();
        layered.flush().await.unwrap();

        proxy.cut();
        let during = price(assets.nth(1), 2, 0, 1, Decimal::TWO);
        assert_eq!(
            layered.store(during.clone()).await.unwrap(),
            StoreOutcome::Inserted,
            "memory keeps accepting"
        );
        assert_eq!(layered.get(during.asset).await.unwrap(), Some(during.clone()), "and serving");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !layered.is_degraded() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(layered.is_degraded(), "the flusher found the server gone");
        assert_eq!(direct.get(during.asset).await.unwrap(), None, "nothing reached the server");

        proxy.restore().await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while (layered.is_degraded() || layered.write_lag() > Duration::ZERO) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(!layered.is_degraded(), "recovers once the server is reachable again");
        assert_eq!(
            direct.get(during.asset).await.unwrap(),
            Some(during),
            "accepted during the outage, written back"
        );
        schema.cleanup().await;
    }
}
