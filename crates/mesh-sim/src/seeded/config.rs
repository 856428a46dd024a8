//! [`SeededConfig`]: what a seeded run simulates, and the command that replays it.

use std::fmt::Write as _;
use std::time::Duration;

use crate::seeded::rng::{Purpose, stream};

/// The sync interval of a real node (`MESH_SYNC_INTERVAL_SECS` default): every other timer of
/// a simulated node is its real default scaled by `sync_interval / REAL_SYNC_INTERVAL`.
pub const REAL_SYNC_INTERVAL: Duration = Duration::from_secs(30);

/// What one seeded simulation runs. Everything random in it — topology, node keys, link
/// latencies, faults, publications, message loss — is drawn from `seed`; the other fields
/// say how much of each there is.
#[derive(Debug, Clone, PartialEq)]
pub struct SeededConfig {
    /// The seed everything random comes from.
    pub seed: u64,
    /// Nodes in the mesh ([`SeededConfig::new`] draws 20 to 50 from the seed).
    pub nodes: usize,
    /// How many of them publish prices: nodes `0..providers`.
    pub providers: usize,
    /// Assets the providers publish.
    pub assets: usize,
    /// Links per node in the random regular topology (a ring plus random chords).
    pub degree: usize,
    /// Updates the providers publish, at times drawn over [`SeededConfig::active`].
    pub publications: usize,
    /// Faults injected over [`SeededConfig::active`] ([`SeededConfig::new`] draws 2 to 6).
    pub faults: usize,
    /// Time between anti-entropy rounds. The nodes' other timers (heartbeats and their
    /// timeout, redial backoff, handshakes, announcements) are their real defaults scaled by
    /// `sync_interval / 30 s`, so a run keeps the real proportions on a shorter clock.
    pub sync_interval: Duration,
    /// How long publications and faults go on; every fault has ended by then.
    pub active: Duration,
    /// How many sync intervals after a fault ends every live node must hold the newest price
    /// the mesh had accepted (the chaos suite's invariant: 2). Checked with three round trips
    /// of the slowest link to spare, at the end of every fault followed by that long without
    /// one, and after the active period.
    pub convergence_intervals: u32,
    /// The longest a partition lasts (default 6 sync intervals). Shorter than the heartbeat
    /// timeout (one sync interval, as in a real node), the connections across a partition
    /// survive it and only anti-entropy has to repair it; longer, they time out and must be
    /// dialled again after the heal.
    pub longest_partition: Duration,
    /// A bug planted on purpose, to show that the checker finds it (a test aid; `None` in
    /// every real run).
    pub planted_bug: Option<PlantedBug>,
}

/// A bug the seeded simulation can plant in one node, so a test can show that the checker
/// catches it and that its seed replays the failure. Not a way to run nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlantedBug {
    /// The node's price store keeps whatever arrived last instead of the newest price
    /// ([`crate::seeded::planted::OverwritingStore`]): newest-wins disabled in one node.
    OverwritingStore {
        /// The node.
        node: usize,
    },
}

impl SeededConfig {
    /// The fewest nodes [`SeededConfig::new`] draws.
    pub const MIN_NODES: usize = 20;
    /// The most nodes [`SeededConfig::new`] draws.
    pub const MAX_NODES: usize = 50;

    /// The defaults for `seed`: 20 to 50 nodes and 2 to 6 faults drawn from it, 2 providers,
    /// 3 assets, degree 4, 40 publications over 12 sync intervals of 3 s, partitions of up to
    /// 6 sync intervals, convergence within 2 sync intervals.
    pub fn new(seed: u64) -> Self {
        let mut sizes = stream(seed, Purpose::Sizes);
        let nodes = sizes.range(Self::MIN_NODES as u64, Self::MAX_NODES as u64) as usize;
        let faults = sizes.range(2, 6) as usize;
        let sync_interval = Duration::from_secs(3);
        Self {
            seed,
            nodes,
            providers: 2,
            assets: 3,
            degree: 4,
            publications: 40,
            faults,
            sync_interval,
            active: sync_interval * 12,
            convergence_intervals: 2,
            longest_partition: sync_interval * 6,
            planted_bug: None,
        }
    }

