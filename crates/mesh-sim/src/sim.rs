//! Running a simulated mesh: start the nodes, wire them as the topology says, publish updates
//! from the providers, and measure how each update spreads.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use mesh_service::{MeshPriceService, ServiceConfig, ServiceError};
use mesh_transport::{LinkConfig, LinkFaults, ManagerConfig, MemoryNetwork, Transport};
use mesh_types::rust_decimal::Decimal;
use mesh_types::{Asset, CachedPriceData, NetworkId, NodeIdentity, PriceData, PriceUpdate, Timestamp};
use thiserror::Error;
use tokio::time::Instant;

use crate::topology::{self, Topology};

/// What to simulate.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Nodes in the mesh.
    pub nodes: usize,
    /// How many of them publish prices (the first ones).
    pub providers: usize,
    /// Who is connected to whom.
    pub topology: Topology,
    /// Updates to publish, taking turns among the providers.
    pub updates: usize,
    /// Time between updates. The schedule is open loop: update `i` is published at
    /// `i × interval` from the start whether or not the earlier ones have spread, and its times
    /// are measured from then, so a mesh that falls behind shows it.
    pub interval: Duration,
    /// Latency added to every link.
    pub latency: Duration,
    /// Probability that a link loses a message.
    pub drop_probability: f64,
    /// TTL of published updates.
    pub message_ttl: u8,
    /// How long to wait, after the last update, for every node to have everything.
    pub settle: Duration,
    /// Seed of the topology.
    pub seed: u64,
    /// Split the mesh in two for part of the run; anti-entropy must repair it after the heal.
    pub partition: Option<SimPartition>,
    /// Time between anti-entropy rounds (default one hour: gossip alone is measured unless a
    /// partition needs repairing).
    pub sync_interval: Duration,
    /// What carries the messages.
    pub transport: SimTransport,
    /// Whether the nodes keep to the topology or, starting from it, find their own peers.
    pub peering: Peering,
    /// Peer slots each node has beyond its links in the topology (default 2): its minimum is
    /// its number of links, its maximum that many more.
    pub spare_slots: usize,
    /// How the nodes relay: lazy push along a tree (the default) or flooding.
    pub push: mesh_gossip::PushConfig,
}

/// How the simulated nodes choose their peers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Peering {
    /// Exactly the topology's links: no addresses learnt.
    #[default]
    Imposed,
    /// The topology's links to start, as bootstrap peers, with peer exchange on as in a real
    /// node, but no preference for peers close to the providers: the slots above each node's
    /// minimum fill only when others dial it.
    Learning,
    /// As [`Peering::Learning`], and every node gives its slots above the minimum to peers
    /// closer to the providers (`MESH_PREFER_CLOSE_PEERS`). The run lets the nodes move until
    /// their hop counts settle before the first update.
    PreferClose,
}

/// What carries the simulated nodes' messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SimTransport {
    /// In-memory links passing message values (no codec): the mesh's logic alone.
    #[default]
    Memory,
    /// In-memory links passing wire payloads: encoded once per broadcast, decoded by every
    /// receiver, bytes counted — what the codec costs, without sockets.
    MemoryWire,
    /// Real TCP connections on 127.0.0.1, one listener per node. Latency, loss and
    /// partitions do not apply.
    Tcp,
}

/// A temporary split of the mesh: nodes below `split_at` on one side, the rest on the other,
/// from just before update `from_update` to just before update `heal_before_update`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimPartition {
    /// The first node of the second side.
    pub split_at: usize,
    /// The first update published while split.
    pub from_update: usize,
    /// The first update published after the heal.
    pub heal_before_update: usize,
}

impl SimConfig {
    /// Publishes for `duration` at this configuration's interval.
    #[must_use]
    pub fn for_duration(mut self, duration: Duration) -> Self {
        let interval = self.interval.max(Duration::from_millis(1));
        self.updates =
            usize::try_from(duration.as_millis() / interval.as_millis()).unwrap_or(usize::MAX).max(1);
        self
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            nodes: 30,
            providers: 1,
            topology: Topology::RandomRegular { degree: 6 },
            updates: 10,
            interval: Duration::from_millis(50),
            latency: Duration::ZERO,
            drop_probability: 0.0,
            message_ttl: 10,
            settle: Duration::from_secs(10),
            seed: 1,
            partition: None,
            sync_interval: Duration::from_secs(3600),
            transport: SimTransport::Memory,
            peering: Peering::Imposed,
            spare_slots: 2,
            push: mesh_gossip::PushConfig::default(),
        }
    }
}

