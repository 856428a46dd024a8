//! [`TransportError`]: everything that can go wrong between two nodes, in three kinds —
//! connection failures worth retrying (refused, timeout, reset), failures that retrying will
//! not fix (handshake failed, Noise session refused, banned), and failures that are grounds for
//! a ban (wrong network, failed key proof, a `Hello` claiming another key than the session's).

use std::net::SocketAddr;

use mesh_types::{BanReason, CodecError, NetworkId, NodeId, PublicKey};
use thiserror::Error;

/// Why a connection could not be made, kept, or used.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The remote refused the connection (nothing listens there).
    #[error("connection to {addr} refused")]
    ConnectionRefused {
        /// The address dialled.
        addr: SocketAddr,
    },
    /// Connecting, reading or writing took longer than allowed.
    #[error("connection to {addr} timed out while {during}")]
    ConnectionTimeout {
        /// The remote address.
        addr: SocketAddr,
        /// What was being done: "connecting", "writing", "reading".
        during: &'static str,
    },
    /// The connection broke (reset by the peer, or closed mid-frame).
    #[error("connection to {addr} reset: {detail}")]
    ConnectionReset {
        /// The remote address.
        addr: SocketAddr,
        /// What the operating system reported.
        detail: String,
    },
    /// Any other connection failure.
    #[error("connection to {addr} failed: {detail}")]
    ConnectionFailed {
        /// The remote address.
        addr: SocketAddr,
        /// What went wrong.
        detail: String,
    },
    /// The connection was closed, by either side.
    #[error("connection to {addr} is closed")]
    Closed {
        /// The remote address.
        addr: SocketAddr,
    },
    /// A frame was larger than the limit; the connection is closed before reading it.
    #[error("frame of {size} bytes from {addr} exceeds the {max}-byte limit")]
    FrameTooLarge {
        /// The remote address.
        addr: SocketAddr,
        /// The announced size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A frame did not decode as a message; the connection is closed.
    #[error("malformed frame from {addr}: {source}")]
    MalformedFrame {
        /// The remote address.
        addr: SocketAddr,
        /// What the codec reported.
        #[source]
        source: CodecError,
    },
    /// The peer did not complete the handshake in time.
    #[error("handshake with {addr} timed out")]
    HandshakeTimeout {
        /// The remote address.
        addr: SocketAddr,
    },
    /// The handshake failed for a reason that is not the peer's fault or a ban reason.
    #[error("handshake with {addr} failed: {detail}")]
    HandshakeFailed {
        /// The remote address.
        addr: SocketAddr,
        /// What went wrong.
        detail: String,
    },
    /// The peer belongs to another network.
    #[error("peer at {addr} is on network {received}, not {expected}")]
    NetworkMismatch {
        /// The remote address.
        addr: SocketAddr,
        /// This node's network.
        expected: NetworkId,
        /// The peer's network.
        received: NetworkId,
    },
    /// The peer speaks an incompatible protocol version.
    #[error("peer at {addr} speaks protocol version {received}; this node speaks {supported}")]
    ProtocolMismatch {
        /// The remote address.
        addr: SocketAddr,
        /// This node's version.
        supported: u16,
        /// The peer's version.
        received: u16,
    },
    /// The Noise handshake that secures a TCP connection failed: a message too large,
    /// malformed, or one that does not decrypt (the peer is on another network or protocol
    /// version, both of which the prologue binds, or the bytes were tampered with). Nothing
    /// about the peer is proven, so this is no ban reason.
    #[error("noise handshake with {addr} failed: {detail}")]
    NoiseHandshakeFailed {
        /// The remote address.
        addr: SocketAddr,
        /// What went wrong.
        detail: String,
    },
    /// The peer's Noise identity payload does not bind the static key of the session to an
    /// Ed25519 key: a relay splicing two handshakes, or a forger. No ban reason: a relay on the
    /// path could otherwise get an honest address banned.
    #[error("peer at {addr} did not bind its noise static key to an ed25519 identity: {detail}")]
    InvalidIdentityBinding {
        /// The remote address.
        addr: SocketAddr,
        /// What was wrong with the payload.
        detail: String,
    },
    /// The peer's `Hello` claims another key than the one its Noise session authenticated.
    #[error("peer at {addr} authenticated as {session} in its noise session but claims key {claimed}")]
    SessionKeyMismatch {
        /// The remote address.
        addr: SocketAddr,
        /// The key the session authenticated.
        session: PublicKey,
        /// The key the `Hello` claims.
        claimed: PublicKey,
    },
    /// An encrypted frame failed to decrypt or authenticate (a flipped bit, or bytes injected,
    /// replayed or reordered on the path); the connection is closed.
    #[error("a message from {addr} failed to decrypt or authenticate; closing the connection")]
    DecryptionFailed {
        /// The remote address.
        addr: SocketAddr,
    },
    /// The peer's id does not derive from its key, or its proof of key possession failed.
    #[error("peer at {addr} failed to prove it holds the key of {claimed}")]
    InvalidKeyProof {
        /// The remote address.
        addr: SocketAddr,
        /// The node it claimed to be.
        claimed: NodeId,
    },
    /// The address belongs to this node itself (e.g. its own address in a bootstrap list).
    #[error("{addr} is this node's own address")]
    SelfConnection {
        /// The address.
        addr: SocketAddr,
    },
    /// This node is already connected to that node.
    #[error("already connected to {node}")]
    DuplicateConnection {
        /// The node.
        node: NodeId,
    },
    /// The node is not connected.
    #[error("not connected to {node}")]
    NotConnected {
        /// The node.
        node: NodeId,
    },
    /// The peer is banned.
    #[error("peer {addr} is banned")]
    Banned {
        /// The remote address.
        addr: SocketAddr,
    },
    /// The connection limit is reached.
    #[error("connection limit of {max} peers reached")]
    TooManyPeers {
        /// The limit.
        max: usize,
    },
    /// A bootstrap host name did not resolve.
    #[error("cannot resolve bootstrap peer {host:?}: {detail}")]
    DnsResolutionFailed {
        /// The name.
        host: String,
        /// What the resolver reported.
        detail: String,
    },
    /// Binding a listening socket failed.
    #[error("cannot listen on {addr}: {detail}")]
    ListenFailed {
        /// The address.
        addr: SocketAddr,
        /// What the operating system reported.
        detail: String,
    },
}

