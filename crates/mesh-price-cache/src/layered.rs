//! [`LayeredPriceStore`]: a [`MemoryPriceStore`] that answers every read, in front of a
//! durable store (Redis or PostgreSQL) that keeps prices across restarts.
//!
//! - **Write-through**: a price that changes memory is also stored durably; a price memory
//!   ignores is not sent on (the durable store already has it or something newer is pending).
//! - **Restart**: [`LayeredPriceStore::load_from_storage`] fills memory from the durable store;
//!   [`LayeredPriceStore::persist_to_storage`] writes all of memory back (both are idempotent
//!   under newest-wins).
//! - **Degradation**: when the durable store fails, memory keeps serving and accepting prices,
//!   one warning is logged, `mesh_storage_degraded_total{store="prices"}` is counted, and the
//!   changed assets are remembered. The durable store is probed once per retry interval; on the
//!   first success the remembered assets are written back, so nothing accepted meanwhile is
//!   lost.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use mesh_types::{Asset, BackendHealth, CachedPriceData, PriceMap, Timestamp};
use tokio::time::{Duration, Instant};

use crate::{Error, MemoryPriceStore, PriceReader, PriceStore, Result, StoreOutcome};

/// Memory in front of a durable price store, degrading to memory when the durable one fails.
pub struct LayeredPriceStore {
    memory: MemoryPriceStore,
    durable: Arc<dyn PriceStore>,
    health: BackendHealth,
    // Assets changed while degraded. A std Mutex: never held across an await.
    pending: Mutex<BTreeSet<Asset>>,
}

impl std::fmt::Debug for LayeredPriceStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayeredPriceStore")
            .field("memory", &self.memory)
            .field("degraded", &self.health.is_degraded())
            .finish_non_exhaustive()
    }
}

impl LayeredPriceStore {
    /// Default time between probes of a failed durable store.
    pub const DEFAULT_RETRY_INTERVAL: Duration = BackendHealth::DEFAULT_RETRY_INTERVAL;

    /// An empty memory store in front of `durable`; call
    /// [`LayeredPriceStore::load_from_storage`] to restore what `durable` holds.
    pub fn new(durable: Arc<dyn PriceStore>) -> Self {
        metrics::describe_counter!(
            "mesh_storage_degraded_total",
            "Times a durable store became unreachable and its layered store fell back to memory, by store"
        );
        Self {
            memory: MemoryPriceStore::new(),
            durable,
            health: BackendHealth::default(),
            pending: Mutex::new(BTreeSet::new()),
        }
    }

    /// Sets how often a failed durable store is probed.
    #[must_use]
    pub fn with_retry_interval(mut self, interval: Duration) -> Self {
        self.health = BackendHealth::new(interval);
        self
    }

    /// Whether the durable store is failing and memory alone is serving.
    pub fn is_degraded(&self) -> bool {
        self.health.is_degraded()
    }

    /// Restores memory from the durable store (after a restart). Returns how many prices
    /// were loaded.
    ///
    /// # Errors
    /// When the durable store cannot be read.
    pub async fn load_from_storage(&self) -> Result<usize> {
        let prices = self.durable.get_all().await?;
        let count = prices.len();
        for price in prices.into_values() {
            self.memory.store_now(price);
        }
        Ok(count)
    }

