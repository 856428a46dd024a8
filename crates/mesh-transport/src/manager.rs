//! [`ConnectionManager`]: keeps a node connected to the mesh.
//!
//! - **Peers between min and max.** Below `min_peers` — or with no connection it opened
//!   itself, however many peers dialled in — it dials candidates: bootstrap addresses
//!   (resolved by DNS on every attempt) and peers from the [`PeerStore`], never a banned one,
//!   never its own address, never more than `max_peers` in total or `max_inbound` inbound
//!   (counting handshakes in progress, so a burst of dials cannot overshoot).
//! - **Backoff.** A failed address waits 1 s, 2 s, 4 s, … up to a minute (with jitter) before
//!   the next dial; failures that retrying will not fix (handshake refused, banned) wait the
//!   maximum. A dial counts as a success only once the peer sends something other than a
//!   refusal, so a node that bans or has no room for this one is not redialled every second.
//! - **One connection per node.** When two nodes dial each other at once, both keep the
//!   connection opened by the smaller node id; when one node opened both, both keep the one
//!   with the larger opener nonce; a connection silent for two heartbeat intervals yields to a
//!   fresh one (a restarted peer). Both ends decide alike, so exactly one survives.
//! - **Addresses.** A peer is known by the IP its connection came from and the port it says it
//!   listens on (or the address this node dialled), never by an IP it merely claims.
//! - **Bans.** A peer on another network (its key proven) or with a failed key proof is banned
//!   in the peer store for `ban_duration` and never dialled; a banned node's connections are
//!   refused after the handshake, matched by proven key or address. [`ConnectionManager::ban`]
//!   lets the layers above ban misbehaving peers.
//! - **Heartbeats.** Every `heartbeat_interval` each peer gets a `Ping` with this node's role
//!   and peer count and answers with a `Pong`; the round trip is measured. A peer silent for
//!   `heartbeat_timeout` is disconnected and marked inaccessible.
//! - **Discovery.** On connect and every `peer_exchange_interval`, peers swap the addresses of
//!   nodes they know to be good; learned addresses go to the peer store as dial candidates.
//! - **LAN discovery** (optional): multicast beacons announce this node and reveal others on
//!   the same network segment, see [`crate::LanDiscovery`].
//! - **Closer to the providers** (`prefer_close_peers`): heartbeats carry each node's hops to
//!   the nearest provider and peer exchanges the hops of the peers they list. At or above its
//!   minimum, every `preference_interval` the node dials the closest candidate that would
//!   shorten its own distance into a free slot, or, when full, in place of the farthest peer
//!   it dialled for distance. The peers that make its minimum are never given up for it: see
//!   the `topology` module.
//! - **Events.** [`TransportEvent`]s on a bounded channel; everything but the handshake,
//!   heartbeats, peer exchange and goodbyes is passed up as a message.
//!
//! One purpose per submodule, each with its own `impl Inner` block: `admission` (who gets a
//! slot), `dial` (whom to dial, and dialling), `peers` (a connected peer's reader and its
//! end), `heartbeat`, `exchange` (peer exchange), `lan` (beacons) and `records` (the peer
//! store); `state` holds what the one lock guards.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use mesh_peer_store::{BanReason, PeerStore};
use mesh_types::{GoodbyeReason, MeshMessage, NodeId, NodeIdentity, PeerAddress, PeerExchange, Supervisor};
use thiserror::Error;
use tokio::sync::mpsc;
use tokio::time::Instant;

use self::state::State;
use crate::discovery;
use crate::events::{ConnectedPeer, DisconnectReason, EventBudget, EventReceiver, TransportEvent};
use crate::handshake::{HandshakeConfig, PeerInfo};
use crate::{ConfigError, Listener, ManagerConfig, MessageSender, Outbound, Transport, TransportError};

mod admission;
mod dial;
mod exchange;
mod heartbeat;
mod lan;
mod peers;
mod records;
mod state;

/// Why the manager could not start.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration cannot work.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The listening address could not be bound.
    #[error(transparent)]
    Transport(#[from] TransportError),
}

/// Keeps a node connected to the mesh. Cloning gives another handle to the same manager.
#[derive(Clone)]
pub struct ConnectionManager {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ConnectionManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionManager")
            .field("node_id", &self.inner.identity.node_id())
            .field("local_addr", &self.inner.local_addr)
            .field("peers", &self.peer_count())
            .finish_non_exhaustive()
    }
}

struct Inner {
    config: ManagerConfig,
    identity: Arc<NodeIdentity>,
    transport: Arc<dyn Transport>,
    peer_store: Arc<dyn PeerStore>,
    handshake: HandshakeConfig,
    events: mpsc::Sender<(TransportEvent, u32)>,
    /// The bytes of received messages waiting in `events`.
    event_budget: Arc<EventBudget>,
    // A std Mutex: every critical section is a few map operations, never an await.
    state: Mutex<State>,
    is_provider: AtomicBool,
    next_connection: AtomicU64,
    /// The manager's part of the node's supervisor: its tasks watch its token, and the
    /// manager's shutdown cancels it (after the goodbyes), the rest of the node running on.
    supervisor: Supervisor,
    local_addr: Option<SocketAddr>,
}

