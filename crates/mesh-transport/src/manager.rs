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

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use mesh_peer_store::{BanReason, Peer as StoredPeer, PeerStatus, PeerStore};
use mesh_types::{
    Goodbye, GoodbyeReason, Heartbeat, MeshMessage, NodeId, NodeIdentity, PeerAddress, PeerExchange,
    PublicKey, Supervisor, Timestamp,
};
use rand::RngExt;
use thiserror::Error;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::clock::ClockSamples;
use crate::discovery::{self, Beacon, LanDiscovery};
use crate::events::{ConnectedPeer, Direction, EventBudget, EventReceiver, TransportEvent};
use crate::handshake::{HandshakeConfig, HandshakeFailure, PeerInfo, bounded, handshake};
use crate::topology::{self, HopHints, Move, Standing};

/// The most of a peer's goodbye reason kept.
const MAX_GOODBYE_LEN: usize = 128;
use crate::{
    ConfigError, Connection, Listener, ManagerConfig, MessageReceiver, MessageSender, Outbound, Transport,
    TransportError,
};

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

struct State {
    peers: HashMap<NodeId, Connected>,
    pending_inbound: usize,
    /// Inbound handshakes in progress per remote IP, for the per-IP limit.
    pending_by_ip: HashMap<IpAddr, usize>,
    pending_outbound: usize,
    dialing: HashSet<SocketAddr>,
    backoff: Backoff,
    own_addrs: HashSet<SocketAddr>,
    dns_retry: HashMap<String, Instant>,
    /// Keys banned until then, whether or not the peer gave an address to record in the peer
    /// store (a peer that does not listen has none). At most [`MAX_KEY_BANS`].
    key_bans: HashMap<PublicKey, Instant>,
    /// Candidates' reported distances to the providers, from peer exchanges.
    hints: HopHints,
    /// Dials in progress that were chosen for their distance.
    preferred_dials: HashSet<SocketAddr>,
    /// Peers lost to silence, by address: dialled again every `reconnect_interval` while
    /// there is room. At most [`MAX_LOST`], each forgotten after [`LOST_MEMORY`] or once
    /// connected again.
    lost: HashMap<SocketAddr, Lost>,
}

/// A peer lost to silence, and when to dial it next.
#[derive(Debug, Clone, Copy)]
struct Lost {
    since: Instant,
    next_try: Instant,
}

/// Most peers lost to silence remembered at once (the longest-lost is forgotten first).
const MAX_LOST: usize = 64;
/// How long a peer lost to silence is dialled again before it is forgotten.
const LOST_MEMORY: Duration = Duration::from_secs(3600);

/// Most keys banned in memory at once; past that the ban ending soonest is dropped (its peer
/// store record, when it has one, still holds).
const MAX_KEY_BANS: usize = 4096;

impl State {
    /// Remembers `addr` as lost to silence at `now`, to dial again after `retry`.
    fn remember_lost(&mut self, addr: SocketAddr, now: Instant, retry: Duration) {
        if !self.lost.contains_key(&addr) && self.lost.len() >= MAX_LOST {
            let oldest = self.lost.iter().min_by_key(|(_, lost)| lost.since).map(|(addr, _)| *addr);
            if let Some(oldest) = oldest {
                self.lost.remove(&oldest);
            }
        }
        let next_try = now.checked_add(retry).unwrap_or_else(far_future);
        self.lost.insert(addr, Lost { since: now, next_try });
    }

    /// The lost peers due for another dial at `now`, at most `room` of them, each given its
    /// next time; forgets the ones connected again or lost too long ago. (A lost peer is
    /// still registered for a moment after it is remembered, while its goodbye leaves: it
    /// counts as connected again only once due.)
    fn lost_due(&mut self, now: Instant, room: usize, retry: Duration) -> Vec<SocketAddr> {
        let connected = self.connected_addrs();
        self.lost.retain(|addr, lost| {
            let back = lost.next_try <= now && connected.contains(addr);
            !back && now.saturating_duration_since(lost.since) < LOST_MEMORY
        });
        let dialing = &self.dialing;
        let due: Vec<SocketAddr> = self
            .lost
            .iter()
            .filter(|(addr, lost)| {
                lost.next_try <= now && !dialing.contains(*addr) && !connected.contains(*addr)
            })
            .map(|(addr, _)| *addr)
            .take(room)
            .collect();
        let next_try = now.checked_add(retry).unwrap_or_else(far_future);
        for addr in &due {
            if let Some(lost) = self.lost.get_mut(addr) {
                lost.next_try = next_try;
            }
        }
        due
    }

