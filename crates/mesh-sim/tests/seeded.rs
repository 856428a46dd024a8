//! Seeded simulations of the whole mesh (see `mesh_sim::seeded`): seeds of random crashes,
//! partitions and bad links over 20 to 50 nodes keep the chaos suite's invariants, and a node
//! with newest-wins disabled is caught with a seed that replays the failure.
//!
//! The property test runs its seeds in `mesh-sim` processes, as many at once as the machine
//! has cores: seeded runs in one process take turns, since they set the nodes' clock.
//! `MESH_SIM_SEEDS=500` runs 500 seeds instead of the default 16, `MESH_SIM_FIRST_SEED` moves
//! the window, `MESH_SIM_JOBS` sets how many processes run at once.

use std::process::{Command, Stdio};

use mesh_sim::seeded::{PlantedBug, Violation};
use mesh_sim::{SeededConfig, run_seeded};

/// Seeds the property test runs by default: about a minute in a debug build on two cores.
const DEFAULT_SEEDS: u64 = 16;

fn setting(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(value) => {
            value.trim().parse().unwrap_or_else(|_| panic!("{name} must be a number, not {value:?}"))
        }
        Err(_) => default,
    }
}

#[test]
fn random_faults_over_20_to_50_nodes_keep_every_invariant() {
    let seeds = setting("MESH_SIM_SEEDS", DEFAULT_SEEDS);
    let first = setting("MESH_SIM_FIRST_SEED", 1);
    let cores = std::thread::available_parallelism().map_or(1, |cores| cores.get() as u64);
    let jobs = setting("MESH_SIM_JOBS", cores).clamp(1, seeds.max(1));
    let per_job = seeds.div_ceil(jobs);
    let children: Vec<_> = (0..jobs)
        .map(|job| (first + job * per_job, per_job.min(seeds.saturating_sub(job * per_job))))
        .filter(|(_, count)| *count > 0)
        .map(|(from, count)| {
            let child = Command::new(env!("CARGO_BIN_EXE_mesh-sim"))
                .args(["--seed", &from.to_string(), "--seeds", &count.to_string(), "--quiet"])
                .stdout(Stdio::piped())
                .spawn()
                .expect("the mesh-sim binary starts");
            (from, count, child)
        })
        .collect();
    let mut failures = String::new();
    for (from, count, child) in children {
        let output = child.wait_with_output().expect("mesh-sim runs to the end");
        if !output.status.success() {
            failures.push_str(&format!("seeds {from} to {}: {}\n", from + count - 1, output.status));
            failures.push_str(&String::from_utf8_lossy(&output.stdout));
        }
    }
    assert!(
        failures.is_empty(),
        "seeds broke an invariant; each is reported with the command that replays it:\n{failures}"
    );
}

/// Newest-wins broken in the planted node.
fn went_back(node: usize) -> impl Fn(&Violation) -> bool {
    move |violation| violation.invariant() == "newest-wins" && violation.node() == Some(node)
}

#[test]
fn a_node_without_newest_wins_is_caught_with_a_seed_that_replays() {
    const NODE: usize = 2;
    let planted = |seed| SeededConfig {
        planted_bug: Some(PlantedBug::OverwritingStore { node: NODE }),
        ..SeededConfig::new(seed)
    };
    let (config, report) = (1..=20)
        .map(|seed| {
            let config = planted(seed);
            let report = run_seeded(&config).expect("the simulation runs");
            (config, report)
        })
        .find(|(_, report)| report.violations.iter().any(went_back(NODE)))
        .expect("one of 20 seeds catches a node that lets an older price replace a newer one");

    let seed = config.seed;
    let printed = report.to_string();
    assert!(printed.contains(&format!("seed {seed} FAILED")), "the report names the seed: {printed}");
    let replay = format!("cargo run -p mesh-sim -- --seed {seed} --plant-overwriting-store {NODE}");
    assert!(printed.contains(&replay), "the report gives the replay command: {printed}");

    let again = run_seeded(&config).expect("the simulation runs");
    assert!(again.violations.iter().any(went_back(NODE)), "replaying seed {seed} catches it again: {again}");
}
