//! [`WriteBehind`]: the engine of a layered store. Memory in front decides; what it accepted
//! is [`Pending`] and written to the durable store by a [`Flusher`] task through a [`Sink`],
//! `batch_size` entries per call, every flush interval and as soon as a batch's worth waits.
//!
//! - **Lag**: [`WriteBehind::write_lag`] is the age of the oldest entry the durable store has
//!   not acknowledged (zero when it holds everything), published as
//!   `mesh_storage_write_lag_seconds{store}`; `mesh_storage_written_total{store}` counts what
//!   it acknowledged, `mesh_storage_dropped_total{store}` what a bounded queue dropped.
//! - **Degradation** ([`BackendHealth`]): when a write fails or gets no answer within the
//!   write timeout, one warning is logged, `mesh_storage_degraded_total{store}` is counted, and
//!   the entries stay pending; the durable store is then probed once per retry interval, and
//!   the first success writes everything accepted meanwhile. With nothing to write, the
//!   flusher reads the durable store every [`BackendHealth::IDLE_PROBE_INTERVAL`], so an idle
//!   store notices an outage too.
//! - [`WriteBehind::flush`] writes everything now; a `flush` that returns `Ok` has seen every
//!   earlier entry written, including a batch the flusher had in flight.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use mesh_types::Supervisor;
use tokio::task::AbortHandle;
use tokio::time::{Duration, Instant, MissedTickBehavior};

use crate::{BackendError, BackendHealth, Flusher, Pending, StoreMetrics};

/// The durable side of a layered store: how a batch of pending entries is written, and how
/// an idle store checks that the server still answers.
#[async_trait]
pub trait Sink: Send + Sync + 'static {
    /// What is pending: a [`crate::Queue`] or a [`crate::DirtySet`].
    type Pending: Pending;
    /// The storage crate's error.
    type Error: std::error::Error + From<BackendError> + Send + Sync + 'static;

    /// The `store` label of the metrics and logs (`"dedup"`, `"prices"`).
    const STORE: &'static str;
    /// The flusher's name among the supervisor's tasks.
    const TASK: &'static str;
    /// The durable store, as a timeout names it (`"durable tracker"`).
    const DURABLE: &'static str;

    /// Writes `batch` (at most the batch size) to the durable store.
    ///
    /// # Errors
    /// When the durable store fails; the batch stays pending.
    async fn write(&self, batch: &[<Self::Pending as Pending>::Item]) -> Result<Written, Self::Error>;

    /// One cheap read of the durable store.
    ///
    /// # Errors
    /// When the durable store fails.
    async fn probe(&self) -> Result<(), Self::Error>;
}

/// What one write (or a whole flush) did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    /// Entries the durable store acknowledged.
    pub entries: usize,
    /// Of those, the ones it took as new (for stores that can tell; else all of them).
    pub changed: usize,
}

/// What the write-behind has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Entries the durable store acknowledged.
    pub written: u64,
    /// Batches written successfully.
    pub batches: u64,
    /// Entries accepted in memory and not yet handed to the durable store.
    pub pending: usize,
}

/// The settings of a write-behind store.
#[derive(Debug, Clone, Copy)]
struct Config {
    flush_interval: Duration,
    batch_size: usize,
    write_timeout: Duration,
}

/// The write-behind engine of one layered store.
pub struct WriteBehind<S: Sink> {
    shared: Arc<Shared<S>>,
    /// Writes behind; started by the first entry (or [`WriteBehind::supervise`]), aborted on
    /// drop.
    flusher: Flusher,
}

/// What the store and its flusher share. The flusher holds it weakly.
struct Shared<S: Sink> {
    sink: S,
    health: BackendHealth,
    metrics: StoreMetrics,
    config: Config,
    // A std Mutex: held to add or take entries, never across an await.
    pending: Mutex<Slot<S::Pending>>,
    /// Held by whoever writes to the durable store (the flusher, `flush`).
    writing: tokio::sync::Mutex<()>,
    written: AtomicU64,
    batches: AtomicU64,
}

/// The pending entries and their age.
struct Slot<P> {
    entries: P,
    /// When the oldest pending entry was accepted; `None` while none is.
    since: Option<Instant>,
    /// When the oldest entry of the batch being written was accepted; `None` when none is.
    in_flight_since: Option<Instant>,
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update leaves the data consistent, even if a holder panicked.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Now, on tokio's clock so tests can pause time.
fn now() -> std::time::Instant {
    Instant::now().into_std()
}

impl<S: Sink> fmt::Debug for WriteBehind<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteBehind")
            .field("store", &S::STORE)
            .field("degraded", &self.is_degraded())
            .field("pending", &self.shared.lock().entries.len())
            .finish_non_exhaustive()
    }
}

impl<S: Sink> WriteBehind<S> {
    /// Default time between probes of a failed durable store.
    pub const DEFAULT_RETRY_INTERVAL: Duration = BackendHealth::DEFAULT_RETRY_INTERVAL;
    /// Default time between two writes.
    pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_millis(100);
    /// Default most entries per write; this many pending also wake the flusher early.
    pub const DEFAULT_BATCH_SIZE: usize = 4096;
    /// Default time a write may take before the durable store counts as failed.
    pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

