//! Linux network namespaces as hosts: created and deleted with `ip netns`, commands run inside
//! them with `ip netns exec`, and sockets opened inside them from this process by a thread that
//! enters the namespace (`setns`) for as long as it takes to open the socket. A socket keeps
//! the namespace it was made in, so the harness talks to every host from one tokio runtime.

use std::fs::File;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use crate::ChaosError;

/// A network namespace this harness created; deleted (with its interfaces) when dropped.
#[derive(Debug)]
pub struct Namespace {
    name: String,
}

impl Namespace {
    /// Creates the namespace `name` with its loopback up.
    ///
    /// # Errors
    /// When `ip netns add` fails (not root, or the name is taken).
    pub fn create(name: &str) -> Result<Self, ChaosError> {
        ip(&["netns", "add", name])?;
        let namespace = Self { name: name.to_owned() };
        namespace.run("ip", &["link", "set", "lo", "up"])?;
        Ok(namespace)
    }

    /// Its name, as `ip netns` knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name, program]);
        command
    }

    /// Runs `program args…` inside the namespace and waits for it.
    ///
    /// # Errors
    /// When it cannot start or exits unsuccessfully; the error carries its standard error.
    pub fn run(&self, program: &str, args: &[&str]) -> Result<(), ChaosError> {
        let output = self.command(program).args(args).output();
        checked(&format!("{program} {} (in {})", args.join(" "), self.name), output)
    }

    /// Runs `open` on a thread that has entered this namespace, so the sockets it opens live
    /// here, and hands its result back.
    ///
    /// # Errors
    /// When the namespace cannot be entered, or `open` fails.
    pub async fn within<T, F>(&self, open: F) -> std::io::Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> std::io::Result<T> + Send + 'static,
    {
        let path = self.path();
        tokio::task::spawn_blocking(move || {
            // A thread of the blocking pool would carry the namespace into later work, so the
            // socket is opened on a thread of its own that ends with it.
            std::thread::spawn(move || {
                let handle = File::open(&path)?;
                rustix::thread::move_into_link_name_space(
                    handle.as_fd(),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )?;
                open()
            })
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the namespace thread panicked")))
        })
        .await
        .unwrap_or_else(|err| Err(std::io::Error::other(err)))
    }

    /// Opens a TCP connection to `addr` from inside this namespace.
    ///
    /// # Errors
    /// When the connection is refused or takes longer than `timeout`.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        timeout: Duration,
    ) -> std::io::Result<tokio::net::TcpStream> {
        let stream = self
            .within(move || {
                let stream = std::net::TcpStream::connect_timeout(&addr, timeout)?;
                stream.set_nonblocking(true)?;
                stream.set_nodelay(true)?;
                Ok(stream)
            })
            .await?;
        tokio::net::TcpStream::from_std(stream)
    }

    /// Binds a TCP listener on `addr` inside this namespace.
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub async fn listen(&self, addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
        let listener = self
            .within(move || {
                let listener = std::net::TcpListener::bind(addr)?;
                listener.set_nonblocking(true)?;
                Ok(listener)
            })
            .await?;
        tokio::net::TcpListener::from_std(listener)
    }

    fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// Runs `ip args…` in this process's namespace.
///
/// # Errors
/// When `ip` cannot start or fails.
pub fn ip(args: &[&str]) -> Result<(), ChaosError> {
    checked(&format!("ip {}", args.join(" ")), Command::new("ip").args(args).output())
}

fn checked(what: &str, output: std::io::Result<Output>) -> Result<(), ChaosError> {
    match output {
        Ok(output) if output.status.success() => Ok(()),
        Ok(output) => Err(ChaosError::Command {
            command: what.to_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        }),
        Err(err) => Err(ChaosError::Command { command: what.to_owned(), stderr: err.to_string() }),
    }
}

/// Why this machine cannot run the suite, or `None` when it can: it needs root, `ip` from
/// iproute2, and `ethtool` (to turn off the veth offloads the userspace switch cannot carry).
pub fn unavailable_reason() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("the chaos suite needs root (it creates network namespaces)".to_owned());
    }
    for (tool, version, package) in [("ip", "-V", "iproute2"), ("ethtool", "--version", "ethtool")] {
        let found = Command::new(tool).arg(version).output().is_ok_and(|output| output.status.success());
        if !found {
            return Some(format!("the chaos suite needs `{tool}` (install the {package} package)"));
        }
    }
    None
}

/// Deletes namespaces left by earlier runs of this harness whose process is gone (a run killed
/// before it could clean up), recognised by the `prefix` and the process id in their name.
pub fn remove_stale(prefix: &str) {
    let Ok(listing) = Command::new("ip").args(["netns", "list"]).output() else { return };
    for line in String::from_utf8_lossy(&listing.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(rest) = name.strip_prefix(prefix) else { continue };
        let pid = rest.split('-').next().unwrap_or_default();
        if pid.parse::<u32>().is_ok() && !PathBuf::from("/proc").join(pid).exists() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}
