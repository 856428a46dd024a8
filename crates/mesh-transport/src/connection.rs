//! [`Connection`]: one link to another node, the same type whatever the transport — a
//! [`MessageSender`] that queues messages for the link, a [`MessageReceiver`] of what arrives,
//! the remote address, and the peer's authenticated key when the transport has sessions.
//! Transports build it with [`Connection::channels`] and move the bytes (TCP) or the messages
//! (in memory) between the two ends in tasks of their own.

use std::net::SocketAddr;

use mesh_types::{MeshMessage, PublicKey};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{Outbound, TransportError};

/// A link to another node.
#[derive(Debug)]
pub struct Connection {
    /// Queues messages for the remote node; clone it to send from several tasks.
    pub sender: MessageSender,
    /// What the remote node sends; `None` once the connection is closed.
    pub receiver: MessageReceiver,
    /// The remote address (for an inbound connection, the dialler's address).
    pub remote_addr: SocketAddr,
    /// The Ed25519 key the transport's session authenticated (TCP: the key bound to the peer's
    /// Noise static key); `None` for a transport without sessions (in memory). The handshake
    /// refuses a `Hello` claiming any other key.
    pub remote_identity: Option<PublicKey>,
}

/// The transport's side of a [`Connection`]: what to send, where to deliver what arrives,
/// and the signal that the connection is closed.
#[derive(Debug)]
pub struct ConnectionIo {
    /// Messages queued by the connection's users, to be written out.
    pub outgoing: mpsc::Receiver<Outbound>,
    /// Where to deliver arriving messages, or the error that ends the connection.
    pub incoming: mpsc::Sender<Result<MeshMessage, TransportError>>,
    /// Cancelled when either side closes the connection.
    pub closed: CancellationToken,
}

/// The most received messages waiting between a connection's transport and its reader. The
/// reader hands them on at once (the manager's event queue, bounded by bytes, is where they
/// wait), so a short queue costs nothing and keeps a peer's frames of up to a megabyte each
/// from piling up here.
pub const INCOMING_HANDOFF: usize = 16;

impl Connection {
    /// A connection to `remote_addr` with room for `capacity` queued messages to send, and at
    /// most [`INCOMING_HANDOFF`] received ones, and the transport's end of it.
    pub fn channels(remote_addr: SocketAddr, capacity: usize) -> (Self, ConnectionIo) {
        let (outgoing_tx, outgoing_rx) = mpsc::channel(capacity.max(1));
        let (incoming_tx, incoming_rx) = mpsc::channel(capacity.clamp(1, INCOMING_HANDOFF));
        let closed = CancellationToken::new();
        let connection = Self {
            sender: MessageSender { queue: outgoing_tx, remote_addr, closed: closed.clone() },
            receiver: MessageReceiver { queue: incoming_rx, closed: closed.clone() },
            remote_addr,
            remote_identity: None,
        };
        (connection, ConnectionIo { outgoing: outgoing_rx, incoming: incoming_tx, closed })
    }

    /// Closes the connection: both ends stop, and the transport releases the socket.
    pub fn close(&self) {
        self.sender.close();
    }
}

/// Queues messages for one connection. Cloning is cheap; all clones feed the same link.
#[derive(Debug, Clone)]
pub struct MessageSender {
    queue: mpsc::Sender<Outbound>,
    remote_addr: SocketAddr,
    closed: CancellationToken,
}

impl MessageSender {
    /// Queues `message`, waiting while the queue is full (backpressure from a slow link).
    ///
    /// # Errors
    /// [`TransportError::Closed`] when the connection is closed.
    pub async fn send(&self, message: impl Into<Outbound>) -> Result<(), TransportError> {
        if self.closed.is_cancelled() {
            return Err(TransportError::Closed { addr: self.remote_addr });
        }
        self.queue.send(message.into()).await.map_err(|_| TransportError::Closed { addr: self.remote_addr })
    }

    /// Queues `message` if there is room now. `Ok(false)` means the queue is full: the peer is
    /// not keeping up, and the caller decides (gossip drops the copy; anti-entropy repairs).
    ///
    /// # Errors
    /// [`TransportError::Closed`] when the connection is closed.
    pub fn try_send(&self, message: impl Into<Outbound>) -> Result<bool, TransportError> {
        if self.closed.is_cancelled() {
            return Err(TransportError::Closed { addr: self.remote_addr });
        }
        match self.queue.try_send(message.into()) {
            Ok(()) => Ok(true),
            Err(mpsc::error::TrySendError::Full(_)) => Ok(false),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                Err(TransportError::Closed { addr: self.remote_addr })
            }
        }
    }

    /// Closes the connection.
    pub fn close(&self) {
        self.closed.cancel();
    }

    /// Whether the connection is closed.
    pub fn is_closed(&self) -> bool {
        self.closed.is_cancelled() || self.queue.is_closed()
    }

    /// Resolves once the connection is closed.
    pub async fn closed(&self) {
        tokio::select! {
            () = self.closed.cancelled() => {}
            () = self.queue.closed() => {}
        }
    }

    /// The remote address.
    pub const fn remote_addr(&self) -> SocketAddr {
        self.remote_addr
    }
}

/// What arrives on one connection.
#[derive(Debug)]
pub struct MessageReceiver {
    queue: mpsc::Receiver<Result<MeshMessage, TransportError>>,
    closed: CancellationToken,
}

impl MessageReceiver {
    /// The next message; `Some(Err(..))` is the error that ended the connection (a malformed
    /// or oversized frame, a reset), and `None` means it closed.
    pub async fn recv(&mut self) -> Option<Result<MeshMessage, TransportError>> {
        tokio::select! {
            biased;
            message = self.queue.recv() => message,
            () = self.closed.cancelled() => None,
        }
    }
}

impl Drop for MessageReceiver {
    fn drop(&mut self) {
        // Nobody reads this connection any more: close it so its tasks and socket go away.
        self.closed.cancel();
    }
}
