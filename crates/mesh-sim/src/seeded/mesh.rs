//! The simulated mesh of a seeded run: its nodes (each a whole [`MeshPriceService`] with the
//! real defaults on a scaled clock) and the faults in force on the [`MemoryNetwork`] — the cuts
//! of partitions and crashes, and degraded links over their base latency.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mesh_peer_store::MemoryPeerStore;
use mesh_price_cache::{MemoryPriceStore, PriceStore};
use mesh_service::{MeshPriceService, ServiceConfig, ServiceError};
use mesh_transport::{LinkFaults, ManagerConfig, MemoryNetwork};
use mesh_types::{NetworkId, NodeIdentity, TaskFailure};
use tokio::task::JoinHandle;

use crate::seeded::config::{PlantedBug, SeededConfig};
use crate::seeded::planted::OverwritingStore;
use crate::seeded::record::{Recorder, RecordingStore};
use crate::seeded::rng::SplitMix;
use crate::seeded::scenario::Scenario;

/// The address node `index` listens on and dials from.
pub(crate) fn address(index: usize) -> SocketAddr {
    let [_, _, high, low] = u32::try_from(index).unwrap_or(u32::MAX).to_be_bytes();
    SocketAddr::from(([10, 2, high, low], 9470))
}

/// The network every simulated node joins.
pub(crate) fn network_id() -> NetworkId {
    NetworkId::new("sim").expect("a valid network name")
}

/// One simulated node across its crashes and restarts.
#[derive(Debug)]
pub(crate) struct Node {
    index: usize,
    identity: Arc<NodeIdentity>,
    /// Its price store, kept across a restart from disk.
    store: Arc<RecordingStore>,
    /// Its peer store, kept across a restart from disk.
    peers: Arc<MemoryPeerStore>,
    /// The running service; `None` while crashed.
    pub(crate) service: Option<MeshPriceService>,
    /// The crashed service's shutdown, with its task failures.
    stopping: Option<JoinHandle<Vec<TaskFailure>>>,
}

impl Node {
    /// Node `index` with a key drawn from `keys`, not started.
    pub(crate) fn new(
        index: usize,
        keys: &mut SplitMix,
        config: &SeededConfig,
        recorder: &Arc<Recorder>,
    ) -> Self {
        let mut secret = [0u8; 32];
        for chunk in secret.chunks_mut(8) {
            chunk.copy_from_slice(&keys.next_u64().to_le_bytes());
        }
        let identity = Arc::new(NodeIdentity::from_secret_bytes(&secret));
        let store = Arc::new(RecordingStore::new(index, 0, fresh_store(index, config), Arc::clone(recorder)));
        Self {
            index,
            identity,
            store,
            peers: Arc::new(MemoryPeerStore::new()),
            service: None,
            stopping: None,
        }
    }

    /// Starts the node with `bootstrap` peers.
    pub(crate) async fn start(
        &mut self,
        config: &SeededConfig,
        network: &Arc<MemoryNetwork>,
        bootstrap: &[usize],
        degree: usize,
    ) -> Result<(), ServiceError> {
        let service = MeshPriceService::builder(
            Arc::clone(&self.identity),
            service_config(config, self, bootstrap, degree),
        )
        .transport(Arc::new(network.transport(address(self.index))))
        .prices(Arc::clone(&self.store) as Arc<dyn PriceStore>)
        .peer_store(Arc::clone(&self.peers) as _)
        .start()
        .await?;
        if self.index < config.providers {
            service.set_provider(true);
        }
        self.service = Some(service);
        Ok(())
    }

    /// Stops the node at once (its messages must already be cut off); the shutdown runs on.
    pub(crate) fn crash(&mut self) {
        if let Some(service) = self.service.take() {
            self.stopping = Some(tokio::spawn(async move {
                service.shutdown().await;
                service.supervisor().failures()
            }));
        }
    }

    /// Waits for the crashed service to be gone; its task failures.
    pub(crate) async fn stopped(&mut self) -> Vec<TaskFailure> {
        match self.stopping.take() {
            Some(stopping) => stopping.await.unwrap_or_default(),
            None => Vec::new(),
        }
    }

    /// Forgets everything the node stored: a new disk.
    pub(crate) fn wipe(&mut self, config: &SeededConfig, recorder: &Arc<Recorder>) {
        let life = self.store.life() + 1;
        let store =
            RecordingStore::new(self.index, life, fresh_store(self.index, config), Arc::clone(recorder));
        self.store = Arc::new(store);
        self.peers = Arc::new(MemoryPeerStore::new());
    }
}

/// An empty price store for node `index`: the planted bug's if it is planted there.
fn fresh_store(index: usize, config: &SeededConfig) -> Arc<dyn PriceStore> {
    match config.planted_bug {
        Some(PlantedBug::OverwritingStore { node }) if node == index => Arc::new(OverwritingStore::new()),
        _ => Arc::new(MemoryPriceStore::new()),
    }
}

