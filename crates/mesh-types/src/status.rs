//! Network health as a node sees it: [`ProviderInfo`] per live provider, [`NetworkStatus`] for
//! `GET /api/mesh/network/status`, and [`NetworkStatusSummary`], the shorter form the WebSocket
//! feed sends on change.

use serde::{Deserialize, Serialize};

use crate::{DataFreshness, NodeId, Timestamp};

/// A live provider: one whose signed announcements or updates say it is alive and in provider
/// mode.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProviderInfo {
    /// The provider.
    pub node_id: NodeId,
    /// When this node last heard from it (an announcement or an update).
    pub last_seen: Timestamp,
    /// The fewest hops its messages have needed to reach this node recently.
    pub hop_count: u32,
    /// When its newest update arrived: the last fetch seen. Absent for a provider on standby
    /// that has not fetched lately (another held the coordination window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_fetch_time: Option<Timestamp>,
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
