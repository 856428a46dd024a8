//! [`MemoryPeerStore`]: peers in process memory under two indexes — id → peer and
//! (IP, port) → id — optionally persisted to a JSON file after every change.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use mesh_types::Timestamp;
use mesh_types::chrono::{SubsecRound, Utc};

use crate::peer::now;
use crate::{BanReason, DuplicateKey, Error, Peer, PeerId, PeerStatus, PeerStore, Result, file};

/// The two indexes, always changed together.
#[derive(Debug, Clone, Default)]
struct Index {
    peers: HashMap<PeerId, Peer>,
    by_address: HashMap<SocketAddr, PeerId>,
}

fn check(peer: &Peer) -> Result<()> {
    match peer.inconsistency() {
        Some(detail) => Err(Error::InvalidPeer { id: peer.id, detail }),
        None => Ok(()),
    }
}

/// What the stores report for a stored peer at `at`: an expired ban reads as lifted.
fn view(peer: &Peer, at: Timestamp) -> Peer {
    let mut peer = peer.clone();
    peer.lift_expired_ban(at);
    peer
}

impl Index {
    fn from_peers(peers: Vec<Peer>) -> Result<Self> {
        let mut index = Self::default();
        for peer in peers {
            index.create(peer)?;
        }
        Ok(index)
    }

    fn create(&mut self, peer: Peer) -> Result<()> {
        check(&peer)?;
        let address = peer.socket_addr();
        if self.peers.contains_key(&peer.id) {
            return Err(Error::DuplicatePeer { key: DuplicateKey::Id, id: peer.id, address });
        }
        match self.by_address.entry(address) {
            Entry::Occupied(_) => {
                Err(Error::DuplicatePeer { key: DuplicateKey::Address, id: peer.id, address })
            }
            Entry::Vacant(slot) => {
                slot.insert(peer.id);
                self.peers.insert(peer.id, peer.normalized());
                Ok(())
            }
        }
    }

    fn update(&mut self, peer: Peer) -> Result<()> {
        check(&peer)?;
        let address = peer.socket_addr();
        let old_address = self.peers.get(&peer.id).ok_or(Error::NotFound(peer.id))?.socket_addr();
        if self.by_address.get(&address).is_some_and(|holder| *holder != peer.id) {
            return Err(Error::DuplicatePeer { key: DuplicateKey::Address, id: peer.id, address });
        }
        self.by_address.remove(&old_address);
        self.by_address.insert(address, peer.id);
        self.peers.insert(peer.id, peer.normalized());
        Ok(())
    }

    fn delete(&mut self, id: PeerId) -> Result<()> {
        let peer = self.peers.remove(&id).ok_or(Error::NotFound(id))?;
        self.by_address.remove(&peer.socket_addr());
        Ok(())
    }

    fn ban(&mut self, id: PeerId, reason: BanReason, until: Timestamp) -> Result<()> {
        self.peers.get_mut(&id).ok_or(Error::NotFound(id))?.ban(reason, until);
        Ok(())
    }

    fn expired_bans(&self, at: Timestamp) -> usize {
        self.peers.values().filter(|peer| peer.ban_expired_at(at)).count()
    }

    fn unban_expired(&mut self, at: Timestamp) -> usize {
        self.peers.values_mut().map(|peer| usize::from(peer.lift_expired_ban(at))).sum()
    }

    /// The stored peers as they are (expired bans included), ordered by id.
    fn stored(&self) -> Vec<Peer> {
        let mut peers: Vec<Peer> = self.peers.values().cloned().collect();
        peers.sort_unstable_by_key(|peer| peer.id);
        peers
    }

    /// The peers matching `keep`, as reported at `at`, ordered by id.
    fn views(&self, at: Timestamp, keep: impl Fn(&Peer) -> bool) -> Vec<Peer> {
        let mut peers: Vec<Peer> =
            self.peers.values().map(|peer| view(peer, at)).filter(|peer| keep(peer)).collect();
        peers.sort_unstable_by_key(|peer| peer.id);
        peers
    }
}

#[derive(Debug)]
struct PeerFile {
    path: PathBuf,
    // Serializes changes end to end — apply, write the file, publish — so the file always ends
    // with the newest state and a failed write changes nothing.
    writing: tokio::sync::Mutex<()>,
}

