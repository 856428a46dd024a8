//! [`run_seeded`]: one seeded simulation from start to verdict — the mesh formed on a paused
//! clock, the scenario's faults and publications applied at their times, what every node held
//! taken at each checkpoint, every node stopped, and the history checked.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use mesh_transport::MemoryNetwork;
use mesh_types::rust_decimal::Decimal;
use mesh_types::{
    Asset, MessageId, NodeId, PriceData, PriceUpdate, Signature, SignedMessage as _, TaskFailure, Timestamp,
};
use tokio::time::Instant;

use crate::SimError;
use crate::seeded::check::{self, Evidence, Snapshot, Violation};
use crate::seeded::clock::{NodeClock, Session};
use crate::seeded::config::{ASSETS, SeededConfig};
use crate::seeded::mesh::{Faults, Node, network_id};
use crate::seeded::record::Recorder;
use crate::seeded::rng::{Purpose, derive, mix, stream};
use crate::seeded::scenario::{FaultKind, Restart, Scenario};

/// The outcome of one seeded simulation.
#[derive(Debug, Clone)]
pub struct SeededReport {
    /// What ran.
    pub config: SeededConfig,
    /// What the seed stood for.
    pub scenario: Scenario,
    /// Publications made.
    pub published: usize,
    /// Publications skipped because their provider was down.
    pub skipped: usize,
    /// Messages the network delivered.
    pub delivered: u64,
    /// Messages it lost (to loss, partitions and crashes).
    pub dropped: u64,
    /// Simulated time, from the first node's start to the last checkpoint.
    pub simulated: Duration,
    /// Real time the run took.
    pub wall: Duration,
    /// Every broken invariant; empty when the run passed.
    pub violations: Vec<Violation>,
}

impl SeededReport {
    /// Whether every invariant held.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// The command that replays this run.
    pub fn replay_command(&self) -> String {
        self.config.replay_command()
    }
}

/// Most violations a report prints (all are in [`SeededReport::violations`]).
const PRINTED_VIOLATIONS: usize = 20;

impl fmt::Display for SeededReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.passed() { "passed" } else { "FAILED" };
        writeln!(
            f,
            "seed {} {verdict}: {} published ({} skipped, provider down), {} messages delivered, {} lost, \
             {:.1}s simulated in {:.1}s",
            self.config.seed,
            self.published,
            self.skipped,
            self.delivered,
            self.dropped,
            self.simulated.as_secs_f64(),
            self.wall.as_secs_f64(),
        )?;
        for violation in self.violations.iter().take(PRINTED_VIOLATIONS) {
            writeln!(f, "  {violation}")?;
        }
        if self.violations.len() > PRINTED_VIOLATIONS {
            writeln!(f, "  … and {} more", self.violations.len() - PRINTED_VIOLATIONS)?;
        }
        if !self.passed() {
            writeln!(f, "replay seed {} with: {}", self.config.seed, self.replay_command())?;
        }
        Ok(())
    }
}

/// Runs the seeded simulation `config` describes, on a runtime of its own whose clock is
/// paused, and checks the invariants (see [`crate::seeded`]). Runs in one process take turns:
/// the nodes' clock is the process's.
///
/// # Errors
/// When the configuration cannot work, the runtime cannot be built, a node cannot start or
/// the mesh does not form; broken invariants are not errors but the report's violations.
///
/// # Panics
/// Inside a tokio runtime (it builds its own).
pub fn run_seeded(config: &SeededConfig) -> Result<SeededReport, SimError> {
    config.validate().map_err(SimError::InvalidConfig)?;
    let scenario = Scenario::generate(config);
    let wall = std::time::Instant::now();
    let session = Session::begin();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .map_err(SimError::Runtime)?;
    let run = runtime.block_on(simulate(config, &scenario));
    drop(runtime);
    let panics = session.panics();
    drop(session);
    let run = run?;
    let violations = check::check(&Evidence {
        scenario: &scenario,
        assets: config.assets,
        stored: &run.stored,
        published: &run.published,
        snapshots: &run.snapshots,
        failures: &run.failures,
        panics,
    });
    Ok(SeededReport {
        config: config.clone(),
        published: run.published.iter().flatten().count(),
        skipped: run.published.iter().filter(|made| made.is_none()).count(),
        scenario,
        delivered: run.delivered,
        dropped: run.dropped,
        simulated: run.simulated,
        wall: wall.elapsed(),
        violations,
    })
}

