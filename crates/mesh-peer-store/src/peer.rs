//! The records a [`PeerStore`](crate::PeerStore) keeps: [`Peer`], its [`PeerStatus`] and, for a
//! banned peer, the [`BanReason`] (defined in `mesh-types`, since the gossip engine and the
//! transport decide bans without a peer store).
//!
//! A peer is first recorded by where it listens, before its handshake reveals its key, so its
//! [`PeerId`] is a random UUID; the self-certifying [`NodeId`] is derived from the public key
//! once known ([`Peer::node_id`]).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use mesh_types::chrono::{SubsecRound, Utc};
use mesh_types::{BanReason, NodeId, PublicKey, Timestamp};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The store's id of a peer: a random UUID (v4) given when the peer is first recorded.
pub type PeerId = Uuid;

/// What a node currently knows about a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerStatus {
    /// Completed a handshake and behaves.
    Valid,
    /// Could not be reached at its address.
    Inaccessible,
    /// Banned, see [`Peer::ban_reason`] and [`Peer::banned_until`].
    Banned,
    /// Not contacted yet, or a ban has expired.
    Unknown,
}

impl PeerStatus {
    /// Every status, in declaration order.
    pub const ALL: [Self; 4] = [Self::Valid, Self::Inaccessible, Self::Banned, Self::Unknown];

    /// The lowercase name, as stored in the `status` column and the JSON file.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Valid => "valid",
            Self::Inaccessible => "inaccessible",
            Self::Banned => "banned",
            Self::Unknown => "unknown",
        }
    }
}

impl fmt::Display for PeerStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A text that names no [`PeerStatus`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown peer status {0:?}: expected valid, inaccessible, banned or unknown")]
pub struct UnknownStatus(pub String);

impl FromStr for PeerStatus {
    type Err = UnknownStatus;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|status| status.as_str() == text).ok_or_else(|| UnknownStatus(text.into()))
    }
}

/// A known peer: where it listens, its status since when, its ban and its key.
///
/// The stores accept a peer only when it is consistent: a non-zero port, and a ban reason if
/// and only if the status is [`PeerStatus::Banned`] (a ban expiry only with a ban). A banned
/// peer without `banned_until` stays banned until updated.
///
/// Timestamps are kept to the microsecond, as PostgreSQL keeps them; the constructors and
/// setters here already round to that, and the stores round what they are given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    /// The store's id, see [`PeerId`].
    pub id: PeerId,
    /// The address it listens on.
    pub address: IpAddr,
    /// The port it listens on.
    pub port: u16,
    /// What is known about it.
    pub status: PeerStatus,
    /// When `status` last changed.
    pub status_changed_at: Timestamp,
    /// Why it is banned; set exactly while `status` is [`PeerStatus::Banned`].
    pub ban_reason: Option<BanReason>,
    /// When its ban ends; `None` while banned means until lifted by an update.
    pub banned_until: Option<Timestamp>,
    /// Its key, once a handshake revealed it.
    pub public_key: Option<PublicKey>,
    /// When it was last heard from.
    pub last_seen: Option<Timestamp>,
}

/// The current time at the precision peers are stored with.
pub(crate) fn now() -> Timestamp {
    Utc::now().trunc_subsecs(6)
}

impl Peer {
    /// A peer listening at `address:port`, with a fresh random id and status
    /// [`PeerStatus::Unknown`] since now.
    pub fn new(address: IpAddr, port: u16) -> Self {
        Self {
            id: Uuid::new_v4(),
            address,
            port,
            status: PeerStatus::Unknown,
            status_changed_at: now(),
            ban_reason: None,
            banned_until: None,
            public_key: None,
            last_seen: None,
        }
    }

    /// Where it listens.
    pub const fn socket_addr(&self) -> SocketAddr {
        SocketAddr::new(self.address, self.port)
    }

