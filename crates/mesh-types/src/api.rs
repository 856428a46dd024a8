//! Shapes of the HTTP and WebSocket API, exactly as the node serves them: the
//! [`ApiResponse`] envelope, provider state, and the [`FeedMessage`]s of `/ws`.
//!
//! They live here rather than in the server crate so clients (`meshctl`, services that link
//! pricemesh) parse the same types the node writes.

use serde::{Deserialize, Serialize};

use crate::{MeshWarning, NetworkStatusSummary, NodeId, ServedPriceMap, Timestamp};

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

    /// The payload on success, what went wrong otherwise.
    ///
    /// # Errors
    /// The node's error message, or a successful response that carried no data.
    pub fn into_result(self) -> Result<T, ApiFailure> {
        match (self.success, self.data) {
            (true, Some(data)) => Ok(data),
            (true, None) => Err(ApiFailure::NoData),
            (false, _) => Err(ApiFailure::Refused(self.error.unwrap_or_default())),
        }
    }
}

/// Why an API answer carries no payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiFailure {
    /// The node answered `success: false` with this message (empty if it gave none).
    #[error("{}", if .0.is_empty() { "request failed without a message" } else { .0.as_str() })]
    Refused(String),
    /// The node answered `success: true` but sent no `data`.
    #[error("response reported success but carried no data")]
    NoData,
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
    /// Every served price, sent once on connect (and again when a resume was impossible).
    PriceMeshInitial(ServedPriceMap),
    /// Only the assets that changed.
    PriceMeshUpdate(ServedPriceMap),
    /// Network health after it changed.
    NetworkStatusUpdate(NetworkStatusSummary),
    /// A warning for users.
    MeshWarning(MeshWarning),
}

/// One frame of the `/ws` feed: a [`FeedMessage`] with its place in the node's sequence,
/// `{"type": "…", "data": …, "seq": N}`.
///
/// `seq` is a watermark: once a client has a frame, it has every change up to `seq` that
/// concerns it, either as sent or superseded by a newer value of the same asset (conflation).
/// Sequence numbers only grow, and a restarted node starts above its previous run's, since
/// they count from the node's start time in microseconds. A client that reconnects with
/// `/ws?since=N` is sent what changed after `N`, or, when the node no longer holds that
/// history, a `PriceMeshInitial` with `"gap": true`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedFrame {
    /// The message.
    #[serde(flatten)]
    pub message: FeedMessage,
    /// Every change up to this number is reflected by this frame and the ones before it; 0
    /// (when absent) from a node that does not number its feed.
    #[serde(default)]
    pub seq: u64,
    /// On a `PriceMeshInitial` sent for `?since=N`: the node could not replay from `N`, so
    /// changes may have been missed; this snapshot replaces whatever the client held.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub gap: bool,
}

impl FeedFrame {
    /// `message` at `seq`, no gap.
    pub const fn new(message: FeedMessage, seq: u64) -> Self {
        Self { message, seq, gap: false }
    }
}
