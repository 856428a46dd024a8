//! The checker of a seeded run: the chaos suite's invariants over the history the run
//! recorded.
//!
//! - **Newest wins**: within one life of a node's store (a wiped restart begins a new one; a
//!   restart from disk does not), the price it holds for an asset never goes back to an older
//!   one in the newest-wins order ([`CachedPriceData::newer_than`]), nor away.
//! - **No accepted update lost, convergence within two sync intervals**: at each
//!   [`Checkpoint`] — [`Scenario::settle`] after a fault ended with no fault in force since,
//!   and after the active period — every live node holds, for every asset, a price at least
//!   as new as the newest one the mesh had accepted when the fault ended. "Accepted" means
//!   offered to the store of some node (its provider's included) that still had that store
//!   then: an update its provider alone held before a wiped restart is gone from the world,
//!   not lost by the mesh.
//! - **No panic**: no panic on the run's thread, no supervised task failed.
//! - **Memory bounded**: no node holds more prices than there are assets (the gossip and
//!   connection structures are bounded by construction and not measured here).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use mesh_types::{Asset, CachedPriceData, NodeId, PriceMap, Timestamp};

use crate::seeded::record::Stored;
use crate::seeded::scenario::{Checkpoint, FaultKind, Restart, Scenario};

/// A price as the report names it: the publication it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    /// Its index in [`Scenario::publications`], when it is one of them.
    pub publication: Option<usize>,
    /// When it was signed (the simulated wall clock).
    pub timestamp: Timestamp,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.publication {
            Some(index) => write!(f, "publication #{index}"),
            None => write!(f, "a price of {}", self.timestamp),
        }
    }
}

/// One broken invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Violation {
    /// A node's store went back from a newer price to an older one (or dropped it).
    WentBack {
        /// The node.
        node: usize,
        /// The asset.
        asset: Asset,
        /// When (from the start of the active period).
        at: Duration,
        /// What it held before.
        from: Version,
        /// What it held after: older, or nothing.
        to: Option<Version>,
    },
    /// At a checkpoint a live node lacked a price the mesh had accepted.
    Behind {
        /// The node.
        node: usize,
        /// The asset.
        asset: Asset,
        /// The checkpoint.
        checkpoint: Checkpoint,
        /// The newest price accepted by `checkpoint.after`.
        expected: Version,
        /// What the node held: older, or nothing.
        held: Option<Version>,
    },
    /// A node held more prices than there are assets.
    Unbounded {
        /// The node.
        node: usize,
        /// Prices it held.
        held: usize,
        /// Assets published.
        limit: usize,
        /// When.
        at: Duration,
    },
    /// A supervised task of a node failed.
    TaskFailed {
        /// The node.
        node: usize,
        /// The task.
        task: &'static str,
        /// How.
        reason: String,
    },
    /// Code on the run's thread panicked.
    Panicked {
        /// How many times.
        count: u64,
    },
}

impl Violation {
    /// The invariant broken: `"newest-wins"`, `"no-loss"`, `"bounded"` or `"no-panic"`.
    pub const fn invariant(&self) -> &'static str {
        match self {
            Self::WentBack { .. } => "newest-wins",
            Self::Behind { .. } => "no-loss",
            Self::Unbounded { .. } => "bounded",
            Self::TaskFailed { .. } | Self::Panicked { .. } => "no-panic",
        }
    }

    /// The node it concerns, if one.
    pub const fn node(&self) -> Option<usize> {
        match self {
            Self::WentBack { node, .. }
            | Self::Behind { node, .. }
            | Self::Unbounded { node, .. }
            | Self::TaskFailed { node, .. } => Some(*node),
            Self::Panicked { .. } => None,
        }
    }
}

fn seconds(at: Duration) -> String {
    format!("{:.3}s", at.as_secs_f64())
}

fn held(version: Option<&Version>) -> String {
    version.map_or_else(|| "nothing".to_owned(), ToString::to_string)
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.invariant())?;
        match self {
            Self::WentBack { node, asset, at, from, to } => write!(
                f,
                "node {node} went back on {asset} at {}: it held {from}, then {}",
                seconds(*at),
                held(to.as_ref())
            ),
            Self::Behind { node, asset, checkpoint, expected, held: holds } => write!(
                f,
                "at {} ({} after the fault that ended at {}) node {node} held {} of {asset}, \
                 not {expected} or newer",
                seconds(checkpoint.at),
                seconds(checkpoint.at - checkpoint.after),
                seconds(checkpoint.after),
                held(holds.as_ref())
            ),
            Self::Unbounded { node, held, limit, at } => {
                write!(f, "node {node} held {held} prices at {}, more than the {limit} assets", seconds(*at))
            }
            Self::TaskFailed { node, task, reason } => {
                write!(f, "node {node}'s task {task} failed: {reason}")
            }
            Self::Panicked { count } => write!(f, "{count} panic(s) on the simulation's thread"),
        }
    }
}