    /// Writes every price in memory to the durable store (e.g. on shutdown). Returns how many
    /// the durable store took as new.
    ///
    /// # Errors
    /// When the durable store fails; prices not yet written stay pending.
    pub async fn persist_to_storage(&self) -> Result<usize> {
        let assets: Vec<Asset> = self.memory.get_all_now().into_keys().collect();
        self.lock_pending().extend(assets);
        self.flush_pending().await
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, BTreeSet<Asset>> {
        // One insert or removal per update keeps the set consistent even after a panic.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes the current memory price of every pending asset to the durable store.
    async fn flush_pending(&self) -> Result<usize> {
        let mut written = 0;
        loop {
            // Take the asset in its own statement so the lock is released before the await.
            let next = self.lock_pending().pop_first();
            let Some(asset) = next else { break };
            let Some(price) = self.memory.get_now(asset) else { continue };
            match self.durable.store(price).await {
                Ok(outcome) => written += usize::from(outcome.changed()),
                Err(err) => {
                    self.lock_pending().insert(asset);
                    return Err(err);
                }
            }
        }
        Ok(written)
    }

    /// Runs `operation` on the durable store unless it is degraded and not due for a probe.
    /// `None` means the durable store was not reached.
    async fn durable<T>(&self, operation: impl Future<Output = Result<T>>) -> Option<T> {
        if !self.health.should_try(now()) {
            return None;
        }
        match operation.await {
            Ok(value) => {
                if self.health.succeeded() {
                    tracing::info!("price store is reachable again");
                    match self.flush_pending().await {
                        Ok(count) => tracing::info!(
                            count,
                            "price store resynced the prices accepted during the outage"
                        ),
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
            tracing::warn!(error = %err, "price store unavailable; serving prices from memory until it returns");
            metrics::counter!("mesh_storage_degraded_total", "store" => "prices").increment(1);
        }
    }
}

/// Now, on tokio's clock so tests can pause time.
fn now() -> std::time::Instant {
    Instant::now().into_std()
}

#[async_trait]
impl PriceStore for LayeredPriceStore {
    async fn store(&self, price: CachedPriceData) -> Result<StoreOutcome> {
        let asset = price.asset;
        let outcome = self.memory.store_now(price.clone());
        if outcome.changed() && self.durable(self.durable.store(price)).await.is_none() {
            self.lock_pending().insert(asset);
        }
        Ok(outcome)
    }

    async fn get(&self, asset: Asset) -> Result<Option<CachedPriceData>> {
        Ok(self.memory.get_now(asset))
    }

    async fn get_all(&self) -> Result<PriceMap> {
        Ok(self.memory.get_all_now())
    }

    async fn digest(&self) -> Result<BTreeMap<Asset, Timestamp>> {
        self.memory.digest().await
    }

    async fn len(&self) -> Result<usize> {
        self.memory.len().await
    }

    fn reader(&self) -> Option<PriceReader> {
        Some(self.memory.reader())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use mesh_types::rust_decimal::Decimal;
    use proptest::prelude::*;

    use super::*;
    use crate::conformance::{self, Assets, price};

    /// A durable store whose reachability the test controls.
    #[derive(Default)]
    struct Switchable {
        inner: MemoryPriceStore,
        down: AtomicBool,
    }

    impl Switchable {
        fn check(&self) -> Result<()> {
            if self.down.load(Ordering::Acquire) {
                Err(Error::Unavailable { backend: "test", detail: "switched off".into() })
            } else {
                Ok(())
            }
        }
    }

    #[async_trait]
    impl PriceStore for Switchable {
        async fn store(&self, price: CachedPriceData) -> Result<StoreOutcome> {
            self.check()?;
            self.inner.store(price).await
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
        conformance::run_all(Arc::new(LayeredPriceStore::new(Arc::new(MemoryPriceStore::new())))).await;
    }

    #[tokio::test]
    async fn a_restarted_node_restores_its_prices() {
        let durable = Arc::new(MemoryPriceStore::new());
        let assets = Assets::fresh();
        let before = LayeredPriceStore::new(durable.clone());
        for i in 0..3 {
            before.store(price(assets.nth(i), 1, 0, 1, Decimal::ONE)).await.unwrap();
        }
        drop(before);
        let after = LayeredPriceStore::new(durable);
        assert_eq!(after.load_from_storage().await.unwrap(), 3);
        assert_eq!(after.get_all().await.unwrap().len(), 3);
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
        assert!(layered.is_degraded());
        assert!(durable.inner.get_now(during.asset).is_none());

        durable.down.store(false, Ordering::Release);
        tokio::time::advance(LayeredPriceStore::DEFAULT_RETRY_INTERVAL).await;
        layered.store(price(assets.nth(1), 1, 0, 1, Decimal::ONE)).await.unwrap();
        assert!(!layered.is_degraded());
        assert_eq!(durable.inner.get_now(during.asset), Some(during), "accepted during the outage, not lost");
    }

    #[tokio::test]
    async fn persist_to_storage_flushes_everything() {
        let durable = Arc::new(Switchable::default());
        durable.down.store(true, Ordering::Release);
        let layered = LayeredPriceStore::new(durable.clone());
        let assets = Assets::fresh();
        for i in 0..4 {
            layered.store(price(assets.nth(i), 1, 0, 1, Decimal::ONE)).await.unwrap();
        }
        assert!(layered.persist_to_storage().await.is_err(), "still down");
        durable.down.store(false, Ordering::Release);
        assert_eq!(layered.persist_to_storage().await.unwrap(), 4);
        assert_eq!(durable.inner.get_all_now().len(), 4);
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

        proxy.cut();
        let during = price(assets.nth(1), 2, 0, 1, Decimal::TWO);
        assert_eq!(
            layered.store(during.clone()).await.unwrap(),
            StoreOutcome::Inserted,
            "memory keeps accepting"
        );
        assert_eq!(layered.get(during.asset).await.unwrap(), Some(during.clone()), "and serving");
        assert!(layered.is_degraded());
        assert_eq!(direct.get(during.asset).await.unwrap(), None, "nothing reached the server");

        proxy.restore().await;
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut second = 10;
        while layered.is_degraded() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(120)).await;
            second += 1;
            layered.store(price(assets.nth(2), second, 0, 1, Decimal::ONE)).await.unwrap();
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
            let layered = LayeredPriceStore::new(Arc::new(MemoryPriceStore::new()));
            runtime.block_on(conformance::check_against_model(&layered, &ops));
        }
    }
}
