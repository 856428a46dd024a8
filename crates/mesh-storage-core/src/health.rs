//! [`BackendHealth`]: whether a durable backend (Redis, PostgreSQL) is usable, for the layered
//! stores that fall back to memory when it is not.
//!
//! While healthy, every operation goes to the backend. After a failure the store is
//! *degraded*: it serves from memory and lets one operation probe the backend per retry
//! interval, instead of making every message wait for a dead server. The first success
//! recovers it. The caller is told of each transition so it can log once and count it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The longest wait between probes: about 30 years, as tokio's timers cap theirs (far enough to
/// mean never, near enough for every platform's clock), so no retry interval overflows it.
const MAX_RETRY_INTERVAL: Duration = Duration::from_secs(30 * 365 * 86_400);

/// Health of one durable backend, shared by all tasks using it.
#[derive(Debug)]
pub struct BackendHealth {
    degraded: AtomicBool,
    // A std Mutex: held only to read or move an instant, never across an await.
    next_probe: Mutex<Option<Instant>>,
    retry_interval: Duration,
    /// When an idle store next checks a healthy backend.
    next_idle_probe: Mutex<Option<Instant>>,
}

impl BackendHealth {
    /// Default time between probes of a failed backend.
    pub const DEFAULT_RETRY_INTERVAL: Duration = Duration::from_secs(1);

    /// How often a store with nothing to write checks that a healthy backend still answers:
    /// without it, a node notices a dead server only when a write happens to be waiting.
    pub const IDLE_PROBE_INTERVAL: Duration = Duration::from_secs(5);

    /// A healthy backend that, once failed, is probed every `retry_interval`.
    pub const fn new(retry_interval: Duration) -> Self {
        Self {
            degraded: AtomicBool::new(false),
            next_probe: Mutex::new(None),
            retry_interval,
            next_idle_probe: Mutex::new(None),
        }
    }

    /// Whether the backend is failing and memory alone is serving.
    pub fn is_degraded(&self) -> bool {
        self.degraded.load(Ordering::Acquire)
    }

    /// Whether an operation at `now` should use the backend: always while healthy; while
    /// degraded, for one caller per retry interval (the probe).
    pub fn should_try(&self, now: Instant) -> bool {
        if !self.is_degraded() {
            return true;
        }
        let mut next_probe = self.next_probe.lock().unwrap_or_else(PoisonError::into_inner);
        if next_probe.is_some_and(|at| now < at) {
            return false;
        }
        *next_probe = now.checked_add(self.retry_interval.min(MAX_RETRY_INTERVAL));
        true
    }

    /// Whether a store with nothing to write should check its backend at `now`: a healthy one
    /// at most once per `every` (the first call says yes), a degraded one as [`Self::should_try`].
    pub fn idle_probe_due(&self, now: Instant, every: Duration) -> bool {
        if self.is_degraded() {
            return self.should_try(now);
        }
        let mut next = self.next_idle_probe.lock().unwrap_or_else(PoisonError::into_inner);
        if next.is_some_and(|at| now < at) {
            return false;
        }
        *next = now.checked_add(every.min(MAX_RETRY_INTERVAL));
        true
    }

    /// Records a failure at `now`; `true` if the backend was healthy until now (log it once).
    pub fn failed(&self, now: Instant) -> bool {
        *self.next_probe.lock().unwrap_or_else(PoisonError::into_inner) =
            now.checked_add(self.retry_interval.min(MAX_RETRY_INTERVAL));
        !self.degraded.swap(true, Ordering::AcqRel)
    }

    /// Records a success; `true` if the backend was degraded until now (resync and log it).
    pub fn succeeded(&self) -> bool {
        self.degraded.swap(false, Ordering::AcqRel)
    }
}

/// The metrics of one layered store, labelled `store`: what operators alert on when a
/// durable backend goes away (`mesh_storage_degraded`, `mesh_storage_write_lag_seconds`) and
/// what they chart (`mesh_storage_written_total`, `mesh_storage_degraded_total`).
#[derive(Debug, Clone, Copy)]
pub struct StoreMetrics {
    store: &'static str,
}

impl StoreMetrics {
    /// Describes the storage metrics and registers `store`'s series at zero, so that alert
    /// rules over `increase()` see the first failure and dashboards show a healthy store.
    pub fn register(store: &'static str) -> Self {
        metrics::describe_counter!(
            "mesh_storage_degraded_total",
            "Times a durable store became unreachable and its layered store fell back to memory, by store"
        );
        metrics::describe_gauge!(
            "mesh_storage_degraded",
            "1 while a layered store's durable backend is failing and memory alone serves, else 0, by store"
        );
        metrics::describe_gauge!(
            "mesh_storage_write_lag_seconds",
            metrics::Unit::Seconds,
            "Age of the oldest change a layered store has not yet written to its durable store, by store"
        );
        metrics::describe_counter!(
            "mesh_storage_dropped_total",
            "Entries a layered store dropped unwritten because its write-behind queue was full, by store"
        );
        metrics::describe_counter!(
            "mesh_storage_written_total",
            "Entries a layered store wrote behind to its durable store and the store acknowledged, by store"
        );
        metrics::counter!("mesh_storage_degraded_total", "store" => store).increment(0);
        metrics::counter!("mesh_storage_written_total", "store" => store).increment(0);
        let this = Self { store };
        this.publish(Duration::ZERO, false);
        this
    }

    /// Sets the gauges: the write lag, and whether the backend is degraded.
    pub fn publish(&self, lag: Duration, degraded: bool) {
        metrics::gauge!("mesh_storage_write_lag_seconds", "store" => self.store).set(lag.as_secs_f64());
        metrics::gauge!("mesh_storage_degraded", "store" => self.store).set(if degraded { 1.0 } else { 0.0 });
    }

    /// Counts one transition from healthy to degraded.
    pub fn degraded(&self) {
        metrics::counter!("mesh_storage_degraded_total", "store" => self.store).increment(1);
    }

    /// Counts `count` entries written behind.
    pub fn written(&self, count: u64) {
        metrics::counter!("mesh_storage_written_total", "store" => self.store).increment(count);
    }
}

impl Default for BackendHealth {
    fn default() -> Self {
        Self::new(Self::DEFAULT_RETRY_INTERVAL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_backend_is_probed_once_per_interval_and_recovers() {
        let health = BackendHealth::new(Duration::from_secs(1));
        let start = Instant::now();
        assert!(health.should_try(start));
        assert!(health.failed(start), "the first failure is a transition");
        assert!(!health.failed(start), "later failures are not");
        assert!(health.is_degraded());
        assert!(!health.should_try(start + Duration::from_millis(500)));
        assert!(health.should_try(start + Duration::from_secs(1)), "one probe after the interval");
        assert!(!health.should_try(start + Duration::from_secs(1)), "and only one");
        assert!(health.succeeded(), "recovery is a transition");
        assert!(!health.succeeded());
        assert!(health.should_try(start));
    }

    #[test]
    fn an_interval_past_the_clock_defers_the_probe_without_overflowing() {
        let health = BackendHealth::new(Duration::MAX);
        let start = Instant::now();
        assert!(health.failed(start));
        assert!(!health.should_try(start + Duration::from_secs(3600)));
    }
}
