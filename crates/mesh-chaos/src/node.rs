//! One real `mesh-node` process per host: started inside the host's namespace with
//! `ip netns exec` (which execs the node itself, so the child's pid is the node's and a
//! `SIGKILL` reaches it), its log appended to a file that outlives restarts, killed with `-9`,
//! restarted on the same data directory, and measured (`VmRSS`).

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::ChaosError;
use crate::netns::Namespace;

/// The port every node's peer listener uses on its host's address.
pub const PEER_PORT: u16 = 7000;
/// Where every node's API listens on its host's loopback.
pub const API_ADDR: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);

/// A node of the chaos mesh, running or not.
#[derive(Debug)]
pub struct Node {
    /// Its host's index.
    pub host: usize,
    /// Whether it fetches prices.
    pub provider: bool,
    /// Its settings (environment variables), fixed for its whole life.
    pub settings: Vec<(String, String)>,
    /// Where its key and peers live across restarts.
    pub data_dir: PathBuf,
    /// Its log, across every start.
    pub log: PathBuf,
    /// How many times it was started.
    pub starts: u32,
    child: Option<Child>,
}

impl Node {
    /// A node on host `host` whose files live under `dir`.
    pub fn new(host: usize, provider: bool, settings: Vec<(String, String)>, dir: &Path) -> Self {
        Self {
            host,
            provider,
            settings,
            data_dir: dir.join(format!("node{host}")),
            log: dir.join(format!("node{host}.log")),
            starts: 0,
            child: None,
        }
    }

    /// Its name in reports.
    pub fn name(&self) -> String {
        format!("{}{}", if self.provider { "provider" } else { "node" }, self.host)
    }

    /// Starts the process in `namespace` with `extra` settings on top of its own, and waits
    /// until its API answers.
    ///
    /// # Errors
    /// When it cannot start, or does not answer within 30 s.
    pub async fn start(
        &mut self,
        binary: &Path,
        namespace: &Namespace,
        extra: &[(String, String)],
    ) -> Result<(), ChaosError> {
        std::fs::create_dir_all(&self.data_dir).map_err(|err| ChaosError::Setup(err.to_string()))?;
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|err| ChaosError::Setup(format!("{}: {err}", self.log.display())))?;
        let mut command = namespace.command(&binary.to_string_lossy());
        command
            .arg("run")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("MESH_DATA_DIR", &self.data_dir)
            .envs(self.settings.iter().chain(extra).map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let child =
            command.spawn().map_err(|err| ChaosError::Setup(format!("start {}: {err}", self.name())))?;
        self.child = Some(child);
        self.starts += 1;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((200, _)) =
                crate::http::get(namespace, API_ADDR, "/health", Duration::from_secs(1)).await
            {
                return Ok(());
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                return Err(ChaosError::Setup(format!(
                    "{} exited at start ({status}); see {}",
                    self.name(),
                    self.log.display()
                )));
            }
            if Instant::now() > deadline {
                return Err(ChaosError::Setup(format!("{} did not answer within 30 s", self.name())));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Kills the process with `SIGKILL`, as a crash or `kill -9` would, and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the process runs (it may have died on its own: that shows here).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(_) => {
                self.child = None;
                false
            }
            None => false,
        }
    }

    /// Its resident memory in KiB, while it runs.
    pub fn rss_kib(&self) -> Option<u64> {
        let pid = self.child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:")?.trim().strip_suffix("kB")?.trim().parse().ok())
    }

    /// The lines of its log that report a panic.
    pub fn panics(&self) -> Vec<String> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines().filter(|line| line.contains("panicked")).map(str::to_owned).collect()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}