    /// Its node id, derived from its public key once known.
    pub fn node_id(&self) -> Option<NodeId> {
        self.public_key.as_ref().map(NodeId::from_public_key)
    }

    /// Sets `status` (and `status_changed_at` to now if it changed). Leaving
    /// [`PeerStatus::Banned`] clears the ban; to ban, use [`Peer::ban`], which also records why —
    /// the stores reject a banned peer without a reason.
    pub fn update_status(&mut self, status: PeerStatus) {
        if status != self.status {
            self.status = status;
            self.status_changed_at = now();
        }
        if status != PeerStatus::Banned {
            self.ban_reason = None;
            self.banned_until = None;
        }
    }

    /// Bans the peer for `reason` until `until`, from now.
    pub fn ban(&mut self, reason: BanReason, until: Timestamp) {
        self.status = PeerStatus::Banned;
        self.status_changed_at = now();
        self.ban_reason = Some(reason);
        self.banned_until = Some(until.trunc_subsecs(6));
    }

    /// Lifts a ban: the status becomes [`PeerStatus::Unknown`], since now.
    pub fn unban(&mut self) {
        if self.status == PeerStatus::Banned {
            self.update_status(PeerStatus::Unknown);
        }
    }

    /// Records that the peer was heard from at `at`.
    pub fn mark_seen(&mut self, at: Timestamp) {
        self.last_seen = Some(at.trunc_subsecs(6));
    }

    /// Whether the peer is banned right now (its ban has not expired).
    pub fn is_banned(&self) -> bool {
        self.is_banned_at(Utc::now())
    }

    /// Whether the peer is banned at `at`.
    pub fn is_banned_at(&self, at: Timestamp) -> bool {
        self.status == PeerStatus::Banned && !self.ban_expired_at(at)
    }

    /// Whether the peer carries a ban that has ended by `at`.
    pub fn ban_expired_at(&self, at: Timestamp) -> bool {
        self.status == PeerStatus::Banned && self.banned_until.is_some_and(|until| until <= at)
    }

    /// Whether the status is [`PeerStatus::Valid`].
    pub fn is_valid(&self) -> bool {
        self.status == PeerStatus::Valid
    }

    /// Whether the status is [`PeerStatus::Inaccessible`].
    pub fn is_inaccessible(&self) -> bool {
        self.status == PeerStatus::Inaccessible
    }

    /// If the ban ended by `at`, turns the peer into what the stores report for it: status
    /// [`PeerStatus::Unknown`] since the ban ended (or since it was imposed, if that was later),
    /// ban fields cleared. Returns whether it did.
    pub fn lift_expired_ban(&mut self, at: Timestamp) -> bool {
        if !self.ban_expired_at(at) {
            return false;
        }
        if let Some(until) = self.banned_until.take() {
            self.status_changed_at = self.status_changed_at.max(until);
        }
        self.status = PeerStatus::Unknown;
        self.ban_reason = None;
        true
    }

    /// The peer with every timestamp rounded to the microsecond, as stored.
    pub(crate) fn normalized(mut self) -> Self {
        self.status_changed_at = self.status_changed_at.trunc_subsecs(6);
        self.banned_until = self.banned_until.map(|until| until.trunc_subsecs(6));
        self.last_seen = self.last_seen.map(|seen| seen.trunc_subsecs(6));
        self
    }