/// What every live node held at a checkpoint (`None` for a node that was down).
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub(crate) checkpoint: Checkpoint,
    pub(crate) holdings: Vec<Option<PriceMap>>,
}

/// Everything a run recorded, for [`check`].
#[derive(Debug)]
pub(crate) struct Evidence<'a> {
    pub(crate) scenario: &'a Scenario,
    pub(crate) assets: usize,
    pub(crate) stored: &'a [Stored],
    /// The signing time and provider of each publication made (`None`: its provider was down).
    pub(crate) published: &'a [Option<(Timestamp, NodeId)>],
    pub(crate) snapshots: &'a [Snapshot],
    pub(crate) failures: &'a [(usize, mesh_types::TaskFailure)],
    pub(crate) panics: u64,
}

/// Every violation in the evidence, in the order the checks find them.
pub(crate) fn check(evidence: &Evidence<'_>) -> Vec<Violation> {
    let names: HashMap<(Timestamp, NodeId), usize> = evidence
        .published
        .iter()
        .enumerate()
        .filter_map(|(index, made)| made.map(|key| (key, index)))
        .collect();
    let version = |price: &CachedPriceData| Version {
        publication: names.get(&(price.timestamp, price.source_node_id)).copied(),
        timestamp: price.timestamp,
    };
    let mut violations = newest_wins(evidence.stored, &version);
    violations.extend(no_loss(evidence, &version));
    for snapshot in evidence.snapshots {
        for (node, holding) in snapshot.holdings.iter().enumerate() {
            let count = holding.as_ref().map_or(0, BTreeMap::len);
            if count > evidence.assets {
                let at = snapshot.checkpoint.at;
                violations.push(Violation::Unbounded { node, held: count, limit: evidence.assets, at });
            }
        }
    }
    violations.extend(evidence.failures.iter().map(|(node, failure)| Violation::TaskFailed {
        node: *node,
        task: failure.task,
        reason: failure.reason.clone(),
    }));
    if evidence.panics > 0 {
        violations.push(Violation::Panicked { count: evidence.panics });
    }
    violations
}

fn newest_wins(stored: &[Stored], version: &impl Fn(&CachedPriceData) -> Version) -> Vec<Violation> {
    let mut held: HashMap<(usize, u32, Asset), &CachedPriceData> = HashMap::new();
    let mut violations = Vec::new();
    for record in stored {
        let slot = (record.node, record.life, record.offered.asset);
        let before = held.get(&slot).copied();
        if let Some(before) = before {
            let went_back = record.held.as_ref().is_none_or(|now| before.newer_than(now));
            if went_back {
                violations.push(Violation::WentBack {
                    node: record.node,
                    asset: record.offered.asset,
                    at: record.at,
                    from: version(before),
                    to: record.held.as_ref().map(version),
                });
            }
        }
        match &record.held {
            Some(now) => held.insert(slot, now),
            None => held.remove(&slot),
        };
    }
    violations
}

/// The store life of each node at time `at`: how many wiped restarts it had begun by then
/// (its old store is gone from the moment it crashes).
fn life_at(scenario: &Scenario, node: usize, at: Duration) -> u32 {
    let wipes = scenario.faults.iter().filter(|fault| {
        fault.at <= at
            && matches!(fault.kind, FaultKind::Crash { node: n, restart: Restart::Wiped } if n == node)
    });
    u32::try_from(wipes.count()).unwrap_or(u32::MAX)
}

