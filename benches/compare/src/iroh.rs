//! The iroh-gossip side of the in-process comparison.
//!
//! iroh-gossip 0.101 without its default features is only its sans-IO protocol state machine
//! (`iroh_gossip::proto`: HyParView membership, Plumtree broadcast), with no iroh endpoint and
//! no QUIC. Every node here is one `proto::State` with iroh-gossip's default configuration
//! (`proto::Config::default()`: active view 5, passive view 30, shuffle every 60 s; Plumtree
//! IHave dispatch after 5 ms, Graft after 80 ms then 40 ms, optimisation threshold 7 rounds;
//! messages of at most 4,096 bytes), driven by one tokio task that:
//!
//! - sends each `OutEvent::SendMessage` over an in-memory link: a bounded channel into the
//!   receiver's task carrying what iroh-gossip's own network layer writes per message on an
//!   open stream, a 4-byte length and the postcard-encoded topic message (the topic travels once
//!   in the stream header, so not per frame); peers are named by 32-byte ids as iroh's endpoint
//!   ids are. Bytes are counted where a frame is written to a link. A full link (more than
//!   [`LINK_CAPACITY`] frames waiting) drops the frame and counts it; the report says so if any
//!   were dropped;
//! - registers each `OutEvent::ScheduleTimer` in a timer map and injects
//!   `InEvent::TimerExpired` when a tokio sleep reaches it, as iroh's network layer does;
//! - treats `OutEvent::DisconnectPeer` as closing the connection between the two nodes, as
//!   iroh-gossip's own simulator (`proto::sim`, the reference driver of the state machine) does:
//!   a connection exists once either node has received from the other, and closing it makes the
//!   other node handle `InEvent::PeerDisconnected` after the frames already sent to it. Like
//!   iroh's network layer, and unlike the simulator, a close only counts for the connection it
//!   closed: a close that reaches a node after a newer connection to the same peer opened is
//!   ignored. (Without that, on links with no latency a close and a new `Neighbor` request
//!   cross, and two nodes keep dropping and re-adding each other: more than 100,000 view
//!   changes a second, for seconds. Without closes at all, stale pending `Neighbor` requests
//!   leave active views one-sided, and nodes that only others list as a neighbour receive
//!   nothing.)
//!
//! HyParView picks its own overlay: it does not take an arbitrary graph. Each node joins the
//! topic with its neighbours in the random 8-regular graph the other systems use as bootstrap
//! peers, and the run starts once the active views have stopped changing; the report's note
//! says what overlay resulted (at most 5 neighbours a node with the default configuration,
//! partly links of the 8-regular graph, partly peers met through `ForwardJoin` walks).
//!
//! The payload is the same as the other systems' (our encoded `PriceUpdate`, signed with
//! Ed25519) and so is the work per node ([`Application::accept`]: decode, validate, strict
//! verification with the provider's key decoded once, newest-wins store). Plumtree forwards on
//! receipt: the `handle` call that delivers a message already returns its eager pushes, marks
//! it received, caches it, and queues its IHave for the lazy peers. The proto API has no
//! validation hook, but a sans-IO driver decides when outputs go out, so this driver verifies
//! the delivered update before it sends any output of that call, and drops the eager pushes if
//! the update is refused. What it cannot hold back: a refused message stays in Plumtree's cache
//! and received set, its IHave still goes to the lazy peers on the next dispatch, and a Graft
//! for it is answered from the cache. Every update in this benchmark is valid, so this changes
//! no figure, but a forged update would still be advertised and served on request.
//!
//! Copies are Plumtree's own count of payload (`Gossip`) messages received per node,
//! duplicates and Graft replies included, as gossipsub's metrics count them.
//!
//! What does not compare like with like (`BENCHMARKS.md`, "iroh-gossip in the harness", says
//! the same):
//!
//! - CPU, latency and sustained rate favour this side by construction. A node here is one task
//!   around the bare state machine with a channel as its link: no connection tasks, per-peer
//!   queues, QUIC, encryption, anti-entropy or API, where pricemesh runs whole
//!   `MeshPriceService` nodes and gossipsub whole libp2p swarms with yamux. A deployed
//!   iroh-gossip node (its `Gossip` actor, per-connection loops, QUIC with TLS) does more per
//!   message, and building one needs the iroh networking this comparison leaves out. These
//!   columns are the cost of the protocol alone, a lower bound for an iroh-gossip node.
//! - Bytes are iroh-gossip's own frames; a real iroh link adds QUIC packet headers, a 16-byte
//!   AEAD tag per packet and a stream header per topic.
//! - The overlay is HyParView's, not the 8-regular graph the other systems use.
//! - Peak RSS is the process's, and iroh-gossip runs after the other two: memory the allocator
//!   kept from them counts here too.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use iroh_gossip::proto::state::MessageKind;
use iroh_gossip::proto::{
    Command as TopicCommand, Config, Event, InEvent, Message, OutEvent, PeerData, Scope, State, Timer,
    TopicId,
};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::scenario::{
    Application, Arrivals, Outcome, Scenario, cpu_seconds, offer_open_loop, peak_rss, reset_peak_rss, settle,
};

