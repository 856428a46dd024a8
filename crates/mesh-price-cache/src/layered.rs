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

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use mesh_storage_core::{BackendError, BackendHealth, Flusher, StoreMetrics};
use mesh_types::{Asset, CachedPriceData, PriceMap, Timestamp};
use tokio::time::{Duration, Instant, MissedTickBehavior};

use crate::{Error, MemoryPriceStore, PriceReader, PriceStore, Result, StoreOutcome};

/// Memory in front of a durable price store, written behind and degrading to memory when the
/// durable one fails.
pub struct LayeredPriceStore {
    shared: Arc<Shared>,
    /// Writes behind; started by the first change, aborted on drop.
    flusher: Flusher,
}

/// What the store and its flusher share. The flusher holds it weakly.
struct Shared {
    memory: MemoryPriceStore,
    durable: Arc<dyn PriceStore>,
    health: BackendHealth,
    metrics: StoreMetrics,
    config: Config,
    // A std Mutex: held to insert or take assets, never across an await.
    dirty: Mutex<Dirty>,
    /// Held by whoever writes to the durable store (the flusher, `flush`), so a `flush` that
    /// returns has seen every earlier change written, including a batch the flusher had in
    /// flight.
    writing: tokio::sync::Mutex<()>,
    written: AtomicU64,
    batches: AtomicU64,
}

#[derive(Debug, Clone, Copy)]
struct Config {
    flush_interval: Duration,
    batch_size: usize,
    write_timeout: Duration,
}

/// Assets whose memory price the durable store may not have yet.
#[derive(Default)]
struct Dirty {
    assets: HashSet<Asset, foldhash::fast::RandomState>,
    /// When the oldest change in `assets` was made; `None` while it is empty.
    since: Option<Instant>,
    /// When the oldest change of the batch being written was made; `None` when none is.
    in_flight_since: Option<Instant>,
}

