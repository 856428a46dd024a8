//! [`Scenario`]: everything a seed stands for — the topology, each link's latency, the timed
//! faults and the publication schedule — drawn from the seed before anything runs, so that it
//! can be printed, and replayed by running the same seed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use crate::seeded::config::SeededConfig;
use crate::seeded::rng::{Purpose, SplitMix, derive, stream};
use crate::topology::{self, Topology};

/// What one seed simulates.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Nodes in the mesh.
    pub nodes: usize,
    /// Nodes `0..providers` publish.
    pub providers: usize,
    /// Who is connected to whom: a ring plus random chords up to the configured degree.
    pub edges: Vec<(usize, usize)>,
    /// The latency of each of `edges` when no fault degrades it.
    pub latencies: Vec<Duration>,
    /// The faults, by start time; each ends (heals, restarts) within the active period.
    pub faults: Vec<Fault>,
    /// The updates the providers publish, by time.
    pub publications: Vec<Publication>,
    /// How long after a fault ends every live node must have caught up:
    /// [`SeededConfig::convergence_intervals`] sync intervals, plus three round trips of the
    /// slowest link (a digest, its request and the answer).
    pub settle: Duration,
    /// When publications stop and the last fault has ended.
    pub active: Duration,
}

/// A fault, from `at` until `until` (times from the start of the active period).
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// When it begins.
    pub at: Duration,
    /// When it ends: the partition heals, the node restarts, the links recover.
    pub until: Duration,
    /// What it is.
    pub kind: FaultKind,
}

/// What goes wrong.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultKind {
    /// The node's process dies: nothing it was sending arrives, its peers see the connections
    /// close. It restarts at the fault's end with the same identity.
    Crash {
        /// The node.
        node: usize,
        /// What it restarts with.
        restart: Restart,
    },
    /// These nodes are cut off from all the others: messages across are lost, dials across
    /// refused, connections stay open and silent.
    Partition {
        /// One side (the other is everyone else).
        side: Vec<usize>,
    },
    /// These links get slower and lossy.
    Degrade {
        /// The links, as in [`Scenario::edges`].
        links: Vec<(usize, usize)>,
        /// Their latency meanwhile (never below their own).
        latency: Duration,
        /// The chance that each message on them is lost.
        loss: f64,
    },
}

/// What a crashed node restarts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// Its price and peer stores as it left them, as a node restarting from its disk or
    /// database; the seen-message cache and the signed updates behind its prices are gone,
    /// as they live in memory.
    FromDisk,
    /// Empty stores: a node restarting on a new disk.
    Wiped,
}

/// One update a provider publishes. Some are drawn a few milliseconds after another
/// provider's update of the same assets, so that the two race through the mesh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    /// When (from the start of the active period; distinct for every publication).
    pub at: Duration,
    /// The provider.
    pub provider: usize,
    /// The assets it carries, as indexes into the simulated assets.
    pub assets: Vec<usize>,
}

/// A moment at which every live node must hold, for every asset, a price at least as new as
/// the newest one the mesh had accepted by `after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// The fault's end (or the end of the active period) it follows.
    pub after: Duration,
    /// When it is checked: `after` plus [`Scenario::settle`].
    pub at: Duration,
}

impl Scenario {
    /// The scenario of `config` (its seed and sizes).
    pub fn generate(config: &SeededConfig) -> Self {
        let nodes = config.nodes;
        let edges = topology::edges(
            Topology::RandomRegular { degree: config.degree },
            nodes,
            config.providers,
            derive(config.seed, Purpose::Topology),
        );
        let mut latency = stream(config.seed, Purpose::Latency);
        let latencies: Vec<Duration> = edges
            .iter()
            .map(|_| latency.duration(config.scaled(BASE_LATENCY.0), config.scaled(BASE_LATENCY.1)))
            .collect();
        let slowest = latencies.iter().copied().max().unwrap_or_default();
        let faults = faults(config, &edges, &mut stream(config.seed, Purpose::Faults));
        let publications = publications(config, &mut stream(config.seed, Purpose::Publications));
        Self {
            nodes,
            providers: config.providers,
            edges,
            latencies,
            faults,
            publications,
            settle: config.sync_interval * config.convergence_intervals + slowest * 6,
            active: config.active,
        }
    }

    /// Each node's neighbours in the topology.
    pub fn neighbours(&self) -> Vec<Vec<usize>> {
        let mut neighbours = vec![Vec::new(); self.nodes];
        for &(a, b) in &self.edges {
            neighbours[a].push(b);
            neighbours[b].push(a);
        }
        neighbours
    }

