//! The handshake that opens every connection: `Hello`, then `HelloAck`, from both sides at
//! once.
//!
//! Each side sends a [`Hello`] (network, protocol version, node id, public key, listen address,
//! user agent, a fresh random nonce) as soon as the connection opens, checks the other side's,
//! and answers with a [`HelloAck`] carrying its signature over the other side's nonce. A
//! connection is usable once both proofs verify. Everything must happen within the timeout.
//!
//! | problem | result |
//! | --- | --- |
//! | other network id | [`TransportError::NetworkMismatch`] — a ban reason |
//! | other protocol version | [`TransportError::ProtocolMismatch`] — disconnect |
//! | id not derived from the key, or a proof that does not verify | [`TransportError::InvalidKeyProof`] — a ban reason |
//! | the other side is this node | [`TransportError::SelfConnection`] |
//! | anything else arrives first | [`TransportError::HandshakeFailed`] |
//! | too slow | [`TransportError::HandshakeTimeout`] |
//!
//! The side that detects a problem says why in a `Goodbye` before closing.

use std::net::SocketAddr;
use std::time::Duration;

use mesh_types::{
    Goodbye, GoodbyeReason, Hello, HelloAck, MeshMessage, NONCE_LEN, NetworkId, NodeId, NodeIdentity,
    PROTOCOL_VERSION, PublicKey,
};
use rand::RngExt;

use crate::{Connection, TransportError};

/// What a node says about itself in its handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeConfig {
    /// The network this node belongs to.
    pub network: NetworkId,
    /// Where this node accepts connections, if it does.
    pub listen_addr: Option<SocketAddr>,
    /// Software and version, e.g. `pricemesh/0.1.0`.
    pub user_agent: String,
    /// How long the whole handshake may take (default 10 s).
    pub timeout: Duration,
}

impl HandshakeConfig {
    /// Default handshake timeout.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

    /// A configuration for `network` with the default user agent and timeout.
    pub fn new(network: NetworkId) -> Self {
        Self {
            network,
            listen_addr: None,
            user_agent: format!("pricemesh/{}", env!("CARGO_PKG_VERSION")),
            timeout: Self::DEFAULT_TIMEOUT,
        }
    }
}

/// A peer whose identity the handshake proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// Its node id.
    pub node_id: NodeId,
    /// Its public key.
    pub public_key: PublicKey,
    /// Where it says it accepts connections.
    pub listen_addr: Option<SocketAddr>,
    /// Its software.
    pub user_agent: String,
    /// The address of this connection's other end.
    pub remote_addr: SocketAddr,
}

/// Why a handshake failed, with what the peer claimed about itself when it got that far (so a
/// ban can name its node and address).
#[derive(Debug)]
pub struct HandshakeFailure {
    /// What went wrong.
    pub error: TransportError,
    /// The peer's `Hello`, if it sent one.
    pub hello: Option<Hello>,
}

impl From<TransportError> for HandshakeFailure {
    fn from(error: TransportError) -> Self {
        Self { error, hello: None }
    }
}

/// Runs the handshake on a fresh `connection` as `identity`.
///
/// # Errors
/// See the table in the module documentation.
pub async fn handshake(
    connection: &mut Connection,
    identity: &NodeIdentity,
    config: &HandshakeConfig,
) -> Result<PeerInfo, HandshakeFailure> {
    let addr = connection.remote_addr;
    match tokio::time::timeout(config.timeout, exchange(connection, identity, config)).await {
        Ok(result) => result,
        Err(_) => Err(TransportError::HandshakeTimeout { addr }.into()),
    }
}