impl Dirty {
    fn oldest(&self) -> Option<Instant> {
        earliest(self.since, self.in_flight_since)
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// What the write-behind has done so far: see [`LayeredPriceStore::write_stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Prices the durable store acknowledged.
    pub written: u64,
    /// `store_many` calls that succeeded.
    pub batches: u64,
    /// Assets changed in memory and not yet handed to the durable store.
    pub pending: usize,
}

/// What one write of the dirty assets did.
#[derive(Debug, Clone, Copy, Default)]
struct Written {
    /// Prices the durable store acknowledged.
    prices: usize,
    /// Of those, the ones it took as new (inserted or replaced).
    changed: usize,
}

impl std::fmt::Debug for LayeredPriceStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayeredPriceStore")
            .field("memory", &self.shared.memory)
            .field("degraded", &self.shared.health.is_degraded())
            .field("pending", &self.shared.lock_dirty().assets.len())
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update leaves the data consistent, even if a holder panicked.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl LayeredPriceStore {
    /// Default time between probes of a failed durable store.
    pub const DEFAULT_RETRY_INTERVAL: Duration = BackendHealth::DEFAULT_RETRY_INTERVAL;
    /// Default time between two writes of the dirty prices.
    pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_millis(100);
    /// Default most prices per `store_many`; this many dirty assets also wake the flusher
    /// before its interval.
    pub const DEFAULT_BATCH_SIZE: usize = 4096;
    /// Default time a write may take before the durable store counts as failed.
    pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

    /// An empty memory store in front of `durable`; call
    /// [`LayeredPriceStore::load_from_storage`] to restore what `durable` holds. Needs no
    /// runtime: the flusher starts with the first change.
    pub fn new(durable: Arc<dyn PriceStore>) -> Self {
        let store_metrics = StoreMetrics::register("prices");
        Self {
            shared: Arc::new(Shared {
                memory: MemoryPriceStore::new(),
                durable,
                health: BackendHealth::default(),
                metrics: store_metrics,
                config: Config {
                    flush_interval: Self::DEFAULT_FLUSH_INTERVAL,
                    batch_size: Self::DEFAULT_BATCH_SIZE,
                    write_timeout: Self::DEFAULT_WRITE_TIMEOUT,
                },
                dirty: Mutex::new(Dirty::default()),
                writing: tokio::sync::Mutex::new(()),
                written: AtomicU64::new(0),
                batches: AtomicU64::new(0),
            }),
            flusher: Flusher::new(),
        }
    }

    /// Changes the store's settings. They are fixed once the flusher runs, so configure a
    /// store before storing into it; a later call changes nothing and logs a warning.
    fn configure(mut self, change: impl FnOnce(&mut Shared)) -> Self {
        match Arc::get_mut(&mut self.shared) {
            Some(shared) => change(shared),
            None => tracing::warn!("a layered price store was configured after its first write; ignored"),
        }
        self
    }

    /// Sets how often a failed durable store is probed. Call before the first store.
    #[must_use]
    pub fn with_retry_interval(self, interval: Duration) -> Self {
        self.configure(|shared| shared.health = BackendHealth::new(interval))
    }

    /// Sets how often dirty prices are written (default 100 ms): the lag a healthy durable
    /// store runs behind memory. Call before the first store.
    #[must_use]
    pub fn with_flush_interval(self, interval: Duration) -> Self {
        let interval = interval.max(Duration::from_millis(1));
        self.configure(|shared| shared.config.flush_interval = interval)
    }

    /// Sets the most prices one `store_many` carries (default 4,096); this many dirty assets
    /// wake the flusher early. Call before the first store.
    #[must_use]
    pub fn with_batch_size(self, batch_size: usize) -> Self {
        self.configure(|shared| shared.config.batch_size = batch_size.max(1))
    }

    /// Sets how long one write may take before the durable store counts as failed (default
    /// 5 s): a server that accepts connections but never answers degrades the store like one
    /// that refuses them. Call before the first store.
    #[must_use]
    pub fn with_write_timeout(self, timeout: Duration) -> Self {
        self.configure(|shared| shared.config.write_timeout = timeout)
    }

    /// Runs the write-behind flusher under `supervisor`: a panic in it shows in the node's
    /// health, and it stops at the supervisor's shutdown. Call before the first change.
    pub fn supervise(&self, supervisor: &mesh_types::Supervisor) {
        self.flusher.supervise(supervisor);
        // From now on, not from the first change: an idle store checks its backend too.
        self.start_flusher();
    }

    /// Whether the durable store is failing and memory alone is serving.
    pub fn is_degraded(&self) -> bool {
        self.shared.health.is_degraded()
    }

    /// How far the durable store is behind memory: the age of the oldest change it has not
    /// acknowledged yet, zero when it holds everything.
    pub fn write_lag(&self) -> Duration {
        self.shared.write_lag()
    }

    /// Prices written so far and assets waiting.
    pub fn write_stats(&self) -> WriteStats {
        WriteStats {
            written: self.shared.written.load(Ordering::Relaxed),
            batches: self.shared.batches.load(Ordering::Relaxed),
            pending: self.shared.lock_dirty().assets.len(),
        }
    }

    /// Restores memory from the durable store (after a restart). Returns how many prices
    /// were loaded.
    ///
    /// # Errors
    /// When the durable store cannot be read.
    pub async fn load_from_storage(&self) -> Result<usize> {
        let prices = self.shared.durable.get_all().await?;
        let count = prices.len();
        for price in prices.into_values() {
            self.shared.memory.store_now(price);
        }
        Ok(count)
    }

    /// Writes every dirty price to the durable store now, whatever the flush interval or the
    /// store's health, and returns how many prices it wrote. When it returns `Ok`, every
    /// change made before the call is durable. Await it before dropping the store (on
    /// shutdown).
    ///
    /// # Errors
    /// When the durable store fails; the prices not written stay dirty.
    pub async fn flush(&self) -> Result<usize> {
        let written = self.shared.write_and_record().await?;
        Ok(written.prices)
    }

    /// Writes every price in memory to the durable store (e.g. after the durable store lost
    /// its data). Returns how many the durable store took as new.
    ///
    /// # Errors
    /// When the durable store fails; the prices not written stay dirty.
    pub async fn persist_to_storage(&self) -> Result<usize> {
        let assets: Vec<Asset> = self.shared.memory.get_all_now().into_keys().collect();
        for asset in assets {
            self.mark_dirty(asset);
        }
        let written = self.shared.write_and_record().await?;
        Ok(written.changed)
    }

    /// Decides `price` in memory and marks its asset dirty when it changed.
    fn store_now(&self, price: CachedPriceData) -> StoreOutcome {
        let asset = price.asset;
        let outcome = self.shared.memory.store_now(price);
        if outcome.changed() {
            self.mark_dirty(asset);
        }
        outcome
    }

    /// Remembers that `asset` changed in memory, starting the flusher if it is not running
    /// and waking it when a batch's worth is waiting.
    /// Starts the flusher unless it runs already.
    fn start_flusher(&self) {
        let interval = self.shared.config.flush_interval;
        self.flusher.ensure_running(&self.shared, interval, "price store", |shared| async move {
            shared.background_round().await;
        });
    }

    fn mark_dirty(&self, asset: Asset) {
        let (was_clean, full) = {
            let mut dirty = self.shared.lock_dirty();
            let was_clean = dirty.assets.is_empty();
            if dirty.assets.insert(asset) && dirty.since.is_none() {
                dirty.since = Some(Instant::now());
            }
            (was_clean, dirty.assets.len() == self.shared.config.batch_size)
        };
        if was_clean {
            self.start_flusher();
        }
        if full {
            self.flusher.wake();
        }
    }
}

/// The asset an idle store reads to check its durable store (whether it is held or not).
const PROBE_ASSET: &str = "PRICEMESH-PROBE";

/// Now, on tokio's clock so tests can pause time.
fn now() -> std::time::Instant {
    Instant::now().into_std()
}

impl Shared {
    fn lock_dirty(&self) -> MutexGuard<'_, Dirty> {
        lock(&self.dirty)
    }

