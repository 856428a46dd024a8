//! What the manager guards with its one lock: the connected peers, the slots held by
//! handshakes and dials in progress, backoff, bans by key, hop hints and the peers lost to
//! silence — with the small helpers that keep those maps consistent and within their bounds.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use mesh_types::{Heartbeat, NodeId, PublicKey, Timestamp};
use tokio::time::Instant;

use super::{address_of, far_future};
use crate::backoff::Backoff;
use crate::clock::ClockSamples;
use crate::events::{Direction, DisconnectReason};
use crate::handshake::PeerInfo;
use crate::topology::{self, HopHints};
use crate::{ManagerConfig, MessageSender};

/// Most peers lost to silence remembered at once (the longest-lost is forgotten first).
const MAX_LOST: usize = 64;
/// How long a peer lost to silence is dialled again before it is forgotten.
const LOST_MEMORY: Duration = Duration::from_secs(3600);

/// Most keys banned in memory at once; past that the ban ending soonest is dropped (its peer
/// store record, when it has one, still holds).
const MAX_KEY_BANS: usize = 4096;

pub(super) struct State {
    pub(super) peers: HashMap<NodeId, Connected>,
    pub(super) pending_inbound: usize,
    /// Inbound handshakes in progress per remote IP, for the per-IP limit.
    pub(super) pending_by_ip: HashMap<IpAddr, usize>,
    pub(super) pending_outbound: usize,
    pub(super) dialing: HashSet<SocketAddr>,
    pub(super) backoff: Backoff,
    pub(super) own_addrs: HashSet<SocketAddr>,
    pub(super) dns_retry: HashMap<String, Instant>,
    /// Keys banned until then, whether or not the peer gave an address to record in the peer
    /// store (a peer that does not listen has none). At most [`MAX_KEY_BANS`].
    key_bans: HashMap<PublicKey, Instant>,
    /// Candidates' reported distances to the providers, from peer exchanges.
    pub(super) hints: HopHints,
    /// Dials in progress that were chosen for their distance.
    pub(super) preferred_dials: HashSet<SocketAddr>,
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

impl State {
    /// The state of a manager with no peers yet, whose own addresses are `own_addrs`.
    pub(super) fn new(config: &ManagerConfig, own_addrs: HashSet<SocketAddr>) -> Self {
        Self {
            peers: HashMap::new(),
            pending_inbound: 0,
            pending_by_ip: HashMap::new(),
            pending_outbound: 0,
            dialing: HashSet::new(),
            backoff: Backoff::new(config.backoff_initial, config.backoff_max),
            own_addrs,
            dns_retry: HashMap::new(),
            key_bans: HashMap::new(),
            hints: HopHints::new(config.peer_exchange_interval.saturating_mul(3)),
            preferred_dials: HashSet::new(),
            lost: HashMap::new(),
        }
    }

    /// The slots taken: peers plus dials in progress. Inbound handshakes in progress do not
    /// count: they may be idle sockets.
    pub(super) fn taken(&self) -> usize {
        self.peers.len().saturating_add(self.pending_outbound)
    }