    /// The moments the invariants are checked: after each fault that ends with no fault in
    /// force for [`Scenario::settle`] afterwards, and after the active period (the last).
    pub fn checkpoints(&self) -> Vec<Checkpoint> {
        let quiet = |after: Duration| {
            let until = after + self.settle;
            !self.faults.iter().any(|fault| fault.at < until && fault.until > after)
        };
        let ends: BTreeSet<Duration> = self.faults.iter().map(|fault| fault.until).collect();
        let last = ends.last().copied().unwrap_or_default().max(self.active);
        ends.into_iter()
            .filter(|after| *after < last && quiet(*after))
            .chain([last])
            .map(|after| Checkpoint { after, at: after + self.settle })
            .collect()
    }

    /// When the run ends: the last checkpoint.
    pub fn end(&self) -> Duration {
        self.checkpoints().last().map_or(self.settle, |checkpoint| checkpoint.at)
    }
}

/// The range of a link's latency on a real network, scaled like the timers.
const BASE_LATENCY: (Duration, Duration) = (Duration::from_millis(1), Duration::from_millis(50));
/// The range of a degraded link's latency on a real network, scaled like the timers.
const DEGRADED_LATENCY: (Duration, Duration) = (Duration::from_millis(20), Duration::from_millis(500));

fn faults(config: &SeededConfig, edges: &[(usize, usize)], rng: &mut SplitMix) -> Vec<Fault> {
    let sync = config.sync_interval;
    let mut faults: Vec<Fault> = Vec::with_capacity(config.faults);
    for _ in 0..config.faults {
        let roll = rng.unit();
        let (shortest, longest) = match roll {
            r if r < 0.4 => (sync / 2, sync * 4),
            r if r < 0.75 => ((sync / 2).min(config.longest_partition / 2), config.longest_partition),
            _ => (sync, sync * 6),
        };
        let length = rng.duration(shortest, longest).min(config.active);
        let at = rng.duration(Duration::ZERO, config.active - length);
        let until = at + length;
        let kind = if roll < 0.4 {
            // A node already down then is not crashed again.
            let busy = |node: usize| {
                faults.iter().any(|fault| {
                    matches!(fault.kind, FaultKind::Crash { node: crashed, .. } if crashed == node)
                        && fault.at <= until
                        && fault.until >= at
                })
            };
            let Some(node) = (0..20).map(|_| rng.below(config.nodes)).find(|node| !busy(*node)) else {
                continue;
            };
            let restart = if rng.chance(0.5) { Restart::FromDisk } else { Restart::Wiped };
            FaultKind::Crash { node, restart }
        } else if roll < 0.75 {
            let mut order: Vec<usize> = (0..config.nodes).collect();
            rng.shuffle(&mut order);
            let size = rng.range(1, (config.nodes / 2) as u64) as usize;
            let mut side = order[..size].to_vec();
            side.sort_unstable();
            FaultKind::Partition { side }
        } else {
            let mut links: Vec<(usize, usize)> = edges.iter().copied().filter(|_| rng.chance(0.3)).collect();
            if links.is_empty() {
                links.push(edges[rng.below(edges.len())]);
            }
            let latency = rng.duration(config.scaled(DEGRADED_LATENCY.0), config.scaled(DEGRADED_LATENCY.1));
            let loss = (rng.unit() * 30.0).round() / 100.0;
            FaultKind::Degrade { links, latency, loss }
        };
        faults.push(Fault { at, until, kind });
    }
    faults.sort_by_key(|fault| (fault.at, fault.until));
    faults
}

/// How soon after another provider's update a racing one is published: both providers
/// fetched in the same window, and the two updates of the same assets cross the mesh together.
const RACE: (u64, u64) = (1, 4);