    fn write_lag(&self) -> Duration {
        self.lock_dirty()
            .oldest()
            .map_or(Duration::ZERO, |oldest| Instant::now().saturating_duration_since(oldest))
    }

    fn publish_lag(&self) {
        self.metrics.publish(self.write_lag(), self.health.is_degraded());
    }

    /// One round of the flusher: write what is dirty unless the durable store is degraded and
    /// not due for a probe. The lag gauge keeps moving while a write hangs.
    async fn background_round(&self) {
        self.publish_lag();
        if self.lock_dirty().assets.is_empty() {
            if self.health.idle_probe_due(now(), BackendHealth::IDLE_PROBE_INTERVAL) {
                self.probe().await;
            }
            return;
        }
        if !self.health.should_try(now()) {
            return;
        }
        let write = self.write_and_record();
        tokio::pin!(write);
        let mut gauge = tokio::time::interval(self.config.flush_interval);
        gauge.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                // A failure is logged and counted by `write_and_record`; the assets stay dirty.
                _ = &mut write => break,
                _ = gauge.tick() => self.publish_lag(),
            }
        }
    }

    /// Writes the dirty prices, then logs and counts the outcome: a failure degrades the
    /// store, the first success after one resyncs it.
    async fn write_and_record(&self) -> Result<Written> {
        let result = self.write_dirty().await;
        match &result {
            Ok(written) => {
                if self.health.succeeded() {
                    tracing::info!(
                        count = written.prices,
                        "price store is reachable again; wrote the prices accepted during the outage"
                    );
                }
            }
            Err(err) => self.note_failure(err),
        }
        self.publish_lag();
        result
    }

    /// A failure of the durable store: the first one after it was healthy is logged and counted.
    fn note_failure(&self, err: &dyn std::fmt::Display) {
        if self.health.failed(now()) {
            tracing::warn!(error = %err, "price store unavailable; serving prices from memory and keeping changes until it returns");
            self.metrics.degraded();
        }
    }

    /// With nothing to write, one cheap read of the durable store, so an idle node notices a
    /// dead server (and its return) as a busy one does.
    async fn probe(&self) {
        let Ok(asset) = Asset::new(PROBE_ASSET) else { return };
        match tokio::time::timeout(self.config.write_timeout, self.durable.get(asset)).await {
            Ok(Ok(_)) => {
                if self.health.succeeded() {
                    tracing::info!("price store is reachable again");
                }
            }
            Ok(Err(err)) => self.note_failure(&err),
            Err(_) => self.note_failure(&format!("no answer within {:?}", self.config.write_timeout)),
        }
        self.publish_lag();
    }

    /// Takes every dirty asset and writes its current memory price, `batch_size` per
    /// `store_many`. On a failure, or if the caller stops waiting, the assets not written are
    /// dirty again.
    async fn write_dirty(&self) -> Result<Written> {
        let _writing = self.writing.lock().await;
        let assets: Vec<Asset> = {
            let mut dirty = self.lock_dirty();
            dirty.in_flight_since = dirty.since.take();
            dirty.assets.drain().collect()
        };
        let mut batch = InFlight { shared: self, assets, done: 0 };
        let mut written = Written::default();
        while batch.done < batch.assets.len() {
            let end = batch.done.saturating_add(self.config.batch_size).min(batch.assets.len());
            // The price held now: every change up to this read is in it. A change after the
            // read marks its asset dirty again.
            let prices: Vec<CachedPriceData> = batch.assets[batch.done..end]
                .iter()
                .filter_map(|asset| self.memory.get_now(*asset))
                .collect();
            let count = prices.len();
            let outcomes = tokio::time::timeout(self.config.write_timeout, self.durable.store_many(prices))
                .await
                .map_err(|_| {
                    Error::from(BackendError::no_answer("durable price store", self.config.write_timeout))
                })??;
            batch.done = end;
            written.prices = written.prices.saturating_add(count);
            written.changed =
                written.changed.saturating_add(outcomes.iter().filter(|outcome| outcome.changed()).count());
            self.written.fetch_add(count as u64, Ordering::Relaxed);
            self.batches.fetch_add(1, Ordering::Relaxed);
            self.metrics.written(count as u64);
        }
        Ok(written)
    }
}

