//! `mesh-sim`: runs seeded simulations of the mesh (see `mesh_sim::seeded`). With `--seed S`
//! it runs that seed — the scenario it stands for, the report, every violation — and exits
//! with 1 if an invariant broke, so a seed printed by a failing test replays with
//! `cargo run -p mesh-sim -- --seed S`. With `--seeds N` it runs `N` seeds from `S` and lists
//! the failing ones.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use mesh_sim::seeded::PlantedBug;
use mesh_sim::{SeededConfig, run_seeded};

/// Seeded simulation of a pricemesh mesh: faults, publications and loss from one seed.
#[derive(Debug, Parser)]
#[command(name = "mesh-sim", version, about)]
struct Cli {
    /// The seed to run (the first of them, with --seeds).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How many seeds to run, from --seed up.
    #[arg(long, default_value_t = 1)]
    seeds: u64,
    /// Nodes (default: 20 to 50, drawn from the seed).
    #[arg(long)]
    nodes: Option<usize>,
    /// Providers (default 2).
    #[arg(long)]
    providers: Option<usize>,
    /// Assets (default 3).
    #[arg(long)]
    assets: Option<usize>,
    /// Links per node (default 4).
    #[arg(long)]
    degree: Option<usize>,
    /// Updates published (default 40).
    #[arg(long)]
    publications: Option<usize>,
    /// Faults (default: 2 to 6, drawn from the seed).
    #[arg(long)]
    faults: Option<usize>,
    /// Anti-entropy interval in milliseconds; the other timers scale with it (default 3000).
    #[arg(long)]
    sync_interval_ms: Option<u64>,
    /// How long publications and faults go on, in milliseconds (default 12 sync intervals).
    #[arg(long)]
    active_ms: Option<u64>,
    /// Sync intervals after a fault within which every node must catch up (default 2).
    #[arg(long)]
    convergence_intervals: Option<u32>,
    /// The longest a partition lasts, in milliseconds (default 6 sync intervals).
    #[arg(long)]
    longest_partition_ms: Option<u64>,
    /// Test aid: give this node a price store without newest-wins, to see the checker catch it.
    #[arg(long, value_name = "NODE")]
    plant_overwriting_store: Option<usize>,
    /// Print only failing seeds' reports.
    #[arg(long)]
    quiet: bool,
}

impl Cli {
    fn config(&self, seed: u64) -> SeededConfig {
        let defaults = SeededConfig::new(seed);
        let sync_interval = self.sync_interval_ms.map_or(defaults.sync_interval, Duration::from_millis);
        SeededConfig {
            seed,
            nodes: self.nodes.unwrap_or(defaults.nodes),
            providers: self.providers.unwrap_or(defaults.providers),
            assets: self.assets.unwrap_or(defaults.assets),
            degree: self.degree.unwrap_or(defaults.degree),
            publications: self.publications.unwrap_or(defaults.publications),
            faults: self.faults.unwrap_or(defaults.faults),
            sync_interval,
            active: self.active_ms.map_or(sync_interval * 12, Duration::from_millis),
            convergence_intervals: self.convergence_intervals.unwrap_or(defaults.convergence_intervals),
            longest_partition: self.longest_partition_ms.map_or(sync_interval * 6, Duration::from_millis),
            planted_bug: self.plant_overwriting_store.map(|node| PlantedBug::OverwritingStore { node }),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Written, not printed: a reader that stops early (`| head`) must not panic the run.
    let mut out = std::io::stdout().lock();
    let mut failed = Vec::new();
    for seed in cli.seed..cli.seed.saturating_add(cli.seeds) {
        let config = cli.config(seed);
        let report = match run_seeded(&config) {
            Ok(report) => report,
            Err(err) => {
                eprintln!("mesh-sim: seed {seed}: {err}");
                return ExitCode::from(2);
            }
        };
        if !cli.quiet || !report.passed() {
            let _ = writeln!(out, "seed {seed}: {}", report.scenario);
            let _ = writeln!(out, "{report}");
        }
        if !report.passed() {
            failed.push(report.replay_command());
        }
    }
    if cli.seeds > 1 {
        let _ = writeln!(out, "{} of {} seeds failed", failed.len(), cli.seeds);
        for command in &failed {
            let _ = writeln!(out, "  {command}");
        }
    }
    let _ = out.flush();
    if failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
