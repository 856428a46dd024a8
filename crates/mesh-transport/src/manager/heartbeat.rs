//! Heartbeats: a `Ping` to every peer each interval and the `Pong` that answers it, carrying
//! role, peer count and hops to the providers; the round trip and clock offset they measure;
//! and the disconnection of peers silent beyond the timeout, remembered to be dialled again.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use mesh_types::{GoodbyeReason, Heartbeat, MeshMessage, NodeId};
use rand::RngExt;
use tokio::time::Instant;

use super::{Inner, address_of};
use crate::events::DisconnectReason;

impl Inner {
    pub(super) fn answer_ping(&self, node: NodeId, beat: Heartbeat) {
        let is_provider = self.is_provider.load(Ordering::Relaxed);
        let mut state = self.lock();
        let pong = state.heartbeat_for(node, beat.nonce, is_provider);
        if let Some(peer) = state.peers.get_mut(&node) {
            peer.record_heartbeat(&beat);
            let _ = peer.sender.try_send(MeshMessage::Pong(pong));
        }
    }

    pub(super) fn take_pong(&self, node: NodeId, beat: Heartbeat) {
        let mut state = self.lock();
        if let Some(peer) = state.peers.get_mut(&node) {
            peer.record_heartbeat(&beat);
            if let Some((nonce, sent, sent_at)) = peer.ping
                && nonce == beat.nonce
            {
                let round_trip = sent.elapsed();
                peer.round_trip = Some(round_trip);
                peer.clock.add(sent_at, round_trip, beat.sent_at);
                peer.ping = None;
            }
        }
    }

    pub(super) async fn heartbeat_loop(self: Arc<Self>) {
        let mut ticker = tokio::time::interval(self.config.heartbeat_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.supervisor.cancelled() => break,
                _ = ticker.tick() => {}
            }
            let now = Instant::now();
            let silent = self.ping_all(now);
            self.drop_silent(silent, now).await;
        }
    }

    /// Pings every peer that still speaks; returns the silent ones, with their addresses.
    fn ping_all(&self, now: Instant) -> Vec<(NodeId, Option<SocketAddr>)> {
        let mut silent = Vec::new();
        let mut state = self.lock();
        let is_provider = self.is_provider.load(Ordering::Relaxed);
        let mut pings: HashMap<NodeId, Heartbeat> = state
            .peers
            .keys()
            .map(|node| (*node, state.heartbeat_for(*node, rand::rng().random::<u64>(), is_provider)))
            .collect();
        for (node, peer) in &mut state.peers {
            // A reader waiting for the event consumer is not the peer's silence.
            if !peer.emitting
                && now.saturating_duration_since(peer.last_heard) > self.config.heartbeat_timeout
            {
                silent.push((*node, address_of(&peer.info, peer.dialled)));
                continue;
            }
            let Some(ping) = pings.remove(node) else { continue };
            let (nonce, sent_at) = (ping.nonce, ping.sent_at);
            if matches!(peer.sender.try_send(MeshMessage::Ping(ping)), Ok(true)) {
                peer.ping = Some((nonce, now, sent_at));
            }
        }
        silent
    }

    /// Disconnects the peers silent since before `now`, remembering them to dial again.
    async fn drop_silent(&self, silent: Vec<(NodeId, Option<SocketAddr>)>, now: Instant) {
        for (node, addr) in silent {
            tracing::info!(%node, "peer silent beyond the heartbeat timeout; disconnecting");
            if let Some(addr) = addr {
                self.lock().remember_lost(addr, now, self.config.reconnect_interval);
                self.mark_inaccessible(addr).await;
            }
            let reason = DisconnectReason::HeartbeatTimeout;
            self.close_peer(node, reason.clone(), GoodbyeReason::Other(reason.to_string()));
        }
    }
}
