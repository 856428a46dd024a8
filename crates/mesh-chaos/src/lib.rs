//! The pricemesh chaos suite: faults across real hosts, with real `mesh-node` processes.
//!
//! It builds a small network of Linux network namespaces ([`testbed`]): one host per node,
//! wired through a bridge that lives in a namespace of its own, each link given latency,
//! jitter and loss — by `netem` where the kernel has it, by a userspace switch on `AF_PACKET`
//! sockets ([`switch`]) where it does not. One `mesh-node` process runs per host ([`node`]),
//! two of them providers at opposite ends of the mesh; Redis and PostgreSQL are relayed into
//! the hosts that use them ([`relay`]), so an outage is a relay taken down. The
//! [`scenarios`] then break things one after another — `kill -9` of relays and of a provider
//! and their restart from disk, a partition with a provider on each side, backend outages
//! mid-stream, a provider whose clock runs ahead — while a recorder polls every node's quotes
//! into a [`history`], and after each scenario the invariants are checked: no accepted update
//! lost, convergence within two sync intervals, newest wins, no panic, memory bounded.
//!
//! `cargo run -p mesh-chaos -- --quick` runs the suite and prints one `PASS`/`FAIL` line per
//! invariant and a closing `N passed, M failed`. It needs root, iproute2 and ethtool; without
//! them it says why and skips.

// The harness runs on values it chose itself (durations, counts, host indices), like the
// simulator: CI's check for unchecked arithmetic in library code exempts it.
#![allow(clippy::arithmetic_side_effects)]

pub mod history;
pub mod http;
pub mod mesh;
pub mod netns;
pub mod node;
pub mod relay;
pub mod report;
pub mod scenarios;
pub mod switch;
pub mod testbed;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use report::{Check, Report};
pub use switch::LinkShape;

/// Why the harness itself could not run (invariant failures are [`Check`]s, not errors).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChaosError {
    /// A system command failed.
    #[error("`{command}` failed: {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// What it printed on standard error.
        stderr: String,
    },
    /// The userspace switch could not open its ports.
    #[error("the userspace switch cannot open its ports: {0}")]
    Switch(String),
    /// Something else in setting up the mesh.
    #[error("chaos setup: {0}")]
    Setup(String),
}

/// How a run goes.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `mesh-node` binary to run on every host.
    pub node_binary: PathBuf,
    /// Hosts (one node each; at least 6).
    pub hosts: usize,
    /// Every link's latency, jitter and loss.
    pub shape: LinkShape,
    /// Use the userspace switch even where the kernel has `netem`.
    pub force_userspace: bool,
    /// Seeds the switch's loss and jitter.
    pub seed: u64,
    /// The nodes' anti-entropy interval; convergence must come within two.
    pub sync_interval: Duration,
    /// How long the steady state is recorded.
    pub steady: Duration,
    /// How long each fault lasts.
    pub fault_hold: Duration,
    /// How long convergence is waited for before the run counts what is still missing.
    pub settle_limit: Duration,
    /// How many times the fault scenarios are repeated (for convergence percentiles).
    pub rounds: usize,
    /// The most resident memory a node may reach, in MiB.
    pub rss_limit_mib: u64,
    /// The assets the providers quote.
    pub assets: Vec<String>,
    /// A Redis server (`redis://host:port`) for the Redis outage, if any.
    pub redis_url: Option<String>,
    /// A PostgreSQL server URL for the PostgreSQL outage, if any.
    pub database_url: Option<String>,
    /// Where logs and data directories go.
    pub work_dir: PathBuf,
    /// The nodes' log filter (`RUST_LOG`).
    pub node_log: String,
}