async fn exchange(
    connection: &mut Connection,
    identity: &NodeIdentity,
    config: &HandshakeConfig,
) -> Result<PeerInfo, HandshakeFailure> {
    let addr = connection.remote_addr;
    let mut nonce = [0u8; NONCE_LEN];
    rand::rng().fill(&mut nonce);
    let hello = Hello {
        network: config.network.clone(),
        protocol_version: PROTOCOL_VERSION,
        node_id: identity.node_id(),
        public_key: identity.public_key(),
        listen_addr: config.listen_addr,
        user_agent: config.user_agent.clone(),
        nonce,
    };
    connection.sender.send(MeshMessage::Hello(hello)).await?;

    let theirs = match next(connection).await? {
        MeshMessage::Hello(theirs) => theirs,
        other => {
            return Err(refuse(connection, GoodbyeReason::ProtocolViolation, unexpected(addr, &other))
                .await
                .into());
        }
    };
    if let Err(error) = check_hello(&theirs, identity, config, addr) {
        let reason = match error {
            TransportError::NetworkMismatch { .. } => GoodbyeReason::NetworkMismatch,
            TransportError::ProtocolMismatch { .. } => GoodbyeReason::ProtocolMismatch,
            TransportError::SelfConnection { .. } => GoodbyeReason::DuplicateConnection,
            _ => GoodbyeReason::ProtocolViolation,
        };
        let error = refuse(connection, reason, error).await;
        return Err(HandshakeFailure { error, hello: Some(theirs) });
    }

    connection
        .sender
        .send(MeshMessage::HelloAck(HelloAck::prove(identity, &config.network, &theirs.nonce)))
        .await?;
    let proven = match next(connection).await {
        Ok(MeshMessage::HelloAck(ack)) => ack.verifies(&theirs, &nonce),
        Ok(other) => {
            let error = refuse(connection, GoodbyeReason::ProtocolViolation, unexpected(addr, &other)).await;
            return Err(HandshakeFailure { error, hello: Some(theirs) });
        }
        Err(error) => return Err(HandshakeFailure { error, hello: Some(theirs) }),
    };
    if !proven {
        let error = TransportError::InvalidKeyProof { addr, claimed: theirs.node_id };
        let error = refuse(connection, GoodbyeReason::ProtocolViolation, error).await;
        return Err(HandshakeFailure { error, hello: Some(theirs) });
    }
    Ok(PeerInfo {
        node_id: theirs.node_id,
        public_key: theirs.public_key,
        listen_addr: theirs.listen_addr,
        user_agent: theirs.user_agent,
        remote_addr: addr,
    })
}

fn check_hello(
    theirs: &Hello,
    identity: &NodeIdentity,
    config: &HandshakeConfig,
    addr: SocketAddr,
) -> Result<(), TransportError> {
    if theirs.network != config.network {
        return Err(TransportError::NetworkMismatch {
            addr,
            expected: config.network.clone(),
            received: theirs.network.clone(),
        });
    }
    if theirs.protocol_version != PROTOCOL_VERSION {
        return Err(TransportError::ProtocolMismatch {
            addr,
            supported: PROTOCOL_VERSION,
            received: theirs.protocol_version,
        });
    }
    if !theirs.node_id.is_derived_from(&theirs.public_key) {
        return Err(TransportError::InvalidKeyProof { addr, claimed: theirs.node_id });
    }
    if theirs.node_id == identity.node_id() {
        return Err(TransportError::SelfConnection { addr });
    }
    Ok(())
}

/// The next message, or why there is none.
async fn next(connection: &mut Connection) -> Result<MeshMessage, TransportError> {
    let addr = connection.remote_addr;
    match connection.receiver.recv().await {
        Some(Ok(MeshMessage::Goodbye(Goodbye { reason }))) => {
            Err(TransportError::HandshakeFailed { addr, detail: format!("peer said goodbye: {reason:?}") })
        }
        Some(Ok(message)) => Ok(message),
        Some(Err(error)) => Err(error),
        None => Err(TransportError::Closed { addr }),
    }
}

fn unexpected(addr: SocketAddr, message: &MeshMessage) -> TransportError {
    TransportError::HandshakeFailed {
        addr,
        detail: format!("expected the handshake, got {}", message.kind()),
    }
}

/// Tells the peer why, closes the connection, and hands back the error.
async fn refuse(connection: &Connection, reason: GoodbyeReason, error: TransportError) -> TransportError {
    // Best effort: the peer may already be gone.
    let _ = connection.sender.try_send(MeshMessage::Goodbye(Goodbye { reason }));
    // Give the writer a moment to flush the goodbye before the socket closes.
    tokio::time::sleep(Duration::from_millis(20)).await;
    connection.close();
    error
}