    /// Writes `pending` entries through `sink`, with the default settings; registers the
    /// store's metrics. Needs no runtime: the flusher starts with the first entry.
    pub fn new(sink: S, pending: S::Pending) -> Self {
        Self {
            shared: Arc::new(Shared {
                sink,
                health: BackendHealth::default(),
                metrics: StoreMetrics::register(S::STORE),
                config: Config {
                    flush_interval: Self::DEFAULT_FLUSH_INTERVAL,
                    batch_size: Self::DEFAULT_BATCH_SIZE,
                    write_timeout: Self::DEFAULT_WRITE_TIMEOUT,
                },
                pending: Mutex::new(Slot { entries: pending, since: None, in_flight_since: None }),
                writing: tokio::sync::Mutex::new(()),
                written: AtomicU64::new(0),
                batches: AtomicU64::new(0),
            }),
            flusher: Flusher::new(),
        }
    }

    /// Changes the settings. They are fixed once the flusher runs; a later call changes
    /// nothing and logs a warning.
    fn configure(mut self, change: impl FnOnce(&mut Shared<S>)) -> Self {
        match Arc::get_mut(&mut self.shared) {
            Some(shared) => change(shared),
            None => tracing::warn!(
                store = S::STORE,
                "a layered store was configured after its first write; ignored"
            ),
        }
        self
    }

    /// Sets how often a failed durable store is probed. Call before the first use.
    #[must_use]
    pub fn with_retry_interval(self, interval: Duration) -> Self {
        self.configure(|shared| shared.health = BackendHealth::new(interval))
    }

    /// Sets how often pending entries are written (default 100 ms, at least 1 ms): the lag a
    /// healthy durable store runs behind memory. Call before the first use.
    #[must_use]
    pub fn with_flush_interval(self, interval: Duration) -> Self {
        let interval = interval.max(Duration::from_millis(1));
        self.configure(|shared| shared.config.flush_interval = interval)
    }

    /// Sets the most entries one write carries (default 4,096); this many pending wake the
    /// flusher early. Call before the first use.
    #[must_use]
    pub fn with_batch_size(self, batch_size: usize) -> Self {
        self.configure(|shared| shared.config.batch_size = batch_size.max(1))
    }

    /// Sets how long one write may take before the durable store counts as failed (default
    /// 5 s): a server that accepts connections but never answers degrades the store like one
    /// that refuses them. Call before the first use.
    #[must_use]
    pub fn with_write_timeout(self, timeout: Duration) -> Self {
        self.configure(|shared| shared.config.write_timeout = timeout)
    }

    /// The durable side.
    pub fn sink(&self) -> &S {
        &self.shared.sink
    }

    /// Runs the flusher under `supervisor` and starts it now, so an idle store checks its
    /// durable store too: a panic in it shows in the node's health, and it stops at the
    /// supervisor's shutdown. Call before the first entry.
    pub fn supervise(&self, supervisor: &Supervisor) {
        self.flusher.supervise(supervisor);
        self.start_flusher();
    }

    /// The flusher task, once started.
    pub fn task(&self) -> Option<AbortHandle> {
        self.flusher.task()
    }

    /// Whether the durable store is failing and memory alone is serving.
    pub fn is_degraded(&self) -> bool {
        self.shared.health.is_degraded()
    }

    /// How far the durable store is behind memory: the age of the oldest entry it has not
    /// acknowledged yet, zero when it holds everything.
    pub fn write_lag(&self) -> Duration {
        self.shared.write_lag()
    }

    /// Entries written so far and entries waiting.
    pub fn stats(&self) -> WriteStats {
        WriteStats {
            written: self.shared.written.load(Ordering::Relaxed),
            batches: self.shared.batches.load(Ordering::Relaxed),
            pending: self.shared.lock().entries.len(),
        }
    }

    /// Records entries memory accepted, starting the flusher if it is not running and waking
    /// it when a batch's worth is waiting.
    pub fn add(&self, items: impl IntoIterator<Item = <S::Pending as Pending>::Item>) {
        let (was_empty, full, dropped) = {
            let mut slot = self.shared.lock();
            let before = slot.entries.len();
            let added = slot.entries.add(items);
            if added.new == 0 {
                return;
            }
            if slot.since.is_none() {
                slot.since = Some(Instant::now());
            }
            let batch = self.shared.config.batch_size;
            (before == 0, before < batch && slot.entries.len() >= batch, added.dropped)
        };
        self.shared.count_dropped(dropped);
        if was_empty {
            self.start_flusher();
        }
        if full {
            self.flusher.wake();
        }
    }

    /// Writes every pending entry now, whatever the flush interval or the durable store's
    /// health. When it returns `Ok`, every entry accepted before the call is durable.
    ///
    /// # Errors
    /// When the durable store fails; the entries not written stay pending.
    pub async fn flush(&self) -> Result<Written, S::Error> {
        self.shared.write_and_record().await
    }