impl TransportError {
    /// Whether dialling the same address again soon may succeed: refused, timed out and reset
    /// connections are retryable (so is a name that did not resolve, and a connection closed
    /// under us) — the peer may be restarting or the network recovering; any other connection
    /// failure, a handshake that timed out or failed (the peer answers, but not as a node of
    /// this mesh), a ban reason and the limits are not — the manager then waits the longest
    /// backoff before trying that address again.
    pub const fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::ConnectionRefused { .. }
                | Self::ConnectionTimeout { .. }
                | Self::ConnectionReset { .. }
                | Self::Closed { .. }
                | Self::DnsResolutionFailed { .. }
        )
    }

    /// The ban this failure earns the peer, if any.
    pub const fn ban_reason(&self) -> Option<BanReason> {
        match self {
            Self::NetworkMismatch { .. } => Some(BanReason::NetworkMismatch),
            Self::InvalidKeyProof { .. } | Self::SessionKeyMismatch { .. } => {
                Some(BanReason::InvalidSignature)
            }
            _ => None,
        }
    }

    /// Classifies an I/O error on the connection to `addr`.
    pub fn from_io(addr: SocketAddr, during: &'static str, err: &std::io::Error) -> Self {
        use std::io::ErrorKind;
        match err.kind() {
            ErrorKind::ConnectionRefused => Self::ConnectionRefused { addr },
            ErrorKind::TimedOut | ErrorKind::WouldBlock => Self::ConnectionTimeout { addr, during },
            ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::BrokenPipe
            | ErrorKind::UnexpectedEof => Self::ConnectionReset { addr, detail: err.to_string() },
            _ => Self::ConnectionFailed { addr, detail: err.to_string() },
        }
    }
}