/// Peers in process memory, optionally persisted to a JSON file.
///
/// Every lookup is O(1) by id or address, except listing, finding and counting by status,
/// which scan all peers. With a file, every change also rewrites the file: O(peers), which
/// suits the hundreds of peers a node knows.
///
/// # Persistence
/// A store made by [`MemoryPeerStore::with_file`] loads the file and, after every change,
/// rewrites it whole and atomically: to a temporary file in the same directory, flushed to
/// disk, then renamed over the old one. A failed write leaves both the file and the store as
/// they were and returns [`Error::File`].
///
/// - A **missing** file is an empty store; the file appears with the first change.
/// - A **corrupt** file — not JSON, not a list of peers, an inconsistent peer, or an id or
///   address twice — is never silently emptied or overwritten: it is renamed to
///   `<name>.corrupt-<unix seconds>` next to itself, logged, and reported as
///   [`Error::CorruptFile`] naming the file, what was wrong and where it went. Starting again
///   then starts with an empty store.
#[derive(Debug, Default)]
pub struct MemoryPeerStore {
    // A std Mutex: it is never held across an await.
    index: Mutex<Index>,
    file: Option<PeerFile>,
}

impl MemoryPeerStore {
    /// An empty store kept in memory only.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store persisted to the JSON file at `path`, starting with the peers in it (none if
    /// there is no file yet). The directory must exist.
    ///
    /// # Errors
    /// [`Error::CorruptFile`] when the file is corrupt (it has been moved aside, see the type's
    /// docs); [`Error::File`] when it cannot be read.
    pub async fn with_file(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let index = Index::from_peers(file::load(&path).await?)?;
        Ok(Self { index: Mutex::new(index), file: Some(PeerFile { path, writing: Default::default() }) })
    }

    /// The peer file, if the store has one.
    pub fn path(&self) -> Option<&Path> {
        self.file.as_ref().map(|file| file.path.as_path())
    }

    /// Writes every peer to the file now (changes already do); without a file, does nothing.
    ///
    /// # Errors
    /// [`Error::File`] when writing fails.
    pub async fn save_to_file(&self) -> Result<()> {
        let Some(file) = &self.file else { return Ok(()) };
        let _writing = file.writing.lock().await;
        let peers = self.lock().stored();
        file::save(&file.path, &peers).await
    }

    /// Replaces the peers in memory with those in the file (none if it is missing) and returns
    /// how many there are; without a file, does nothing and returns 0.
    ///
    /// # Errors
    /// As [`MemoryPeerStore::with_file`]; the peers in memory are then kept.
    pub async fn load_from_file(&self) -> Result<usize> {
        let Some(file) = &self.file else { return Ok(0) };
        let _writing = file.writing.lock().await;
        let index = Index::from_peers(file::load(&file.path).await?)?;
        let loaded = index.peers.len();
        *self.lock() = index;
        Ok(loaded)
    }

    fn lock(&self) -> MutexGuard<'_, Index> {
        // Every change is applied whole or not at all, so a panicking holder cannot leave the
        // indexes half-updated.
        self.index.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies `change` to the indexes and, with a file, persists the result before anyone can
    /// see it.
    async fn change<T>(&self, change: impl FnOnce(&mut Index) -> Result<T>) -> Result<T> {
        let Some(file) = &self.file else { return change(&mut self.lock()) };
        let _writing = file.writing.lock().await;
        // Only holders of `writing` change the index, so the copy stays current until published.
        let mut next = self.lock().clone();
        let changed = change(&mut next)?;
        file::save(&file.path, &next.stored()).await?;
        *self.lock() = next;
        Ok(changed)
    }
}

#[async_trait]
impl PeerStore for MemoryPeerStore {
    async fn create(&self, peer: Peer) -> Result<()> {
        self.change(|index| index.create(peer)).await
    }

    async fn read(&self, id: PeerId) -> Result<Peer> {
        let index = self.lock();
        index.peers.get(&id).map(|peer| view(peer, Utc::now())).ok_or(Error::NotFound(id))
    }

    async fn update(&self, peer: Peer) -> Result<()> {
        self.change(|index| index.update(peer)).await
    }

    async fn delete(&self, id: PeerId) -> Result<()> {
        self.change(|index| index.delete(id)).await
    }

