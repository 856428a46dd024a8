//! The system benchmarks of `BENCHMARKS.md`, each printing the Markdown rows it quotes:
//!
//! | row | what | compared with, in the same run |
//! | --- | --- | --- |
//! | `gossip` | 100 nodes in one process, random 8-regular, 100 updates/s, and the highest sustained rate | libp2p gossipsub, iroh-gossip (its HyParView + Plumtree state machine) |
//! | `tcp` | 100 nodes over real TCP on loopback, 100 updates/s | |
//! | `fanout` | WebSocket fan-out from one node to 1,000 and 10,000 clients | a NATS server |
//! | `memory` | a `mesh-node` process idle, and holding 10,000 assets with a full seen cache | |
//! | `freshness` | provider publish → WebSocket client three `mesh-node` processes away | Pyth Core's 400 ms |
//!
//! `--quick` shortens every row so the whole suite runs in about two minutes. The rows that
//! start `mesh-node` processes need the release binary (`cargo build --release -p mesh-node`).

mod fanout;
mod freshness;
mod gossipsub;
mod in_process;
mod iroh;
mod memory;
mod node;
mod ours;
mod report;
mod scenario;
mod tcp;

use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::scenario::Scenario;

/// pricemesh's system benchmarks, with their competitors measured in the same run.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Shorter runs (the whole suite in about two minutes); the published figures use the
    /// full ones.
    #[arg(long)]
    quick: bool,
    /// Which rows to run.
    #[arg(value_enum, default_values_t = [Row::All])]
    rows: Vec<Row>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Row {
    Gossip,
    Tcp,
    Fanout,
    Memory,
    Freshness,
    All,
}

fn main() {
    let cli = Cli::parse();
    // A hundred TCP nodes hold a few thousand sockets; the default soft limit is often 1,024.
    if let Err(err) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("cannot raise the open-file limit ({err}); large rows may fail");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    if let Err(err) = runtime.block_on(run(&cli)) {
        eprintln!("error: {err}");
        std::process::exit(1);
    }
}

async fn run(cli: &Cli) -> Result<(), String> {
    let wants = |row: Row| cli.rows.contains(&row) || cli.rows.contains(&Row::All);
    println!(
        "machine: {} cores, {}; {}",
        std::thread::available_parallelism().map_or(0, usize::from),
        cpu_model(),
        if cli.quick { "quick runs" } else { "full runs" }
    );
    let mesh = Scenario {
        nodes: 100,
        degree: 8,
        seed: 1,
        rate: 100.0,
        duration: if cli.quick { Duration::from_secs(3) } else { Duration::from_secs(10) },
        settle: Duration::from_secs(10),
    };
    if wants(Row::Gossip) {
        in_process::compare(&mesh, cli.quick).await?;
        println!();
    }
    if wants(Row::Tcp) {
        tcp::run(&mesh).await?;
        println!();
    }
    if wants(Row::Fanout) {
        let (counts, duration): (&[usize], _) = if cli.quick {
            (&[1_000], Duration::from_secs(3))
        } else {
            (&[1_000, 10_000], Duration::from_secs(10))
        };
        fanout::run(counts, 10.0, duration).await?;
        println!();
    }
    if wants(Row::Memory) {
        memory::run().await?;
        println!();
    }
    if wants(Row::Freshness) {
        let duration = if cli.quick { Duration::from_secs(5) } else { Duration::from_secs(30) };
        freshness::run(20.0, duration).await?;
        println!();
    }
    Ok(())
}

/// The CPU's model name, from `/proc/cpuinfo`.
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("model name").and_then(|rest| rest.split(':').nth(1)))
        .map_or_else(|| "unknown CPU".to_owned(), |model| model.trim().to_owned())
}