/// A real node's configuration with its timers scaled (see [`SeededConfig::sync_interval`]):
/// its topology links as bootstrap peers and minimum, two spare slots, peer exchange and the
/// preference for peers close to the providers on, as in a real node.
fn service_config(config: &SeededConfig, node: &Node, bootstrap: &[usize], degree: usize) -> ServiceConfig {
    let mut manager = ManagerConfig::new(network_id());
    for timer in [
        &mut manager.heartbeat_interval,
        &mut manager.heartbeat_timeout,
        &mut manager.handshake_timeout,
        &mut manager.maintenance_interval,
        &mut manager.backoff_initial,
        &mut manager.backoff_max,
        &mut manager.peer_exchange_interval,
        &mut manager.preference_interval,
    ] {
        *timer = config.scaled(*timer);
    }
    // As `NodeSettings` sets it: peers lost to silence are retried once a sync interval.
    manager.reconnect_interval = config.sync_interval;
    manager.listen_addr = Some(address(node.index));
    manager.bootstrap = bootstrap.iter().map(|peer| address(*peer).to_string()).collect();
    // At least its topology links; the real default maximum (10) above that.
    manager.min_peers = degree;
    manager.max_peers = manager.max_peers.max(degree);
    manager.max_inbound = manager.max_inbound.max(degree);
    let mut service = ServiceConfig::new(manager);
    service.sync_interval = config.sync_interval;
    // Announcements keep their real interval (60 s), so in a run of a minute or so each node
    // announces once, at start. Every announcement floods the mesh and every node verifies it:
    // at the scaled interval they would cost more than everything else together, and the
    // invariants do not rest on them (peer exchange, at its scaled interval, spreads addresses).
    // Status checks feed dashboards, not the invariants: once a sync interval is plenty.
    service.status_interval = config.sync_interval;
    service
}

/// The faults in force on the network: cuts (partitions, crashed nodes) and degraded links.
#[derive(Debug)]
pub(crate) struct Faults {
    nodes: usize,
    /// Cut-off groups by the fault that made them.
    cuts: BTreeMap<usize, Vec<usize>>,
    /// Each link's own latency.
    base: BTreeMap<(usize, usize), Duration>,
    /// Degradations in force, by fault.
    degraded: BTreeMap<usize, Degradation>,
}

/// Links made slower and lossy.
#[derive(Debug)]
struct Degradation {
    links: Vec<(usize, usize)>,
    latency: Duration,
    loss: f64,
}

impl Faults {
    /// No faults, and every link at its base latency.
    pub(crate) fn new(scenario: &Scenario, network: &MemoryNetwork) -> Self {
        let base: BTreeMap<(usize, usize), Duration> =
            scenario.edges.iter().copied().zip(scenario.latencies.iter().copied()).collect();
        let faults = Self { nodes: scenario.nodes, cuts: BTreeMap::new(), base, degraded: BTreeMap::new() };
        let links: Vec<(usize, usize)> = faults.base.keys().copied().collect();
        faults.set_links(network, &links);
        faults
    }

    /// Cuts `side` off from every other node (fault `id`).
    pub(crate) fn cut(&mut self, network: &MemoryNetwork, id: usize, side: Vec<usize>) {
        self.cuts.insert(id, side);
        self.apply_cuts(network);
    }

    /// Ends cut `id`.
    pub(crate) fn uncut(&mut self, network: &MemoryNetwork, id: usize) {
        self.cuts.remove(&id);
        self.apply_cuts(network);
    }

    fn apply_cuts(&self, network: &MemoryNetwork) {
        // Nothing runs between the heal and the new partitions: the runtime has one thread
        // and this does not await.
        network.heal();
        for side in self.cuts.values() {
            let inside: HashSet<usize> = side.iter().copied().collect();
            let (cut, rest): (Vec<usize>, Vec<usize>) =
                (0..self.nodes).partition(|node| inside.contains(node));
            let addresses = |nodes: Vec<usize>| nodes.into_iter().map(address).collect::<Vec<_>>();
            network.partition(&addresses(cut), &addresses(rest));
        }
    }

    /// Degrades `links` (fault `id`).
    pub(crate) fn degrade(
        &mut self,
        network: &MemoryNetwork,
        id: usize,
        links: Vec<(usize, usize)>,
        latency: Duration,
        loss: f64,
    ) {
        self.degraded.insert(id, Degradation { links: links.clone(), latency, loss });
        self.set_links(network, &links);
    }

    /// Ends degradation `id`.
    pub(crate) fn restore(&mut self, network: &MemoryNetwork, id: usize) {
        if let Some(degradation) = self.degraded.remove(&id) {
            self.set_links(network, &degradation.links);
        }
    }

    /// Sets each of `links` to its base latency, made slower and lossier by every
    /// degradation in force on it.
    fn set_links(&self, network: &MemoryNetwork, links: &[(usize, usize)]) {
        for link in links {
            let mut faults = LinkFaults {
                latency: self.base.get(link).copied().unwrap_or_default(),
                drop_probability: 0.0,
            };
            let mut kept = 1.0;
            for degradation in self.degraded.values().filter(|degradation| degradation.links.contains(link)) {
                faults.latency = faults.latency.max(degradation.latency);
                kept *= 1.0 - degradation.loss;
            }
            faults.drop_probability = 1.0 - kept;
            network.set_link(address(link.0), address(link.1), faults);
        }
    }
}
