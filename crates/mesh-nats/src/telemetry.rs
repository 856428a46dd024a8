//! The bridge's metrics (through the `metrics` facade, so whichever exporter the node installs
//! serves them) and the same numbers per bridge, for [`crate::NatsBridge::stats`].
//!
//! | metric | kind | meaning |
//! |---|---|---|
//! | `mesh_nats_published_total` | counter | prices handed to the NATS client (plain) or acknowledged by the stream (JetStream) |
//! | `mesh_nats_publish_failures_total` | counter | prices dropped because NATS did not take them in time or refused them |
//! | `mesh_nats_dropped_total` | counter | accepted updates the bridge missed because it fell behind the node |
//! | `mesh_nats_connected` | gauge | 1 while the client is connected to a server, else 0 |

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Prices published.
pub const PUBLISHED_TOTAL: &str = "mesh_nats_published_total";
/// Prices NATS did not take.
pub const PUBLISH_FAILURES_TOTAL: &str = "mesh_nats_publish_failures_total";
/// Accepted updates missed by falling behind.
pub const DROPPED_TOTAL: &str = "mesh_nats_dropped_total";
/// Whether the client is connected.
pub const CONNECTED: &str = "mesh_nats_connected";

/// HELP lines of the bridge's metrics, and every series registered at zero so dashboards see
/// them before the first event. [`crate::NatsBridge::start`] calls it.
pub fn describe_metrics() {
    metrics::describe_counter!(
        PUBLISHED_TOTAL,
        "Prices published to NATS: taken by the client, or acknowledged by the JetStream stream"
    );
    metrics::describe_counter!(
        PUBLISH_FAILURES_TOTAL,
        "Prices dropped because NATS did not take them within the publish timeout or refused them"
    );
    metrics::describe_counter!(
        DROPPED_TOTAL,
        "Accepted price updates the NATS bridge missed because it fell behind the node"
    );
    metrics::describe_gauge!(CONNECTED, "1 while the NATS bridge is connected to a NATS server, else 0");
    metrics::counter!(PUBLISHED_TOTAL).increment(0);
    metrics::counter!(PUBLISH_FAILURES_TOTAL).increment(0);
    metrics::counter!(DROPPED_TOTAL).increment(0);
}

/// One bridge's counts, shared by its task, its client's event callback and its handle.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    published: AtomicU64,
    failures: AtomicU64,
    dropped: AtomicU64,
    connected: AtomicBool,
    /// Connections established so far (the first and every reconnection).
    connections: AtomicU64,
}

impl Counts {
    pub(crate) fn published(&self) {
        self.published.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(PUBLISHED_TOTAL).increment(1);
    }

    pub(crate) fn failed(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(PUBLISH_FAILURES_TOTAL).increment(1);
    }

    pub(crate) fn dropped(&self, count: u64) {
        self.dropped.fetch_add(count, Ordering::Relaxed);
        metrics::counter!(DROPPED_TOTAL).increment(count);
    }

    pub(crate) fn set_connected(&self, connected: bool) {
        if connected {
            self.connections.fetch_add(1, Ordering::Relaxed);
        }
        self.connected.store(connected, Ordering::Relaxed);
        metrics::gauge!(CONNECTED).set(if connected { 1.0 } else { 0.0 });
    }

    pub(crate) fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    pub(crate) fn snapshot(&self) -> crate::BridgeStats {
        crate::BridgeStats {
            published: self.published.load(Ordering::Relaxed),
            publish_failures: self.failures.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            connected: self.connected.load(Ordering::Relaxed),
        }
    }
}
