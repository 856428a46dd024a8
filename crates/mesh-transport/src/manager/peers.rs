//! A connected peer's life after admission: its reader, which routes the manager's own
//! messages (heartbeats, peer exchange, goodbyes) and passes everything else up as events;
//! the first message that settles a dial's backoff; and the end — a goodbye, then
//! unregistering and the `Disconnected` event.

use std::sync::Arc;
use std::time::Duration;

use mesh_types::{Goodbye, GoodbyeReason, MeshMessage, NodeId};
use tokio::time::Instant;

use super::{Inner, address_of};
use crate::MessageReceiver;
use crate::events::{DisconnectReason, TransportEvent};
use crate::handshake::bounded;

/// The most of a peer's goodbye reason kept.
const MAX_GOODBYE_LEN: usize = 128;

impl Inner {
    pub(super) async fn read(
        self: Arc<Self>,
        node: NodeId,
        connection_id: u64,
        mut receiver: MessageReceiver,
    ) {
        let reason = loop {
            let next = tokio::select! {
                () = self.supervisor.cancelled() => break DisconnectReason::Shutdown,
                next = receiver.recv() => next,
            };
            let message = match next {
                None => break DisconnectReason::Closed,
                Some(Err(error)) => break DisconnectReason::Failed(Arc::new(error)),
                Some(Ok(message)) => message,
            };
            self.heard(node, &message);
            match message {
                MeshMessage::Ping(beat) => self.answer_ping(node, beat),
                MeshMessage::Pong(beat) => self.take_pong(node, beat),
                MeshMessage::PeerExchange(exchange) => self.hear_exchange(node, exchange).await,
                MeshMessage::Goodbye(Goodbye { reason }) => {
                    // The reason is the peer's text: kept short, it ends up in events and logs.
                    break DisconnectReason::Goodbye(match reason {
                        GoodbyeReason::Other(words) => GoodbyeReason::Other(bounded(words, MAX_GOODBYE_LEN)),
                        reason => reason,
                    });
                }
                MeshMessage::Hello(_) | MeshMessage::HelloAck(_) => {
                    break DisconnectReason::HandshakeAfterHandshake;
                }
                message => {
                    self.set_emitting(node, true);
                    let delivered = self.emit(TransportEvent::Message { from: node, message }).await;
                    self.set_emitting(node, false);
                    if !delivered {
                        break DisconnectReason::ConsumerGone;
                    }
                }
            }
        };
        self.unregister(node, connection_id, reason).await;
    }

    /// Records that `node` spoke. The first message after the handshake settles the dial: a
    /// refusal (`Goodbye`) counts as a failure for the backoff, anything else as a success.
    fn heard(&self, node: NodeId, message: &MeshMessage) {
        let mut state = self.lock();
        let Some(peer) = state.peers.get_mut(&node) else { return };
        peer.last_heard = Instant::now();
        if peer.confirmed {
            return;
        }
        peer.confirmed = true;
        let Some(addr) = peer.dialled else { return };
        match message {
            MeshMessage::Goodbye(Goodbye { reason }) => {
                let permanent = matches!(reason, GoodbyeReason::Banned | GoodbyeReason::NetworkMismatch);
                state.backoff.failed(addr, Instant::now(), permanent);
                // Full or refusing: not a place to move to until a later exchange says otherwise.
                state.hints.forget(addr);
            }
            _ => state.backoff.succeeded(addr),
        }
    }

    fn set_emitting(&self, node: NodeId, emitting: bool) {
        let mut state = self.lock();
        if let Some(peer) = state.peers.get_mut(&node) {
            peer.emitting = emitting;
            if !emitting {
                peer.last_heard = Instant::now();
            }
        }
    }

    /// Closes the connection to `node` after a goodbye; its reader reports the reason.
    pub(super) fn close_peer(&self, node: NodeId, reason: DisconnectReason, goodbye: GoodbyeReason) {
        let mut state = self.lock();
        if let Some(peer) = state.peers.get_mut(&node) {
            peer.closing = Some(reason);
            let _ = peer.sender.try_send(MeshMessage::Goodbye(Goodbye { reason: goodbye }));
            let sender = peer.sender.clone();
            // Close once the goodbye had a moment to leave.
            self.supervisor.spawn_worker("peer_close", async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                sender.close();
            });
        }
    }

    async fn unregister(&self, node: NodeId, connection_id: u64, reason: DisconnectReason) {
        let removed = {
            let mut state = self.lock();
            let current = state.peers.get(&node).is_some_and(|peer| peer.connection_id == connection_id);
            let removed = if current { state.peers.remove(&node) } else { None };
            self.update_gauge(state.peers.len());
            removed
        };
        // A replaced connection ends quietly: its successor is already registered.
        let Some(peer) = removed else { return };
        peer.sender.close();
        let reason = peer.closing.unwrap_or(reason);
        tracing::info!(%node, %reason, "peer disconnected");
        if let Some(addr) = address_of(&peer.info, peer.dialled) {
            self.touch_stored(addr).await;
        }
        self.emit(TransportEvent::Disconnected { node_id: node, reason }).await;
    }
}
