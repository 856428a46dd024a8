//! `mesh-chaos`: runs the chaos suite against real `mesh-node` processes in network
//! namespaces and prints one `PASS`/`FAIL` line per invariant, the figures, and
//! `N passed, M failed`. Exits 0 when everything held, 1 when something failed, 2 when the
//! suite could not run here (not root, no iproute2 or ethtool), 3 when the harness broke.

#![allow(clippy::print_stdout, reason = "a command-line tool reports on standard output")]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use mesh_chaos::{Check, LinkShape, Options, report};

/// Faults across real hosts: kill -9, partitions, lossy links, backend outages, clock skew.
#[derive(Debug, Parser)]
#[command(name = "mesh-chaos", version)]
struct Args {
    /// The quick suite (7 hosts, each fault once; a few minutes). Without it, the full suite.
    #[arg(long)]
    quick: bool,
    /// Hosts, one node each (default 7 quick, 10 full; at least 6).
    #[arg(long)]
    hosts: Option<usize>,
    /// How many times each fault is repeated (default 1 quick, 5 full).
    #[arg(long)]
    rounds: Option<usize>,
    /// One-way latency of every link, in milliseconds.
    #[arg(long, default_value_t = 20)]
    latency_ms: u64,
    /// Jitter added to the latency (uniform), in milliseconds.
    #[arg(long, default_value_t = 5)]
    jitter_ms: u64,
    /// Loss on every link, in percent.
    #[arg(long, default_value_t = 1.0)]
    loss_percent: f64,
    /// Use the userspace switch even where the kernel has netem.
    #[arg(long)]
    userspace: bool,
    /// Seeds the link shaper's loss and jitter.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The mesh-node binary (default: the one beside this program, built if missing).
    #[arg(long)]
    node_binary: Option<PathBuf>,
    /// Redis for the Redis outage (default: MESH_TEST_REDIS_URL).
    #[arg(long, env = "MESH_TEST_REDIS_URL")]
    redis_url: Option<String>,
    /// PostgreSQL for the PostgreSQL outage (default: MESH_TEST_DATABASE_URL).
    #[arg(long, env = "MESH_TEST_DATABASE_URL")]
    database_url: Option<String>,
    /// The nodes' log filter (RUST_LOG), e.g. `info` to see every connection.
    #[arg(long, default_value = "warn,mesh_node=info")]
    node_log: String,
    /// Where node logs and data directories go (default: a fresh temporary directory, kept
    /// when something fails).
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(reason) = mesh_chaos::netns::unavailable_reason() {
        eprintln!("mesh-chaos: skipped: {reason}");
        return ExitCode::from(2);
    }
    let node_binary = match args.node_binary.clone().map_or_else(find_node_binary, Ok) {
        Ok(path) => path,
        Err(reason) => {
            eprintln!("mesh-chaos: {reason}");
            return ExitCode::from(3);
        }
    };
    let work_dir = args.work_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("{}{}", mesh_chaos::NAMESPACE_PREFIX, std::process::id()))
    });
    let mut options = if args.quick {
        Options::quick(node_binary, work_dir.clone())
    } else {
        Options::full(node_binary, work_dir.clone())
    };
    options.hosts = args.hosts.unwrap_or(options.hosts);
    options.rounds = args.rounds.unwrap_or(options.rounds);
    options.shape = LinkShape {
        latency: Duration::from_millis(args.latency_ms),
        jitter: Duration::from_millis(args.jitter_ms),
        loss: (args.loss_percent / 100.0).clamp(0.0, 1.0),
    };
    options.force_userspace = args.userspace;
    options.seed = args.seed;
    options.node_log = args.node_log;
    options.redis_url = args.redis_url.filter(|url| !url.is_empty());
    options.database_url = args.database_url.filter(|url| !url.is_empty());

    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("mesh-chaos: cannot start the runtime: {err}");
            return ExitCode::from(3);
        }
    };
    println!(
        "mesh-chaos: {} suite, logs in {}",
        if args.quick { "quick" } else { "full" },
        work_dir.display()
    );
    match runtime.block_on(mesh_chaos::run(&options, Some(print_check))) {
        Ok(report) => {
            print!("{}", report.figures());
            println!("{} passed, {} failed", report.passed(), report.failed());
            if report.failed() == 0 {
                let _ = std::fs::remove_dir_all(&work_dir);
                ExitCode::SUCCESS
            } else {
                println!("mesh-chaos: node logs kept in {}", work_dir.display());
                ExitCode::from(1)
            }
        }
        Err(err) => {
            eprintln!("mesh-chaos: {err}");
            println!("0 passed, 1 failed");
            ExitCode::from(3)
        }
    }
}

fn print_check(check: &Check) {
    println!("{}", report::check_line(check));
}

/// `mesh-node` beside this program (both are built into the same target directory), built
/// with cargo when it is not there yet.
fn find_node_binary() -> Result<PathBuf, String> {
    let here = std::env::current_exe().map_err(|err| format!("cannot locate this program: {err}"))?;
    let beside = here.with_file_name("mesh-node");
    if beside.exists() {
        return Ok(beside);
    }
    eprintln!("mesh-chaos: building mesh-node");
    let status = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--quiet", "-p", "mesh-node", "--bin", "mesh-node"])
        .status()
        .map_err(|err| format!("cannot run cargo to build mesh-node: {err}"))?;
    if status.success() && beside.exists() {
        Ok(beside)
    } else {
        Err(format!("no mesh-node at {}; pass --node-binary", beside.display()))
    }
}