/// A peer's identity on the wire: 32 bytes, as iroh's endpoint ids (Ed25519 public keys) are;
/// the first four hold the node's index.
type Peer = [u8; 32];

/// Frames that may wait on one node's incoming link before more are dropped.
pub const LINK_CAPACITY: usize = 16_384;

/// The length prefix iroh-gossip's network layer writes before each frame.
const LENGTH_PREFIX: u64 = 4;

/// How long the active views must stay unchanged before the overlay counts as formed.
const OVERLAY_QUIET: Duration = Duration::from_secs(1);

/// How long the overlay may take to form before the run gives up.
const OVERLAY_LIMIT: Duration = Duration::from_secs(30);

/// The one topic every node joins.
fn topic() -> TopicId {
    TopicId::from(*b"pricemesh-compare prices topic 0")
}

fn peer_id(index: usize) -> Peer {
    let mut id = [0; 32];
    id[..4].copy_from_slice(&u32::try_from(index).expect("fewer than 2^32 nodes").to_le_bytes());
    id
}

fn index_of(peer: &Peer) -> usize {
    u32::from_le_bytes([peer[0], peer[1], peer[2], peer[3]]) as usize
}

/// What travels on a link into a node.
#[derive(Debug)]
enum Frame {
    /// One encoded topic message (without its length prefix) from node `from`.
    Message { from: usize, bytes: Bytes },
    /// Node `from` closed the connection between the two, the one opened as `generation`.
    Closed { from: usize, generation: u64 },
}

/// The in-memory links: one bounded incoming channel per node, which pairs of nodes hold a
/// connection, and what was written.
#[derive(Debug)]
struct Links {
    inboxes: Vec<mpsc::Sender<Frame>>,
    /// One word per unordered pair of nodes: how many connections the pair has opened, shifted
    /// left by one, and in the lowest bit whether the last one is open.
    connections: Vec<AtomicU64>,
    bytes_written: AtomicU64,
    dropped: AtomicU64,
}

impl Links {
    fn new(inboxes: Vec<mpsc::Sender<Frame>>) -> Self {
        let nodes = inboxes.len();
        Self {
            inboxes,
            connections: (0..nodes * nodes).map(|_| AtomicU64::new(0)).collect(),
            bytes_written: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    fn connection(&self, a: usize, b: usize) -> &AtomicU64 {
        &self.connections[a.min(b) * self.inboxes.len() + a.max(b)]
    }

    /// A message between `a` and `b` arrived: they hold a connection, a new one if the last
    /// was closed.
    fn open(&self, a: usize, b: usize) {
        let connection = self.connection(a, b);
        if connection.load(Ordering::Acquire) & 1 == 0 {
            let _ = connection.fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| {
                (word & 1 == 0).then_some(((word >> 1) + 1) << 1 | 1)
            });
        }
    }

    /// Closes the connection between `a` and `b`; its generation if it was open.
    fn close(&self, a: usize, b: usize) -> Option<u64> {
        let word = self
            .connection(a, b)
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| (word & 1 == 1).then_some(word & !1))
            .ok()?;
        Some(word >> 1)
    }