    /// Remembers `addr` as lost to silence at `now`, to dial again after `retry`.
    pub(super) fn remember_lost(&mut self, addr: SocketAddr, now: Instant, retry: Duration) {
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
    pub(super) fn lost_due(&mut self, now: Instant, room: usize, retry: Duration) -> Vec<SocketAddr> {
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
    pub(super) fn release_pending_inbound(&mut self, ip: IpAddr) {
        self.pending_inbound = self.pending_inbound.saturating_sub(1);
        if let Some(pending) = self.pending_by_ip.get_mut(&ip) {
            *pending = pending.saturating_sub(1);
            if *pending == 0 {
                self.pending_by_ip.remove(&ip);
            }
        }
    }

    /// A handshake ended with a peer: frees the slot it held (inbound from `ip`, or a dial to
    /// `dialled`); `true` when that dial was chosen for its distance.
    pub(super) fn release_handshake(
        &mut self,
        direction: Direction,
        ip: IpAddr,
        dialled: Option<SocketAddr>,
    ) -> bool {
        match direction {
            Direction::Inbound => self.release_pending_inbound(ip),
            Direction::Outbound => {
                self.pending_outbound = self.pending_outbound.saturating_sub(1);
            }
        }
        dialled.is_some_and(|addr| {
            self.dialing.remove(&addr);
            self.preferred_dials.remove(&addr)
        })
    }

    pub(super) fn ban_key(&mut self, key: PublicKey, until: Instant) {
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

    pub(super) fn is_key_banned(&self, key: &PublicKey) -> bool {
        self.key_bans.get(key).is_some_and(|end| *end > Instant::now())
    }

    /// This node's hops to the nearest provider, counting every peer but `except` (the one
    /// it is about to tell: split horizon).
    pub(super) fn distance(&self, is_provider: bool, except: Option<NodeId>) -> Option<u8> {
        topology::distance(
            is_provider,
            self.peers.iter().filter(|(node, _)| Some(**node) != except).map(|(_, peer)| peer.provider_hops),
        )
    }

    /// The heartbeat for `to`: this node's role, peer count and hops without `to`.
    pub(super) fn heartbeat_for(&self, to: NodeId, nonce: u64, is_provider: bool) -> Heartbeat {
        Heartbeat {
            nonce,
            is_provider,
            peer_count: u32::try_from(self.peers.len()).unwrap_or(u32::MAX),
            sent_at: mesh_types::clock::now(),
            provider_hops: self.distance(is_provider, Some(to)),
        }
    }

    /// The addresses of the connected peers.
    pub(super) fn connected_addrs(&self) -> HashSet<SocketAddr> {
        self.peers.values().filter_map(|peer| address_of(&peer.info, peer.dialled)).collect()
    }
}

pub(super) struct Connected {
    pub(super) info: PeerInfo,
    pub(super) sender: MessageSender,
    pub(super) direction: Direction,
    /// The address this node dialled, for outbound connections.
    pub(super) dialled: Option<SocketAddr>,
    /// Whether the peer has sent something other than a refusal since the handshake.
    pub(super) confirmed: bool,
    /// Whether its reader is waiting for the event consumer (the peer is not silent then).
    pub(super) emitting: bool,
    pub(super) connection_id: u64,
    pub(super) last_heard: Instant,
    /// The ping in flight: its nonce, and when it left by the monotonic and the node's clock.
    pub(super) ping: Option<(u64, Instant, Timestamp)>,
    pub(super) round_trip: Option<Duration>,
    pub(super) clock: ClockSamples,
    pub(super) is_provider: bool,
    pub(super) peer_count: u32,
    /// Its hops to the nearest provider, from its last heartbeat.
    pub(super) provider_hops: Option<u8>,
    /// Whether a heartbeat from it has arrived, so `provider_hops` is its word, not a default.
    pub(super) reported: bool,
    /// Whether this node dialled it for its distance (a slot above the minimum).
    pub(super) preferred: bool,
    pub(super) closing: Option<DisconnectReason>,
    /// When its last peer exchange was heard.
    pub(super) last_exchange: Option<Instant>,
}

impl Connected {
    /// A peer just admitted: heard now, nothing reported or measured yet.
    pub(super) fn new(
        info: PeerInfo,
        sender: MessageSender,
        direction: Direction,
        dialled: Option<SocketAddr>,
        connection_id: u64,
        preferred: bool,
    ) -> Self {
        Self {
            info,
            sender,
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
        }
    }

    /// Takes what the peer's heartbeat tells of it: its role, peer count and hops.
    pub(super) fn record_heartbeat(&mut self, beat: &Heartbeat) {
        self.is_provider = beat.is_provider;
        self.peer_count = beat.peer_count;
        self.provider_hops = topology::heard(beat.provider_hops);
        self.reported = true;
    }
}
