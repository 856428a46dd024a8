//! The rust-libp2p gossipsub side of the in-process comparison.
//!
//! Every node is a libp2p `Swarm` with the gossipsub behaviour on the memory transport
//! (plaintext identification, yamux multiplexing), linked by the same random regular graph as
//! the pricemesh side. The payload is the same: our encoded `PriceUpdate`, signed by the
//! provider with Ed25519. Gossipsub itself signs nothing (`MessageAuthenticity::Anonymous`),
//! names a message by a hash of its bytes, and forwards a message only once the application
//! accepts it (`validate_messages`): each node decodes, validates, checks the signature
//! strictly with the provider's key decoded once, and stores the prices newest-wins, which is
//! the work our engine does per node. Everything else is gossipsub's default configuration
//! (mesh of 6 out of the 8 links, lazy gossip to the rest, 1 s heartbeat).
//!
//! Bytes are counted where the memory transport's channels are written, so they include
//! yamux and protobuf framing and gossipsub's control messages; copies are read from
//! gossipsub's own metrics (every message received, duplicates included).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::StreamExt;
use futures::io::{AsyncRead, AsyncWrite};
use libp2p::core::transport::MemoryTransport;
use libp2p::core::{Transport as _, upgrade};
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, MessageAuthenticity, ValidationMode};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm, identity, plaintext, yamux};
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::scenario::{
    Application, Arrivals, Outcome, Scenario, cpu_seconds, offer_open_loop, peak_rss, reset_peak_rss, settle,
};

/// The one topic every node joins.
const TOPIC: &str = "prices";

/// How long the mesh may take to form before the run gives up.
const MESH_FORMATION_LIMIT: Duration = Duration::from_secs(30);

/// Memory-transport ports, unique within the process across runs.
static NEXT_PORT: AtomicU64 = AtomicU64::new(1);

/// What the harness tells a node.
enum Command {
    /// Count arrivals from now on in this tracker.
    Start(Arc<Arrivals>),
    /// Publish this payload (only node 0 is sent these).
    Publish(Vec<u8>),
}

/// Runs `scenario` on a gossipsub mesh.
///
/// # Errors
/// When a node cannot be built or the mesh does not form.
pub async fn run(scenario: &Scenario) -> Result<Outcome, String> {
    reset_peak_rss();
    let bytes_written = Arc::new(AtomicU64::new(0));
    let mesh_sizes: Arc<Vec<AtomicUsize>> =
        Arc::new((0..scenario.nodes).map(|_| AtomicUsize::new(0)).collect());
    let addresses: Vec<Multiaddr> = (0..scenario.nodes)
        .map(|_| {
            format!("/memory/{}", NEXT_PORT.fetch_add(1, Ordering::Relaxed))
                .parse()
                .expect("a memory address")
        })
        .collect();
    let mut dials: Vec<Vec<Multiaddr>> = vec![Vec::new(); scenario.nodes];
    for (from, to) in scenario.edges() {
        dials[from].push(addresses[to].clone());
    }

    let mut commands = Vec::with_capacity(scenario.nodes);
    let mut nodes = Vec::with_capacity(scenario.nodes);
    for (index, (address, dial)) in addresses.iter().zip(dials).enumerate() {
        let (mut swarm, registry) = build_swarm(&bytes_written)?;
        let topic = IdentTopic::new(TOPIC);
        swarm.behaviour_mut().subscribe(&topic).map_err(|err| format!("gossipsub subscribe: {err}"))?;
        swarm.listen_on(address.clone()).map_err(|err| format!("listen on {address}: {err}"))?;
        let (sender, receiver) = mpsc::unbounded_channel();
        commands.push(sender);
        nodes.push((
            Node {
                swarm,
                registry,
                topic,
                index,
                mesh_sizes: mesh_sizes.clone(),
                application: Application::default(),
            },
            dial,
            receiver,
        ));
    }
    // Every node listens before any dials: a memory address without a listener refuses at once.
    let mut tasks: Vec<JoinHandle<u64>> = Vec::with_capacity(scenario.nodes);
    for (mut node, dial, receiver) in nodes {
        for peer in dial {
            node.swarm.dial(peer.clone()).map_err(|err| format!("dial {peer}: {err}"))?;
        }
        tasks.push(tokio::spawn(node.run(receiver)));
    }

    wait_for_mesh(&mesh_sizes, scenario.degree).await?;

    let cpu_before = cpu_seconds();
    let bytes_before = bytes_written.load(Ordering::Relaxed);
    let updates = scenario.updates();
    let arrivals = Arc::new(Arrivals::new(Instant::now(), updates, scenario.nodes - 1));
    for sender in &commands {
        let _ = sender.send(Command::Start(arrivals.clone()));
    }
    offer_open_loop(scenario, &arrivals, |payload| {
        let _ = commands[0].send(Command::Publish(payload));
    })
    .await;
    settle(&arrivals, scenario.settle).await;
    let cpu = cpu_seconds() - cpu_before;
    let bytes_sent = bytes_written.load(Ordering::Relaxed) - bytes_before;

    drop(commands);
    let mut copies = 0;
    for task in tasks {
        copies += task.await.map_err(|err| format!("a gossipsub node failed: {err}"))?;
    }
    Ok(Outcome {
        system: "libp2p gossipsub",
        time_to_all: arrivals.time_to_all(|seq| scenario.due(seq)),
        deliveries: arrivals.deliveries(),
        copies_sent: copies,
        bytes_sent,
        cpu_seconds: cpu,
        peak_rss: peak_rss(),
        note: None,
    })
}