    /// Whether the connection opened as `generation` is still the last one between `a` and `b`.
    fn is_last(&self, a: usize, b: usize, generation: u64) -> bool {
        self.connection(a, b).load(Ordering::Acquire) >> 1 == generation
    }

    fn send(&self, to: usize, frame: Frame) {
        let Some(inbox) = self.inboxes.get(to) else { return };
        match inbox.try_send(frame) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            // The run is over and the node has stopped.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }
}

/// What the harness tells a node.
enum Command {
    /// Count arrivals from now on in this tracker.
    Start(Arc<Arrivals>),
    /// Broadcast this payload to the swarm (only node 0 is sent these).
    Publish(Vec<u8>),
    /// Reply with the node's active view.
    Neighbors(oneshot::Sender<Vec<usize>>),
}

/// Runs `scenario` on an iroh-gossip swarm.
///
/// # Errors
/// When the overlay does not settle, or a node fails.
pub async fn run(scenario: &Scenario) -> Result<Outcome, String> {
    reset_peak_rss();
    let nodes = scenario.nodes;
    let (inboxes, receivers): (Vec<_>, Vec<_>) = (0..nodes).map(|_| mpsc::channel(LINK_CAPACITY)).unzip();
    let links = Arc::new(Links::new(inboxes));
    let mut bootstrap: Vec<Vec<Peer>> = vec![Vec::new(); nodes];
    for (a, b) in scenario.edges() {
        bootstrap[a].push(peer_id(b));
        bootstrap[b].push(peer_id(a));
    }
    let view_sizes: Arc<Vec<AtomicUsize>> = Arc::new((0..nodes).map(|_| AtomicUsize::new(0)).collect());
    let view_changes = Arc::new(AtomicU64::new(0));

    let mut commands = Vec::with_capacity(nodes);
    let mut tasks: Vec<JoinHandle<u64>> = Vec::with_capacity(nodes);
    for (index, (inbox, join)) in receivers.into_iter().zip(bootstrap).enumerate() {
        let rng = StdRng::seed_from_u64(scenario.seed.wrapping_mul(1_000_003).wrapping_add(index as u64));
        let node = Node {
            index,
            state: State::new(peer_id(index), PeerData::default(), Config::default(), rng),
            topic: topic(),
            links: links.clone(),
            timers: BTreeMap::new(),
            timer_seq: 0,
            neighbors: BTreeSet::new(),
            view_sizes: view_sizes.clone(),
            view_changes: view_changes.clone(),
            application: Application::default(),
            arrivals: None,
            out: VecDeque::new(),
            frame: Vec::new(),
        };
        let (sender, receiver) = mpsc::unbounded_channel();
        commands.push(sender);
        tasks.push(tokio::spawn(node.run(join, receiver, inbox)));
    }

    let overlay = wait_for_overlay(&view_sizes, &view_changes).await?;
    let overlay = describe_overlay(&commands, scenario, overlay).await;

    let cpu_before = cpu_seconds();
    let bytes_before = links.bytes_written.load(Ordering::Relaxed);
    let dropped_before = links.dropped.load(Ordering::Relaxed);
    let arrivals = Arc::new(Arrivals::new(Instant::now(), scenario.updates(), nodes - 1));
    for sender in &commands {
        let _ = sender.send(Command::Start(arrivals.clone()));
    }
    offer_open_loop(scenario, &arrivals, |payload| {
        let _ = commands[0].send(Command::Publish(payload));
    })
    .await;
    settle(&arrivals, scenario.settle).await;
    let cpu = cpu_seconds() - cpu_before;
    let bytes_sent = links.bytes_written.load(Ordering::Relaxed) - bytes_before;
    let dropped = links.dropped.load(Ordering::Relaxed) - dropped_before;

    drop(commands);
    let mut copies = 0;
    for task in tasks {
        copies += task.await.map_err(|err| format!("an iroh-gossip node failed: {err}"))?;
    }
    let mut note = overlay;
    if dropped > 0 {
        note.push_str(&format!("; {dropped} frames dropped by full links"));
    }
    Ok(Outcome {
        system: "iroh-gossip",
        time_to_all: arrivals.time_to_all(|seq| scenario.due(seq)),
        deliveries: arrivals.deliveries(),
        copies_sent: copies,
        bytes_sent,
        cpu_seconds: cpu,
        peak_rss: peak_rss(),
        note: Some(note),
    })
}

/// Waits until every node has a neighbour and no active view has changed for
/// [`OVERLAY_QUIET`]; the time the overlay took to form.
async fn wait_for_overlay(view_sizes: &[AtomicUsize], view_changes: &AtomicU64) -> Result<Duration, String> {
    let start = Instant::now();
    let mut last = (view_changes.load(Ordering::Relaxed), start);
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let changes = view_changes.load(Ordering::Relaxed);
        if changes != last.0 {
            last = (changes, Instant::now());
        }
        let lonely = view_sizes.iter().filter(|size| size.load(Ordering::Relaxed) == 0).count();
        if lonely == 0 && last.1.elapsed() >= OVERLAY_QUIET {
            return Ok(last.1 - start);
        }
        if start.elapsed() > OVERLAY_LIMIT {
            return Err(format!(
                "the iroh-gossip overlay did not settle in {OVERLAY_LIMIT:?}: {lonely} nodes without a neighbour"
            ));
        }
    }
}

