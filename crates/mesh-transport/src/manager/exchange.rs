//! Peer exchange: sharing the addresses of good peers every interval and on connect, asking
//! for them when the node has none left to dial, and learning the ones peers share — bounded,
//! so that no peer can flood the peer store or make it churn.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;

use mesh_peer_store::{Peer as StoredPeer, PeerStatus};
use mesh_types::{MeshMessage, NodeId, PeerAddress, PeerExchange};
use tokio::time::Instant;

use super::{Inner, address_of};
use crate::MessageSender;

impl Inner {
    pub(super) async fn exchange_loop(self: Arc<Self>) {
        if !self.config.peer_exchange {
            return;
        }
        let mut ticker = tokio::time::interval(self.config.peer_exchange_interval);
        ticker.tick().await;
        loop {
            tokio::select! {
                () = self.supervisor.cancelled() => break,
                _ = ticker.tick() => {}
            }
            let exchange = self.peer_exchange(None).await;
            let senders: Vec<MessageSender> =
                self.lock().peers.values().map(|peer| peer.sender.clone()).collect();
            for sender in senders {
                let _ = sender.try_send(exchange.clone());
            }
        }
    }

    /// The addresses of good peers: connected ones first, then valid ones from the store.
    pub(super) async fn peer_exchange(&self, except: Option<NodeId>) -> MeshMessage {
        let limit = self.config.peer_exchange_limit;
        let mut peers: Vec<PeerAddress> = {
            let state = self.lock();
            state
                .peers
                .values()
                .filter(|peer| Some(peer.info.node_id) != except)
                .filter_map(|peer| {
                    address_of(&peer.info, peer.dialled).map(|addr| PeerAddress {
                        node_id: peer.info.node_id,
                        addr,
                        provider_hops: peer.provider_hops,
                    })
                })
                .take(limit)
                .collect()
        };
        if peers.len() < limit
            && let Ok(stored) = self.peer_store.find_by_status(PeerStatus::Valid).await
        {
            for peer in stored {
                let Some(node_id) = peer.node_id() else { continue };
                if peers.len() >= limit {
                    break;
                }
                if Some(node_id) != except && peers.iter().all(|known| known.node_id != node_id) {
                    peers.push(PeerAddress { node_id, addr: peer.socket_addr(), provider_hops: None });
                }
            }
        }
        MeshMessage::PeerExchange(PeerExchange { peers })
    }

    /// Below the minimum with no address left to dial: asks every connected peer for the
    /// addresses it knows (an empty peer exchange), at most once per half exchange interval,
    /// which is as often as peers answer, and says so in the log.
    pub(super) fn ask_for_addresses(&self, last: &mut Option<Instant>) {
        let spacing = self.config.peer_exchange_interval.checked_div(2).unwrap_or_default();
        let now = Instant::now();
        if !self.config.peer_exchange || last.is_some_and(|at| now.saturating_duration_since(at) < spacing) {
            return;
        }
        *last = Some(now);
        let senders: Vec<MessageSender> =
            self.lock().peers.values().map(|peer| peer.sender.clone()).collect();
        tracing::info!(
            peers = senders.len(),
            min_peers = self.config.min_peers,
            "below the peer minimum with no address to dial; asking the connected peers for theirs"
        );
        let request = MeshMessage::PeerExchange(PeerExchange { peers: Vec::new() });
        for sender in senders {
            let _ = sender.try_send(request.clone());
        }
    }

    /// Takes a peer exchange from `node`, if its turn has come: answers a request (an empty
    /// one) and learns the addresses.
    pub(super) async fn hear_exchange(&self, node: NodeId, exchange: PeerExchange) {
        if !(self.config.peer_exchange && self.take_exchange_turn(node)) {
            return;
        }
        // An empty exchange asks for addresses: its sender knows no one to dial.
        if exchange.peers.is_empty() {
            let answer = self.peer_exchange(Some(node)).await;
            let sender = self.lock().peers.get(&node).map(|peer| peer.sender.clone());
            if let Some(sender) = sender {
                let _ = sender.try_send(answer);
            }
        }
        self.learn(exchange).await;
    }

    /// Whether `node` may have its peer exchange heard now: one per half exchange interval (it
    /// sends one per interval), so a peer cannot make this node churn its peer store.
    fn take_exchange_turn(&self, node: NodeId) -> bool {
        let spacing = self.config.peer_exchange_interval.checked_div(2).unwrap_or_default();
        let now = Instant::now();
        let mut state = self.lock();
        let Some(peer) = state.peers.get_mut(&node) else { return false };
        if peer.last_exchange.is_some_and(|last| now.saturating_duration_since(last) < spacing) {
            tracing::debug!(%node, "ignoring a peer exchange sent too soon after the last");
            return false;
        }
        peer.last_exchange = Some(now);
        true
    }

    /// Records addresses a peer shared as dial candidates, up to `max_candidates` untried ones
    /// in the store, so peers cannot grow it without bound.
    pub(super) async fn learn(&self, exchange: PeerExchange) {
        let me = self.me();
        // Never this node, nor an address nobody can dial.
        let worth_learning = |shared: &PeerAddress, own: &HashSet<SocketAddr>| {
            shared.node_id != me && !own.contains(&shared.addr) && shared.addr.port() != 0
        };
        let own = {
            let mut state = self.lock();
            if self.config.prefer_close_peers {
                let now = Instant::now();
                let own = state.own_addrs.clone();
                for shared in exchange.peers.iter().take(self.config.peer_exchange_limit) {
                    if worth_learning(shared, &own) {
                        state.hints.record(shared.addr, shared.provider_hops, now);
                    }
                }
            }
            state.own_addrs.clone()
        };
        let untried = self.peer_store.count_by_status(PeerStatus::Unknown).await.unwrap_or(usize::MAX);
        let room = self.config.max_candidates.saturating_sub(untried);
        for shared in exchange.peers.into_iter().take(self.config.peer_exchange_limit.min(room)) {
            if !worth_learning(&shared, &own) {
                continue;
            }
            if matches!(self.peer_store.find_by_ip_port(shared.addr.ip(), shared.addr.port()).await, Ok(None))
            {
                // A duplicate from a concurrent learn is harmless.
                let _ = self.peer_store.create(StoredPeer::new(shared.addr.ip(), shared.addr.port())).await;
            }
        }
    }
}