    /// An inbound handshake from `ip` ended (with a peer or a failure).
    fn release_pending_inbound(&mut self, ip: IpAddr) {
        self.pending_inbound = self.pending_inbound.saturating_sub(1);
        if let Some(pending) = self.pending_by_ip.get_mut(&ip) {
            *pending = pending.saturating_sub(1);
            if *pending == 0 {
                self.pending_by_ip.remove(&ip);
            }
        }
    }

    fn ban_key(&mut self, key: PublicKey, until: Instant) {
        let now = Instant::now();
        self.key_bans.retain(|_, end| *end > now);
        if self.key_bans.len() >= MAX_KEY_BANS && !self.key_bans.contains_key(&key) {
            let soonest = self.key_bans.iter().min_by_key(|(_, end)| **end).map(|(key, _)| *key);
            if let Some(soonest) = soonest {
                self.key_bans.remove(&soonest);
            }
        }
        let end = self.key_bans.entry(key).or_insert(until);
        *end = (*end).max(until);
    }

    fn is_key_banned(&self, key: &PublicKey) -> bool {
        self.key_bans.get(key).is_some_and(|end| *end > Instant::now())
    }

    /// This node's hops to the nearest provider, counting every peer but `except` (the one
    /// it is about to tell: split horizon).
    fn distance(&self, is_provider: bool, except: Option<NodeId>) -> Option<u8> {
        topology::distance(
            is_provider,
            self.peers.iter().filter(|(node, _)| Some(**node) != except).map(|(_, peer)| peer.provider_hops),
        )
    }

    /// The heartbeat for `to`: this node's role, peer count and hops without `to`.
    fn heartbeat_for(&self, to: NodeId, nonce: u64, is_provider: bool) -> Heartbeat {
        Heartbeat {
            nonce,
            is_provider,
            peer_count: u32::try_from(self.peers.len()).unwrap_or(u32::MAX),
            sent_at: mesh_types::clock::now(),
            provider_hops: self.distance(is_provider, Some(to)),
        }
    }

    /// The addresses of the connected peers.
    fn connected_addrs(&self) -> HashSet<SocketAddr> {
        self.peers.values().filter_map(|peer| address_of(&peer.info, peer.dialled)).collect()
    }
}

struct Connected {
    info: PeerInfo,
    sender: MessageSender,
    direction: Direction,
    /// The address this node dialled, for outbound connections.
    dialled: Option<SocketAddr>,
    /// Whether the peer has sent something other than a refusal since the handshake.
    confirmed: bool,
    /// Whether its reader is waiting for the event consumer (the peer is not silent then).
    emitting: bool,
    connection_id: u64,
    last_heard: Instant,
    /// The ping in flight: its nonce, and when it left by the monotonic and the node's clock.
    ping: Option<(u64, Instant, Timestamp)>,
    round_trip: Option<Duration>,
    clock: ClockSamples,
    is_provider: bool,
    peer_count: u32,
    /// Its hops to the nearest provider, from its last heartbeat.
    provider_hops: Option<u8>,
    /// Whether a heartbeat from it has arrived, so `provider_hops` is its word, not a default.
    reported: bool,
    /// Whether this node dialled it for its distance (a slot above the minimum).
    preferred: bool,
    closing: Option<String>,
    /// When its last peer exchange was heard.
    last_exchange: Option<Instant>,
}

