//! [`ClientEvent`]: what a [`crate::MeshClient`] tells its user.

use std::sync::Arc;

use mesh_types::{MeshWarning, NetworkStatusSummary, ServedPrice, ServedPriceMap};

/// Something that happened on the nodes a client follows. `node` is the node's base address,
/// as in [`crate::ClientConfig::nodes`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// The first snapshot of prices, from whichever node answered first. Later snapshots (of
    /// other nodes, or after a gap) arrive as [`ClientEvent::Update`]s of what they change.
    Initial {
        /// The node.
        node: Arc<str>,
        /// Every price it serves (of the assets followed).
        prices: ServedPriceMap,
    },
    /// A price newer than any the client held for its asset.
    Update(ServedPrice),
    /// A node's network status changed.
    Status {
        /// The node.
        node: Arc<str>,
        /// Its status.
        status: NetworkStatusSummary,
    },
    /// A node raised a warning.
    Warning {
        /// The node.
        node: Arc<str>,
        /// The warning.
        warning: MeshWarning,
    },
    /// Changes may have been missed: `node` could not replay what happened after `since`
    /// while its connection was down, and no other connection was up all that time. The
    /// node's current prices follow as updates, so [`crate::MeshClient::latest`] is whole
    /// again once they are in.
    Gap {
        /// The node.
        node: Arc<str>,
        /// The last sequence number the client had from it.
        since: u64,
    },
    /// A connection to `node` is up (again).
    Connected {
        /// The node.
        node: Arc<str>,
    },
    /// The connection to `node` dropped or could not be made; it is retried with backoff.
    Disconnected {
        /// The node.
        node: Arc<str>,
        /// Why, in words: `connection refused`, `the node closed the feed`, …
        reason: String,
        /// Whether the connection had been up (false: an attempt failed).
        was_up: bool,
    },
}
