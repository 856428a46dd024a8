//! Identifiers: [`NodeId`], self-certifying because it is derived from the node's public key,
//! and [`MessageId`], a time-ordered UUID v7 per gossiped message.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::keys::PublicKey;

/// The identity of a node: a UUID made from the first 16 bytes of SHA-256 over the node's
/// Ed25519 public key (UUID version 8, "custom").
///
/// Nobody can claim another node's id without holding its key: anyone can recompute the id from
/// the key a message carries, and the message signature proves possession of that key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(Uuid);

impl NodeId {
    /// Derives the id that belongs to `key`.
    pub fn from_public_key(key: &PublicKey) -> Self {
        let digest = Sha256::digest(key.as_bytes());
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        Self(uuid::Builder::from_custom_bytes(bytes).into_uuid())
    }

    /// Wraps a UUID read from elsewhere (a database row, an API path). Whether it belongs to a
    /// key is checked where a key is present, see [`NodeId::is_derived_from`].
    pub const fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }

    /// The UUID form, for storage.
    pub const fn as_uuid(&self) -> &Uuid {
        &self.0
    }

    /// Whether this id is the one derived from `key`.
    pub fn is_derived_from(&self, key: &PublicKey) -> bool {
        *self == Self::from_public_key(key)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.0.hyphenated())
    }
}

impl FromStr for NodeId {
    type Err = uuid::Error;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(text).map(Self)
    }
}

/// The id of one gossiped message: a UUID v7, so ids sort by creation time and the dedup store
/// can expire them cheaply.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MessageId(Uuid);

impl MessageId {
    /// A fresh id for a message created now.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// Wraps a UUID read from elsewhere.
    pub const fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }

    /// The UUID form, for storage.
    pub const fn as_uuid(&self) -> &Uuid {
        &self.0
    }

    /// Whether this is the all-zero UUID, which no sender produces.
    pub fn is_nil(&self) -> bool {
        self.0.is_nil()
    }
}

impl Default for MessageId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({})", self.0.hyphenated())
    }
}

impl FromStr for MessageId {
    type Err = uuid::Error;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(text).map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_is_a_version_8_uuid_and_stable_for_a_key() {
        let key = PublicKey::from_bytes([7; 32]);
        let id = NodeId::from_public_key(&key);
        assert_eq!(id.as_uuid().get_version_num(), 8);
        assert_eq!(id, NodeId::from_public_key(&key));
        assert!(id.is_derived_from(&key));
        assert!(!id.is_derived_from(&PublicKey::from_bytes([8; 32])));
    }

    #[test]
    fn node_id_display_and_from_str_round_trip() {
        let id = NodeId::from_public_key(&PublicKey::from_bytes([1; 32]));
        let parsed: NodeId = id.to_string().parse().unwrap();
        assert_eq!(parsed, id);
        assert!("not-a-uuid".parse::<NodeId>().is_err());
    }

    #[test]
    fn message_ids_are_v7_and_time_ordered() {
        let first = MessageId::new();
        let second = MessageId::new();
        assert_eq!(first.as_uuid().get_version_num(), 7);
        assert!(first < second);
        assert!(!first.is_nil());
        assert_eq!(first.to_string().parse::<MessageId>().unwrap(), first);
    }
}
