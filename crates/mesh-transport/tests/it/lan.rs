//! LAN discovery over real multicast. Multicast does not cross the host's loopback, so the test
//! creates a network namespace (its own loopback, multicast routed to it), re-runs itself inside
//! it, and there starts two nodes that know no address of each other: their beacons must bring
//! them together.
//!
//! Needs root and iproute2 (`ip netns`). Without them it skips with a printed reason, unless
//! `MESH_REQUIRE_BACKENDS=1` (CI), when it fails.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use mesh_peer_store::MemoryPeerStore;
use mesh_transport::{ConnectionManager, LanDiscovery, LinkConfig, ManagerConfig, TcpTransport};
use mesh_types::{NetworkId, NodeIdentity};

const TEST: &str = "lan::nodes_on_a_lan_find_each_other_without_bootstrap";
const INSIDE: &str = "MESH_LAN_TEST_INSIDE_NAMESPACE";

/// A network namespace for one test run, deleted on drop.
struct Namespace {
    name: String,
}

impl Namespace {
    fn create() -> Result<Self, String> {
        let name = format!("mesh-lan-{}", std::process::id());
        let run = |args: &[&str]| -> Result<(), String> {
            let output =
                Command::new("ip").args(args).output().map_err(|err| format!("cannot run ip: {err}"))?;
            if output.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "ip {} failed: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&output.stderr).trim()
                ))
            }
        };
        run(&["netns", "add", &name])?;
        let namespace = Self { name };
        run(&["-n", &namespace.name, "link", "set", "lo", "up"])?;
        run(&["-n", &namespace.name, "route", "add", "224.0.0.0/4", "dev", "lo"])?;
        Ok(namespace)
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

#[test]
fn nodes_on_a_lan_find_each_other_without_bootstrap() {
    if std::env::var_os(INSIDE).is_some() {
        inside_the_namespace();
        return;
    }
    let namespace = match Namespace::create() {
        Ok(namespace) => namespace,
        Err(reason) if std::env::var("MESH_REQUIRE_BACKENDS").is_ok_and(|v| v == "1") => {
            panic!("LAN discovery test needs a network namespace (root and iproute2): {reason}")
        }
        Err(reason) => {
            eprintln!("skipping {TEST}: {reason}");
            return;
        }
    };
    let exe = std::env::current_exe().expect("test binary path");
    let status = Command::new("ip")
        .args(["netns", "exec", &namespace.name])
        .arg(exe)
        .args([TEST, "--exact", "--nocapture"])
        .env(INSIDE, "1")
        .status()
        .expect("run the test inside the namespace");
    assert!(status.success(), "the nodes did not find each other inside the namespace");
}

fn inside_the_namespace() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let lan = LanDiscovery {
            interface: "127.0.0.1".parse().unwrap(),
            interval: Duration::from_millis(200),
            ..LanDiscovery::default()
        };
        let mut managers = Vec::new();
        for _ in 0..2 {
            let mut config = ManagerConfig::new(NetworkId::devnet());
            config.listen_addr = Some("127.0.0.1:0".parse().unwrap());
            config.lan_discovery = Some(lan);
            config.maintenance_interval = Duration::from_millis(50);
            let identity = Arc::new(NodeIdentity::generate());
            let transport = TcpTransport::new(LinkConfig::default(), &identity, &config.network);
            let (manager, mut events) = ConnectionManager::start(
                config,
                identity,
                Arc::new(transport),
                Arc::new(MemoryPeerStore::new()),
            )
            .await
            .expect("start a node with LAN discovery");
            tokio::spawn(async move { while events.recv().await.is_some() {} });
            managers.push(manager);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while managers.iter().any(|manager| manager.peer_count() == 0)
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for manager in &managers {
            assert_eq!(manager.peer_count(), 1, "each node found the other by its beacons");
        }
    });
}