/// Why a simulation could not run.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SimError {
    /// A node did not start.
    #[error("node {node} did not start: {source}")]
    Start {
        /// Its index.
        node: usize,
        /// Why.
        #[source]
        source: ServiceError,
    },
    /// The mesh did not form within the time allowed.
    #[error("the mesh did not form: {connected} of {expected} links up after {waited:?}")]
    NotFormed {
        /// Links up.
        connected: usize,
        /// Links wanted.
        expected: usize,
        /// Time waited.
        waited: Duration,
    },
    /// A provider could not publish.
    #[error("a provider could not publish: {0}")]
    Publish(#[from] mesh_gossip::Error),
    /// A seeded simulation's configuration cannot work.
    #[error("invalid seeded simulation: {0}")]
    InvalidConfig(String),
    /// The seeded simulation's runtime could not be built.
    #[error("cannot build the simulation's runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// How one update spread.
#[derive(Debug, Clone, PartialEq)]
pub struct Spread {
    /// Nodes that received it.
    pub reached: usize,
    /// Time until half the nodes held it.
    pub half: Option<Duration>,
    /// Time until 99 % of the nodes held it.
    pub p99: Option<Duration>,
    /// Time until every node held it.
    pub all: Option<Duration>,
    /// When each node that received it held it, from when it was due, in ascending order.
    pub arrivals: Vec<Duration>,
}

/// The outcome of a simulation.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Nodes simulated.
    pub nodes: usize,
    /// Links of the topology.
    pub links: usize,
    /// Each update's spread.
    pub spreads: Vec<Spread>,
    /// Messages the network delivered per node per update while updates were spreading
    /// (each node must receive at least one; the rest is gossip redundancy).
    pub messages_per_node_per_update: f64,
    /// Of those, the copies beyond the first that each node received and dropped as
    /// duplicates, per node per update.
    pub duplicates_per_node_per_update: f64,
    /// Whether every node ended with identical prices.
    pub agreement: bool,
    /// Price update messages the network delivered while updates were spreading: the copies
    /// of every update over all links.
    pub update_copies: u64,
    /// Bytes the links carried while updates were spreading, framing included (with
    /// [`SimTransport::MemoryWire`] only; 0 otherwise).
    pub bytes: u64,
    /// CPU time the whole process used while updates were spreading (Linux; `None` elsewhere).
    pub cpu: Option<Duration>,
    /// Hops from each node that is not a provider to the nearest provider, over the
    /// connections up when publishing began (`None`: cut off from every provider).
    pub provider_hops: Vec<Option<usize>>,
    /// What each of those nodes counted itself, from its peers' heartbeats (with
    /// [`Peering::Imposed`] the heartbeats are too slow for a count before publishing).
    pub estimated_hops: Vec<Option<u8>>,
    /// How long the nodes took to settle their peers before publishing began.
    pub settled_in: Duration,
}

impl Report {
    /// Updates that reached every node.
    pub fn complete(&self) -> usize {
        self.spreads.iter().filter(|spread| spread.reached == self.nodes).count()
    }

    /// The given quantile (0.0–1.0) of the time-to-all-nodes over the complete updates.
    pub fn time_to_all(&self, quantile: f64) -> Option<Duration> {
        let mut times: Vec<Duration> = self.spreads.iter().filter_map(|spread| spread.all).collect();
        times.sort();
        quantile_of(&times, quantile)
    }

    /// The given quantile (0.0–1.0) of the time each node took to receive each update, over
    /// every update and node: where [`Report::time_to_all`] waits for the farthest node, this
    /// shows the typical one.
    pub fn delivery(&self, quantile: f64) -> Option<Duration> {
        let mut times: Vec<Duration> =
            self.spreads.iter().flat_map(|spread| spread.arrivals.iter().copied()).collect();
        times.sort_unstable();
        quantile_of(&times, quantile)
    }