fn no_loss(evidence: &Evidence<'_>, version: &impl Fn(&CachedPriceData) -> Version) -> Vec<Violation> {
    let mut violations = Vec::new();
    for snapshot in evidence.snapshots {
        let checkpoint = snapshot.checkpoint;
        // The newest price of each asset accepted by a store that still existed at `after`.
        let mut expected: BTreeMap<Asset, &CachedPriceData> = BTreeMap::new();
        for record in evidence.stored.iter().take_while(|record| record.at <= checkpoint.after) {
            if record.life != life_at(evidence.scenario, record.node, checkpoint.after) {
                continue;
            }
            let offered = &record.offered;
            let newest = expected.entry(offered.asset).or_insert(offered);
            if offered.newer_than(newest) {
                *newest = offered;
            }
        }
        for (node, holding) in snapshot.holdings.iter().enumerate() {
            let Some(holding) = holding else { continue };
            for (asset, wanted) in &expected {
                let holds = holding.get(asset);
                if holds.is_none_or(|holds| wanted.newer_than(holds)) {
                    violations.push(Violation::Behind {
                        node,
                        asset: *asset,
                        checkpoint,
                        expected: version(wanted),
                        held: holds.map(version),
                    });
                }
            }
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use mesh_types::rust_decimal::Decimal;
    use mesh_types::{NodeIdentity, TaskFailure};

    use super::*;
    use crate::seeded::scenario::Fault;

    fn price(asset: Asset, second: i64) -> CachedPriceData {
        CachedPriceData {
            asset,
            price: Decimal::new(second, 0),
            timestamp: Timestamp::from_timestamp(1_700_000_000 + second, 0).unwrap(),
            source_node_id: NodeIdentity::from_secret_bytes(&[1; 32]).node_id(),
            blockchain: "Solana".into(),
            change_24h: None,
        }
    }

    fn stored(at: u64, node: usize, life: u32, offered: &CachedPriceData, held: &CachedPriceData) -> Stored {
        Stored { at: Duration::from_secs(at), node, life, offered: offered.clone(), held: Some(held.clone()) }
    }

    fn scenario(faults: Vec<Fault>) -> Scenario {
        Scenario {
            nodes: 2,
            providers: 1,
            edges: vec![(0, 1)],
            latencies: vec![Duration::ZERO],
            faults,
            publications: Vec::new(),
            settle: Duration::from_secs(6),
            active: Duration::from_secs(20),
        }
    }

    fn checkpoint(after: u64) -> Checkpoint {
        Checkpoint { after: Duration::from_secs(after), at: Duration::from_secs(after + 6) }
    }

    #[test]
    fn a_store_going_back_breaks_newest_wins_but_a_new_life_starts_afresh() {
        let sol = Asset::new("SOL").unwrap();
        let (old, new) = (price(sol, 1), price(sol, 2));
        let history = [
            stored(1, 0, 0, &new, &new),
            stored(2, 0, 0, &old, &new), // ignored: fine
            stored(3, 1, 0, &new, &new),
            stored(4, 1, 0, &old, &old), // overwritten: broken
            stored(5, 1, 1, &old, &old), // a wiped store begins again: fine
        ];
        let scenario = scenario(Vec::new());
        let evidence = Evidence {
            scenario: &scenario,
            assets: 1,
            stored: &history,
            published: &[
                Some((old.timestamp, old.source_node_id)),
                Some((new.timestamp, new.source_node_id)),
            ],
            snapshots: &[],
            failures: &[],
            panics: 0,
        };
        let violations = check(&evidence);
        assert_eq!(violations.len(), 1, "{violations:?}");
        let violation = &violations[0];
        assert_eq!((violation.invariant(), violation.node()), ("newest-wins", Some(1)));
        assert_eq!(
            violation.to_string(),
            "newest-wins: node 1 went back on SOL at 4.000s: it held publication #1, then publication #0"
        );
    }

    #[test]
    fn a_node_behind_the_newest_accepted_price_is_a_loss_unless_that_price_was_wiped_with_its_store() {
        let sol = Asset::new("SOL").unwrap();
        let (old, new) = (price(sol, 1), price(sol, 2));
        let mut holdings = PriceMap::new();
        holdings.insert(sol, old.clone());
        let snapshots =
            [Snapshot { checkpoint: checkpoint(10), holdings: vec![Some(holdings.clone()), Some(holdings)] }];
        let history = [stored(1, 0, 0, &old, &old), stored(2, 0, 0, &new, &new), stored(3, 1, 0, &old, &old)];
        let published =
            [Some((old.timestamp, old.source_node_id)), Some((new.timestamp, new.source_node_id))];
        let failures = [(1, TaskFailure { task: "event_loop", reason: "panicked: boom".into() })];

        let quiet = scenario(Vec::new());
        let evidence = Evidence {
            scenario: &quiet,
            assets: 1,
            stored: &history,
            published: &published,
            snapshots: &snapshots,
            failures: &failures,
            panics: 2,
        };
        let violations = check(&evidence);
        let kinds: Vec<(&str, Option<usize>)> =
            violations.iter().map(|v| (v.invariant(), v.node())).collect();
        assert_eq!(
            kinds,
            [("no-loss", Some(0)), ("no-loss", Some(1)), ("no-panic", Some(1)), ("no-panic", None)],
            "{violations:?}"
        );
        assert!(violations[1].to_string().contains("node 1 held publication #0 of SOL, not publication #1"));

        // Node 0 alone accepted the newer price, then crashed and came back wiped: gone.
        let wiped = scenario(vec![Fault {
            at: Duration::from_secs(5),
            until: Duration::from_secs(7),
            kind: FaultKind::Crash { node: 0, restart: Restart::Wiped },
        }]);
        let evidence = Evidence { scenario: &wiped, failures: &[], panics: 0, ..evidence };
        assert_eq!(check(&evidence), Vec::new());
    }
}
