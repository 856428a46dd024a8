//! Shapes of the HTTP and WebSocket API, exactly as the API reference shows them: the
//! [`ApiResponse`] envelope, provider state, and the [`FeedMessage`]s of `/ws`.
//!
//! They live here rather than in the server crate so clients (`meshctl`, services that link
//! pricemesh) parse the same types the node writes.

use serde::{Deserialize, Serialize};

use crate::{MeshWarning, NetworkStatusSummary, NodeId, PriceMap, Timestamp};

/// The envelope of every REST response: `{"success": true, "data": …}` on success,
/// `{"success": false, "data": null, "error": "…"}` on failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiResponse<T> {
    /// Whether the request succeeded.
    pub success: bool,
    /// The payload; `null` on failure. A missing field reads as `None`, like `null`.
    pub data: Option<T>,
    /// What went wrong; absent on success.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl<T> ApiResponse<T> {
    /// A successful response carrying `data`.
    pub const fn ok(data: T) -> Self {
        Self { success: true, data: Some(data), error: None }
    }

    /// A failed response with the message `error`.
    pub fn error(error: impl Into<String>) -> Self {
        Self { success: false, data: None, error: Some(error.into()) }
    }

    /// The payload on success, the error message otherwise.
    ///
    /// # Errors
    /// The response's error message, or a note that a successful response carried no data.
    pub fn into_result(self) -> Result<T, String> {
        match (self.success, self.data) {
            (true, Some(data)) => Ok(data),
            (true, None) => Err("response reported success but carried no data".to_owned()),
            (false, _) => Err(self.error.unwrap_or_else(|| "request failed without a message".to_owned())),
        }
    }
}

/// Body of `POST /api/mesh/provider/enable` and `…/disable` responses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderState {
    /// Whether provider mode is on.
    pub enabled: bool,
    /// This node.
    pub node_id: NodeId,
}

/// Body of `GET /api/mesh/provider/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderStatus {
    /// Whether provider mode is on.
    pub enabled: bool,
    /// This node.
    pub node_id: NodeId,
    /// When this node last fetched prices; `null` if never.
    pub last_fetch_time: Option<Timestamp>,
    /// Fetches made since start.
    pub fetch_count: u64,
}

/// A message of the `/ws` feed: `{"type": "…", "data": …}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum FeedMessage {
    /// Every cached price, sent once on connect.
    PriceMeshInitial(PriceMap),
    /// Only the assets that changed.
    PriceMeshUpdate(PriceMap),
    /// Network health after it changed.
    NetworkStatusUpdate(NetworkStatusSummary),
    /// A warning for users.
    MeshWarning(MeshWarning),
}
