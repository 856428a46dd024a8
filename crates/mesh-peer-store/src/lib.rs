//! Known-peer bookkeeping for pricemesh: the [`Peer`]s a node has met, their [`PeerStatus`]
//! (valid, inaccessible, banned, unknown), why ([`BanReason`]) and until when a peer is banned,
//! and where each listens.
//!
//! The [`PeerStore`] trait keeps peers under two indexes, the [`PeerId`] and the listening
//! address (IP and port); each holds at most one peer.
//!
//! | backend | type | feature | shared between processes |
//! | --- | --- | --- | --- |
//! | process memory, optionally persisted to a JSON file | [`MemoryPeerStore`] | — | no |
//! | PostgreSQL, `mesh_peers` | `PostgresPeerStore` | `postgres` | yes |
//!
//! Bans end by themselves: once `banned_until` has passed, every read reports the peer as
//! [`PeerStatus::Unknown`] with its ban cleared, and [`PeerStore::unban_expired`] writes that
//! down.
//!
//! Every backend passes the same suite, [`conformance`] (public with the `conformance`
//! feature, so a service can check its own backend against it).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use async_trait::async_trait;
pub use mesh_storage_core::{BackendError, Corrupt};
use mesh_types::Timestamp;
use thiserror::Error;

mod file;
mod memory;
mod peer;
#[cfg(feature = "postgres")]
mod postgres;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

pub use file::{InvalidPeerFile, parse_peer_file};
pub use memory::MemoryPeerStore;
pub use mesh_types::BanReason;
pub use peer::{Peer, PeerId, PeerStatus, UnknownStatus};
#[cfg(feature = "postgres")]
pub use postgres::PostgresPeerStore;

/// Which of a store's two indexes a rejected peer collided on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DuplicateKey {
    /// Another stored peer has the same id.
    Id,
    /// Another stored peer listens at the same IP address and port.
    Address,
}

impl std::fmt::Display for DuplicateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Id => "id",
            Self::Address => "address and port",
        })
    }
}