    /// Why a store must not accept the peer, if it must not.
    pub(crate) fn inconsistency(&self) -> Option<&'static str> {
        let banned = self.status == PeerStatus::Banned;
        if self.port == 0 {
            Some("port 0 is not a listening port")
        } else if banned && self.ban_reason.is_none() {
            Some("a banned peer needs a ban reason")
        } else if !banned && self.ban_reason.is_some() {
            Some("only a banned peer may have a ban reason")
        } else if !banned && self.banned_until.is_some() {
            Some("only a banned peer may have a ban expiry")
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use mesh_types::NodeIdentity;
    use mesh_types::chrono::TimeDelta;

    use super::*;

    fn peer() -> Peer {
        Peer::new(IpAddr::V4(Ipv4Addr::new(192, 168, 1, 1)), 9470)
    }

    #[test]
    fn a_new_peer_is_unknown_and_unbanned() {
        let peer = peer();
        assert_eq!(peer.status, PeerStatus::Unknown);
        assert_eq!(peer.socket_addr(), "192.168.1.1:9470".parse().unwrap());
        assert!(!peer.is_banned() && !peer.is_valid() && !peer.is_inaccessible());
        assert_eq!(peer.node_id(), None);
        assert_eq!(peer.inconsistency(), None);
        assert_ne!(Peer::new(peer.address, peer.port).id, peer.id, "ids are random");
    }

    #[test]
    fn the_node_id_comes_from_the_key() {
        let identity = NodeIdentity::generate();
        let mut peer = peer();
        peer.public_key = Some(identity.public_key());
        assert_eq!(peer.node_id(), Some(identity.node_id()));
    }

    #[test]
    fn leaving_a_ban_clears_it() {
        let mut peer = peer();
        peer.ban(BanReason::Misbehaviour { score: 120 }, Utc::now() + TimeDelta::hours(1));
        assert!(peer.is_banned());
        assert_eq!(peer.inconsistency(), None);
        peer.update_status(PeerStatus::Valid);
        assert!(peer.is_valid());
        assert_eq!((peer.ban_reason, peer.banned_until), (None, None));

        peer.ban(BanReason::NetworkMismatch, Utc::now() + TimeDelta::hours(1));
        peer.unban();
        assert_eq!(peer.status, PeerStatus::Unknown);
        assert_eq!(peer.ban_reason, None);
    }

    #[test]
    fn a_banned_status_without_a_reason_is_inconsistent() {
        let mut peer = peer();
        peer.update_status(PeerStatus::Banned);
        assert!(peer.inconsistency().is_some());
        let mut peer = self::peer();
        peer.port = 0;
        assert!(peer.inconsistency().is_some());
    }

    #[test]
    fn an_expired_ban_is_lifted_at_its_end() {
        let mut peer = peer();
        let until = now() - TimeDelta::seconds(1);
        peer.ban(BanReason::InvalidSignature, until);
        peer.status_changed_at = until - TimeDelta::hours(1);
        assert!(!peer.is_banned());
        assert!(peer.ban_expired_at(Utc::now()));
        assert!(peer.lift_expired_ban(Utc::now()));
        assert_eq!(peer.status, PeerStatus::Unknown);
        assert_eq!(peer.status_changed_at, until);
        assert_eq!((peer.ban_reason, peer.banned_until), (None, None));
        assert!(!peer.lift_expired_ban(Utc::now()), "only once");
    }

    #[test]
    fn statuses_and_reasons_have_their_stored_forms() {
        for status in PeerStatus::ALL {
            assert_eq!(status.as_str().parse::<PeerStatus>().unwrap(), status);
            assert_eq!(serde_json::to_string(&status).unwrap(), format!("\"{status}\""));
        }
        assert!("sleeping".parse::<PeerStatus>().is_err());
        assert_eq!(
            serde_json::to_value(BanReason::Misbehaviour { score: 120 }).unwrap(),
            serde_json::json!({"Misbehaviour": {"score": 120}})
        );
        assert_eq!(
            serde_json::to_value(BanReason::NetworkMismatch).unwrap(),
            serde_json::json!("NetworkMismatch")
        );
    }

    #[test]
    fn a_peer_survives_json() {
        let mut peer = peer();
        peer.public_key = Some(NodeIdentity::generate().public_key());
        peer.mark_seen(Utc::now());
        peer.ban(BanReason::BannedUserAgent, Utc::now() + TimeDelta::days(1));
        let json = serde_json::to_string(&peer).unwrap();
        assert_eq!(serde_json::from_str::<Peer>(&json).unwrap(), peer);
    }
}