/// One line on the overlay HyParView built: active view sizes, links, how many are links of the
/// scenario's graph, and whether it is connected.
async fn describe_overlay(
    commands: &[mpsc::UnboundedSender<Command>],
    scenario: &Scenario,
    formed_in: Duration,
) -> String {
    let mut views = Vec::with_capacity(commands.len());
    for sender in commands {
        let (reply, answer) = oneshot::channel();
        let _ = sender.send(Command::Neighbors(reply));
        views.push(answer.await.unwrap_or_default());
    }
    let graph: HashSet<(usize, usize)> =
        scenario.edges().into_iter().map(|(a, b)| (a.min(b), a.max(b))).collect();
    let links: BTreeSet<(usize, usize)> = views
        .iter()
        .enumerate()
        .flat_map(|(a, view)| view.iter().map(move |&b| (a.min(b), a.max(b))))
        .collect();
    let symmetric = links.iter().filter(|(a, b)| views[*a].contains(b) && views[*b].contains(a)).count();
    let in_graph = links.iter().filter(|link| graph.contains(link)).count();
    let sizes: Vec<usize> = views.iter().map(Vec::len).collect();
    let (min, max) = (sizes.iter().min().copied().unwrap_or(0), sizes.iter().max().copied().unwrap_or(0));
    let mean = sizes.iter().sum::<usize>() as f64 / sizes.len().max(1) as f64;
    format!(
        "iroh-gossip overlay (HyParView, default config: active view ≤ {}): formed in {:.1} s; active view {min}–{max} peers (mean {mean:.2}) against {} links a node in the others' graph; {} links ({symmetric} in both views), {in_graph} of them links of the {}-regular graph; {}",
        Config::default().membership.active_view_capacity,
        formed_in.as_secs_f64(),
        scenario.degree,
        links.len(),
        scenario.degree,
        if connected(&views) { "connected" } else { "NOT connected" }
    )
}

/// Whether every node reaches every other over the active views, taken as undirected links.
fn connected(views: &[Vec<usize>]) -> bool {
    let mut adjacent = vec![Vec::new(); views.len()];
    for (a, view) in views.iter().enumerate() {
        for &b in view {
            if b < views.len() {
                adjacent[a].push(b);
                adjacent[b].push(a);
            }
        }
    }
    let mut seen = vec![false; views.len()];
    let mut stack = vec![0];
    while let Some(node) = stack.pop() {
        if std::mem::replace(&mut seen[node], true) {
            continue;
        }
        stack.extend(adjacent[node].iter().copied().filter(|&next| !seen[next]));
    }
    seen.iter().all(|&reached| reached)
}

