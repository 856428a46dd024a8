//! [`MemoryNetwork`] and [`MemoryTransport`]: many nodes in one process, for the simulator and
//! tests. Connections are pairs of bounded channels, so a hundred nodes cost no sockets.
//!
//! Messages travel as [`MeshMessage`] values: nothing is encoded, so frame limits, the codec and
//! read and write timeouts do not apply — unless the network is made with
//! [`MemoryNetwork::with_wire_codec`], when every message crosses as its wire payload (encoded
//! once per broadcast, decoded by each receiver, frame limit applied, bytes counted), so a
//! simulation pays what TCP nodes pay for the codec. What the network does apply, per pair of addresses and
//! changeable at any time, is [`LinkFaults`] (latency and random loss) and partitions (loss
//! between two groups of nodes, and refused dials across them). Order is preserved on every
//! connection whatever the latency does, as on a TCP stream.
//!
//! Loss is drawn from the thread's random generator, unless [`MemoryNetwork::seed_losses`]
//! gave the network a seed: then whether a message is lost depends only on the seed, the two
//! addresses and which message it is (a price update by its id, hops and TTL; anything else
//! by how many messages that direction has carried), so a seeded simulation loses the same
//! copies when it is replayed.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use mesh_types::{Codec, MeshMessage};
use rand::RngExt;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_util::sync::CancellationToken;
use tracing::trace;

use crate::tcp::LENGTH_FIELD_LEN;
use crate::{Connection, ConnectionIo, LinkConfig, Listener, Outbound, Transport, TransportError};

/// The first port handed out to a listen address with port 0, as an operating system would
/// pick from its ephemeral range.
const FIRST_EPHEMERAL_PORT: u16 = 49_152;

/// What a link between two addresses does to the messages crossing it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LinkFaults {
    /// How long every message takes to arrive. Lowering it never lets a later message
    /// overtake an earlier one on the same connection.
    pub latency: Duration,
    /// The chance that a message is lost, clamped to `0.0..=1.0` (`NaN` counts as 0).
    pub drop_probability: f64,
}

impl LinkFaults {
    /// A perfect link: no latency, no loss.
    pub const NONE: Self = Self { latency: Duration::ZERO, drop_probability: 0.0 };

    /// The chance of loss as it applies: clamped, `NaN` as 0.
    fn probability(&self) -> f64 {
        if self.drop_probability.is_nan() { 0.0 } else { self.drop_probability.clamp(0.0, 1.0) }
    }

    /// Whether this message is lost.
    fn drops(&self) -> bool {
        let probability = self.probability();
        probability > 0.0 && rand::rng().random_bool(probability)
    }

    /// Whether a message whose roll (uniform in `0.0..1.0`) is `roll` is lost.
    fn drops_on(&self, roll: f64) -> bool {
        roll < self.probability()
    }
}