impl Options {
    /// The quick suite: 7 hosts, every scenario once, in a few minutes.
    pub fn quick(node_binary: PathBuf, work_dir: PathBuf) -> Self {
        Self {
            node_binary,
            hosts: 7,
            shape: LinkShape::WAN,
            force_userspace: false,
            seed: 1,
            sync_interval: Duration::from_secs(3),
            steady: Duration::from_secs(12),
            fault_hold: Duration::from_secs(5),
            settle_limit: Duration::from_secs(30),
            rounds: 1,
            rss_limit_mib: 256,
            assets: ["SOL", "BTC", "ETH"].map(str::to_owned).to_vec(),
            redis_url: None,
            database_url: None,
            work_dir,
            node_log: "warn,mesh_node=info".to_owned(),
        }
    }

    /// The full suite: 10 hosts, longer phases, every fault five times.
    pub fn full(node_binary: PathBuf, work_dir: PathBuf) -> Self {
        Self {
            hosts: 10,
            steady: Duration::from_secs(60),
            fault_hold: Duration::from_secs(10),
            rounds: 5,
            ..Self::quick(node_binary, work_dir)
        }
    }
}

/// The prefix of every namespace this harness makes (followed by its process id).
pub const NAMESPACE_PREFIX: &str = "pmchaos";

/// Builds the mesh, runs every scenario and returns what held; `progress` sees each check as
/// it is made.
///
/// # Errors
/// When the harness cannot set up or drive the mesh.
pub async fn run(options: &Options, progress: Option<fn(&Check)>) -> Result<Report, ChaosError> {
    if options.hosts < 6 {
        return Err(ChaosError::Setup("the suite needs at least 6 hosts".into()));
    }
    netns::remove_stale(NAMESPACE_PREFIX);
    std::fs::create_dir_all(&options.work_dir).map_err(|err| ChaosError::Setup(err.to_string()))?;
    let prefix = format!("{NAMESPACE_PREFIX}{}-", std::process::id());
    let testbed =
        testbed::Testbed::build(&prefix, options.hosts, options.shape, options.force_userspace, options.seed)
            .await?;
    let round_trip = testbed.round_trip(5).await?;
    let shape = testbed.shape();
    let network = format!(
        "{} hosts, links shaped by {}: {} ms ± {} ms one way, {:.1} % loss; measured round trip {:.1} ms",
        options.hosts,
        testbed.shaper(),
        shape.latency.as_millis(),
        shape.jitter.as_millis(),
        shape.loss * 100.0,
        round_trip.as_secs_f64() * 1000.0
    );
    let hosts = options.hosts;
    let mut nodes = Vec::with_capacity(hosts);
    for host in 0..hosts {
        let provider = host == 0 || host == hosts - 1;
        let settings = mesh::Mesh::settings(options, &testbed, host, provider);
        nodes.push(node::Node::new(host, provider, settings, &options.work_dir));
    }
    let mut mesh = mesh::Mesh {
        testbed,
        nodes,
        node_ids: vec![String::new(); hosts],
        history: history::History::default(),
        report: Report { progress, network, ..Report::default() },
        backends: Vec::new(),
        assets: options.assets.clone(),
        binary: options.node_binary.clone(),
        started: Instant::now(),
        peak_rss: vec![0; hosts],
    };
    let cleanup = backends::attach(&mut mesh, options).await?;
    for host in 0..hosts {
        mesh.start_node(host, &[]).await?;
    }
    let outcome = scenarios::run_all(&mut mesh, options).await;
    mesh.report.frames = mesh.testbed.switch_counts();
    mesh.report.observations = mesh.history.observations().len();
    for node in &mut mesh.nodes {
        node.kill();
    }
    cleanup.run().await;
    outcome?;
    Ok(std::mem::take(&mut mesh.report))
}

mod backends {
    //! Redis and PostgreSQL for the nodes that use them: an isolated key prefix or schema on
    //! the real server, a relay into the node's host, and a store that reads what the server
    //! holds.

    use super::{ChaosError, Options, SocketAddr, mesh::Backend, mesh::Mesh, relay::Relay};

    /// What to remove from the servers after the run.
    #[derive(Debug, Default)]
    pub(super) struct Cleanup {
        redis: Option<mesh_testkit::RedisNamespace>,
        postgres: Option<mesh_testkit::PgSchema>,
    }

