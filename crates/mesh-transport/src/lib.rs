//! The network layer of pricemesh: how nodes find each other, prove who they are, and stay
//! connected. It moves [`mesh_types::MeshMessage`]s and knows nothing about prices.
//!
//! - [`Transport`]: listen and dial, yielding [`Connection`]s. Two implementations:
//!   [`TcpTransport`] (a Noise XX session bound to the node's Ed25519 identity, then
//!   length-delimited frames carrying the [`mesh_types::Codec`] payload, encrypted and
//!   authenticated, size-limited before allocation, batched writes, read and write timeouts) and
//!   [`MemoryTransport`] (nodes in one process over channels, with per-link latency, loss and
//!   partitions — for the simulator and tests; no session, nothing to encrypt).
//! - [`handshake`]: `Hello`/`HelloAck` — network id, protocol version, identity, and a signed
//!   proof of key possession over the other side's nonce; over a session, the `Hello` must name
//!   the key the session authenticated ([`Connection::remote_identity`]).
//! - [`ConnectionManager`]: keeps the node between its minimum and maximum number of peers,
//!   dials bootstrap and known peers with backoff, refuses banned and duplicate peers, sends
//!   heartbeats and drops silent peers, exchanges peer addresses, optionally finds peers on
//!   the local network by multicast beacons ([`LanDiscovery`]), and reports
//!   [`TransportEvent`]s (connected, disconnected, message) on a bounded channel.

use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

mod backoff;
mod clock;
mod config;
mod connection;
mod discovery;
mod error;
mod events;
pub mod handshake;
mod manager;
mod memory;
pub mod noise;
mod outbound;
mod tcp;
mod topology;

pub use config::{ConfigError, ManagerConfig};
pub use connection::{Connection, ConnectionIo, INCOMING_HANDOFF, MessageReceiver, MessageSender};
pub use discovery::LanDiscovery;
pub use error::TransportError;
pub use events::{ConnectedPeer, Direction, DisconnectReason, EventReceiver, TransportEvent};
pub use manager::{ConnectionManager, StartError};
pub use memory::{LinkFaults, MemoryNetwork, MemoryTransport};
pub use outbound::Outbound;
pub use tcp::TcpTransport;

/// Listens for and dials connections.
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// Starts accepting connections at `addr` (port 0 picks a free port).
    ///
    /// # Errors
    /// [`TransportError::ListenFailed`] when the address cannot be bound.
    async fn listen(&self, addr: SocketAddr) -> Result<Listener, TransportError>;

    /// Connects to `addr`.
    ///
    /// # Errors
    /// A retryable error when nothing answers in time or the connection breaks, see
    /// [`TransportError::is_retryable`].
    async fn dial(&self, addr: SocketAddr) -> Result<Connection, TransportError>;
}

/// Inbound connections at one address; dropping it stops accepting.
#[derive(Debug)]
pub struct Listener {
    local_addr: SocketAddr,
    incoming: mpsc::Receiver<Connection>,
}

impl Listener {
    /// A listener at `local_addr` fed by the transport through the returned sender. Accepting
    /// stops when the listener is dropped (the sender then reports closed).
    pub fn new(local_addr: SocketAddr, backlog: usize) -> (Self, mpsc::Sender<Connection>) {
        let (sender, incoming) = mpsc::channel(backlog.max(1));
        (Self { local_addr, incoming }, sender)
    }

    /// The address actually bound.
    pub const fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The next inbound connection; `None` once the transport stopped accepting.
    pub async fn accept(&mut self) -> Option<Connection> {
        self.incoming.recv().await
    }
}

/// Link-level limits shared by the transports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkConfig {
    /// The largest frame accepted or sent, in bytes (default 1 MiB). A larger frame closes the
    /// connection before its body is read.
    pub max_frame_size: usize,
    /// Messages that may wait to be written, per connection (default 1,024).
    pub send_queue: usize,
    /// How long connecting may take (default 5 s).
    pub connect_timeout: Duration,
    /// How long the Noise handshake that secures a fresh TCP connection may take (default
    /// 10 s); the `Hello` exchange after it has its own deadline.
    pub handshake_timeout: Duration,
    /// How long one batch of writes may take before the connection is dropped (default 10 s).
    pub write_timeout: Duration,
    /// How long a connection may stay silent before it is dropped (default 60 s); heartbeats
    /// keep a healthy connection well inside it.
    pub read_timeout: Duration,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            max_frame_size: mesh_types::codec::DEFAULT_MAX_MESSAGE_SIZE,
            send_queue: 1024,
            connect_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
        }
    }
}