/// One iroh-gossip node: the protocol state and what drives it.
struct Node {
    index: usize,
    state: State<Peer, StdRng>,
    topic: TopicId,
    links: Arc<Links>,
    /// Timers the state scheduled, by deadline (and order of scheduling, to keep equal deadlines).
    timers: BTreeMap<(Instant, u64), Timer<Peer>>,
    timer_seq: u64,
    /// The active view, from the state's `NeighborUp` and `NeighborDown` events.
    neighbors: BTreeSet<usize>,
    view_sizes: Arc<Vec<AtomicUsize>>,
    view_changes: Arc<AtomicU64>,
    application: Application,
    arrivals: Option<Arc<Arrivals>>,
    /// The outputs of the event being handled.
    out: VecDeque<OutEvent<Peer>>,
    /// A received frame with its topic put back in front, for decoding.
    frame: Vec<u8>,
}

impl Node {
    /// Joins the topic through `bootstrap` and drives the state until the harness drops its
    /// command sender; returns the payload messages this node received, duplicates included.
    async fn run(
        mut self,
        bootstrap: Vec<Peer>,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut inbox: mpsc::Receiver<Frame>,
    ) -> u64 {
        let timer = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(timer);
        self.handle(InEvent::Command(self.topic, TopicCommand::Join(bootstrap))).await;
        loop {
            if let Some(&(deadline, _)) = self.timers.keys().next()
                && timer.deadline() != deadline
            {
                timer.as_mut().reset(deadline);
            }
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Start(tracker)) => self.arrivals = Some(tracker),
                    Some(Command::Publish(payload)) => {
                        let broadcast = TopicCommand::Broadcast(Bytes::from(payload), Scope::Swarm);
                        self.handle(InEvent::Command(self.topic, broadcast)).await;
                    }
                    Some(Command::Neighbors(reply)) => {
                        let _ = reply.send(self.neighbors.iter().copied().collect());
                    }
                    None => break,
                },
                Some(frame) = inbox.recv() => self.receive(frame).await,
                () = &mut timer, if !self.timers.is_empty() => {
                    let now = Instant::now();
                    while let Some(entry) = self.timers.first_entry() {
                        if entry.key().0 > now {
                            break;
                        }
                        let timer = entry.remove();
                        self.handle(InEvent::TimerExpired(timer)).await;
                    }
                }
            }
        }
        self.state.state(&self.topic).map_or(0, |topic| topic.gossip_stats().payload_messages_received)
    }

    /// Decodes a frame from a link and hands it to the state.
    async fn receive(&mut self, frame: Frame) {
        match frame {
            Frame::Message { from, bytes } => {
                self.frame.clear();
                self.frame.extend_from_slice(self.topic.as_bytes());
                self.frame.extend_from_slice(&bytes);
                let message = match postcard::from_bytes::<Message<Peer>>(&self.frame) {
                    Ok(message) => message,
                    Err(err) => {
                        eprintln!(
                            "  iroh-gossip node {} cannot decode a frame from {from}: {err}",
                            self.index
                        );
                        return;
                    }
                };
                self.links.open(self.index, from);
                self.handle(InEvent::RecvMessage(peer_id(from), message)).await;
            }
            Frame::Closed { from, generation } => {
                if self.links.is_last(self.index, from, generation) {
                    self.handle(InEvent::PeerDisconnected(peer_id(from))).await;
                }
            }
        }
    }

    /// Hands one event to the state and carries out its outputs. An update it delivers is
    /// verified before any output goes out; a refused one is not pushed on.
    async fn handle(&mut self, event: InEvent<Peer>) {
        self.out.extend(self.state.handle(event, Instant::now(), None));
        let mut refused = false;
        for event in &self.out {
            if let OutEvent::EmitEvent(_, Event::Received(gossip)) = event {
                let seq = self.application.accept(&gossip.content).await;
                refused |= seq.is_none();
                if let (Some(seq), Some(arrivals)) = (seq, &self.arrivals) {
                    arrivals.record(seq);
                }
            }
        }
        while let Some(event) = self.out.pop_front() {
            match event {
                OutEvent::SendMessage(to, message) => {
                    if !(refused && matches!(message.kind(), MessageKind::Data)) {
                        self.send(index_of(&to), &message);
                    }
                }
                OutEvent::ScheduleTimer(delay, timer) => {
                    self.timers.insert((Instant::now() + delay, self.timer_seq), timer);
                    self.timer_seq += 1;
                }
                OutEvent::EmitEvent(_, Event::NeighborUp(peer)) => {
                    self.neighbors.insert(index_of(&peer));
                    self.view_changed();
                }
                OutEvent::EmitEvent(_, Event::NeighborDown(peer)) => {
                    self.neighbors.remove(&index_of(&peer));
                    self.view_changed();
                }
                OutEvent::DisconnectPeer(peer) => {
                    let to = index_of(&peer);
                    if let Some(generation) = self.links.close(self.index, to) {
                        self.links.send(to, Frame::Closed { from: self.index, generation });
                    }
                }
                OutEvent::EmitEvent(_, Event::Received(_)) | OutEvent::PeerData(..) => {}
            }
        }
    }

    fn view_changed(&self) {
        self.view_sizes[self.index].store(self.neighbors.len(), Ordering::Relaxed);
        self.view_changes.fetch_add(1, Ordering::Relaxed);
    }

    /// Writes one message to the link into node `to`, as iroh's network layer frames it.
    fn send(&mut self, to: usize, message: &Message<Peer>) {
        let Some(bytes) = encode(message) else {
            eprintln!("  iroh-gossip node {} cannot encode a message", self.index);
            return;
        };
        self.links.bytes_written.fetch_add(LENGTH_PREFIX + bytes.len() as u64, Ordering::Relaxed);
        self.links.send(to, Frame::Message { from: self.index, bytes });
    }
}

