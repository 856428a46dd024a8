//! Peer-store bookkeeping: what the manager writes down about peers — valid once admitted,
//! last seen, inaccessible after a failed dial or silence, banned (by key in memory, by
//! address in the store) — and the banned addresses it reads back before dialling.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use mesh_peer_store::{BanReason, Peer as StoredPeer, PeerId, PeerStatus};
use mesh_types::PublicKey;
use tokio::time::Instant;

use super::{Inner, far_future};

impl Inner {
    /// The addresses banned in the peer store (none when it cannot be read).
    pub(super) async fn banned_addrs(&self) -> HashSet<SocketAddr> {
        match self.peer_store.find_by_status(PeerStatus::Banned).await {
            Ok(peers) => peers.iter().map(StoredPeer::socket_addr).collect(),
            Err(_) => HashSet::new(),
        }
    }

    async fn stored(&self, addr: SocketAddr) -> Option<StoredPeer> {
        self.peer_store.find_by_ip_port(addr.ip(), addr.port()).await.ok().flatten()
    }

    pub(super) async fn record_valid(&self, addr: SocketAddr, key: PublicKey) {
        let now = mesh_types::chrono::Utc::now();
        let result = match self.stored(addr).await {
            Some(mut peer) => {
                if !peer.is_banned() {
                    peer.update_status(PeerStatus::Valid);
                }
                peer.public_key = Some(key);
                peer.last_seen = Some(now);
                self.peer_store.update(peer).await
            }
            None => {
                let mut peer = StoredPeer::new(addr.ip(), addr.port());
                peer.update_status(PeerStatus::Valid);
                peer.public_key = Some(key);
                peer.last_seen = Some(now);
                self.peer_store.create(peer).await
            }
        };
        if let Err(err) = result {
            tracing::debug!(error = %err, %addr, "cannot record a peer");
        }
    }

    pub(super) async fn touch_stored(&self, addr: SocketAddr) {
        if let Some(mut peer) = self.stored(addr).await {
            peer.last_seen = Some(mesh_types::chrono::Utc::now());
            let _ = self.peer_store.update(peer).await;
        }
    }

    pub(super) async fn mark_inaccessible(&self, addr: SocketAddr) {
        if let Some(mut peer) = self.stored(addr).await
            && !peer.is_banned()
            && peer.status != PeerStatus::Inaccessible
        {
            peer.update_status(PeerStatus::Inaccessible);
            let _ = self.peer_store.update(peer).await;
        }
    }

    pub(super) async fn record_ban(
        &self,
        addr: Option<SocketAddr>,
        key: Option<PublicKey>,
        reason: BanReason,
        duration: Duration,
    ) {
        if let Some(key) = key {
            let until = Instant::now().checked_add(duration).unwrap_or_else(far_future);
            self.lock().ban_key(key, until);
        }
        let Some(addr) = addr else {
            tracing::info!(?reason, "banned a peer that gave no address by its key only");
            return;
        };
        // A ban reaching past the calendar's end lasts until its end.
        let until = mesh_types::chrono::Utc::now()
            .checked_add_signed(
                mesh_types::chrono::Duration::from_std(duration)
                    .unwrap_or(mesh_types::chrono::Duration::days(1)),
            )
            .unwrap_or(mesh_types::chrono::DateTime::<mesh_types::chrono::Utc>::MAX_UTC);
        let Some(id) = self.ban_record(addr, key).await else { return };
        if let Err(err) = self.peer_store.ban(id, reason, until).await {
            tracing::warn!(error = %err, %addr, "cannot ban a peer");
        }
        self.lock().backoff.failed(addr, Instant::now(), true);
    }

    /// The store record to ban `addr` under, with the proven `key` attached: the existing
    /// one, or a new one while the ban records are below their cap.
    async fn ban_record(&self, addr: SocketAddr, key: Option<PublicKey>) -> Option<PeerId> {
        if let Some(mut peer) = self.stored(addr).await {
            // Only a proven key may be attached to the record.
            if key.is_some() && peer.public_key != key {
                peer.public_key = key;
                let _ = self.peer_store.update(peer.clone()).await;
            }
            return Some(peer.id);
        }
        // Failed handshakes cost the attacker nothing and each may claim another port:
        // past the cap, new addresses are not recorded (key bans still hold).
        let banned = self.peer_store.count_by_status(PeerStatus::Banned).await.unwrap_or(usize::MAX);
        if banned >= self.config.max_banned_records {
            tracing::debug!(%addr, banned, "ban records at their cap; not recording another address");
            return None;
        }
        let mut peer = StoredPeer::new(addr.ip(), addr.port());
        peer.public_key = key;
        let id = peer.id;
        if let Err(err) = self.peer_store.create(peer).await {
            tracing::warn!(error = %err, %addr, "cannot record a banned peer");
            return None;
        }
        Some(id)
    }
}