/// Waits until every node has as many mesh peers as gossipsub aims for at the least.
async fn wait_for_mesh(mesh_sizes: &[AtomicUsize], degree: usize) -> Result<(), String> {
    let wanted = gossipsub::Config::default().mesh_n_low().min(degree);
    let deadline = Instant::now() + MESH_FORMATION_LIMIT;
    loop {
        let smallest = mesh_sizes.iter().map(|size| size.load(Ordering::Relaxed)).min().unwrap_or(0);
        if smallest >= wanted {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the gossipsub mesh did not form in {MESH_FORMATION_LIMIT:?}: a node has {smallest} mesh peers, {wanted} wanted"
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A swarm on the memory transport whose writes are counted in `bytes_written`, and the
/// registry its gossipsub metrics go to.
fn build_swarm(bytes_written: &Arc<AtomicU64>) -> Result<(Swarm<gossipsub::Behaviour>, Registry), String> {
    let keypair = identity::Keypair::generate_ed25519();
    let counter = bytes_written.clone();
    let transport = MemoryTransport::default()
        .map(move |channel, _| Counted { inner: channel, written: counter.clone() })
        .upgrade(upgrade::Version::V1)
        .authenticate(plaintext::Config::new(&keypair))
        .multiplex(yamux::Config::default())
        .boxed();
    let config = gossipsub::ConfigBuilder::default()
        .validation_mode(ValidationMode::Anonymous)
        .validate_messages()
        .message_id_fn(content_id)
        .build()
        .map_err(|err| format!("gossipsub config: {err}"))?;
    let mut registry = Registry::default();
    let behaviour = gossipsub::Behaviour::new(MessageAuthenticity::Anonymous, config)
        .map_err(|err| format!("gossipsub behaviour: {err}"))?
        .with_metrics(&mut registry, gossipsub::MetricsConfig::default());
    let swarm_config =
        libp2p::swarm::Config::with_tokio_executor().with_idle_connection_timeout(Duration::from_secs(3600));
    let swarm = Swarm::new(transport, behaviour, PeerId::from(keypair.public()), swarm_config);
    Ok((swarm, registry))
}

/// Names a message by a hash of its bytes: the same update is one message wherever it comes from.
fn content_id(message: &gossipsub::Message) -> gossipsub::MessageId {
    let mut hasher = DefaultHasher::new();
    message.data.hash(&mut hasher);
    gossipsub::MessageId::from(hasher.finish().to_be_bytes().to_vec())
}

/// One gossipsub node and the application work it does per accepted update.
struct Node {
    swarm: Swarm<gossipsub::Behaviour>,
    registry: Registry,
    topic: IdentTopic,
    index: usize,
    mesh_sizes: Arc<Vec<AtomicUsize>>,
    application: Application,
}

impl Node {
    /// Drives the swarm until the harness drops its command sender; returns the copies of
    /// messages this node received, duplicates included.
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) -> u64 {
        let mut arrivals: Option<Arc<Arrivals>> = None;
        let mut mesh_check = tokio::time::interval(Duration::from_millis(50));
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Start(tracker)) => arrivals = Some(tracker),
                    Some(Command::Publish(payload)) => {
                        if let Err(err) = self.swarm.behaviour_mut().publish(self.topic.clone(), payload) {
                            eprintln!("  gossipsub node {} could not publish: {err}", self.index);
                        }
                    }
                    None => break,
                },
                event = self.swarm.select_next_some() => {
                    if let SwarmEvent::Behaviour(gossipsub::Event::Message { propagation_source, message_id, message }) = event {
                        let seq = self.application.accept(&message.data).await;
                        let acceptance = if seq.is_some() { MessageAcceptance::Accept } else { MessageAcceptance::Reject };
                        if let (Some(seq), Some(arrivals)) = (seq, &arrivals) {
                            arrivals.record(seq);
                        }
                        self.swarm.behaviour_mut().report_message_validation_result(&message_id, &propagation_source, acceptance);
                    }
                }
                _ = mesh_check.tick() => {
                    let size = self.swarm.behaviour().mesh_peers(&self.topic.hash()).count();
                    self.mesh_sizes[self.index].store(size, Ordering::Relaxed);
                }
            }
        }
        copies_received(&self.registry)
    }
}

/// Messages received by one node, duplicates included, from its gossipsub metrics.
fn copies_received(registry: &Registry) -> u64 {
    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, registry).is_err() {
        return 0;
    }
    text.lines()
        .filter(|line| line.starts_with("topic_msg_recv_counts_unfiltered_total"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// A connection that counts the bytes written to it.
struct Counted<T> {
    inner: T,
    written: Arc<AtomicU64>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(written)) = &result {
            this.written.fetch_add(*written as u64, Ordering::Relaxed);
        }
        result
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_update_reaches_every_node_of_a_small_mesh() {
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
    }
}