/// The frame iroh-gossip's network layer writes for `message` on its topic's stream (without
/// the length prefix): the postcard encoding of the topic message. `Message` encodes as the
/// 32-byte topic followed by that, so the topic is cut off here and put back on receipt.
fn encode(message: &Message<Peer>) -> Option<Bytes> {
    let encoded = postcard::to_stdvec(message).ok()?;
    (encoded.len() >= 32).then(|| Bytes::from(encoded).slice(32..))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_decodes_once_its_topic_is_put_back() {
        let mut state: State<Peer, StdRng> =
            State::new(peer_id(1), PeerData::default(), Config::default(), StdRng::seed_from_u64(1));
        let out: Vec<_> = state
            .handle(InEvent::Command(topic(), TopicCommand::Join(vec![peer_id(2)])), Instant::now(), None)
            .collect();
        let Some(OutEvent::SendMessage(to, message)) =
            out.into_iter().find(|event| matches!(event, OutEvent::SendMessage(..)))
        else {
            panic!("a join sends a message");
        };
        assert_eq!(index_of(&to), 2);
        let frame = encode(&message).unwrap();
        assert_eq!(frame.len() + 32, message.size().unwrap());
        let mut whole = topic().as_bytes().to_vec();
        whole.extend_from_slice(&frame);
        let decoded: Message<Peer> = postcard::from_bytes(&whole).unwrap();
        assert_eq!(postcard::to_stdvec(&decoded).unwrap(), postcard::to_stdvec(&message).unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_update_reaches_every_node_of_a_small_swarm() {
        let scenario = Scenario {
            nodes: 10,
            degree: 4,
            seed: 7,
            rate: 50.0,
            duration: Duration::from_millis(400),
            settle: Duration::from_secs(10),
        };
        let outcome = run(&scenario).await.unwrap();
        assert_eq!(outcome.time_to_all.len(), 20);
        assert!(outcome.time_to_all.iter().all(Option::is_some), "{outcome:?}");
        assert_eq!(outcome.deliveries, 20 * 9);
        assert!(outcome.copies_sent >= outcome.deliveries, "{outcome:?}");
        assert!(outcome.bytes_sent > 0);
        assert!(outcome.note.is_some_and(|note| note.contains("; connected")));
    }
}
