//! Network health as a node sees it: [`ProviderInfo`] per live provider, [`NetworkStatus`] for
//! `GET /api/mesh/network/status`, and [`NetworkStatusSummary`], the shorter form the WebSocket
//! feed sends on change.

use serde::{Deserialize, Serialize};

use crate::{DataFreshness, NodeId, Timestamp};

/// A live provider: one whose signed announcements or updates say it is alive and in provider
/// mode.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
pub struct ProviderInfo {
    /// The provider.
    pub node_id: NodeId,
    /// When this node last heard from it (an announcement or an update).
    pub last_seen: Timestamp,
    /// The fewest hops its messages have needed to reach this node recently.
    pub hop_count: u32,
    /// When its newest update arrived: the last fetch seen. Absent for a provider on standby
    /// that has not fetched lately (another held the coordination window).
    #[serde(default)]
    pub last_fetch_time: Option<Timestamp>,
    /// How far its clock is ahead of this node's, in milliseconds (negative when behind):
    /// measured from heartbeats when it is a peer, else as its own announcements claim.
    /// Absent when unknown, and for this node itself.
    #[serde(default)]
    pub clock_offset_ms: Option<i64>,
}

// In JSON the two optional fields are left out when unknown, so a provider reads as the
// object the REST API documents (see the OpenAPI contract); binary formats, whose readers
// expect every field in order, always get them.
impl Serialize for ProviderInfo {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let readable = serializer.is_human_readable();
        let optional = [self.last_fetch_time.is_some(), self.clock_offset_ms.is_some()];
        let fields = optional.iter().filter(|present| !readable || **present).count().saturating_add(3);
        let mut state = serializer.serialize_struct("ProviderInfo", fields)?;
        state.serialize_field("node_id", &self.node_id)?;
        state.serialize_field("last_seen", &self.last_seen)?;
        state.serialize_field("hop_count", &self.hop_count)?;
        if !readable || self.last_fetch_time.is_some() {
            state.serialize_field("last_fetch_time", &self.last_fetch_time)?;
        } else {
            state.skip_field("last_fetch_time")?;
        }
        if !readable || self.clock_offset_ms.is_some() {
            state.serialize_field("clock_offset_ms", &self.clock_offset_ms)?;
        } else {
            state.skip_field("clock_offset_ms")?;
        }
        state.end()
    }
}

/// The network as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkStatus {
    /// Providers heard from within the offline threshold.
    pub active_providers: Vec<ProviderInfo>,
    /// Peers connected right now.
    pub connected_peers: u32,
    /// Distinct live nodes known, this one included.
    pub total_network_size: u32,
    /// When the newest price arrived; `null` before the first.
    pub last_update_time: Option<Timestamp>,
    /// How fresh the newest price is.
    pub data_freshness: DataFreshness,
}

/// [`NetworkStatus`] with the provider list reduced to a count, as the WebSocket
/// `NetworkStatusUpdate` message carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkStatusSummary {
    /// Number of active providers.
    pub active_providers: u32,
    /// Peers connected right now.
    pub connected_peers: u32,
    /// Distinct live nodes known, this one included.
    pub total_network_size: u32,
    /// When the newest price arrived; `null` before the first.
    pub last_update_time: Option<Timestamp>,
    /// How fresh the newest price is.
    pub data_freshness: DataFreshness,
}

impl From<&NetworkStatus> for NetworkStatusSummary {
    fn from(status: &NetworkStatus) -> Self {
        Self {
            active_providers: u32::try_from(status.active_providers.len()).unwrap_or(u32::MAX),
            connected_peers: status.connected_peers,
            total_network_size: status.total_network_size,
            last_update_time: status.last_update_time,
            data_freshness: status.data_freshness,
        }
    }
}
