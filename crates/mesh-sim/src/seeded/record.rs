//! The history of a seeded run: every price each node's store was offered, what it answered,
//! and what it held afterwards, with the (simulated) time. [`RecordingStore`] wraps each node's
//! real store and writes the history as the node stores, so nothing is sampled or missed.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use mesh_price_cache::{PriceReader, PriceStore, Result, StoreOutcome};
use mesh_types::{Asset, CachedPriceData, PriceMap};
use tokio::time::Instant;

/// One call of a node's [`PriceStore::store`].
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    /// When, from the start of the active period (zero before it).
    pub(crate) at: Duration,
    /// The node.
    pub(crate) node: usize,
    /// Which store of the node: a wiped restart begins a new one.
    pub(crate) life: u32,
    /// The price offered: one of an update the node accepted.
    pub(crate) offered: CachedPriceData,
    /// What the store held for the asset afterwards.
    pub(crate) held: Option<CachedPriceData>,
}

/// Every node's store calls, in the order they happened.
#[derive(Debug)]
pub(crate) struct Recorder {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    origin: Instant,
    stored: Vec<Stored>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Held only to push a record; a panic elsewhere leaves the list whole.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Recorder {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self { state: Mutex::new(State { origin: Instant::now(), stored: Vec::new() }) })
    }

    /// Times are measured from now on.
    pub(crate) fn start_clock(&self) {
        lock(&self.state).origin = Instant::now();
    }

    fn push(&self, record: impl FnOnce(Duration) -> Stored) {
        let mut state = lock(&self.state);
        let at = state.origin.elapsed();
        state.stored.push(record(at));
    }

    /// Everything recorded, oldest first.
    pub(crate) fn take(&self) -> Vec<Stored> {
        std::mem::take(&mut lock(&self.state).stored)
    }
}

/// A node's price store, recording every [`PriceStore::store`] in the run's [`Recorder`].
pub(crate) struct RecordingStore {
    node: usize,
    life: u32,
    inner: Arc<dyn PriceStore>,
    recorder: Arc<Recorder>,
}

impl std::fmt::Debug for RecordingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingStore").field("node", &self.node).field("life", &self.life).finish()
    }
}

impl RecordingStore {
    pub(crate) fn new(node: usize, life: u32, inner: Arc<dyn PriceStore>, recorder: Arc<Recorder>) -> Self {
        Self { node, life, inner, recorder }
    }

    /// Which store of the node this is (0 first, one more after each wiped restart).
    pub(crate) const fn life(&self) -> u32 {
        self.life
    }
}

#[async_trait]
impl PriceStore for RecordingStore {
    async fn store(&self, price: CachedPriceData) -> Result<StoreOutcome> {
        let asset = price.asset;
        let outcome = self.inner.store(price.clone()).await?;
        let held = self.inner.get(asset).await?;
        self.recorder.push(|at| Stored { at, node: self.node, life: self.life, offered: price, held });
        Ok(outcome)
    }

    async fn get(&self, asset: Asset) -> Result<Option<CachedPriceData>> {
        self.inner.get(asset).await
    }

    async fn get_all(&self) -> Result<PriceMap> {
        self.inner.get_all().await
    }

    async fn len(&self) -> Result<usize> {
        self.inner.len().await
    }

    fn reader(&self) -> Option<PriceReader> {
        self.inner.reader()
    }
}