impl ConnectionManager {
    /// Validates `config`, binds the listening address (if any), and starts the manager's
    /// tasks. Returns the manager and its event stream.
    ///
    /// # Errors
    /// [`StartError::Config`] for an unworkable configuration, [`StartError::Transport`] when
    /// the address cannot be bound.
    pub async fn start(
        config: ManagerConfig,
        identity: Arc<NodeIdentity>,
        transport: Arc<dyn Transport>,
        peer_store: Arc<dyn PeerStore>,
    ) -> Result<(Self, EventReceiver), StartError> {
        Self::start_supervised(config, identity, transport, peer_store, &Supervisor::new()).await
    }

    /// [`ConnectionManager::start`] with the manager's long-running tasks (listener, dialling,
    /// heartbeats, peer exchange, LAN discovery) owned by `supervisor`: a panic in one shows in
    /// the node's health, and the supervisor's shutdown stops them.
    ///
    /// # Errors
    /// As [`ConnectionManager::start`].
    pub async fn start_supervised(
        config: ManagerConfig,
        identity: Arc<NodeIdentity>,
        transport: Arc<dyn Transport>,
        peer_store: Arc<dyn PeerStore>,
        supervisor: &Supervisor,
    ) -> Result<(Self, EventReceiver), StartError> {
        config.validate()?;
        metrics::describe_gauge!("mesh_network_connected_peers", "Peers connected right now");
        let listener = match config.listen_addr {
            Some(addr) => Some(transport.listen(addr).await?),
            None => None,
        };
        let local_addr = listener.as_ref().map(Listener::local_addr);
        let lan = match config.lan_discovery {
            Some(lan) => Some((
                discovery::bind(&lan).map_err(|err| TransportError::ListenFailed {
                    addr: SocketAddr::V4(lan.group),
                    detail: format!("LAN discovery: {err}"),
                })?,
                lan,
            )),
            None => None,
        };
        let advertised_addr = config.advertised_addr.or(local_addr);
        let handshake = HandshakeConfig {
            network: config.network.clone(),
            listen_addr: advertised_addr,
            user_agent: config.user_agent.clone(),
            timeout: config.handshake_timeout,
        };
        let (events, receiver) = mpsc::channel(config.event_queue.max(1));
        let event_budget = EventBudget::new(config.event_queue_bytes);
        let receiver = EventReceiver::new(receiver, Arc::clone(&event_budget));
        let state = State::new(&config, local_addr.into_iter().chain(advertised_addr).collect());
        let inner = Arc::new(Inner {
            config,
            identity,
            transport,
            peer_store,
            handshake,
            events,
            event_budget,
            state: Mutex::new(state),
            is_provider: AtomicBool::new(false),
            next_connection: AtomicU64::new(0),
            supervisor: supervisor.child(),
            local_addr,
        });
        let supervisor = &inner.supervisor;
        if let Some(listener) = listener {
            supervisor.spawn_service("peer_listener", inner.clone().accept_loop(listener));
        }
        supervisor.spawn_service("peer_dialler", inner.clone().maintenance_loop());
        supervisor.spawn_service("heartbeats", inner.clone().heartbeat_loop());
        supervisor.spawn_service("peer_exchange", inner.clone().exchange_loop());
        if let Some((socket, lan)) = lan {
            supervisor.spawn_service("lan_discovery", inner.clone().lan_loop(socket, lan));
        }
        Ok((Self { inner }, receiver))
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.inner.identity.node_id()
    }