    /// Records a failure of the durable store seen outside the write-behind (a sweep, say):
    /// the first one after it was healthy is logged and counted.
    pub fn note_failure(&self, err: &dyn fmt::Display) {
        self.shared.note_failure(err);
    }

    /// Starts the flusher unless it runs already.
    fn start_flusher(&self) {
        let interval = self.shared.config.flush_interval;
        self.flusher.ensure_running(&self.shared, interval, S::TASK, |shared| async move {
            shared.background_round().await;
        });
    }
}

impl<S: Sink> Shared<S> {
    fn lock(&self) -> MutexGuard<'_, Slot<S::Pending>> {
        lock(&self.pending)
    }

    fn count_dropped(&self, dropped: usize) {
        if dropped > 0 {
            metrics::counter!("mesh_storage_dropped_total", "store" => S::STORE).increment(dropped as u64);
        }
    }

    fn write_lag(&self) -> Duration {
        let slot = self.lock();
        earliest(slot.since, slot.in_flight_since)
            .map_or(Duration::ZERO, |oldest| Instant::now().saturating_duration_since(oldest))
    }

    fn publish_lag(&self) {
        self.metrics.publish(self.write_lag(), self.health.is_degraded());
    }

    /// One round of the flusher: write what is pending unless the durable store is degraded
    /// and not due for a probe; with nothing pending, probe it now and then. The lag gauge
    /// keeps moving while a write hangs.
    async fn background_round(&self) {
        self.publish_lag();
        if self.lock().entries.is_empty() {
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
                // A failure is logged and counted by `write_and_record`; the entries stay.
                _ = &mut write => break,
                _ = gauge.tick() => self.publish_lag(),
            }
        }
    }

    /// Writes what is pending, then logs and counts the outcome: a failure degrades the
    /// store, the first success after one resyncs it.
    async fn write_and_record(&self) -> Result<Written, S::Error> {
        let result = self.write_pending().await;
        match &result {
            Ok(written) => {
                if self.health.succeeded() {
                    tracing::info!(
                        store = S::STORE,
                        count = written.entries,
                        "durable store is reachable again; wrote what was accepted during the outage"
                    );
                }
            }
            Err(err) => self.note_failure(err),
        }
        self.publish_lag();
        result
    }

    fn note_failure(&self, err: &dyn fmt::Display) {
        if self.health.failed(now()) {
            tracing::warn!(
                store = S::STORE,
                error = %err,
                "durable store unavailable; serving from memory and keeping changes until it returns"
            );
            self.metrics.degraded();
        }
    }

    /// With nothing to write, one cheap read of the durable store, so an idle node notices a
    /// dead server (and its return) as a busy one does.
    async fn probe(&self) {
        let timeout = self.config.write_timeout;
        match tokio::time::timeout(timeout, self.sink.probe()).await {
            Ok(Ok(())) => {
                if self.health.succeeded() {
                    tracing::info!(store = S::STORE, "durable store is reachable again");
                }
            }
            Ok(Err(err)) => self.note_failure(&err),
            Err(_) => self.note_failure(&BackendError::no_answer(S::DURABLE, timeout)),
        }
        self.publish_lag();
    }

    /// Takes every pending entry and writes them, `batch_size` per call. On a failure, or if
    /// the caller stops waiting, the entries not written are put back.
    async fn write_pending(&self) -> Result<Written, S::Error> {
        let _writing = self.writing.lock().await;
        let items = {
            let mut slot = self.lock();
            slot.in_flight_since = slot.since.take();
            slot.entries.take()
        };
        let mut batch = InFlight { shared: self, items, done: 0 };
        let mut total = Written::default();
        let timeout = self.config.write_timeout;
        while batch.done < batch.items.len() {
            let end = batch.done.saturating_add(self.config.batch_size).min(batch.items.len());
            let written = tokio::time::timeout(timeout, self.sink.write(&batch.items[batch.done..end]))
                .await
                .map_err(|_| BackendError::no_answer(S::DURABLE, timeout))??;
            batch.done = end;
            total.entries = total.entries.saturating_add(written.entries);
            total.changed = total.changed.saturating_add(written.changed);
            self.written.fetch_add(written.entries as u64, Ordering::Relaxed);
            self.batches.fetch_add(1, Ordering::Relaxed);
            self.metrics.written(written.entries as u64);
        }
        Ok(total)
    }
}

/// Entries taken for one write. Dropping it (done, failed, or abandoned by its caller) puts
/// the ones not written back, keeping their age.
struct InFlight<'a, S: Sink> {
    shared: &'a Shared<S>,
    items: Vec<<S::Pending as Pending>::Item>,
    /// How many of `items`, from the front, the durable store acknowledged.
    done: usize,
}

impl<S: Sink> Drop for InFlight<'_, S> {
    fn drop(&mut self) {
        let dropped = {
            let mut slot = self.shared.lock();
            let in_flight_since = slot.in_flight_since.take();
            let rest = self.items.get(self.done..).unwrap_or_default();
            if rest.is_empty() {
                return;
            }
            slot.since = earliest(slot.since, in_flight_since);
            slot.entries.put_back(rest)
        };
        self.shared.count_dropped(dropped);
    }
}
