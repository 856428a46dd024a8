//! [`BanReason`]: why a node refused a peer for a while.
//!
//! The gossip engine and the transport decide bans; the peer store records them. The reason
//! lives here, below all three, so that deciding a ban needs no storage crate.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a peer was banned. Serialized externally tagged, e.g. `"NetworkMismatch"` or
/// `{"Misbehaviour": {"score": 120}}` — the form of the `ban_reason` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BanReason {
    /// The peer belongs to another mesh network.
    NetworkMismatch,
    /// The peer speaks an incompatible protocol version.
    ProtocolMismatch,
    /// The peer sent a message whose signature does not verify.
    InvalidSignature,
    /// The peer's misbehaviour score crossed the ban threshold.
    Misbehaviour {
        /// The score when the ban was decided.
        score: u32,
    },
    /// The peer announced a user agent that is banned.
    BannedUserAgent,
}

impl fmt::Display for BanReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NetworkMismatch => f.write_str("network mismatch"),
            Self::ProtocolMismatch => f.write_str("protocol mismatch"),
            Self::InvalidSignature => f.write_str("invalid signature"),
            Self::Misbehaviour { score } => write!(f, "misbehaviour (score {score})"),
            Self::BannedUserAgent => f.write_str("banned user agent"),
        }
    }
}