    /// The mean of [`Report::provider_hops`] over the nodes a provider reaches.
    pub fn mean_provider_hops(&self) -> Option<f64> {
        let reached: Vec<usize> = self.provider_hops.iter().flatten().copied().collect();
        (!reached.is_empty()).then(|| reached.iter().sum::<usize>() as f64 / reached.len() as f64)
    }

    /// The given quantile (0.0–1.0) of [`Report::provider_hops`], a node cut off from every
    /// provider counting as farthest.
    pub fn provider_hops_quantile(&self, quantile: f64) -> Option<usize> {
        let mut hops: Vec<usize> = self.provider_hops.iter().map(|hops| hops.unwrap_or(usize::MAX)).collect();
        hops.sort_unstable();
        quantile_of(&hops, quantile)
    }
}

/// The element at `quantile` (0.0–1.0) of sorted `values`, by nearest rank.
fn quantile_of<T: Copy>(values: &[T], quantile: f64) -> Option<T> {
    let last = values.len().checked_sub(1)?;
    let rank = ((last as f64) * quantile.clamp(0.0, 1.0)).round() as usize;
    values.get(rank).copied()
}

fn address(node: usize) -> SocketAddr {
    let [_, _, high, low] = u32::try_from(node).unwrap_or(u32::MAX).to_be_bytes();
    SocketAddr::from(([10, 1, high, low], 9470))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// First arrival time of each price (by asset and timestamp) at each node.
type Arrivals = Arc<Mutex<HashMap<(Asset, Timestamp), Vec<Instant>>>>;

/// Runs one simulation.
///
/// # Errors
/// When a node does not start, the mesh does not form within 30 s, or a provider cannot
/// publish.
pub async fn run(config: &SimConfig) -> Result<Report, SimError> {
    let network = memory_network(config);
    let edges = topology::edges(config.topology, config.nodes, config.providers, config.seed);
    let neighbours = neighbours(config.nodes, &edges);
    let arrivals: Arrivals = Arc::new(Mutex::new(HashMap::new()));
    let (nodes, addrs) = start_nodes(config, network.as_ref(), &neighbours, &arrivals).await?;
    wait_until_formed(config, &nodes, &addrs, &neighbours, edges.len()).await?;
    let settled_in = settle_peers(config, &nodes).await;
    let provider_count = config.providers.clamp(1, config.nodes);
    let provider_hops = measured_provider_hops(config, &nodes, &addrs, provider_count);
    let estimated_hops: Vec<Option<u8>> =
        nodes.iter().skip(provider_count).map(|node| node.network().provider_hops()).collect();

    let asset = Asset::new("SOL").expect("a valid symbol");
    let copies_before = update_copies_processed(&nodes);
    let bytes_before = bytes_delivered(network.as_ref());
    let cpu_before = process_cpu_time();
    let published = publish_updates(config, &nodes, &addrs, network.as_ref(), asset).await?;
    wait_for_arrivals(config, &arrivals, &published, asset).await;
    let cpu = cpu_before.zip(process_cpu_time()).map(|(before, after)| after.saturating_sub(before));
    if let Some(network) = &network {
        network.heal();
    }
    // Each publish counts once at its provider too; the rest crossed links.
    let processed = update_copies_processed(&nodes) - copies_before;
    let update_copies = processed.saturating_sub(published.len() as u64);
    let bytes = bytes_delivered(network.as_ref()) - bytes_before;
    let spreads = spreads(config, &lock(&arrivals), &published, asset);

    let agreement = prices_agree(&nodes).await;
    for node in &nodes {
        node.shutdown().await;
    }
    let per_node_per_update =
        |count: u64| count as f64 / (config.nodes.max(1) * config.updates.max(1)) as f64;
    Ok(Report {
        nodes: config.nodes,
        links: edges.len(),
        spreads,
        messages_per_node_per_update: per_node_per_update(update_copies),
        duplicates_per_node_per_update: (per_node_per_update(update_copies) - 1.0).max(0.0),
        agreement,
        update_copies,
        bytes,
        cpu,
        provider_hops,
        estimated_hops,
        settled_in,
    })
}

/// The in-memory network the configuration asks for, with its latency and loss on every link;
/// `None` over TCP.
fn memory_network(config: &SimConfig) -> Option<Arc<MemoryNetwork>> {
    let network = match config.transport {
        SimTransport::Memory => MemoryNetwork::new(),
        SimTransport::MemoryWire => MemoryNetwork::with_wire_codec(LinkConfig::default()),
        SimTransport::Tcp => return None,
    };
    network.set_default_faults(LinkFaults {
        latency: config.latency,
        drop_probability: config.drop_probability,
    });
    Some(network)
}

/// Each node's neighbours in the topology's `edges`.
fn neighbours(nodes: usize, edges: &[(usize, usize)]) -> Vec<Vec<usize>> {
    let mut neighbours = vec![Vec::new(); nodes];
    for &(a, b) in edges {
        neighbours[a].push(b);
        neighbours[b].push(a);
    }
    neighbours
}

/// Starts every node, the providers first, each recording its arrivals in `arrivals`, and
/// returns them with the addresses they listen at.
///
/// Started from the first node up: each node dials its lower-numbered neighbours, which are
/// listening by then (over TCP, at the port the system gave them). In a tree that is how a mesh
/// grows: every new node dials the one it was pointed at.
async fn start_nodes(
    config: &SimConfig,
    network: Option<&Arc<MemoryNetwork>>,
    neighbours: &[Vec<usize>],
    arrivals: &Arrivals,
) -> Result<(Vec<MeshPriceService>, Vec<SocketAddr>), SimError> {
    let mut nodes = Vec::with_capacity(config.nodes);
    let mut addrs: Vec<SocketAddr> = Vec::with_capacity(config.nodes);
    for (index, links) in neighbours.iter().enumerate() {
        let bootstrap =
            links.iter().filter(|peer| **peer < index).map(|peer| addrs[*peer].to_string()).collect();
        // Over TCP the service builds its own transport, bound to the node's identity and network.
        let (transport, listen): (Option<Arc<dyn Transport>>, SocketAddr) = match network {
            Some(network) => (Some(Arc::new(network.transport(address(index)))), address(index)),
            None => (None, SocketAddr::from(([127, 0, 0, 1], 0))),
        };
        let node = start_node(config, links.len(), listen, bootstrap, transport)
            .await
            .map_err(|source| SimError::Start { node: index, source })?;
        if index < config.providers {
            node.set_provider(true);
        }
        record_arrivals(&node, arrivals.clone());
        addrs.push(node.network().local_addr().unwrap_or(listen));
        nodes.push(node);
    }
    Ok((nodes, addrs))
}

/// Records in `arrivals` when `node` accepts each price. Each update counts where it is
/// accepted, whether or not it changed the price served (an update overtaken on the way by a
/// newer one still arrived).
fn record_arrivals(node: &MeshPriceService, arrivals: Arrivals) {
    let mut accepted = node.accepted_updates();
    tokio::spawn(async move {
        loop {
            match accepted.recv().await {
                Ok(accepted) => {
                    let at = Instant::now();
                    let mut arrivals = lock(&arrivals);
                    for asset in accepted.update.prices.keys() {
                        arrivals.entry((*asset, accepted.update.timestamp)).or_default().push(at);
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    });
}

/// Waits until every node is connected to its neighbours, and knows every other node: the
/// announcements each new connection is greeted with have spread, so the first updates do not
/// queue behind them. A node that learns addresses may already have filled its slots with
/// others, or swapped a neighbour for a closer peer, so there every node only needs a peer.
///
/// # Errors
/// [`SimError::NotFormed`] after 30 s.
async fn wait_until_formed(
    config: &SimConfig,
    nodes: &[MeshPriceService],
    addrs: &[SocketAddr],
    neighbours: &[Vec<usize>],
    expected: usize,
) -> Result<(), SimError> {
    let keeps_its_neighbours = config.peering == Peering::Imposed;
    let formed_at = Instant::now();
    loop {
        let formed = nodes.iter().zip(neighbours).all(|(node, links)| {
            if !keeps_its_neighbours {
                return links.is_empty() || node.network().peer_count() > 0;
            }
            let peers: std::collections::HashSet<SocketAddr> =
                node.network().connected_peers().iter().filter_map(|peer| peer.info.listen_addr).collect();
            links.iter().all(|link| peers.contains(&addrs[*link]))
        }) && nodes
            .iter()
            .all(|node| node.network_status().total_network_size as usize == config.nodes);
        if formed {
            return Ok(());
        }
        let connected = nodes.iter().map(|node| node.network().peer_count()).sum::<usize>() / 2;
        if formed_at.elapsed() > Duration::from_secs(30) {
            return Err(SimError::NotFormed { connected, expected, waited: formed_at.elapsed() });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Hops from each node after the first `provider_count` (the providers) to the nearest
/// provider, over the connections up now.
fn measured_provider_hops(
    config: &SimConfig,
    nodes: &[MeshPriceService],
    addrs: &[SocketAddr],
    provider_count: usize,
) -> Vec<Option<usize>> {
    let index: HashMap<SocketAddr, usize> = addrs.iter().enumerate().map(|(i, addr)| (*addr, i)).collect();
    let links: Vec<(usize, usize)> = nodes
        .iter()
        .enumerate()
        .flat_map(|(i, node)| {
            let index = &index;
            node.network().connected_peers().into_iter().filter_map(move |peer| {
                peer.info.listen_addr.and_then(|addr| index.get(&addr)).map(|j| (i, *j))
            })
        })
        .collect();
    let sources: Vec<usize> = (0..provider_count).collect();
    topology::distances(config.nodes, &links, &sources).split_off(provider_count)
}

/// Price update messages every node has processed so far.
fn update_copies_processed(nodes: &[MeshPriceService]) -> u64 {
    nodes.iter().map(|node| node.gossip_stats().total()).sum()
}

/// Bytes the in-memory network has carried so far (0 without one).
fn bytes_delivered(network: Option<&Arc<MemoryNetwork>>) -> u64 {
    network.map_or(0, |network| network.bytes_delivered())
}

/// Publishes the configured updates from the providers in turn, on an open-loop schedule,
/// splitting and healing the network as the partition says, and returns each update's
/// timestamp with when it was due.
///
/// # Errors
/// [`SimError::Publish`] when a provider cannot publish.
async fn publish_updates(
    config: &SimConfig,
    nodes: &[MeshPriceService],
    addrs: &[SocketAddr],
    network: Option<&Arc<MemoryNetwork>>,
    asset: Asset,
) -> Result<Vec<(Timestamp, Instant)>, SimError> {
    let mut published: Vec<(Timestamp, Instant)> = Vec::new();
    let sides = config.partition.map(|partition| {
        let split = partition.split_at.min(config.nodes);
        (addrs[..split].to_vec(), addrs[split..].to_vec())
    });
    let start = Instant::now();
    for round in 0..config.updates {
        let due = start + config.interval * u32::try_from(round).unwrap_or(u32::MAX);
        tokio::time::sleep_until(due).await;
        if let (Some(network), Some(partition), Some((first, second))) = (network, config.partition, &sides) {
            if round == partition.from_update {
                network.partition(first, second);
            }
            if round == partition.heal_before_update {
                network.heal();
            }
        }
        let provider = &nodes[round % config.providers.clamp(1, config.nodes)];
        let update = PriceUpdate::new_signed(
            &provider.identity(),
            provider.network_id(),
            [price(asset, round)],
            config.message_ttl,
            mesh_types::chrono::Utc::now(),
        );
        published.push((update.timestamp, due));
        provider.publish(update).await?;
    }
    Ok(published)
}

/// Lets the last updates spread: waits until every node holds every published update, or
/// the configured settle time has passed.
async fn wait_for_arrivals(
    config: &SimConfig,
    arrivals: &Arrivals,
    published: &[(Timestamp, Instant)],
    asset: Asset,
) {
    let deadline = Instant::now() + config.settle;
    while Instant::now() < deadline {
        let done = {
            let arrivals = lock(arrivals);
            published
                .iter()
                .all(|(at, _)| arrivals.get(&(asset, *at)).is_some_and(|times| times.len() >= config.nodes))
        };
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How each published update spread, from when it was due.
fn spreads(
    config: &SimConfig,
    arrivals: &HashMap<(Asset, Timestamp), Vec<Instant>>,
    published: &[(Timestamp, Instant)],
    asset: Asset,
) -> Vec<Spread> {
    published
        .iter()
        .map(|(timestamp, sent)| {
            let mut times: Vec<Duration> = arrivals
                .get(&(asset, *timestamp))
                .map(|times| times.iter().map(|at| at.saturating_duration_since(*sent)).collect())
                .unwrap_or_default();
            times.sort();
            let reach = |fraction: f64| {
                let needed = ((config.nodes as f64) * fraction).ceil() as usize;
                needed.checked_sub(1).and_then(|index| times.get(index)).copied()
            };
            Spread {
                reached: times.len(),
                half: reach(0.5),
                p99: reach(0.99),
                all: reach(1.0),
                arrivals: times,
            }
        })
        .collect()
}

/// Whether every node serves identical prices.
async fn prices_agree(nodes: &[MeshPriceService]) -> bool {
    let mut views: Vec<Vec<CachedPriceData>> = Vec::with_capacity(nodes.len());
    for node in nodes {
        views.push(node.prices().get_all().await.map(|all| all.into_values().collect()).unwrap_or_default());
    }
    views.windows(2).all(|pair| pair[0] == pair[1])
}

/// With peers to find, lets the nodes move until no node's hop count has changed for five
/// seconds (at most a minute), and says how long it took.
async fn settle_peers(config: &SimConfig, nodes: &[MeshPriceService]) -> Duration {
    let started = Instant::now();
    if config.peering == Peering::Imposed {
        return Duration::ZERO;
    }
    let counts = || nodes.iter().map(|node| node.network().provider_hops()).collect::<Vec<_>>();
    let (mut last, mut since) = (counts(), Instant::now());
    while since.elapsed() < Duration::from_secs(5) && started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = counts();
        if now != last {
            (last, since) = (now, Instant::now());
        }
    }
    started.elapsed()
}

/// One simulated node: connected to exactly its `degree` neighbours, with the gossip rate
/// limit lifted (the simulator measures the mesh, not flood protection).
async fn start_node(
    config: &SimConfig,
    degree: usize,
    listen: SocketAddr,
    bootstrap: Vec<String>,
    transport: Option<Arc<dyn Transport>>,
) -> Result<MeshPriceService, ServiceError> {
    let mut manager = ManagerConfig::new(NetworkId::new("sim").expect("a valid network name"));
    manager.listen_addr = Some(listen);
    manager.bootstrap = bootstrap;
    manager.min_peers = degree;
    manager.max_peers = degree + config.spare_slots;
    manager.max_inbound = degree + config.spare_slots;
    manager.maintenance_interval = Duration::from_millis(100);
    manager.heartbeat_timeout = Duration::from_secs(60);
    match config.peering {
        Peering::Imposed => {
            manager.heartbeat_interval = Duration::from_secs(10);
            manager.peer_exchange = false;
            manager.prefer_close_peers = false;
        }
        // Real nodes' mechanisms on a faster clock: heartbeats carry the hop counts, exchanges
        // the candidates.
        Peering::Learning | Peering::PreferClose => {
            manager.heartbeat_interval = Duration::from_millis(200);
            manager.peer_exchange_interval = Duration::from_millis(500);
            manager.preference_interval = Duration::from_millis(500);
            manager.prefer_close_peers = config.peering == Peering::PreferClose;
        }
    }
    let mut service = ServiceConfig::new(manager);
    service.sync_interval = config.sync_interval;
    service.announce_interval = Duration::from_secs(3600);
    service.message_ttl = config.message_ttl;
    service.push = config.push;
    service.gossip.scoring.rate_per_second = f64::MAX;
    service.gossip.scoring.burst = f64::MAX;
    let builder = MeshPriceService::builder(Arc::new(NodeIdentity::generate()), service);
    match transport {
        Some(transport) => builder.transport(transport),
        None => builder,
    }
    .start()
    .await
}

/// The price of update `round`: `round + 1` hundredths, so each one is distinct and newer.
fn price(asset: Asset, round: usize) -> PriceData {
    PriceData {
        asset,
        price: Decimal::new(i64::try_from(round).unwrap_or(i64::MAX - 1) + 1, 2),
        blockchain: "Solana".into(),
        change_24h: Some(Decimal::new(52, 1)),
    }
}

/// CPU time this process has used (user + system), from `/proc/self/stat`; `None` where that
/// does not exist.
fn process_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The fields after the command name; utime and stime are the 12th and 13th of them, in
    // clock ticks of 1/100 s on Linux.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |index: usize| fields.get(index)?.parse::<u64>().ok();
    Some(Duration::from_millis((ticks(11)? + ticks(12)?) * 10))
}