/// Why a peer store operation failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// No peer has this id.
    #[error("no peer with id {0} in the peer store")]
    NotFound(PeerId),
    /// Another stored peer already has the peer's id or address; nothing was written.
    #[error("peer {id} at {address} was not stored: another stored peer has the same {key}")]
    DuplicatePeer {
        /// Which index collided.
        key: DuplicateKey,
        /// The id of the peer that was rejected.
        id: PeerId,
        /// The address of the peer that was rejected.
        address: SocketAddr,
    },
    /// The peer is inconsistent (see [`Peer`]); nothing was written.
    #[error("peer {id} was not stored: {detail}")]
    InvalidPeer {
        /// The id of the peer that was rejected.
        id: PeerId,
        /// What is inconsistent.
        detail: &'static str,
    },
    /// The backend holds a value that is not a peer (its entry names the row, by id where it
    /// could be read).
    #[error(transparent)]
    Corrupt(#[from] Corrupt),
    /// The peer file could not be parsed. It was moved aside, never overwritten, and the store
    /// was not loaded from it.
    #[error("peer file {} is corrupt ({detail}); {}", path.display(), moved_note(moved_to.as_ref()))]
    CorruptFile {
        /// The peer file.
        path: PathBuf,
        /// What was wrong with it.
        detail: String,
        /// The JSON parser's error, when the file is not a JSON array of peers.
        #[source]
        source: Option<serde_json::Error>,
        /// Where the corrupt file now is; `None` if moving it failed and it is still at `path`.
        moved_to: Option<PathBuf>,
    },
    /// Reading or writing the peer file failed.
    #[error("cannot {action} peer file {}: {source}", path.display())]
    File {
        /// The peer file.
        path: PathBuf,
        /// What was being done, e.g. `"write"`.
        action: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The durable backend failed: [`Error::is_retryable`] when it could not be reached (the
    /// operation may succeed when retried), not when it refused the operation.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

fn moved_note(moved_to: Option<&PathBuf>) -> String {
    match moved_to {
        Some(moved_to) => format!("moved it aside to {}", moved_to.display()),
        None => "moving it aside failed, it was left in place".to_owned(),
    }
}

impl Error {
    /// Whether retrying the same operation later may succeed.
    pub const fn is_retryable(&self) -> bool {
        matches!(self, Self::Backend(err) if err.is_retryable())
    }
}

/// Result of peer store operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The peers a node knows, indexed by id and by listening address.
///
/// Reads never report an expired ban: a peer whose `banned_until` has passed comes back as
/// [`PeerStatus::Unknown`] (see [`Peer::lift_expired_ban`]). Timestamps are kept to the
/// microsecond.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait PeerStore: Send + Sync {
    /// Records a new peer.
    ///
    /// # Errors
    /// [`Error::InvalidPeer`] when it is inconsistent (checked first); [`Error::DuplicatePeer`]
    /// when a stored peer has its id (checked next) or its address and port.
    async fn create(&self, peer: Peer) -> Result<()>;

    /// The peer with `id`.
    ///
    /// # Errors
    /// [`Error::NotFound`] when there is none.
    async fn read(&self, id: PeerId) -> Result<Peer>;

    /// Replaces the stored peer that has `peer.id` with `peer`; it may move to a new address.
    ///
    /// # Errors
    /// [`Error::InvalidPeer`] when it is inconsistent (checked first); [`Error::NotFound`] when
    /// no peer has the id (checked next); [`Error::DuplicatePeer`] when another peer listens at
    /// the new address.
    async fn update(&self, peer: Peer) -> Result<()>;

    /// Forgets the peer with `id`.
    ///
    /// # Errors
    /// [`Error::NotFound`] when there is none.
    async fn delete(&self, id: PeerId) -> Result<()>;

    /// Every peer, ordered by id.
    async fn list_all(&self) -> Result<Vec<Peer>>;

    /// The peers with `status` (as reported, so an expired ban counts as unknown), ordered by
    /// id.
    async fn find_by_status(&self, status: PeerStatus) -> Result<Vec<Peer>>;

    /// The peer listening at `ip` and `port`, if any.
    async fn find_by_ip_port(&self, ip: IpAddr, port: u16) -> Result<Option<Peer>>;

    /// How many peers [`PeerStore::find_by_status`] would return.
    async fn count_by_status(&self, status: PeerStatus) -> Result<usize>;

    /// Bans the peer with `id` for `reason` until `until`: status [`PeerStatus::Banned`] since
    /// now.
    ///
    /// # Errors
    /// [`Error::NotFound`] when there is none.
    async fn ban(&self, id: PeerId, reason: BanReason, until: Timestamp) -> Result<()>;

    /// Stores every expired ban as lifted (what reads already report) and returns how many
    /// there were.
    async fn unban_expired(&self) -> Result<usize>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_say_what_and_where() {
        let id = PeerId::nil();
        let duplicate = Error::DuplicatePeer {
            key: DuplicateKey::Address,
            id,
            address: "10.0.0.1:9470".parse().unwrap(),
        };
        assert_eq!(
            duplicate.to_string(),
            format!(
                "peer {id} at 10.0.0.1:9470 was not stored: another stored peer has the same address and port"
            )
        );
        let corrupt = Error::CorruptFile {
            path: "/data/peers.json".into(),
            detail: "expected value at line 1 column 1".into(),
            source: None,
            moved_to: Some("/data/peers.json.corrupt-1700000000".into()),
        };
        assert_eq!(
            corrupt.to_string(),
            "peer file /data/peers.json is corrupt (expected value at line 1 column 1); \
             moved it aside to /data/peers.json.corrupt-1700000000"
        );
        assert!(!corrupt.is_retryable());
        assert!(Error::from(BackendError::unavailable("postgres", "")).is_retryable());
    }

    #[tokio::test]
    async fn the_trait_can_be_mocked() {
        let mut store = MockPeerStore::new();
        store.expect_count_by_status().returning(|_| Ok(3));
        let store: &dyn PeerStore = &store;
        assert_eq!(store.count_by_status(PeerStatus::Valid).await.unwrap(), 3);
    }
}