/// What to do with a freshly handshaken connection.
enum Admission {
    Accept,
    Replace(MessageSender),
    Refuse(GoodbyeReason),
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
        let state = State {
            peers: HashMap::new(),
            pending_inbound: 0,
            pending_by_ip: HashMap::new(),
            pending_outbound: 0,
            dialing: HashSet::new(),
            backoff: Backoff::new(config.backoff_initial, config.backoff_max),
            own_addrs: local_addr.into_iter().chain(advertised_addr).collect(),
            dns_retry: HashMap::new(),
            key_bans: HashMap::new(),
            hints: HopHints::new(config.peer_exchange_interval.saturating_mul(3)),
            preferred_dials: HashSet::new(),
            lost: HashMap::new(),
        };
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
            self.inner.close_peer(node, format!("banned: {reason:?}"), GoodbyeReason::Banned);
        }
    }

    /// Bans `node` for `reason` for the configured ban duration and disconnects it.
    pub async fn ban(&self, node: NodeId, reason: BanReason) {
        let peer = self
            .inner
            .lock()
            .peers
            .get(&node)
            .map(|peer| (address_of(&peer.info, peer.dialled), peer.info.public_key));
        if let Some((addr, key)) = peer {
            self.inner.record_ban(addr, Some(key), reason, self.inner.config.ban_duration).await;
            self.inner.close_peer(node, format!("banned: {reason:?}"), GoodbyeReason::Banned);
        }
    }

    /// Disconnects `node` with a goodbye.
    pub fn disconnect(&self, node: NodeId, reason: &str) {
        self.inner.close_peer(node, reason.to_owned(), GoodbyeReason::Other(reason.to_owned()));
    }

    /// Says goodbye to every peer and stops the manager's tasks.
    pub async fn shutdown(&self) {
        let nodes: Vec<NodeId> = self.inner.lock().peers.keys().copied().collect();
        for node in nodes {
            self.inner.close_peer(node, "shutdown".to_owned(), GoodbyeReason::Shutdown);
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

    // ---- inbound ------------------------------------------------------------------------

    async fn accept_loop(self: Arc<Self>, mut listener: Listener) {
        loop {
            let connection = tokio::select! {
                () = self.supervisor.cancelled() => break,
                connection = listener.accept() => connection,
            };
            let Some(connection) = connection else { break };
            let ip = connection.remote_addr.ip();
            let admitted = {
                let mut state = self.lock();
                let established = state.peers.values().filter(|peer| peer.direction == Direction::Inbound);
                let (inbound, from_ip) = established.fold((0usize, 0usize), |(all, same), peer| {
                    (
                        all.saturating_add(1),
                        same.saturating_add(usize::from(peer.info.remote_addr.ip() == ip)),
                    )
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
            };
            if admitted {
                self.supervisor.spawn_worker("peer_handshake", self.clone().inbound(connection));
            } else {
                self.supervisor.spawn_worker("peer_refusal", refuse(connection, GoodbyeReason::TooManyPeers));
            }
        }
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

    // ---- outbound -----------------------------------------------------------------------

    async fn maintenance_loop(self: Arc<Self>) {
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
            let wanted = {
                let state = self.lock();
                // Inbound handshakes in progress do not count: they may be idle sockets.
                let have = state.peers.len().saturating_add(state.pending_outbound);
                let room = self.config.max_peers.saturating_sub(have);
                let outbound = state.pending_outbound.saturating_add(
                    state.peers.values().filter(|peer| peer.direction == Direction::Outbound).count(),
                );
                // Inbound connections alone never satisfy the minimum: a node others happened
                // to reach first would otherwise never dial its bootstrap peers, and whoever
                // fills its slots would decide what it hears.
                let own_choice = usize::from(self.config.min_peers > 0 && outbound == 0);
                self.config.min_peers.saturating_sub(have).max(own_choice).min(room)
            };
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

    /// Reserves a slot for a dial to `addr` and starts it, unless the node is full or already
    /// dialling there.
    fn dial_if_room(self: &Arc<Self>, addr: SocketAddr) {
        let reserved = {
            let mut state = self.lock();
            let total = state.peers.len().saturating_add(state.pending_outbound);
            let free = total < self.config.max_peers && state.dialing.insert(addr);
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
            let have = state.peers.len().saturating_add(state.pending_outbound);
            let room = self.config.max_peers.saturating_sub(have);
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
        let now = Instant::now();
        let is_provider = self.is_provider.load(Ordering::Relaxed);
        let step = {
            let mut state = self.lock();
            // A peer that has not reported yet may be the closest: judging without it would
            // move on a distance the next heartbeat corrects (every node just started, say).
            if state.peers.values().any(|peer| !peer.reported) {
                return false;
            }
            let standing = Standing {
                own: state.distance(is_provider, None),
                have: state.peers.len().saturating_add(state.pending_outbound),
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
            let Some(step) = candidate.and_then(|candidate| topology::choose(&standing, candidate)) else {
                return false;
            };
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
            step
        };
        match step {
            Move::Dial(addr) => {
                self.supervisor.spawn_worker("peer_dial", self.clone().dial(addr));
            }
            Move::Replace { drop, dial } => {
                tracing::info!(node = %drop, "giving up the farthest preferred peer to make room");
                let reason = "replaced by a peer closer to the providers";
                self.close_peer(drop, reason.to_owned(), GoodbyeReason::Other(reason.to_owned()));
                self.supervisor.spawn_worker("peer_dial", self.clone().dial_once_gone(drop, dial));
            }
        }
        true
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

    /// The addresses banned in the peer store (none when it cannot be read).
    async fn banned_addrs(&self) -> HashSet<SocketAddr> {
        match self.peer_store.find_by_status(PeerStatus::Banned).await {
            Ok(peers) => peers.iter().map(StoredPeer::socket_addr).collect(),
            Err(_) => HashSet::new(),
        }
    }

    /// Below the minimum with no address left to dial: asks every connected peer for the
    /// addresses it knows (an empty peer exchange), at most once per half exchange interval,
    /// which is as often as peers answer, and says so in the log.
    fn ask_for_addresses(&self, last: &mut Option<Instant>) {
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
            Err(failure) => {
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
    }

    // ---- admission ----------------------------------------------------------------------

    /// Bans a peer whose handshake failed for a ban reason: its key only if it proved it, and
    /// its address (dialled, or seen IP with the claimed port).
    async fn handshake_failed(
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

    async fn admit(
        self: Arc<Self>,
        connection: Connection,
        info: PeerInfo,
        direction: Direction,
        dialled: Option<SocketAddr>,
    ) {
        let address = address_of(&info, dialled);
        let banned = self.is_banned(&info, address).await;
        let me = self.me();
        let connection_id = self.next_connection.fetch_add(1, Ordering::Relaxed);
        let admission = {
            let mut state = self.lock();
            // Release the slot reserved before the handshake in the same critical section that
            // registers the peer, so no other connection can slip into it meanwhile.
            match direction {
                Direction::Inbound => state.release_pending_inbound(info.remote_addr.ip()),
                Direction::Outbound => {
                    state.pending_outbound = state.pending_outbound.saturating_sub(1);
                }
            }
            let preferred = dialled.is_some_and(|addr| {
                state.dialing.remove(&addr);
                state.preferred_dials.remove(&addr)
            });
            let inbound = state.peers.values().filter(|peer| peer.direction == Direction::Inbound).count();
            let admission = match state.peers.get(&info.node_id) {
                _ if banned => Admission::Refuse(GoodbyeReason::Banned),
                Some(existing) if self.keep_new(me, &info, direction, existing) => {
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
            };
            if !matches!(admission, Admission::Refuse(_)) {
                state.peers.insert(
                    info.node_id,
                    Connected {
                        info: info.clone(),
                        sender: connection.sender.clone(),
                        direction,
                        dialled,
                        confirmed: false,
                        emitting: false,
                        connection_id,
                        last_heard: Instant::now(),
                        ping: None,
                        round_trip: None,
                        clock: ClockSamples::default(),
                        is_provider: false,
                        peer_count: 0,
                        provider_hops: None,
                        reported: false,
                        preferred,
                        closing: None,
                        last_exchange: None,
                    },
                );
                self.update_gauge(state.peers.len());
            }
            admission
        };
        match admission {
            Admission::Refuse(reason) => {
                tracing::debug!(node = %info.node_id, ?reason, "refusing a connection");
                refuse(connection, reason).await;
                return;
            }
            Admission::Replace(old) => {
                let _ = old
                    .try_send(MeshMessage::Goodbye(Goodbye { reason: GoodbyeReason::DuplicateConnection }));
                old.close();
            }
            Admission::Accept => {
                if !self.emit(TransportEvent::Connected(info.clone())).await {
                    return;
                }
            }
        }
        tracing::info!(node = %info.node_id, addr = %info.remote_addr, ?direction, "peer connected");
        if let Some(addr) = address {
            self.record_valid(addr, info.public_key).await;
        }
        if self.config.peer_exchange {
            let exchange = self.peer_exchange(Some(info.node_id)).await;
            let _ = connection.sender.try_send(exchange);
        }
        // Supervised: a reader that panicked would leave its peer registered and its slot taken,
        // so it must show in the node's health.
        let supervisor = self.supervisor.clone();
        supervisor.spawn_worker("peer_reader", self.read(info.node_id, connection_id, connection.receiver));
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

    // ---- connected peers ----------------------------------------------------------------

    async fn read(self: Arc<Self>, node: NodeId, connection_id: u64, mut receiver: MessageReceiver) {
        let reason = loop {
            let next = tokio::select! {
                () = self.supervisor.cancelled() => break "shutdown".to_owned(),
                next = receiver.recv() => next,
            };
            let message = match next {
                None => break "connection closed".to_owned(),
                Some(Err(error)) => break error.to_string(),
                Some(Ok(message)) => message,
            };
            self.heard(node, &message);
            match message {
                MeshMessage::Ping(beat) => self.answer_ping(node, beat),
                MeshMessage::Pong(beat) => self.take_pong(node, beat),
                MeshMessage::PeerExchange(exchange) => {
                    if self.config.peer_exchange && self.take_exchange_turn(node) {
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
                }
                MeshMessage::Goodbye(Goodbye { reason }) => {
                    // The reason is the peer's text: kept short, it ends up in events and logs.
                    break format!("peer said goodbye: {}", bounded(format!("{reason:?}"), MAX_GOODBYE_LEN));
                }
                MeshMessage::Hello(_) | MeshMessage::HelloAck(_) => {
                    break "protocol violation: handshake message after the handshake".to_owned();
                }
                message => {
                    self.set_emitting(node, true);
                    let delivered = self.emit(TransportEvent::Message { from: node, message }).await;
                    self.set_emitting(node, false);
                    if !delivered {
                        break "the node is shutting down".to_owned();
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

    fn answer_ping(&self, node: NodeId, beat: Heartbeat) {
        let is_provider = self.is_provider.load(Ordering::Relaxed);
        let mut state = self.lock();
        let pong = state.heartbeat_for(node, beat.nonce, is_provider);
        if let Some(peer) = state.peers.get_mut(&node) {
            peer.is_provider = beat.is_provider;
            peer.peer_count = beat.peer_count;
            peer.provider_hops = topology::heard(beat.provider_hops);
            peer.reported = true;
            let _ = peer.sender.try_send(MeshMessage::Pong(pong));
        }
    }

    fn take_pong(&self, node: NodeId, beat: Heartbeat) {
        let mut state = self.lock();
        if let Some(peer) = state.peers.get_mut(&node) {
            peer.is_provider = beat.is_provider;
            peer.peer_count = beat.peer_count;
            peer.provider_hops = topology::heard(beat.provider_hops);
            peer.reported = true;
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

    async fn heartbeat_loop(self: Arc<Self>) {
        let mut ticker = tokio::time::interval(self.config.heartbeat_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.supervisor.cancelled() => break,
                _ = ticker.tick() => {}
            }
            let now = Instant::now();
            let mut silent = Vec::new();
            {
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
            }
            for (node, addr) in silent {
                tracing::info!(%node, "peer silent beyond the heartbeat timeout; disconnecting");
                if let Some(addr) = addr {
                    self.lock().remember_lost(addr, now, self.config.reconnect_interval);
                    self.mark_inaccessible(addr).await;
                }
                self.close_peer(
                    node,
                    "heartbeat timeout".to_owned(),
                    GoodbyeReason::Other("heartbeat timeout".to_owned()),
                );
            }
        }
    }

    /// Closes the connection to `node` after a goodbye; its reader reports the reason.
    fn close_peer(&self, node: NodeId, reason: String, goodbye: GoodbyeReason) {
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

    async fn unregister(&self, node: NodeId, connection_id: u64, reason: String) {
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

    // ---- discovery ----------------------------------------------------------------------

    async fn exchange_loop(self: Arc<Self>) {
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
    async fn peer_exchange(&self, except: Option<NodeId>) -> MeshMessage {
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

    /// Sends a beacon every interval (when listening) and records the nodes whose beacons
    /// arrive.
    async fn lan_loop(self: Arc<Self>, socket: tokio::net::UdpSocket, lan: LanDiscovery) {
        let beacon = self.local_addr.map(|addr| {
            Beacon { network: self.config.network.clone(), node_id: self.me(), listen_port: addr.port() }
                .encode()
        });
        let mut ticker = tokio::time::interval(lan.interval);
        let mut buffer = [0u8; discovery::MAX_BEACON + 1];
        loop {
            tokio::select! {
                () = self.supervisor.cancelled() => break,
                _ = ticker.tick() => {
                    if let Some(beacon) = &beacon
                        && let Err(err) = socket.send_to(beacon, SocketAddr::V4(lan.group)).await
                    {
                        tracing::debug!(error = %err, "cannot send a LAN beacon");
                    }
                }
                received = socket.recv_from(&mut buffer) => {
                    let Ok((len, from)) = received else { continue };
                    let Some(heard) = buffer.get(..len).and_then(Beacon::decode) else { continue };
                    if heard.network != self.config.network || heard.node_id == self.me() || from.ip().is_unspecified() {
                        continue;
                    }
                    let addr = SocketAddr::new(from.ip(), heard.listen_port);
                    self.learn(PeerExchange {
                        peers: vec![PeerAddress { node_id: heard.node_id, addr, provider_hops: None }],
                    }).await;
                }
            }
        }
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
    async fn learn(&self, exchange: PeerExchange) {
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

    // ---- peer store ---------------------------------------------------------------------

    async fn stored(&self, addr: SocketAddr) -> Option<StoredPeer> {
        self.peer_store.find_by_ip_port(addr.ip(), addr.port()).await.ok().flatten()
    }

    async fn record_valid(&self, addr: SocketAddr, key: PublicKey) {
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

    async fn touch_stored(&self, addr: SocketAddr) {
        if let Some(mut peer) = self.stored(addr).await {
            peer.last_seen = Some(mesh_types::chrono::Utc::now());
            let _ = self.peer_store.update(peer).await;
        }
    }

    async fn mark_inaccessible(&self, addr: SocketAddr) {
        if let Some(mut peer) = self.stored(addr).await
            && !peer.is_banned()
            && peer.status != PeerStatus::Inaccessible
        {
            peer.update_status(PeerStatus::Inaccessible);
            let _ = self.peer_store.update(peer).await;
        }
    }

    async fn record_ban(
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
        let id = match self.stored(addr).await {
            Some(mut peer) => {
                // Only a proven key may be attached to the record.
                if key.is_some() && peer.public_key != key {
                    peer.public_key = key;
                    let _ = self.peer_store.update(peer.clone()).await;
                }
                peer.id
            }
            None => {
                // Failed handshakes cost the attacker nothing and each may claim another port:
                // past the cap, new addresses are not recorded (key bans still hold).
                let banned = self.peer_store.count_by_status(PeerStatus::Banned).await.unwrap_or(usize::MAX);
                if banned >= self.config.max_banned_records {
                    tracing::debug!(%addr, banned, "ban records at their cap; not recording another address");
                    return;
                }
                let mut peer = StoredPeer::new(addr.ip(), addr.port());
                peer.public_key = key;
                let id = peer.id;
                if let Err(err) = self.peer_store.create(peer).await {
                    tracing::warn!(error = %err, %addr, "cannot record a banned peer");
                    return;
                }
                id
            }
        };
        if let Err(err) = self.peer_store.ban(id, reason, until).await {
            tracing::warn!(error = %err, %addr, "cannot ban a peer");
        }
        self.lock().backoff.failed(addr, Instant::now(), true);
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

/// Refuses a connection with a goodbye.
async fn refuse(connection: Connection, reason: GoodbyeReason) {
    let _ = connection.sender.try_send(MeshMessage::Goodbye(Goodbye { reason }));
    tokio::time::sleep(Duration::from_millis(20)).await;
    connection.close();
}
