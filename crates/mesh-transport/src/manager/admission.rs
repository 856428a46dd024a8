//! Admission: who gets a slot. An inbound connection starts its handshake only while there is
//! room for it; every handshaken connection, inbound or dialled, is then checked against the
//! bans, the limits and any connection already open to the same node before it is registered,
//! announced and given a reader.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use mesh_peer_store::PeerStatus;
use mesh_types::{Goodbye, GoodbyeReason, MeshMessage, NodeId};

use super::state::{Connected, State};
use super::{Inner, address_of};
use crate::events::{Direction, TransportEvent};
use crate::handshake::{HandshakeFailure, PeerInfo, handshake};
use crate::{Connection, Listener, MessageSender};

/// What to do with a freshly handshaken connection.
enum Admission {
    Accept,
    Replace(MessageSender),
    Refuse(GoodbyeReason),
}

impl Inner {
    pub(super) async fn accept_loop(self: Arc<Self>, mut listener: Listener) {
        loop {
            let connection = tokio::select! {
                () = self.supervisor.cancelled() => break,
                connection = listener.accept() => connection,
            };
            let Some(connection) = connection else { break };
            if self.reserve_inbound(connection.remote_addr.ip()) {
                self.supervisor.spawn_worker("peer_handshake", self.clone().inbound(connection));
            } else {
                self.supervisor.spawn_worker("peer_refusal", refuse(connection, GoodbyeReason::TooManyPeers));
            }
        }
    }

    /// Takes a handshake slot for a connection from `ip`; `false` when the node, its inbound
    /// share, its handshake pool or `ip`'s share is full.
    fn reserve_inbound(&self, ip: IpAddr) -> bool {
        let mut state = self.lock();
        let established = state.peers.values().filter(|peer| peer.direction == Direction::Inbound);
        let (inbound, from_ip) = established.fold((0usize, 0usize), |(all, same), peer| {
            (all.saturating_add(1), same.saturating_add(usize::from(peer.info.remote_addr.ip() == ip)))
        });
        let from_ip = from_ip.saturating_add(state.pending_by_ip.get(&ip).copied().unwrap_or(0));
        let limits_ip = self.config.limit_loopback || !ip.is_loopback();
        // Pending handshakes have their own small pool: they never count against the
        // peer slots, so idle sockets cannot keep this node from dialling.
        let room = inbound.saturating_add(state.pending_inbound) < self.config.max_inbound
            && state.pending_inbound < self.config.max_pending_inbound
            && state.peers.len() < self.config.max_peers
            && !(limits_ip && from_ip >= self.config.max_inbound_per_ip);
        if room {
            state.pending_inbound = state.pending_inbound.saturating_add(1);
            let pending = state.pending_by_ip.entry(ip).or_default();
            *pending = pending.saturating_add(1);
        }
        room
    }

    async fn inbound(self: Arc<Self>, mut connection: Connection) {
        let remote = connection.remote_addr;
        match handshake(&mut connection, &self.identity, &self.handshake).await {
            // `admit` releases the slot when it registers (or refuses) the peer, so no other
            // connection can take it meanwhile.
            Ok(info) => self.admit(connection, info, Direction::Inbound, None).await,
            Err(failure) => {
                self.lock().release_pending_inbound(remote.ip());
                self.handshake_failed(failure, remote, None).await;
            }
        }
    }

    /// Bans a peer whose handshake failed for a ban reason: its key only if it proved it, and
    /// its address (dialled, or seen IP with the claimed port).
    pub(super) async fn handshake_failed(
        &self,
        failure: HandshakeFailure,
        remote: SocketAddr,
        dialled: Option<SocketAddr>,
    ) {
        let HandshakeFailure { error, hello, proven } = failure;
        match error.ban_reason() {
            Some(reason) => {
                let claimed_port =
                    hello.as_ref().and_then(|hello| hello.listen_addr).map(|listen| listen.port());
                let addr = dialled
                    .unwrap_or_else(|| SocketAddr::new(remote.ip(), claimed_port.unwrap_or(remote.port())));
                let key = hello.filter(|_| proven).map(|hello| hello.public_key);
                tracing::warn!(%error, %addr, key_proven = proven, "banning peer");
                self.record_ban(Some(addr), key, reason, self.config.ban_duration).await;
            }
            None => tracing::debug!(%error, "handshake failed"),
        }
    }

    /// Admits a handshaken connection: checks the bans, registers the peer (or refuses it),
    /// retires a duplicate it beats or announces it, then welcomes it and starts its reader.
    pub(super) async fn admit(
        self: Arc<Self>,
        connection: Connection,
        info: PeerInfo,
        direction: Direction,
        dialled: Option<SocketAddr>,
    ) {
        let address = address_of(&info, dialled);
        let banned = self.is_banned(&info, address).await;
        let connection_id = self.next_connection.fetch_add(1, Ordering::Relaxed);
        match self.register(&connection, &info, direction, dialled, banned, connection_id) {
            Admission::Refuse(reason) => {
                tracing::debug!(node = %info.node_id, ?reason, "refusing a connection");
                refuse(connection, reason).await;
                return;
            }
            Admission::Replace(old) => retire(&old),
            Admission::Accept => {
                if !self.emit(TransportEvent::Connected(info.clone())).await {
                    return;
                }
            }
        }
        tracing::info!(node = %info.node_id, addr = %info.remote_addr, ?direction, "peer connected");
        self.welcome(&info, address, &connection.sender).await;
        // Supervised: a reader that panicked would leave its peer registered and its slot taken,
        // so it must show in the node's health.
        let supervisor = self.supervisor.clone();
        supervisor.spawn_worker("peer_reader", self.read(info.node_id, connection_id, connection.receiver));
    }