/// What a run recorded.
#[derive(Debug)]
struct Run {
    stored: Vec<crate::seeded::record::Stored>,
    published: Vec<Option<(Timestamp, NodeId)>>,
    snapshots: Vec<Snapshot>,
    failures: Vec<(usize, TaskFailure)>,
    delivered: u64,
    dropped: u64,
    simulated: Duration,
}

/// One thing the run does at a time in the active period, in this order when times tie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    /// A fault ends.
    End(usize),
    /// A provider publishes.
    Publish(usize),
    /// A fault begins.
    Begin(usize),
    /// The invariants' snapshot.
    Check(usize),
}

fn timeline(scenario: &Scenario) -> Vec<(Duration, Step)> {
    let mut steps: Vec<(Duration, Step)> = Vec::new();
    for (id, fault) in scenario.faults.iter().enumerate() {
        steps.push((fault.at, Step::Begin(id)));
        steps.push((fault.until, Step::End(id)));
    }
    steps.extend(scenario.publications.iter().enumerate().map(|(id, p)| (p.at, Step::Publish(id))));
    steps.extend(scenario.checkpoints().iter().enumerate().map(|(id, c)| (c.at, Step::Check(id))));
    steps.sort();
    steps
}

async fn simulate(config: &SeededConfig, scenario: &Scenario) -> Result<Run, SimError> {
    let began = Instant::now();
    let (clock, ticker) = NodeClock::start();
    let network = MemoryNetwork::new();
    network.seed_losses(derive(config.seed, Purpose::Losses));
    let mut faults = Faults::new(scenario, &network);
    let recorder = Recorder::new();
    let neighbours = scenario.neighbours();
    let mut keys = stream(config.seed, Purpose::Identities);
    let mut nodes: Vec<Node> =
        (0..scenario.nodes).map(|index| Node::new(index, &mut keys, config, &recorder)).collect();
    // Each node dials its lower-numbered neighbours, which are listening by then.
    for (index, node) in nodes.iter_mut().enumerate() {
        let lower: Vec<usize> = neighbours[index].iter().copied().filter(|peer| *peer < index).collect();
        node.start(config, &network, &lower, neighbours[index].len())
            .await
            .map_err(|source| SimError::Start { node: index, source })?;
    }
    wait_formed(config, &nodes, &neighbours).await?;

    recorder.start_clock();
    let start = Instant::now();
    let checkpoints = scenario.checkpoints();
    let mut published = Vec::with_capacity(scenario.publications.len());
    let mut snapshots = Vec::with_capacity(checkpoints.len());
    let mut failures: Vec<(usize, TaskFailure)> = Vec::new();
    for (at, step) in timeline(scenario) {
        tokio::time::sleep_until(start + at).await;
        match step {
            Step::Begin(id) => match &scenario.faults[id].kind {
                FaultKind::Crash { node, .. } => {
                    // Cut first, so nothing the node was sending arrives.
                    faults.cut(&network, id, vec![*node]);
                    nodes[*node].crash();
                }
                FaultKind::Partition { side } => faults.cut(&network, id, side.clone()),
                FaultKind::Degrade { links, latency, loss } => {
                    faults.degrade(&network, id, links.clone(), *latency, *loss);
                }
            },
            Step::End(id) => match &scenario.faults[id].kind {
                FaultKind::Crash { node, restart } => {
                    let node = *node;
                    failures.extend(nodes[node].stopped().await.into_iter().map(|failure| (node, failure)));
                    faults.uncut(&network, id);
                    if *restart == Restart::Wiped {
                        nodes[node].wipe(config, &recorder);
                    }
                    // A restarted node dials all its neighbours, as an operator lists them.
                    nodes[node]
                        .start(config, &network, &neighbours[node], neighbours[node].len())
                        .await
                        .map_err(|source| SimError::Start { node, source })?;
                }
                FaultKind::Partition { .. } => faults.uncut(&network, id),
                FaultKind::Degrade { .. } => faults.restore(&network, id),
            },
            Step::Publish(id) => published.push(publish(config, scenario, &nodes, &clock, id).await?),
            Step::Check(id) => {
                let mut holdings = Vec::with_capacity(nodes.len());
                for node in &nodes {
                    holdings.push(match &node.service {
                        Some(service) => Some(service.prices().get_all().await.unwrap_or_default()),
                        None => None,
                    });
                }
                snapshots.push(Snapshot { checkpoint: checkpoints[id], holdings });
            }
        }
    }
    let simulated = began.elapsed();
    let (delivered, dropped) = (network.delivered(), network.dropped());
    for (index, node) in nodes.iter_mut().enumerate() {
        failures.extend(node.stopped().await.into_iter().map(|failure| (index, failure)));
        if let Some(service) = node.service.take() {
            service.shutdown().await;
            failures.extend(service.supervisor().failures().into_iter().map(|failure| (index, failure)));
        }
    }
    ticker.abort();
    Ok(Run { stored: recorder.take(), published, snapshots, failures, delivered, dropped, simulated })
}

