//! Dialling: the maintenance loop that decides when and whom to dial — candidates for the
//! minimum (bootstrap names resolved by DNS, then the peer store), peers lost to silence, a
//! step closer to the providers — and the dial itself, with its backoff on failure.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use mesh_peer_store::{Peer as StoredPeer, PeerStatus};
use mesh_types::{GoodbyeReason, NodeId};
use tokio::time::Instant;

use super::Inner;
use super::state::State;
use crate::TransportError;
use crate::events::{Direction, DisconnectReason};
use crate::handshake::{HandshakeFailure, handshake};
use crate::topology::{self, Move, Standing};

impl Inner {
    pub(super) async fn maintenance_loop(self: Arc<Self>) {
        // When this node last asked its peers for addresses, while below its minimum.
        let mut asked_for_addresses: Option<Instant> = None;
        // When it last moved towards the providers.
        let mut moved: Option<Instant> = None;
        let mut ticker = tokio::time::interval(self.config.maintenance_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                () = self.supervisor.cancelled() => break,
                _ = ticker.tick() => {}
            }
            let wanted = self.wanted();
            if wanted == 0 {
                asked_for_addresses = None;
                let due = moved.is_none_or(|at| at.elapsed() >= self.config.preference_interval);
                if self.config.prefer_close_peers
                    && self.config.peer_exchange
                    && due
                    && self.move_closer().await
                {
                    moved = Some(Instant::now());
                }
                self.redial_lost().await;
                continue;
            }
            let candidates = self.candidates(wanted).await;
            if candidates.is_empty() {
                self.ask_for_addresses(&mut asked_for_addresses);
            }
            for addr in candidates {
                self.dial_if_room(addr);
            }
        }
    }

    /// How many dials the node needs for its minimum, within its room.
    fn wanted(&self) -> usize {
        let state = self.lock();
        let have = state.taken();
        let room = self.config.max_peers.saturating_sub(have);
        let outbound = state.pending_outbound.saturating_add(
            state.peers.values().filter(|peer| peer.direction == Direction::Outbound).count(),
        );
        // Inbound connections alone never satisfy the minimum: a node others happened
        // to reach first would otherwise never dial its bootstrap peers, and whoever
        // fills its slots would decide what it hears.
        let own_choice = usize::from(self.config.min_peers > 0 && outbound == 0);
        self.config.min_peers.saturating_sub(have).max(own_choice).min(room)
    }

    /// Reserves a slot for a dial to `addr` and starts it, unless the node is full or already
    /// dialling there.
    fn dial_if_room(self: &Arc<Self>, addr: SocketAddr) {
        let reserved = {
            let mut state = self.lock();
            let free = state.taken() < self.config.max_peers && state.dialing.insert(addr);
            if free {
                state.pending_outbound = state.pending_outbound.saturating_add(1);
            }
            free
        };
        if reserved {
            self.supervisor.spawn_worker("peer_dial", self.clone().dial(addr));
        }
    }

    /// Dials again, while there is room, the peers lost to silence whose time has come: the
    /// links a partition broke, which nothing else would restore once each side is back at
    /// its minimum.
    async fn redial_lost(self: &Arc<Self>) {
        let due = {
            let mut state = self.lock();
            let room = self.config.max_peers.saturating_sub(state.taken());
            state.lost_due(Instant::now(), room, self.config.reconnect_interval)
        };
        if due.is_empty() {
            return;
        }
        let banned = self.banned_addrs().await;
        for addr in due.into_iter().filter(|addr| !banned.contains(addr)) {
            tracing::debug!(%addr, "dialling a peer lost to silence again");
            self.dial_if_room(addr);
        }
    }

    /// Takes one step towards the providers if a candidate allows it (see the `topology`
    /// module); `true` when it did.
    async fn move_closer(self: &Arc<Self>) -> bool {
        let banned = self.banned_addrs().await;
        let Some(step) = self.reserve_closer(&banned) else { return false };
        match step {
            Move::Dial(addr) => {
                self.supervisor.spawn_worker("peer_dial", self.clone().dial(addr));
            }
            Move::Replace { drop, dial } => {
                tracing::info!(node = %drop, "giving up the farthest preferred peer to make room");
                let reason = DisconnectReason::ReplacedByCloserPeer;
                self.close_peer(drop, reason.clone(), GoodbyeReason::Other(reason.to_string()));
                self.supervisor.spawn_worker("peer_dial", self.clone().dial_once_gone(drop, dial));
            }
        }
        true
    }

    /// Chooses the step towards the providers, if any, and reserves the slot for its dial.
    fn reserve_closer(&self, banned: &HashSet<SocketAddr>) -> Option<Move> {
        let now = Instant::now();
        let is_provider = self.is_provider.load(Ordering::Relaxed);
        let mut state = self.lock();
        // A peer that has not reported yet may be the closest: judging without it would
        // move on a distance the next heartbeat corrects (every node just started, say).
        if state.peers.values().any(|peer| !peer.reported) {
            return None;
        }
        let standing = Standing {
            own: state.distance(is_provider, None),
            have: state.taken(),
            min_peers: self.config.min_peers,
            max_peers: self.config.max_peers,
            preferred: state
                .peers
                .iter()
                .filter(|(_, peer)| peer.preferred)
                .map(|(node, peer)| (*node, peer.provider_hops))
                .collect(),
        };
        let connected = state.connected_addrs();
        let State { hints, own_addrs, dialing, backoff, .. } = &mut *state;
        let candidate = hints.closest(now, |addr| {
            !banned.contains(&addr)
                && !own_addrs.contains(&addr)
                && !connected.contains(&addr)
                && !dialing.contains(&addr)
                && backoff.ready(addr, now)
        });
        let step = candidate.and_then(|candidate| topology::choose(&standing, candidate))?;
        let addr = match step {
            Move::Dial(addr) | Move::Replace { dial: addr, .. } => addr,
        };
        state.dialing.insert(addr);
        state.preferred_dials.insert(addr);
        state.pending_outbound = state.pending_outbound.saturating_add(1);
        tracing::info!(
            %addr,
            hops = candidate.map(|(_, hops)| hops),
            own = standing.own,
            "dialling a peer closer to the providers"
        );
        Some(step)
    }

    /// Dials `addr` once `node` has left the peers (or after a second), so the dial finds the
    /// slot `node` held.
    async fn dial_once_gone(self: Arc<Self>, node: NodeId, addr: SocketAddr) {
        for _ in 0..50 {
            if !self.lock().peers.contains_key(&node) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.dial(addr).await;
    }

    /// Up to `wanted` addresses worth dialling now, best first: bootstrap peers, then known
    /// valid, unknown and inaccessible peers from the store.
    async fn candidates(&self, wanted: usize) -> Vec<SocketAddr> {
        let mut found: Vec<SocketAddr> = Vec::new();
        for entry in &self.config.bootstrap {
            found.extend(self.resolve(entry).await);
        }
        for status in [PeerStatus::Valid, PeerStatus::Unknown, PeerStatus::Inaccessible] {
            match self.peer_store.find_by_status(status).await {
                Ok(peers) => found.extend(peers.iter().map(StoredPeer::socket_addr)),
                Err(err) => tracing::warn!(error = %err, "cannot read dial candidates from the peer store"),
            }
        }
        let banned = self.banned_addrs().await;
        let state = self.lock();
        let now = Instant::now();
        let connected = state.connected_addrs();
        let mut seen = HashSet::new();
        found
            .into_iter()
            .filter(|addr| {
                seen.insert(*addr)
                    && !banned.contains(addr)
                    && !state.own_addrs.contains(addr)
                    && !connected.contains(addr)
                    && !state.dialing.contains(addr)
                    && state.backoff.ready(*addr, now)
            })
            .take(wanted)
            .collect()
    }

    /// The addresses of a bootstrap entry; a name that does not resolve is retried after 30 s.
    async fn resolve(&self, entry: &str) -> Vec<SocketAddr> {
        if let Ok(addr) = entry.parse::<SocketAddr>() {
            return vec![addr];
        }
        if self.lock().dns_retry.get(entry).is_some_and(|at| Instant::now() < *at) {
            return Vec::new();
        }
        match tokio::net::lookup_host(entry).await {
            Ok(addrs) => addrs.collect(),
            Err(err) => {
                let error =
                    TransportError::DnsResolutionFailed { host: entry.to_owned(), detail: err.to_string() };
                tracing::warn!(%error, "bootstrap peer unreachable");
                // Without a retry time (a clock at its end) the name is simply looked up again.
                if let Some(at) = Instant::now().checked_add(Duration::from_secs(30)) {
                    self.lock().dns_retry.insert(entry.to_owned(), at);
                }
                Vec::new()
            }
        }
    }

    async fn dial(self: Arc<Self>, addr: SocketAddr) {
        let result = match self.transport.dial(addr).await {
            Ok(mut connection) => match handshake(&mut connection, &self.identity, &self.handshake).await {
                Ok(info) => Ok((connection, info)),
                Err(failure) => Err(failure),
            },
            Err(error) => Err(HandshakeFailure::from(error)),
        };
        match result {
            // `admit` releases the slot; the backoff resets once the peer confirms.
            Ok((connection, info)) => self.admit(connection, info, Direction::Outbound, Some(addr)).await,
            Err(failure) => self.dial_failed(addr, failure).await,
        }
    }

    /// Frees the slot of a failed dial to `addr`, backs off from it and bans it if the
    /// failure calls for that.
    async fn dial_failed(&self, addr: SocketAddr, failure: HandshakeFailure) {
        {
            let mut state = self.lock();
            state.pending_outbound = state.pending_outbound.saturating_sub(1);
            state.dialing.remove(&addr);
            state.preferred_dials.remove(&addr);
            // Unreachable or full (a full node refuses before the handshake): not a
            // place to move to until a later exchange tells of it again.
            state.hints.forget(addr);
            if matches!(failure.error, TransportError::SelfConnection { .. }) {
                state.own_addrs.insert(addr);
            }
            state.backoff.failed(addr, Instant::now(), !failure.error.is_retryable());
        }
        if failure.error.is_retryable() {
            self.mark_inaccessible(addr).await;
        }
        self.handshake_failed(failure, addr, Some(addr)).await;
    }
}