    /// Whether this configuration can run; the reason when not.
    ///
    /// # Errors
    /// A message naming the field at fault.
    pub fn validate(&self) -> Result<(), String> {
        if self.nodes < 3 || self.nodes > 1_000 {
            return Err(format!("nodes must be 3 to 1000, not {}", self.nodes));
        }
        if self.providers == 0 || self.providers >= self.nodes {
            return Err(format!("providers must be 1 to nodes - 1, not {}", self.providers));
        }
        if self.assets == 0 || self.assets > ASSETS.len() {
            return Err(format!("assets must be 1 to {}, not {}", ASSETS.len(), self.assets));
        }
        if self.degree < 2 || self.degree >= self.nodes {
            return Err(format!("degree must be 2 to nodes - 1, not {}", self.degree));
        }
        if self.sync_interval < Duration::from_millis(100) {
            return Err(format!("sync interval must be at least 100 ms, not {:?}", self.sync_interval));
        }
        if self.active < self.sync_interval {
            return Err(format!("active must be at least one sync interval, not {:?}", self.active));
        }
        if self.convergence_intervals == 0 {
            return Err("convergence intervals must be at least 1".to_owned());
        }
        if self.longest_partition < Duration::from_millis(10) {
            return Err(format!(
                "longest partition must be at least 10 ms, not {:?}",
                self.longest_partition
            ));
        }
        if let Some(PlantedBug::OverwritingStore { node }) = self.planted_bug
            && node >= self.nodes
        {
            return Err(format!("the planted bug's node {node} is not among the {} nodes", self.nodes));
        }
        Ok(())
    }

    /// How much shorter than a real node's this run's timers are: `sync_interval / 30 s`.
    pub fn time_scale(&self) -> f64 {
        self.sync_interval.as_secs_f64() / REAL_SYNC_INTERVAL.as_secs_f64()
    }

    /// A real node's duration on this run's clock.
    pub(crate) fn scaled(&self, real: Duration) -> Duration {
        real.mul_f64(self.time_scale())
    }

    /// The command that runs this configuration again: `--seed` and whatever differs from
    /// [`SeededConfig::new`] of the seed.
    pub fn replay_command(&self) -> String {
        let defaults = Self::new(self.seed);
        let mut command = format!("cargo run -p mesh-sim -- --seed {}", self.seed);
        let mut flag = |name: &str, value: String, default: String| {
            if value != default {
                let _ = write!(command, " --{name} {value}");
            }
        };
        flag("nodes", self.nodes.to_string(), defaults.nodes.to_string());
        flag("providers", self.providers.to_string(), defaults.providers.to_string());
        flag("assets", self.assets.to_string(), defaults.assets.to_string());
        flag("degree", self.degree.to_string(), defaults.degree.to_string());
        flag("publications", self.publications.to_string(), defaults.publications.to_string());
        flag("faults", self.faults.to_string(), defaults.faults.to_string());
        flag(
            "sync-interval-ms",
            self.sync_interval.as_millis().to_string(),
            defaults.sync_interval.as_millis().to_string(),
        );
        flag("active-ms", self.active.as_millis().to_string(), defaults.active.as_millis().to_string());
        flag(
            "convergence-intervals",
            self.convergence_intervals.to_string(),
            defaults.convergence_intervals.to_string(),
        );
        flag(
            "longest-partition-ms",
            self.longest_partition.as_millis().to_string(),
            defaults.longest_partition.as_millis().to_string(),
        );
        if let Some(PlantedBug::OverwritingStore { node }) = self.planted_bug {
            let _ = write!(command, " --plant-overwriting-store {node}");
        }
        command
    }
}

/// The symbols of the simulated assets, in order.
pub(crate) const ASSETS: [&str; 8] = ["SOL", "BTC", "ETH", "BONK", "JUP", "WIF", "PYTH", "RAY"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_draws_the_sizes_and_the_replay_names_only_what_differs() {
        for seed in 0..200 {
            let config = SeededConfig::new(seed);
            assert!((SeededConfig::MIN_NODES..=SeededConfig::MAX_NODES).contains(&config.nodes));
            assert!((2..=6).contains(&config.faults));
            assert_eq!(config, SeededConfig::new(seed), "the same seed, the same sizes");
            assert_eq!(config.replay_command(), format!("cargo run -p mesh-sim -- --seed {seed}"));
            config.validate().unwrap();
        }
        let changed = SeededConfig {
            nodes: 7,
            planted_bug: Some(PlantedBug::OverwritingStore { node: 3 }),
            ..SeededConfig::new(5)
        };
        assert_eq!(
            changed.replay_command(),
            "cargo run -p mesh-sim -- --seed 5 --nodes 7 --plant-overwriting-store 3"
        );
        assert!((changed.time_scale() - 0.1).abs() < 1e-12);
    }

    #[test]
    fn impossible_configurations_are_refused_by_name() {
        let base = SeededConfig::new(1);
        let error = SeededConfig { providers: base.nodes, ..base.clone() }.validate().unwrap_err();
        assert!(error.starts_with("providers"), "{error}");
        let error = SeededConfig { planted_bug: Some(PlantedBug::OverwritingStore { node: 99 }), ..base }
            .validate()
            .unwrap_err();
        assert!(error.contains("planted"), "{error}");
    }
}