    async fn list_all(&self) -> Result<Vec<Peer>> {
        Ok(self.lock().views(Utc::now(), |_| true))
    }

    async fn find_by_status(&self, status: PeerStatus) -> Result<Vec<Peer>> {
        Ok(self.lock().views(Utc::now(), |peer| peer.status == status))
    }

    async fn find_by_ip_port(&self, ip: IpAddr, port: u16) -> Result<Option<Peer>> {
        let index = self.lock();
        let id = index.by_address.get(&SocketAddr::new(ip, port));
        Ok(id.and_then(|id| index.peers.get(id)).map(|peer| view(peer, Utc::now())))
    }

    async fn count_by_status(&self, status: PeerStatus) -> Result<usize> {
        let at = Utc::now();
        Ok(self.lock().peers.values().filter(|peer| view(peer, at).status == status).count())
    }

    async fn ban(&self, id: PeerId, reason: BanReason, until: Timestamp) -> Result<()> {
        let until = until.trunc_subsecs(6);
        self.change(|index| index.ban(id, reason, until)).await
    }

    async fn unban_expired(&self) -> Result<usize> {
        let at = now();
        // Nothing to write is the common case; skip rewriting the file for it.
        if self.lock().expired_bans(at) == 0 {
            return Ok(0);
        }
        self.change(|index| Ok(index.unban_expired(at))).await
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::sync::Arc;

    use mesh_types::chrono::TimeDelta;

    use super::*;
    use crate::conformance::Fixture;

    fn peer(last_octet: u8) -> Peer {
        Peer::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, last_octet)), 9470)
    }

    fn files_in(directory: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(directory)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    crate::peer_store_conformance!(
        suite,
        async { Some(Fixture::new(Arc::new(MemoryPeerStore::new()))) },
        model_cases = 256
    );

    // After the suite, the file holds what memory holds, and nothing else is left beside it.
    crate::peer_store_conformance!(
        with_a_file,
        async {
            let directory = tempfile::tempdir().unwrap();
            let path = directory.path().join("peers.json");
            let store = Arc::new(MemoryPeerStore::with_file(&path).await.unwrap());
            Some(Fixture::new(store.clone()).then(async move {
                let reloaded = MemoryPeerStore::with_file(&path).await.unwrap();
                assert_eq!(reloaded.list_all().await.unwrap(), store.list_all().await.unwrap());
                assert_eq!(files_in(directory.path()), ["peers.json"], "no temporary file is left behind");
            }))
        },
        model_cases = 16
    );

    #[tokio::test]
    async fn a_missing_file_is_an_empty_store_until_the_first_change() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("peers.json");
        let store = MemoryPeerStore::with_file(&path).await.unwrap();
        assert_eq!(store.path(), Some(path.as_path()));
        assert!(store.list_all().await.unwrap().is_empty());
        assert!(!path.exists(), "opening does not create the file");
        store.create(peer(1)).await.unwrap();
        assert!(path.exists());
    }

    #[tokio::test]
    async fn the_file_survives_a_reload_with_identical_peers() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("peers.json");
        let store = MemoryPeerStore::with_file(&path).await.unwrap();
        let mut keyed = peer(1);
        keyed.public_key = Some(mesh_types::NodeIdentity::generate().public_key());
        keyed.mark_seen(Utc::now());
        keyed.update_status(PeerStatus::Valid);
        let ipv6 = Peer::new("2001:db8::7".parse().unwrap(), 9471);
        let banned = peer(2);
        for peer in [&keyed, &ipv6, &banned] {
            store.create(peer.clone()).await.unwrap();
        }
        store
            .ban(banned.id, BanReason::Misbehaviour { score: 120 }, Utc::now() + TimeDelta::hours(1))
            .await
            .unwrap();
        store.delete(ipv6.id).await.unwrap();
        store.create(ipv6.clone()).await.unwrap();

        let reloaded = MemoryPeerStore::with_file(&path).await.unwrap();
        let peers = reloaded.list_all().await.unwrap();
        assert_eq!(peers, store.list_all().await.unwrap());
        assert_eq!(peers.len(), 3);
        assert_eq!(reloaded.read(keyed.id).await.unwrap(), keyed);
        assert_eq!(
            reloaded.read(banned.id).await.unwrap().ban_reason,
            Some(BanReason::Misbehaviour { score: 120 })
        );
        assert_eq!(files_in(directory.path()), ["peers.json"], "no temporary file is left behind");

        // An explicit save and load change nothing.
        reloaded.save_to_file().await.unwrap();
        assert_eq!(store.load_from_file().await.unwrap(), 3);
        assert_eq!(store.list_all().await.unwrap(), peers);
    }

    #[tokio::test]
    async fn a_corrupt_file_is_moved_aside_and_reported() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("peers.json");
        std::fs::write(&path, b"[{\"id\": \"truncated").unwrap();

        let err = MemoryPeerStore::with_file(&path).await.unwrap_err();
        let Error::CorruptFile { path: reported, detail, moved_to: Some(moved_to), .. } = &err else {
            panic!("expected a corrupt file error, got {err}")
        };
        assert_eq!(reported, &path);
        assert!(detail.contains("invalid JSON"), "{detail}");
        let source = std::error::Error::source(&err).expect("the JSON parser's error is kept");
        assert!(source.is::<serde_json::Error>(), "{source}");
        let message = err.to_string();
        assert!(
            message.contains("peers.json") && message.contains(&moved_to.display().to_string()),
            "{message}"
        );
        let moved_name = moved_to.file_name().unwrap().to_string_lossy();
        assert!(moved_name.starts_with("peers.json.corrupt-"), "{moved_name}");
        assert_eq!(std::fs::read(moved_to).unwrap(), b"[{\"id\": \"truncated", "kept byte for byte");
        assert!(!path.exists());

        // A second corruption in the same second gets its own name.
        std::fs::write(&path, b"{}").unwrap();
        let second = MemoryPeerStore::with_file(&path).await.unwrap_err();
        let Error::CorruptFile { moved_to: Some(second_moved), .. } = second else { panic!("{second}") };
        assert_ne!(&second_moved, moved_to);
        assert!(second_moved.exists());

        // With the corrupt file out of the way the node starts empty.
        assert!(MemoryPeerStore::with_file(&path).await.unwrap().list_all().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_file_breaking_the_store_rules_is_corrupt() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("peers.json");
        let first = peer(1);
        let mut same_address = peer(2);
        same_address.address = first.address;
        std::fs::write(&path, serde_json::to_vec(&[first, same_address]).unwrap()).unwrap();
        let err = MemoryPeerStore::with_file(&path).await.unwrap_err();
        assert!(
            matches!(&err, Error::CorruptFile { detail, .. } if detail.contains("appears twice")),
            "{err}"
        );

        let mut banned_without_reason = peer(3);
        banned_without_reason.status = PeerStatus::Banned;
        std::fs::write(&path, serde_json::to_vec(&[banned_without_reason]).unwrap()).unwrap();
        let err = MemoryPeerStore::with_file(&path).await.unwrap_err();
        assert!(matches!(&err, Error::CorruptFile { detail, .. } if detail.contains("ban reason")), "{err}");
    }

    #[tokio::test]
    async fn a_corrupt_file_on_reload_keeps_the_peers_in_memory() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("peers.json");
        let store = MemoryPeerStore::with_file(&path).await.unwrap();
        store.create(peer(1)).await.unwrap();
        std::fs::write(&path, b"not json").unwrap();
        assert!(matches!(store.load_from_file().await, Err(Error::CorruptFile { moved_to: Some(_), .. })));
        assert_eq!(store.list_all().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_failed_write_changes_nothing() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("peers.json");
        let store = MemoryPeerStore::with_file(&path).await.unwrap();
        let kept = peer(1);
        store.create(kept.clone()).await.unwrap();
        // Writing the temporary file fails once its directory is gone.
        drop(directory);
        let err = store.create(peer(2)).await.unwrap_err();
        assert!(matches!(&err, Error::File { action: "write", .. }), "{err}");
        assert!(err.to_string().contains("peers.json"), "{err}");
        assert_eq!(store.list_all().await.unwrap(), [kept]);
    }

    #[tokio::test]
    async fn without_a_file_save_and_load_do_nothing() {
        let store = MemoryPeerStore::new();
        store.create(peer(1)).await.unwrap();
        store.save_to_file().await.unwrap();
        assert_eq!(store.load_from_file().await.unwrap(), 0);
        assert_eq!(store.list_all().await.unwrap().len(), 1);
        assert_eq!(store.path(), None);
    }
}
