//! Real `mesh-node` processes for the system rows, read through `/proc` for memory and CPU,
//! and [`Injector`]: an in-process node that joins them over TCP and publishes signed updates,
//! so a row can time an update from the moment it is published to the moment a client of a
//! real node sees it, on one clock.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use pricemesh::service::{MeshPriceService, ServiceConfig};
use pricemesh::transport::ManagerConfig;
use pricemesh::types::{NetworkId, NodeIdentity, PriceUpdate};

/// The network every process of a row joins.
pub const NETWORK: &str = "devnet";

/// Where the release `mesh-node` binary is: `PRICEMESH_NODE_BIN`, or the workspace's
/// `target/release/mesh-node`.
///
/// # Errors
/// When it is not there, with the command that builds it.
pub fn node_binary() -> Result<PathBuf, String> {
    let path = std::env::var_os("PRICEMESH_NODE_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/release/mesh-node"),
        PathBuf::from,
    );
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "no mesh-node binary at {}: build it with `cargo build --release -p mesh-node` in the \
             workspace, or point PRICEMESH_NODE_BIN at one",
            path.display()
        ))
    }
}

/// A running `mesh-node run`, killed when dropped.
#[derive(Debug)]
pub struct NodeProcess {
    child: Child,
    /// Its REST and WebSocket address.
    pub api: SocketAddr,
    /// Its peer-to-peer address.
    pub peers: SocketAddr,
    _data: tempfile::TempDir,
}

impl NodeProcess {
    /// Starts a node on free loopback ports, joined to `bootstrap`, with `env` on top of the
    /// row's settings, and waits until it says it is ready.
    ///
    /// # Errors
    /// When it cannot start or does not get ready within 20 s.
    pub fn start(bootstrap: Option<SocketAddr>, env: &[(&str, &str)]) -> Result<Self, String> {
        let data = tempfile::tempdir().map_err(|err| format!("cannot make a data directory: {err}"))?;
        let mut command = Command::new(node_binary()?);
        command
            .arg("run")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "warn,mesh_node=info")
            .env("MESH_LOG_FORMAT", "json")
            .env("MESH_NETWORK", NETWORK)
            .env("MESH_API_ADDR", "127.0.0.1:0")
            .env("MESH_LISTEN_ADDR", "127.0.0.1:0")
            .env("MESH_DATA_DIR", data.path())
            .env("MESH_MIN_PEER_CONNECTIONS", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(bootstrap) = bootstrap {
            command.env("MESH_BOOTSTRAP_PEERS", bootstrap.to_string());
        }
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().map_err(|err| format!("cannot start mesh-node: {err}"))?;
        let stderr = child.stderr.take().ok_or("mesh-node has no stderr")?;
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        // Reads the log until "node ready" and then keeps draining it, so the node never
        // blocks on a full pipe.
        std::thread::spawn(move || {
            let mut ready = Some(ready_tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addresses) = ready_addresses(&line)
                    && let Some(sender) = ready.take()
                {
                    let _ = sender.send(addresses);
                } else if line.contains("\"level\":\"WARN\"") || line.contains("\"level\":\"ERROR\"") {
                    eprintln!("  mesh-node: {line}");
                }
            }
        });
        match ready_rx.recv_timeout(Duration::from_secs(20)) {
            Ok((api, peers)) => Ok(Self { child, api, peers, _data: data }),
            Err(_) => {
                let _ = child.kill();
                Err("mesh-node did not report ready within 20 s".to_owned())
            }
        }
    }

    /// Its resident memory now, in bytes.
    pub fn rss(&self) -> u64 {
        self.status_kb("VmRSS:") * 1024
    }

    /// Its peak resident memory so far, in bytes.
    pub fn peak_rss(&self) -> u64 {
        self.status_kb("VmHWM:") * 1024
    }

    /// CPU seconds it has used (user + system).
    pub fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        let fields: Vec<&str> =
            stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
        let ticks = |index: usize| fields.get(index).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
        (ticks(11) + ticks(12)) as f64 / 100.0
    }

    fn status_kb(&self, field: &str) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default()
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The API and peer addresses in a JSON log line that says "node ready".
fn ready_addresses(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let entry: serde_json::Value = serde_json::from_str(line).ok()?;
    let fields = entry.get("fields")?;
    if fields.get("message")?.as_str()? != "node ready" {
        return None;
    }
    let address = |name: &str| fields.get(name)?.as_str()?.parse().ok();
    Some((address("api")?, address("listen")?))
}

/// A pricemesh node in this process that publishes into a real node over TCP.
#[derive(Debug)]
pub struct Injector {
    service: MeshPriceService,
    identity: Arc<NodeIdentity>,
}

impl Injector {
    /// Starts a node connected to the node listening at `peer`.
    ///
    /// # Errors
    /// When it cannot start or connect within 10 s.
    pub async fn connect(peer: SocketAddr) -> Result<Self, String> {
        let mut manager = ManagerConfig::new(NetworkId::new(NETWORK).expect("a valid network name"));
        manager.listen_addr = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        manager.bootstrap = vec![peer.to_string()];
        manager.min_peers = 1;
        let identity = Arc::new(NodeIdentity::generate());
        let service = MeshPriceService::builder(identity.clone(), ServiceConfig::new(manager))
            .start()
            .await
            .map_err(|err| format!("cannot start the injecting node: {err}"))?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while service.network().peer_count() == 0 {
            if tokio::time::Instant::now() > deadline {
                return Err(format!("the injecting node could not connect to {peer}"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Self { service, identity })
    }

    /// The provider identity its updates are signed with.
    pub fn identity(&self) -> &NodeIdentity {
        &self.identity
    }

    /// The network it signs for: the nodes'.
    pub fn network_id(&self) -> &NetworkId {
        self.service.network_id()
    }

    /// Publishes a signed update to the connected node.
    ///
    /// # Errors
    /// When the update is refused (invalid) or a store fails.
    pub async fn publish(&self, update: PriceUpdate) -> Result<(), String> {
        self.service.publish(update).await.map(|_| ()).map_err(|err| err.to_string())
    }

    /// Stops it.
    pub async fn shutdown(self) {
        self.service.shutdown().await;
    }
}