/// Waits until every node holds at least its topology links' worth of peers (its minimum).
async fn wait_formed(
    config: &SeededConfig,
    nodes: &[Node],
    neighbours: &[Vec<usize>],
) -> Result<(), SimError> {
    let deadline = config.sync_interval * 10;
    let started = Instant::now();
    let expected: usize = neighbours.iter().map(Vec::len).sum();
    loop {
        let up: usize = nodes
            .iter()
            .zip(neighbours)
            .map(|(node, links)| {
                node.service.as_ref().map_or(0, |service| service.network().peer_count().min(links.len()))
            })
            .sum();
        if up == expected {
            return Ok(());
        }
        if started.elapsed() > deadline {
            return Err(SimError::NotFormed {
                connected: up / 2,
                expected: expected / 2,
                waited: started.elapsed(),
            });
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Publication `id` of the scenario: signed by its provider at the node clock's time, with a
/// message id drawn from the seed. `None` when the provider is down.
async fn publish(
    config: &SeededConfig,
    scenario: &Scenario,
    nodes: &[Node],
    clock: &Arc<NodeClock>,
    id: usize,
) -> Result<Option<(Timestamp, NodeId)>, SimError> {
    let publication = &scenario.publications[id];
    let Some(service) = nodes[publication.provider].service.as_ref() else { return Ok(None) };
    let prices = publication.assets.iter().map(|asset| PriceData {
        asset: Asset::new(ASSETS[*asset]).expect("a valid symbol"),
        // Each publication's price is its own: one more hundredth each time.
        price: Decimal::new(i64::try_from(id).unwrap_or(i64::MAX - 1) + 1, 2),
        blockchain: "Solana".into(),
        change_24h: None,
    });
    let identity = service.identity();
    let ids = derive(config.seed, Purpose::Messages);
    let id_bits = (mix(ids, id as u64 * 2), mix(ids, id as u64 * 2 + 1));
    let mut update = PriceUpdate {
        message_id: MessageId::from_uuid(uuid::Uuid::from_u64_pair(id_bits.0, id_bits.1)),
        source_node_id: identity.node_id(),
        source_key: identity.public_key(),
        timestamp: clock.now(),
        prices: prices.map(|price| (price.asset, price)).collect(),
        ttl: 10,
        hop_count: 0,
        signature: Signature::EMPTY,
    };
    update.signature = identity.sign(&update.signing_bytes(&network_id()));
    let made = (update.timestamp, update.source_node_id);
    service.publish(update).await?;
    Ok(Some(made))
}