fn publications(config: &SeededConfig, rng: &mut SplitMix) -> Vec<Publication> {
    // Whole, distinct milliseconds, so no two publications share a time.
    let slots = u64::try_from(config.active.as_millis()).unwrap_or(u64::MAX).max(1);
    let count = config.publications.min(usize::try_from(slots).unwrap_or(usize::MAX));
    let mut made: BTreeMap<u64, (usize, Vec<usize>)> = BTreeMap::new();
    while made.len() < count {
        let earlier = (!made.is_empty() && config.providers > 1 && rng.chance(0.4))
            .then(|| {
                made.iter()
                    .nth(rng.below(made.len()))
                    .map(|(at, (provider, assets))| (*at, *provider, assets.clone()))
            })
            .flatten();
        let (at, provider, assets) = match earlier {
            // A race: another provider publishes the same assets a few milliseconds later.
            Some((at, provider, assets)) => {
                let other = (provider + 1 + rng.below(config.providers - 1)) % config.providers;
                (at + rng.range(RACE.0, RACE.1), other, assets)
            }
            None => {
                let mut assets: Vec<usize> = (0..config.assets).filter(|_| rng.chance(0.5)).collect();
                if assets.is_empty() {
                    assets.push(rng.below(config.assets));
                }
                (rng.range(0, slots - 1), rng.below(config.providers), assets)
            }
        };
        if at < slots {
            made.entry(at).or_insert((provider, assets));
        }
    }
    made.into_iter()
        .map(|(at, (provider, assets))| Publication { at: Duration::from_millis(at), provider, assets })
        .collect()
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (fastest, slowest) = (
            self.latencies.iter().min().copied().unwrap_or_default(),
            self.latencies.iter().max().copied().unwrap_or_default(),
        );
        writeln!(
            f,
            "{} nodes ({} providers), {} links of {fastest:?} to {slowest:?}, {} publications over {:?}",
            self.nodes,
            self.providers,
            self.edges.len(),
            self.publications.len(),
            self.active,
        )?;
        if self.faults.is_empty() {
            writeln!(f, "no faults")?;
        }
        for fault in &self.faults {
            write!(f, "  {:>9.3}s to {:>9.3}s  ", fault.at.as_secs_f64(), fault.until.as_secs_f64())?;
            match &fault.kind {
                FaultKind::Crash { node, restart } => {
                    let restart = match restart {
                        Restart::FromDisk => "from its disk",
                        Restart::Wiped => "wiped",
                    };
                    writeln!(f, "node {node} crashes, restarts {restart}")?;
                }
                FaultKind::Partition { side } => writeln!(f, "nodes {side:?} cut off from the rest")?,
                FaultKind::Degrade { links, latency, loss } => writeln!(
                    f,
                    "{} links at {latency:?} and {:.0} % loss: {links:?}",
                    links.len(),
                    loss * 100.0
                )?,
            }
        }
        let checkpoints: Vec<String> = self
            .checkpoints()
            .iter()
            .map(|checkpoint| format!("{:.3}s", checkpoint.at.as_secs_f64()))
            .collect();
        write!(f, "checked at {} (settle {:?})", checkpoints.join(", "), self.settle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_always_draws_the_same_scenario_and_others_differ() {
        let config = SeededConfig::new(11);
        let scenario = Scenario::generate(&config);
        assert_eq!(scenario, Scenario::generate(&config));
        assert_ne!(scenario, Scenario::generate(&SeededConfig::new(12)));
        assert!(topology::is_connected(scenario.nodes, &scenario.edges));
        assert_eq!(scenario.publications.len(), config.publications);
        assert!(scenario.publications.windows(2).all(|pair| pair[0].at < pair[1].at));
        // More faults leave the topology and the publications as they were.
        let more = Scenario::generate(&SeededConfig { faults: 9, ..config.clone() });
        assert_eq!((&more.edges, &more.publications), (&scenario.edges, &scenario.publications));
    }

    #[test]
    fn faults_end_in_the_active_period_and_checkpoints_fall_in_quiet_times() {
        for seed in 0..300 {
            let config = SeededConfig::new(seed);
            let scenario = Scenario::generate(&config);
            let checkpoints = scenario.checkpoints();
            assert!(!checkpoints.is_empty());
            for fault in &scenario.faults {
                assert!(fault.at < fault.until && fault.until <= config.active, "{seed}: {fault:?}");
                for checkpoint in &checkpoints {
                    let overlaps = fault.at < checkpoint.at && fault.until > checkpoint.after;
                    assert!(!overlaps, "{seed}: {checkpoint:?} overlaps {fault:?}");
                }
            }
            let last = checkpoints.last().unwrap();
            assert!(last.after >= config.active);
            assert_eq!(scenario.end(), last.at);
            // No node is crashed twice at once.
            let crashes: Vec<(usize, Duration, Duration)> = scenario
                .faults
                .iter()
                .filter_map(|fault| match fault.kind {
                    FaultKind::Crash { node, .. } => Some((node, fault.at, fault.until)),
                    _ => None,
                })
                .collect();
            for (i, a) in crashes.iter().enumerate() {
                for b in &crashes[i + 1..] {
                    assert!(a.0 != b.0 || a.2 < b.1 || b.2 < a.1, "{seed}: {a:?} and {b:?}");
                }
            }
        }
    }
}