/// Assets taken from the dirty set for one write. Dropping it (done, failed, or abandoned by
/// its caller) returns the ones not written to the dirty set, keeping their age for the lag.
struct InFlight<'a> {
    shared: &'a Shared,
    assets: Vec<Asset>,
    /// How many of `assets`, from the front, the durable store acknowledged.
    done: usize,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut dirty = self.shared.lock_dirty();
        let in_flight_since = dirty.in_flight_since.take();
        let rest = self.assets.get(self.done..).unwrap_or_default();
        if !rest.is_empty() {
            dirty.assets.extend(rest.iter().copied());
            dirty.since = earliest(dirty.since, in_flight_since);
        }
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
        Ok(self.shared.memory.get_now(asset))
    }

    async fn get_all(&self) -> Result<PriceMap> {
        Ok(self.shared.memory.get_all_now())
    }

    async fn digest(&self) -> Result<BTreeMap<Asset, Timestamp>> {
        self.shared.memory.digest().await
    }

    async fn len(&self) -> Result<usize> {
        self.shared.memory.len().await
    }

    fn reader(&self) -> Option<PriceReader> {
        Some(self.shared.memory.reader())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize};

    use mesh_types::rust_decimal::Decimal;
    use proptest::prelude::*;

    use super::*;
    use crate::conformance::{self, Assets, price};

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
                Err(Error::Unavailable { backend: "test", source: "switched off".into() })
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
        async fn digest(&self) -> Result<BTreeMap<Asset, Timestamp>> {
            self.check()?;
            self.inner.digest().await
        }
        async fn len(&self) -> Result<usize> {
            self.check()?;
            self.inner.len().await
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn passes_the_conformance_suite() {
        let durable = Arc::new(MemoryPriceStore::new());
        let layered = Arc::new(LayeredPriceStore::new(durable.clone()));
        conformance::run_all(layered.clone()).await;
        layered.flush().await.unwrap();
        assert_eq!(durable.get_all_now(), layered.get_all().await.unwrap(), "written behind, all of it");
    }

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
        let flusher = layered.flusher.task().expect("started by the first change");
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

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn behaves_like_the_reference_model(ops in conformance::operations()) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let durable = Arc::new(MemoryPriceStore::new());
            let layered = LayeredPriceStore::new(durable.clone());
            runtime.block_on(async {
                conformance::check_against_model(&layered, &ops).await;
                layered.flush().await.unwrap();
                assert_eq!(durable.get_all_now(), layered.get_all().await.unwrap(), "the durable store caught up");
            });
        }
    }
}