    impl Cleanup {
        pub(super) async fn run(self) {
            if let Some(redis) = self.redis {
                redis.cleanup().await;
            }
            if let Some(postgres) = self.postgres {
                postgres.cleanup().await;
            }
        }
    }

    /// The relays' address inside a host: the server's usual port on the host's loopback.
    fn inside(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// Gives the third host Redis and the fourth PostgreSQL, when their URLs are set.
    pub(super) async fn attach(mesh: &mut Mesh, options: &Options) -> Result<Cleanup, ChaosError> {
        let mut cleanup = Cleanup::default();
        if let Some(url) = &options.redis_url {
            let node = 2;
            let namespace = mesh_testkit::RedisNamespace::create(url);
            let target = resolve(&namespace.server_addr())?;
            let listener = listen(mesh, node, inside(6379)).await?;
            mesh.nodes[node].settings.extend([
                ("REDIS_URL".to_owned(), format!("redis://{}", inside(6379))),
                ("MESH_REDIS_PREFIX".to_owned(), namespace.prefix().to_owned()),
            ]);
            let store = mesh_price_cache::RedisPriceStore::new(
                namespace.pool().clone(),
                namespace.prefix(),
                std::time::Duration::from_secs(3600),
            );
            mesh.backends.push(Backend {
                kind: "redis",
                node,
                relay: Relay::start(listener, target),
                store: Box::new(store),
            });
            cleanup.redis = Some(namespace);
        }
        if let Some(url) = &options.database_url {
            let node = 3;
            let schema = mesh_testkit::PgSchema::create(url).await;
            let target = resolve(&schema.server_addr())?;
            let listener = listen(mesh, node, inside(5432)).await?;
            let node_url = node_database_url(url, inside(5432), schema.name())?;
            mesh.nodes[node].settings.push(("DATABASE_URL".to_owned(), node_url));
            let store = mesh_price_cache::PostgresPriceStore::new(schema.pool().clone());
            mesh.backends.push(Backend {
                kind: "postgres",
                node,
                relay: Relay::start(listener, target),
                store: Box::new(store),
            });
            cleanup.postgres = Some(schema);
        }
        Ok(cleanup)
    }

    async fn listen(
        mesh: &Mesh,
        node: usize,
        addr: SocketAddr,
    ) -> Result<tokio::net::TcpListener, ChaosError> {
        mesh.testbed.hosts[node]
            .namespace
            .listen(addr)
            .await
            .map_err(|err| ChaosError::Setup(format!("relay listener: {err}")))
    }

    fn resolve(host_port: &str) -> Result<SocketAddr, ChaosError> {
        use std::net::ToSocketAddrs as _;
        host_port
            .to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or_else(|| ChaosError::Setup(format!("cannot resolve {host_port}")))
    }

    /// `url` pointed at `addr` (the relay in the node's host) and at `schema`.
    fn node_database_url(url: &str, addr: SocketAddr, schema: &str) -> Result<String, ChaosError> {
        let invalid = |err: String| ChaosError::Setup(format!("database URL: {err}"));
        let mut parsed = url::Url::parse(url).map_err(|err| invalid(err.to_string()))?;
        parsed.set_host(Some(&addr.ip().to_string())).map_err(|err| invalid(err.to_string()))?;
        parsed.set_port(Some(addr.port())).map_err(|()| invalid("no port in this URL".into()))?;
        parsed.query_pairs_mut().append_pair("options", &format!("-c search_path={schema}"));
        Ok(parsed.into())
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn the_database_url_points_at_the_relay_and_the_schema() {
            let url = super::node_database_url(
                "postgres://postgres:secret@db.example:5433/test?sslmode=disable",
                ([127, 0, 0, 1], 5432).into(),
                "chaos_1",
            )
            .unwrap();
            assert_eq!(
                url,
                "postgres://postgres:secret@127.0.0.1:5432/test?sslmode=disable&options=-c+search_path%3Dchaos_1"
            );
        }
    }
}