    /// The address the node listens on, if it does.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.inner.local_addr
    }

    /// How many peers are connected.
    pub fn peer_count(&self) -> usize {
        self.inner.lock().peers.len()
    }

    /// The connected peers.
    pub fn connected_peers(&self) -> Vec<ConnectedPeer> {
        let state = self.inner.lock();
        state
            .peers
            .values()
            .map(|peer| ConnectedPeer {
                info: peer.info.clone(),
                direction: peer.direction,
                round_trip: peer.round_trip,
                clock_offset_ms: peer.clock.offset_ms(),
                is_provider: peer.is_provider,
                peer_count: peer.peer_count,
                provider_hops: peer.provider_hops,
                preferred: peer.preferred,
            })
            .collect()
    }

    /// This node's hops to the nearest provider, as it counts them from its peers' heartbeats:
    /// 0 when it is one, `None` when it knows of none.
    pub fn provider_hops(&self) -> Option<u8> {
        self.inner.lock().distance(self.inner.is_provider.load(Ordering::Relaxed), None)
    }

    /// Tells peers (in heartbeats) whether this node is a provider.
    pub fn set_provider(&self, is_provider: bool) {
        self.inner.is_provider.store(is_provider, Ordering::Relaxed);
    }

    /// Records `peers` (learnt elsewhere, such as from signed announcements) as dial
    /// candidates, within the same bounds as addresses from a peer exchange. With peer
    /// exchange off the topology is imposed (the simulator, a fixed deployment), and nothing is
    /// learnt.
    pub async fn learn_addresses(&self, peers: Vec<PeerAddress>) {
        if self.inner.config.peer_exchange {
            self.inner.learn(PeerExchange { peers }).await;
        }
    }

    /// Queues `message` for `node` without waiting. `Ok(false)` when that peer's queue is
    /// full (it is not keeping up).
    ///
    /// # Errors
    /// [`TransportError::NotConnected`] when `node` is not connected.
    pub fn send(&self, node: NodeId, message: MeshMessage) -> Result<bool, TransportError> {
        let sender = self.inner.lock().peers.get(&node).map(|peer| peer.sender.clone());
        match sender {
            Some(sender) => sender.try_send(message),
            None => Err(TransportError::NotConnected { node }),
        }
    }

    /// Queues `message` for every connected peer except `except`; returns how many took it.
    pub fn broadcast(&self, message: &MeshMessage, except: Option<NodeId>) -> usize {
        let senders: Vec<MessageSender> = self
            .inner
            .lock()
            .peers
            .iter()
            .filter(|(node, _)| Some(**node) != except)
            .map(|(_, peer)| peer.sender.clone())
            .collect();
        // One shared message for every peer: encoded once, however many connections send it.
        let outbound = Outbound::new(message.clone());
        senders.iter().filter(|sender| matches!(sender.try_send(outbound.clone()), Ok(true))).count()
    }

    /// Queues `message` for each of `nodes` that is connected, encoded once for all of them;
    /// returns how many took it.
    pub fn send_each(&self, message: &MeshMessage, nodes: &[NodeId]) -> usize {
        if nodes.is_empty() {
            return 0;
        }
        let senders: Vec<MessageSender> = {
            let state = self.inner.lock();
            nodes.iter().filter_map(|node| state.peers.get(node).map(|peer| peer.sender.clone())).collect()
        };
        let outbound = Outbound::new(message.clone());
        senders.iter().filter(|sender| matches!(sender.try_send(outbound.clone()), Ok(true))).count()
    }

    /// Bans `node` for `reason` for `duration` and disconnects it.
    pub async fn ban_for(&self, node: NodeId, reason: BanReason, duration: Duration) {
        let peer = self
            .inner
            .lock()
            .peers
            .get(&node)
            .map(|peer| (address_of(&peer.info, peer.dialled), peer.info.public_key));
        if let Some((addr, key)) = peer {
            self.inner.record_ban(addr, Some(key), reason, duration).await;
            self.inner.close_peer(node, DisconnectReason::Banned(reason), GoodbyeReason::Banned);
        }
    }

    /// Bans `node` for `reason` for the configured ban duration and disconnects it.
    pub async fn ban(&self, node: NodeId, reason: BanReason) {
        self.ban_for(node, reason, self.inner.config.ban_duration).await;
    }

    /// Disconnects `node` with a goodbye.
    pub fn disconnect(&self, node: NodeId, reason: &str) {
        self.inner.close_peer(
            node,
            DisconnectReason::Requested(reason.to_owned()),
            GoodbyeReason::Other(reason.to_owned()),
        );
    }

    /// Says goodbye to every peer and stops the manager's tasks.
    pub async fn shutdown(&self) {
        let nodes: Vec<NodeId> = self.inner.lock().peers.keys().copied().collect();
        for node in nodes {
            self.inner.close_peer(node, DisconnectReason::Shutdown, GoodbyeReason::Shutdown);
        }
        // Let the writers flush the goodbyes.
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.inner.supervisor.cancel();
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update leaves the maps consistent, even if a holder panicked.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn me(&self) -> NodeId {
        self.identity.node_id()
    }

    /// Queues `event` for the consumer, first taking a message's weight from the byte budget
    /// (waiting, and so not reading from that peer, while it is spent); `false` once the
    /// consumer is gone.
    async fn emit(&self, event: TransportEvent) -> bool {
        let charge = match &event {
            TransportEvent::Message { message, .. } => self.event_budget.charge(message),
            TransportEvent::Connected(_) | TransportEvent::Disconnected { .. } => 0,
        };
        if charge > 0 {
            tokio::select! {
                taken = self.event_budget.take(charge) => if !taken { return false },
                () = self.events.closed() => return false,
            }
        }
        self.events.send((event, charge)).await.is_ok()
    }

    fn update_gauge(&self, peers: usize) {
        metrics::gauge!("mesh_network_connected_peers").set(peers as f64);
    }
}

/// Where a peer can be dialled: the address this node dialled, or else the IP its connection
/// came from with the port it says it listens on. A claimed IP is never used: it would let a
/// peer pin its records — and its bans — on someone else.
fn address_of(info: &PeerInfo, dialled: Option<SocketAddr>) -> Option<SocketAddr> {
    dialled.or_else(|| info.listen_addr.map(|listen| SocketAddr::new(info.remote_addr.ip(), listen.port())))
}

/// A deadline no ban outlasts, for a ban duration too long for the clock.
fn far_future() -> Instant {
    Instant::now().checked_add(Duration::from_secs(365 * 24 * 3600)).unwrap_or_else(Instant::now)
}