    /// Frees the handshake's slot, decides, and registers the peer unless refused — all in
    /// one critical section.
    fn register(
        &self,
        connection: &Connection,
        info: &PeerInfo,
        direction: Direction,
        dialled: Option<SocketAddr>,
        banned: bool,
        connection_id: u64,
    ) -> Admission {
        let mut state = self.lock();
        // Release the slot reserved before the handshake in the same critical section that
        // registers the peer, so no other connection can slip into it meanwhile.
        let preferred = state.release_handshake(direction, info.remote_addr.ip(), dialled);
        let admission = self.decide(&state, info, direction, banned);
        if !matches!(admission, Admission::Refuse(_)) {
            let peer = Connected::new(
                info.clone(),
                connection.sender.clone(),
                direction,
                dialled,
                connection_id,
                preferred,
            );
            state.peers.insert(info.node_id, peer);
            self.update_gauge(state.peers.len());
        }
        admission
    }

    /// Refuses a banned peer, a duplicate that loses, or one over the limits; otherwise
    /// accepts it, in place of the connection it beats if there is one.
    fn decide(&self, state: &State, info: &PeerInfo, direction: Direction, banned: bool) -> Admission {
        let inbound = state.peers.values().filter(|peer| peer.direction == Direction::Inbound).count();
        match state.peers.get(&info.node_id) {
            _ if banned => Admission::Refuse(GoodbyeReason::Banned),
            Some(existing) if self.keep_new(self.me(), info, direction, existing) => {
                Admission::Replace(existing.sender.clone())
            }
            Some(_) => Admission::Refuse(GoodbyeReason::DuplicateConnection),
            None if state.peers.len() >= self.config.max_peers => {
                Admission::Refuse(GoodbyeReason::TooManyPeers)
            }
            None if direction == Direction::Inbound && inbound >= self.config.max_inbound => {
                Admission::Refuse(GoodbyeReason::TooManyPeers)
            }
            None => Admission::Accept,
        }
    }

    /// Greets an admitted peer: records its address as valid and sends it a first peer
    /// exchange.
    async fn welcome(&self, info: &PeerInfo, address: Option<SocketAddr>, sender: &MessageSender) {
        if let Some(addr) = address {
            self.record_valid(addr, info.public_key).await;
        }
        if self.config.peer_exchange {
            let exchange = self.peer_exchange(Some(info.node_id)).await;
            let _ = sender.try_send(exchange);
        }
    }

    /// Whether a new connection to an already connected node replaces the existing one. Both
    /// ends apply the same rule, so they keep the same connection: the one opened by the
    /// smaller node id; if one node opened both, the one with the larger opener nonce. An
    /// existing connection silent for two heartbeat intervals yields (a restarted peer).
    fn keep_new(&self, me: NodeId, info: &PeerInfo, direction: Direction, existing: &Connected) -> bool {
        if existing.last_heard.elapsed() > self.config.heartbeat_interval.saturating_mul(2) {
            return true;
        }
        let opener = |direction| if direction == Direction::Outbound { me } else { info.node_id };
        let opener_nonce = |info: &PeerInfo, direction| {
            if direction == Direction::Outbound { info.local_nonce } else { info.remote_nonce }
        };
        let (new, old) = (opener(direction), opener(existing.direction));
        if new == old {
            opener_nonce(info, direction) > opener_nonce(&existing.info, existing.direction)
        } else {
            new == me.min(info.node_id)
        }
    }

    async fn is_banned(&self, info: &PeerInfo, address: Option<SocketAddr>) -> bool {
        if self.lock().is_key_banned(&info.public_key) {
            return true;
        }
        match self.peer_store.find_by_status(PeerStatus::Banned).await {
            Ok(banned) => banned
                .iter()
                .any(|peer| peer.public_key == Some(info.public_key) || Some(peer.socket_addr()) == address),
            Err(err) => {
                tracing::warn!(error = %err, "cannot read bans from the peer store");
                false
            }
        }
    }
}

/// Tells the connection that lost to a duplicate why, and closes it.
fn retire(old: &MessageSender) {
    let _ = old.try_send(MeshMessage::Goodbye(Goodbye { reason: GoodbyeReason::DuplicateConnection }));
    old.close();
}

/// Refuses a connection with a goodbye.
async fn refuse(connection: Connection, reason: GoodbyeReason) {
    let _ = connection.sender.try_send(MeshMessage::Goodbye(Goodbye { reason }));
    tokio::time::sleep(Duration::from_millis(20)).await;
    connection.close();
}