/// One step of a SplitMix64-style hash: `value` folded into `state`. Written out here, not
/// taken from a library, so that seeded loss stays the same across dependency upgrades.
const fn mix(state: u64, value: u64) -> u64 {
    let mut z = (state ^ value).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// An address as a number for [`mix`].
fn address_bits(addr: SocketAddr) -> u64 {
    let ip = match addr.ip() {
        IpAddr::V4(ip) => u128::from(u32::from(ip)),
        IpAddr::V6(ip) => u128::from(ip),
    };
    mix(mix(0, ip as u64), (ip >> 64) as u64) ^ u64::from(addr.port())
}

/// The in-process network shared by every [`MemoryTransport`] made from it, and the place to
/// inject faults. Use it as `Arc<MemoryNetwork>`.
#[derive(Debug)]
pub struct MemoryNetwork {
    /// Capacity of every queue: the listeners' backlogs, the connections' queues each way, and
    /// the messages in flight on each direction of a connection.
    capacity: usize,
    /// How long a dial waits for a listener whose backlog is full.
    connect_timeout: Duration,
    state: Mutex<State>,
    /// Set by [`MemoryNetwork::with_wire_codec`]: messages cross as payloads of this codec.
    codec: Option<Codec>,
    delivered: AtomicU64,
    bytes_delivered: AtomicU64,
    dropped: AtomicU64,
}

/// Who listens where, and the faults in force.
#[derive(Debug, Default)]
struct State {
    listeners: HashMap<SocketAddr, mpsc::Sender<Connection>>,
    /// Keyed by the ordered pair, so a link's faults are the same both ways.
    links: HashMap<(SocketAddr, SocketAddr), LinkFaults>,
    default_faults: LinkFaults,
    partitions: Vec<(HashSet<SocketAddr>, HashSet<SocketAddr>)>,
    /// Set by [`MemoryNetwork::seed_losses`]: loss decided by hashing, not drawn.
    loss_seed: Option<u64>,
    /// Messages other than price updates judged for loss so far, per direction (with a seed).
    judged: HashMap<(SocketAddr, SocketAddr), u64>,
}

impl State {
    fn separated(&self, a: SocketAddr, b: SocketAddr) -> bool {
        self.partitions.iter().any(|(left, right)| {
            (left.contains(&a) && right.contains(&b)) || (left.contains(&b) && right.contains(&a))
        })
    }

    fn faults(&self, a: SocketAddr, b: SocketAddr) -> LinkFaults {
        self.links.get(&link_key(a, b)).copied().unwrap_or(self.default_faults)
    }

    /// Whether `message` from `from` to `to` is lost on a link with `faults`.
    fn loses(&mut self, from: SocketAddr, to: SocketAddr, faults: LinkFaults, message: &MeshMessage) -> bool {
        let Some(seed) = self.loss_seed else { return faults.drops() };
        // A price update is known by its id, hops and TTL, so the same copy is judged the
        // same whatever else the link carried before it; other messages by their place in
        // the direction's stream.
        let which = match message {
            MeshMessage::PriceUpdate(update) => {
                let id = update.message_id.as_uuid().as_u128();
                let position = (u64::from(update.hop_count) << 8) | u64::from(update.ttl);
                mix(mix(mix(1, id as u64), (id >> 64) as u64), position)
            }
            _ => {
                let count = self.judged.entry((from, to)).or_default();
                *count = count.wrapping_add(1);
                mix(2, *count)
            }
        };
        let hash = mix(mix(mix(seed, address_bits(from)), address_bits(to)), which);
        // The top 53 bits as a fraction in 0.0..1.0.
        faults.drops_on((hash >> 11) as f64 / (1u64 << 53) as f64)
    }

    /// The listener at `addr`, forgetting it if it was dropped.
    fn listener(&mut self, addr: SocketAddr) -> Option<mpsc::Sender<Connection>> {
        let sender = self.listeners.get(&addr)?;
        if sender.is_closed() {
            self.listeners.remove(&addr);
            return None;
        }
        Some(sender.clone())
    }

    fn free_port(&mut self, ip: IpAddr) -> Option<SocketAddr> {
        (FIRST_EPHEMERAL_PORT..=u16::MAX)
            .map(|port| SocketAddr::new(ip, port))
            .find(|&addr| self.listener(addr).is_none())
    }
}

fn link_key(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    if a <= b { (a, b) } else { (b, a) }
}

impl MemoryNetwork {
    /// A network with the default queue sizes of [`LinkConfig`] and no faults.
    pub fn new() -> Arc<Self> {
        Self::with_config(LinkConfig::default())
    }

    /// A network whose queues hold `config.send_queue` messages and whose dials wait at most
    /// `config.connect_timeout` for a busy listener. The other limits do not apply in memory.
    pub fn with_config(config: LinkConfig) -> Arc<Self> {
        Arc::new(Self::build(config, None))
    }

    /// Like [`MemoryNetwork::with_config`], but messages cross as wire payloads: encoded once
    /// per message (however many links it is sent on), decoded by every receiver, refused
    /// above `config.max_frame_size` as a TCP link refuses them, and counted in
    /// [`MemoryNetwork::bytes_delivered`].
    pub fn with_wire_codec(config: LinkConfig) -> Arc<Self> {
        Arc::new(Self::build(config, Some(Codec::new(config.max_frame_size))))
    }

    fn build(config: LinkConfig, codec: Option<Codec>) -> Self {
        Self {
            capacity: config.send_queue.max(1),
            connect_timeout: config.connect_timeout,
            state: Mutex::new(State::default()),
            codec,
            delivered: AtomicU64::new(0),
            bytes_delivered: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    /// A node's handle on the network: its dials come from `local_addr`, which is the
    /// `remote_addr` the listening side sees.
    pub fn transport(self: &Arc<Self>, local_addr: SocketAddr) -> MemoryTransport {
        MemoryTransport { network: Arc::clone(self), local_addr }
    }

    /// Sets the faults between `a` and `b`, both ways, for messages sent from now on.
    pub fn set_link(&self, a: SocketAddr, b: SocketAddr, faults: LinkFaults) {
        self.state().links.insert(link_key(a, b), faults);
    }

    /// Sets the faults of every link without faults of its own (see [`Self::set_link`]).
    pub fn set_default_faults(&self, faults: LinkFaults) {
        self.state().default_faults = faults;
    }

    /// Separates `side_a` from `side_b`: messages between them are lost, including those
    /// already travelling, and dials across are refused. Connections stay open, silent, as
    /// TCP connections do across a real partition. Partitions add up until [`Self::heal`].
    pub fn partition(&self, side_a: &[SocketAddr], side_b: &[SocketAddr]) {
        let partition = (side_a.iter().copied().collect(), side_b.iter().copied().collect());
        self.state().partitions.push(partition);
    }

    /// Removes every partition.
    pub fn heal(&self) {
        self.state().partitions.clear();
    }

    /// Decides loss from `seed` from now on instead of drawing it: a message is lost when a
    /// hash of the seed, the sending and receiving addresses and the message (a price update
    /// by its id, hop count and TTL; any other message by how many the direction has carried
    /// before it) falls below the link's [`LinkFaults::drop_probability`]. The same seed and
    /// the same messages lose the same copies on every run.
    pub fn seed_losses(&self, seed: u64) {
        self.state().loss_seed = Some(seed);
    }

    /// Messages handed to a receiving connection so far.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// Bytes handed to receiving connections so far, length prefixes included, as a TCP link
    /// would carry them; 0 unless made with [`MemoryNetwork::with_wire_codec`].
    pub fn bytes_delivered(&self) -> u64 {
        self.bytes_delivered.load(Ordering::Relaxed)
    }

    /// Messages lost to [`LinkFaults::drop_probability`] or a partition so far. Messages
    /// discarded because their connection closed are not counted.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The message the receiver at `to` gets: the shared value, or with a wire codec, the
    /// payload decoded as the receiver's transport would decode it (`None`, after a trace,
    /// for a message too large to send).
    fn unpack(&self, outbound: &Outbound, to: SocketAddr) -> Option<MeshMessage> {
        let Some(codec) = &self.codec else { return Some(outbound.to_message()) };
        let decoded = outbound.payload(codec.max_message_size()).and_then(|payload| {
            self.bytes_delivered
                .fetch_add(payload.len().saturating_add(LENGTH_FIELD_LEN) as u64, Ordering::Relaxed);
            codec.decode(&payload)
        });
        match decoded {
            Ok(message) => Some(message),
            Err(err) => {
                trace!(%to, kind = outbound.message().kind(), error = %err, "message cannot cross the link");
                None
            }
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; should it ever, the maps are still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn separated(&self, a: SocketAddr, b: SocketAddr) -> bool {
        self.state().separated(a, b)
    }

    /// The latency of `message` from `from` to `to`, or `None` (counted) when it is lost.
    fn route(&self, from: SocketAddr, to: SocketAddr, message: &MeshMessage) -> Option<Duration> {
        let latency = {
            let mut state = self.state();
            if state.separated(from, to) {
                None
            } else {
                let faults = state.faults(from, to);
                (!state.loses(from, to, faults, message)).then_some(faults.latency)
            }
        };
        if latency.is_none() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        latency
    }
}

/// One node's [`Transport`] on a [`MemoryNetwork`].
#[derive(Debug, Clone)]
pub struct MemoryTransport {
    network: Arc<MemoryNetwork>,
    local_addr: SocketAddr,
}

impl MemoryTransport {
    /// The address this node's dials come from.
    pub const fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The network this node is on.
    pub const fn network(&self) -> &Arc<MemoryNetwork> {
        &self.network
    }
}

#[async_trait]
impl Transport for MemoryTransport {
    async fn listen(&self, addr: SocketAddr) -> Result<Listener, TransportError> {
        let mut state = self.network.state();
        let addr = if addr.port() == 0 {
            state
                .free_port(addr.ip())
                .ok_or_else(|| TransportError::ListenFailed { addr, detail: "no free port left".into() })?
        } else {
            addr
        };
        if state.listener(addr).is_some() {
            return Err(TransportError::ListenFailed { addr, detail: "address already in use".into() });
        }
        let (listener, accepted) = Listener::new(addr, self.network.capacity);
        state.listeners.insert(addr, accepted);
        trace!(%addr, "listening in memory");
        Ok(listener)
    }

    async fn dial(&self, addr: SocketAddr) -> Result<Connection, TransportError> {
        let from = self.local_addr;
        let listener = {
            let mut state = self.network.state();
            if state.separated(from, addr) { None } else { state.listener(addr) }
        };
        let listener = listener.ok_or(TransportError::ConnectionRefused { addr })?;
        let capacity = self.network.capacity;
        let (dialled, dialled_io) = Connection::channels(addr, capacity);
        let (accepted, accepted_io) = Connection::channels(from, capacity);
        // A full backlog makes the dial wait, as a busy TCP listener would.
        match timeout(self.network.connect_timeout, listener.send(accepted)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(TransportError::ConnectionRefused { addr }),
            Err(_) => return Err(TransportError::ConnectionTimeout { addr, during: "connecting" }),
        }
        trace!(%from, to = %addr, "connected in memory");
        tokio::spawn(run_connection(Arc::clone(&self.network), (from, dialled_io), (addr, accepted_io)));
        Ok(dialled)
    }
}

/// Carries messages both ways between the two ends of one connection until it closes.
async fn run_connection(
    network: Arc<MemoryNetwork>,
    (a_addr, a): (SocketAddr, ConnectionIo),
    (b_addr, b): (SocketAddr, ConnectionIo),
) {
    let ConnectionIo { outgoing: a_outgoing, incoming: a_incoming, closed: a_closed } = a;
    let ConnectionIo { outgoing: b_outgoing, incoming: b_incoming, closed: b_closed } = b;
    tokio::join!(
        pump(
            &network,
            Direction { from: a_addr, to: b_addr, from_closed: &a_closed, to_closed: &b_closed },
            a_outgoing,
            b_incoming
        ),
        pump(
            &network,
            Direction { from: b_addr, to: a_addr, from_closed: &b_closed, to_closed: &a_closed },
            b_outgoing,
            a_incoming
        ),
    );
    trace!(a = %a_addr, b = %b_addr, "in-memory connection closed");
}

/// One direction of a connection.
#[derive(Debug, Clone, Copy)]
struct Direction<'a> {
    from: SocketAddr,
    to: SocketAddr,
    from_closed: &'a CancellationToken,
    to_closed: &'a CancellationToken,
}

/// A message on its way, due at an instant.
type InFlight = (Instant, Outbound);

/// Carries one direction. When the sending end closes, what it queued before still arrives
/// (as TCP writes out its buffer before the FIN) and then the receiving end closes; when the
/// receiving end closes, whatever is left is discarded.
async fn pump(
    network: &MemoryNetwork,
    direction: Direction<'_>,
    outgoing: mpsc::Receiver<Outbound>,
    incoming: mpsc::Sender<Result<MeshMessage, TransportError>>,
) {
    let (in_flight_tx, in_flight_rx) = mpsc::channel(network.capacity);
    tokio::join!(
        carry(network, direction, outgoing, in_flight_tx),
        deliver(network, direction, in_flight_rx, incoming)
    );
    // Everything sent is delivered or lost. The sending end may only have dropped its senders
    // while still reading, which is no reason to close; otherwise wait for either end.
    tokio::select! {
        () = direction.from_closed.cancelled() => direction.to_closed.cancel(),
        () = direction.to_closed.cancelled() => {}
    }
}

/// Takes messages off the sender's queue, applies the link's faults as they are now, and puts
/// them in flight.
async fn carry(
    network: &MemoryNetwork,
    direction: Direction<'_>,
    mut outgoing: mpsc::Receiver<Outbound>,
    in_flight: mpsc::Sender<InFlight>,
) {
    let mut closing = false;
    let mut last_due = Instant::now();
    loop {
        let message = tokio::select! {
            biased;
            () = direction.to_closed.cancelled() => return,
            () = direction.from_closed.cancelled(), if !closing => {
                // Accept nothing new, but carry what is already queued.
                outgoing.close();
                closing = true;
                continue;
            }
            message = outgoing.recv() => message,
        };
        let Some(message) = message else { return };
        let Some(latency) = network.route(direction.from, direction.to, message.message()) else {
            continue;
        };
        // A latency past the clock's range is a message that never arrives.
        let Some(due) = Instant::now().checked_add(latency) else {
            network.dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        // Never before the previous message, so a drop in latency cannot reorder the stream.
        let due = due.max(last_due);
        last_due = due;
        tokio::select! {
            biased;
            () = direction.to_closed.cancelled() => return,
            sent = in_flight.send((due, message)) => {
                if sent.is_err() {
                    return;
                }
            }
        }
    }
}

/// Hands each message in flight to the receiving end when it is due.
async fn deliver(
    network: &MemoryNetwork,
    direction: Direction<'_>,
    mut in_flight: mpsc::Receiver<InFlight>,
    incoming: mpsc::Sender<Result<MeshMessage, TransportError>>,
) {
    loop {
        let next = tokio::select! {
            biased;
            () = direction.to_closed.cancelled() => return,
            next = in_flight.recv() => next,
        };
        let Some((due, outbound)) = next else { return };
        if due > Instant::now() {
            tokio::select! {
                biased;
                () = direction.to_closed.cancelled() => return,
                () = sleep_until(due) => {}
            }
        }
        // A partition that began while the message travelled still loses it.
        if network.separated(direction.from, direction.to) {
            network.dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let Some(message) = network.unpack(&outbound, direction.to) else { continue };
        tokio::select! {
            biased;
            () = direction.to_closed.cancelled() => return,
            sent = incoming.send(Ok(message)) => {
                if sent.is_err() {
                    return;
                }
                network.delivered.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use mesh_types::{Goodbye, GoodbyeReason, Heartbeat};

    use super::*;

    const WAIT: Duration = Duration::from_secs(10);

    fn addr(node: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, node], 7000))
    }

    fn ping(nonce: u64) -> MeshMessage {
        MeshMessage::Ping(Heartbeat {
            nonce,
            is_provider: false,
            peer_count: 1,
            sent_at: mesh_types::chrono::DateTime::UNIX_EPOCH,
            provider_hops: None,
        })
    }

    /// A connection from `from` to `to`, with the listener that accepted it (dropping it would
    /// refuse later dials).
    struct Linked {
        dialled: Connection,
        accepted: Connection,
        _listener: Listener,
    }

    async fn link(network: &Arc<MemoryNetwork>, from: SocketAddr, to: SocketAddr) -> Linked {
        let mut listener = network.transport(to).listen(to).await.unwrap();
        let dialled = network.transport(from).dial(to).await.unwrap();
        let accepted = timeout(WAIT, listener.accept()).await.unwrap().unwrap();
        Linked { dialled, accepted, _listener: listener }
    }

    async fn recv(connection: &mut Connection) -> Option<Result<MeshMessage, TransportError>> {
        timeout(WAIT, connection.receiver.recv()).await.unwrap()
    }

    /// Whether nothing arrives within a short while.
    async fn nothing_arrives(connection: &mut Connection) -> bool {
        timeout(Duration::from_millis(50), connection.receiver.recv()).await.is_err()
    }

    /// Lets the connection tasks run on a paused clock without moving it.
    async fn run_tasks() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    /// Waits until the network has accounted for `total` messages.
    async fn settle(network: &MemoryNetwork, total: u64) {
        timeout(WAIT, async {
            while network.delivered() + network.dropped() < total {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .unwrap();
    }

    /// Sends `count` pings across a link with `faults` and returns how many arrived.
    async fn send_through(faults: LinkFaults, count: u64) -> (u64, Arc<MemoryNetwork>) {
        let network = MemoryNetwork::new();
        network.set_link(addr(1), addr(2), faults);
        let Linked { dialled, mut accepted, _listener } = link(&network, addr(1), addr(2)).await;
        let reading = tokio::spawn(async move {
            let mut received = 0;
            let mut last = None;
            while let Some(message) = accepted.receiver.recv().await {
                let MeshMessage::Ping(Heartbeat { nonce, .. }) = message.unwrap() else {
                    panic!("not a ping")
                };
                assert!(last < Some(nonce), "losses never reorder: {nonce} after {last:?}");
                last = Some(nonce);
                received += 1;
            }
            received
        });
        for nonce in 0..count {
            dialled.sender.send(ping(nonce)).await.unwrap();
        }
        settle(&network, count).await;
        dialled.close();
        let received = timeout(WAIT, reading).await.unwrap().unwrap();
        (received, network)
    }

    #[tokio::test]
    async fn messages_round_trip_with_the_right_addresses() {
        let network = MemoryNetwork::new();
        let Linked { mut dialled, mut accepted, _listener } = link(&network, addr(1), addr(2)).await;
        assert_eq!(dialled.remote_addr, addr(2));
        assert_eq!(accepted.remote_addr, addr(1), "the listener sees the dialler's address");

        dialled.sender.send(ping(1)).await.unwrap();
        assert_eq!(recv(&mut accepted).await.unwrap().unwrap(), ping(1));
        let goodbye = MeshMessage::Goodbye(Goodbye { reason: GoodbyeReason::Shutdown });
        accepted.sender.send(goodbye.clone()).await.unwrap();
        assert_eq!(recv(&mut dialled).await.unwrap().unwrap(), goodbye);
        assert_eq!(network.delivered(), 2);
        assert_eq!(network.dropped(), 0);
    }

    #[tokio::test]
    async fn with_the_wire_codec_messages_cross_as_counted_payloads_within_the_frame_limit() {
        let config = LinkConfig { max_frame_size: 256, ..LinkConfig::default() };
        let network = MemoryNetwork::with_wire_codec(config);
        let Linked { dialled, mut accepted, _listener } = link(&network, addr(1), addr(2)).await;
        dialled.sender.send(ping(9)).await.unwrap();
        assert_eq!(recv(&mut accepted).await.unwrap().unwrap(), ping(9));
        let payload = Codec::default().encode(&ping(9)).unwrap();
        assert_eq!(network.bytes_delivered(), (payload.len() + LENGTH_FIELD_LEN) as u64);

        // Too large for the link: dropped like a TCP writer drops it; the link carries on.
        let big = MeshMessage::Goodbye(Goodbye { reason: GoodbyeReason::Other("x".repeat(300)) });
        dialled.sender.send(big).await.unwrap();
        dialled.sender.send(ping(10)).await.unwrap();
        assert_eq!(recv(&mut accepted).await.unwrap().unwrap(), ping(10));
        assert_eq!(network.delivered(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn latency_delays_delivery_and_keeps_order() {
        let network = MemoryNetwork::new();
        // Set in the other direction: links are symmetric.
        network.set_link(
            addr(2),
            addr(1),
            LinkFaults { latency: Duration::from_millis(100), ..LinkFaults::NONE },
        );
        let Linked { dialled, mut accepted, _listener } = link(&network, addr(1), addr(2)).await;

        let started = Instant::now();
        for nonce in 0..10 {
            dialled.sender.send(ping(nonce)).await.unwrap();
        }
        run_tasks().await;
        tokio::time::advance(Duration::from_millis(99)).await;
        run_tasks().await;
        assert!(timeout(Duration::ZERO, accepted.receiver.recv()).await.is_err(), "nothing before 100 ms");
        assert_eq!(network.delivered(), 0);
        tokio::time::advance(Duration::from_millis(1)).await;
        for nonce in 0..10 {
            assert_eq!(recv(&mut accepted).await.unwrap().unwrap(), ping(nonce));
        }
        assert_eq!(started.elapsed(), Duration::from_millis(100));

        // A slow message followed by a fast one: the fast one waits its turn.
        dialled.sender.send(ping(100)).await.unwrap();
        run_tasks().await;
        network.set_link(addr(1), addr(2), LinkFaults::NONE);
        dialled.sender.send(ping(101)).await.unwrap();
        run_tasks().await;
        assert!(timeout(Duration::ZERO, accepted.receiver.recv()).await.is_err());
        let started = Instant::now();
        assert_eq!(recv(&mut accepted).await.unwrap().unwrap(), ping(100));
        assert_eq!(recv(&mut accepted).await.unwrap().unwrap(), ping(101));
        assert_eq!(started.elapsed(), Duration::from_millis(100));

        // The changed link applies from now on.
        let started = Instant::now();
        dialled.sender.send(ping(102)).await.unwrap();
        assert_eq!(recv(&mut accepted).await.unwrap().unwrap(), ping(102));
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn default_faults_apply_where_no_link_is_set() {
        let network = MemoryNetwork::new();
        network.set_default_faults(LinkFaults { latency: Duration::from_millis(30), ..LinkFaults::NONE });
        network.set_link(
            addr(1),
            addr(3),
            LinkFaults { latency: Duration::from_millis(5), ..LinkFaults::NONE },
        );
        let mut slow = link(&network, addr(1), addr(2)).await;
        let mut fast = link(&network, addr(1), addr(3)).await;

        let started = Instant::now();
        slow.dialled.sender.send(ping(1)).await.unwrap();
        recv(&mut slow.accepted).await.unwrap().unwrap();
        assert_eq!(started.elapsed(), Duration::from_millis(30));

        let started = Instant::now();
        fast.dialled.sender.send(ping(2)).await.unwrap();
        recv(&mut fast.accepted).await.unwrap().unwrap();
        assert_eq!(started.elapsed(), Duration::from_millis(5));
    }

    #[tokio::test]
    async fn drop_probability_one_loses_everything() {
        let (received, network) =
            send_through(LinkFaults { drop_probability: 1.0, ..LinkFaults::NONE }, 200).await;
        assert_eq!((received, network.delivered(), network.dropped()), (0, 0, 200));
    }

    #[tokio::test]
    async fn drop_probability_zero_loses_nothing() {
        let (received, network) = send_through(LinkFaults::NONE, 2000).await;
        assert_eq!((received, network.delivered(), network.dropped()), (2000, 2000, 0));
    }

    #[tokio::test]
    async fn drop_probability_half_loses_about_half() {
        let (received, network) =
            send_through(LinkFaults { drop_probability: 0.5, ..LinkFaults::NONE }, 2000).await;
        assert_eq!(received, network.delivered());
        assert_eq!(network.delivered() + network.dropped(), 2000);
        assert!((700..=1300).contains(&network.dropped()), "dropped {} of 2000", network.dropped());
    }

    /// The nonces of `count` pings that cross a half-lossy link whose losses come from `seed`.
    async fn seeded_survivors(seed: u64, count: u64) -> Vec<u64> {
        let network = MemoryNetwork::new();
        network.seed_losses(seed);
        network.set_link(addr(1), addr(2), LinkFaults { drop_probability: 0.5, ..LinkFaults::NONE });
        let Linked { dialled, mut accepted, _listener } = link(&network, addr(1), addr(2)).await;
        // Read while sending: the receiving end holds only a few messages for its reader.
        let reader = tokio::spawn(async move {
            let mut survivors = Vec::new();
            while let Some(message) = recv(&mut accepted).await {
                let MeshMessage::Ping(Heartbeat { nonce, .. }) = message.unwrap() else {
                    panic!("not a ping")
                };
                survivors.push(nonce);
            }
            survivors
        });
        for nonce in 0..count {
            dialled.sender.send(ping(nonce)).await.unwrap();
        }
        settle(&network, count).await;
        dialled.close();
        reader.await.unwrap()
    }

    #[tokio::test]
    async fn seeded_losses_repeat_with_their_seed() {
        let first = seeded_survivors(7, 400).await;
        assert!((120..=280).contains(&first.len()), "about half arrive: {}", first.len());
        assert_eq!(seeded_survivors(7, 400).await, first, "the same seed loses the same messages");
        assert_ne!(seeded_survivors(8, 400).await, first, "another seed loses others");
    }

    #[tokio::test]
    async fn drop_probability_is_clamped() {
        let (received, _) = send_through(LinkFaults { drop_probability: 7.0, ..LinkFaults::NONE }, 50).await;
        assert_eq!(received, 0);
        let (received, _) = send_through(LinkFaults { drop_probability: -1.0, ..LinkFaults::NONE }, 50).await;
        assert_eq!(received, 50);
        let (received, _) =
            send_through(LinkFaults { drop_probability: f64::NAN, ..LinkFaults::NONE }, 50).await;
        assert_eq!(received, 50);
    }

    #[tokio::test]
    async fn a_partition_drops_messages_and_refuses_dials_until_healed() {
        let network = MemoryNetwork::new();
        let Linked { mut dialled, mut accepted, _listener } = link(&network, addr(1), addr(2)).await;
        let mut third = network.transport(addr(3)).listen(addr(3)).await.unwrap();
        let a = network.transport(addr(1));

        network.partition(&[addr(1)], &[addr(2), addr(4)]);
        dialled.sender.send(ping(1)).await.unwrap();
        accepted.sender.send(ping(2)).await.unwrap();
        settle(&network, 2).await;
        assert_eq!(network.dropped(), 2);
        assert!(nothing_arrives(&mut accepted).await);
        assert!(nothing_arrives(&mut dialled).await);
        let error = a.dial(addr(2)).await.unwrap_err();
        assert!(matches!(error, TransportError::ConnectionRefused { .. }), "{error}");
        assert!(error.is_retryable());
        // The partition separates only the sides it names.
        let _other = a.dial(addr(3)).await.unwrap();
        timeout(WAIT, third.accept()).await.unwrap().unwrap();
        assert!(!dialled.sender.is_closed(), "a partition does not close connections");

        network.heal();
        dialled.sender.send(ping(3)).await.unwrap();
        assert_eq!(recv(&mut accepted).await.unwrap().unwrap(), ping(3));
        accepted.sender.send(ping(4)).await.unwrap();
        assert_eq!(recv(&mut dialled).await.unwrap().unwrap(), ping(4));
        let _again = a.dial(addr(2)).await.unwrap();
        assert_eq!((network.delivered(), network.dropped()), (2, 2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_partition_loses_messages_already_travelling() {
        let network = MemoryNetwork::new();
        network.set_default_faults(LinkFaults { latency: Duration::from_millis(50), ..LinkFaults::NONE });
        let Linked { dialled, mut accepted, _listener } = link(&network, addr(1), addr(2)).await;
        dialled.sender.send(ping(1)).await.unwrap();
        run_tasks().await;
        network.partition(&[addr(2)], &[addr(1)]);
        tokio::time::advance(Duration::from_millis(60)).await;
        run_tasks().await;
        assert_eq!(network.dropped(), 1);
        assert!(timeout(Duration::from_secs(1), accepted.receiver.recv()).await.is_err());
    }

    #[tokio::test]
    async fn closing_either_end_closes_the_other() {
        let network = MemoryNetwork::new();
        let Linked { mut dialled, mut accepted, _listener } = link(&network, addr(1), addr(2)).await;
        // What was queued before the close still arrives, then the end.
        let goodbye = MeshMessage::Goodbye(Goodbye { reason: GoodbyeReason::TooManyPeers });
        dialled.sender.send(goodbye.clone()).await.unwrap();
        dialled.close();
        assert!(recv(&mut dialled).await.is_none());
        assert_eq!(recv(&mut accepted).await.unwrap().unwrap(), goodbye);
        assert!(recv(&mut accepted).await.is_none());
        assert!(accepted.sender.send(ping(1)).await.is_err());
    }

    #[tokio::test]
    async fn dropping_the_accepted_end_closes_the_dialled_end() {
        let network = MemoryNetwork::new();
        let Linked { mut dialled, accepted, _listener } = link(&network, addr(1), addr(2)).await;
        drop(accepted);
        assert!(recv(&mut dialled).await.is_none());
        timeout(WAIT, dialled.sender.closed()).await.unwrap();
        assert!(dialled.sender.send(ping(1)).await.is_err());
    }

    #[tokio::test]
    async fn dialling_where_nobody_listens_is_refused() {
        let network = MemoryNetwork::new();
        let a = network.transport(addr(1));
        let error = a.dial(addr(9)).await.unwrap_err();
        assert!(
            matches!(error, TransportError::ConnectionRefused { addr } if addr == self::addr(9)),
            "{error}"
        );
        assert!(error.is_retryable());

        // Nor once the listener is gone, and its address is free again.
        let listener = network.transport(addr(2)).listen(addr(2)).await.unwrap();
        drop(listener);
        assert!(matches!(a.dial(addr(2)).await, Err(TransportError::ConnectionRefused { .. })));
        let _listener = network.transport(addr(2)).listen(addr(2)).await.unwrap();
    }

    #[tokio::test]
    async fn listening_on_a_taken_address_fails_and_port_zero_picks_one() {
        let network = MemoryNetwork::new();
        let transport = network.transport(addr(1));
        let _listener = transport.listen(addr(1)).await.unwrap();
        let error = transport.listen(addr(1)).await.unwrap_err();
        assert!(matches!(error, TransportError::ListenFailed { .. }), "{error}");

        let any = SocketAddr::from(([10, 0, 0, 1], 0));
        let first = transport.listen(any).await.unwrap();
        let second = transport.listen(any).await.unwrap();
        assert_ne!(first.local_addr().port(), 0);
        assert_ne!(first.local_addr(), second.local_addr());
        let _connection = network.transport(addr(5)).dial(second.local_addr()).await.unwrap();
    }
}
