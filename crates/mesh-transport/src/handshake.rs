//! The handshake that opens every connection: `Hello`, then `HelloAck`, from both sides at
//! once.
//!
//! Each side sends a [`Hello`] (network, protocol version, node id, public key, listen address,
//! user agent, a fresh random nonce) as soon as the connection opens, and answers the other
//! side's with a [`HelloAck`] carrying its signature over the other side's nonce. The proof is
//! checked *before* the network and version are judged, so a ban for being on another network
//! always names a key its holder proved — nobody can get an honest provider banned by copying
//! its public key into a bad `Hello`. Everything must happen within the timeout.
//!
//! Over a transport with sessions (TCP's Noise session), the connection already knows the
//! peer's authenticated Ed25519 key ([`Connection::remote_identity`]), and the `Hello` must claim
//! exactly that key; the in-memory transport has no sessions, and the check is skipped there.
//!
//! | problem | result |
//! | --- | --- |
//! | a `Hello` key other than the session's | [`TransportError::SessionKeyMismatch`] — a ban reason (the claimed key is not proven: the ban names the address) |
//! | id not derived from the key, or a proof that does not verify | [`TransportError::InvalidKeyProof`] — a ban reason (the key is not proven: the ban names the address) |
//! | other network id | [`TransportError::NetworkMismatch`] — a ban reason (the key is proven) |
//! | other protocol version | [`TransportError::ProtocolMismatch`] — disconnect |
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
    /// The nonce this node sent on this connection.
    pub local_nonce: [u8; NONCE_LEN],
    /// The nonce the peer sent on this connection.
    pub remote_nonce: [u8; NONCE_LEN],
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
/// ban can name its address, and its key when the key was proven).
#[derive(Debug)]
pub struct HandshakeFailure {
    /// What went wrong.
    pub error: TransportError,
    /// The peer's `Hello`, if it sent one.
    pub hello: Option<Hello>,
    /// Whether the peer proved it holds the key in its `Hello`.
    pub proven: bool,
}

impl From<TransportError> for HandshakeFailure {
    fn from(error: TransportError) -> Self {
        Self { error, hello: None, proven: false }
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
    // Over a session, the key is already authenticated: a `Hello` may claim only that one.
    if let Some(session) = connection.remote_identity
        && session != theirs.public_key
    {
        let error = TransportError::SessionKeyMismatch { addr, session, claimed: theirs.public_key };
        let error = refuse(connection, GoodbyeReason::ProtocolViolation, error).await;
        return Err(HandshakeFailure { error, hello: Some(theirs), proven: false });
    }
    if !theirs.node_id.is_derived_from(&theirs.public_key) {
        let error = TransportError::InvalidKeyProof { addr, claimed: theirs.node_id };
        let error = refuse(connection, GoodbyeReason::ProtocolViolation, error).await;
        return Err(HandshakeFailure { error, hello: Some(theirs), proven: false });
    }

    connection
        .sender
        .send(MeshMessage::HelloAck(HelloAck::prove(identity, &config.network, &theirs.nonce)))
        .await?;
    let proven = match next(connection).await {
        Ok(MeshMessage::HelloAck(ack)) => ack.verifies(&theirs, &nonce),
        Ok(other) => {
            let error = refuse(connection, GoodbyeReason::ProtocolViolation, unexpected(addr, &other)).await;
            return Err(HandshakeFailure { error, hello: Some(theirs), proven: false });
        }
        Err(error) => return Err(HandshakeFailure { error, hello: Some(theirs), proven: false }),
    };
    if !proven {
        let error = TransportError::InvalidKeyProof { addr, claimed: theirs.node_id };
        let error = refuse(connection, GoodbyeReason::ProtocolViolation, error).await;
        return Err(HandshakeFailure { error, hello: Some(theirs), proven: false });
    }
    if let Err(error) = check_hello(&theirs, identity, config, addr) {
        let reason = match error {
            TransportError::NetworkMismatch { .. } => GoodbyeReason::NetworkMismatch,
            TransportError::ProtocolMismatch { .. } => GoodbyeReason::ProtocolMismatch,
            _ => GoodbyeReason::DuplicateConnection,
        };
        let error = refuse(connection, reason, error).await;
        return Err(HandshakeFailure { error, hello: Some(theirs), proven: true });
    }
    Ok(PeerInfo {
        local_nonce: nonce,
        remote_nonce: theirs.nonce,
        node_id: theirs.node_id,
        public_key: theirs.public_key,
        listen_addr: theirs.listen_addr,
        user_agent: bounded(theirs.user_agent, MAX_USER_AGENT_LEN),
        remote_addr: addr,
    })
}

/// The most of a peer's user agent kept: it is only shown in logs and status, and a peer
/// must not make this node hold a megabyte per connection.
pub const MAX_USER_AGENT_LEN: usize = 64;

/// `text` cut to at most `max` bytes, at a character boundary.
pub(crate) fn bounded(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end = end.saturating_sub(1);
        }
        text.truncate(end);
    }
    text
}

/// Network, version and self-connection, judged once the peer's key is proven.
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use mesh_types::{Heartbeat, NetworkId};

    use super::*;
    use crate::{MemoryNetwork, Transport};

    /// Two ends of one in-memory connection.
    async fn pair() -> (Connection, Connection) {
        let network = MemoryNetwork::new();
        let server: SocketAddr = "10.0.0.1:9470".parse().unwrap();
        let client = network.transport("10.0.0.2:9470".parse().unwrap());
        let mut listener = network.transport(server).listen(server).await.unwrap();
        let dialled = client.dial(server).await.unwrap();
        let accepted = listener.accept().await.unwrap();
        (dialled, accepted)
    }

    fn config() -> HandshakeConfig {
        HandshakeConfig { timeout: Duration::from_secs(2), ..HandshakeConfig::new(NetworkId::devnet()) }
    }

    #[tokio::test]
    async fn both_sides_learn_each_other() {
        let (mut a, mut b) = pair().await;
        let (alice, bob) = (Arc::new(NodeIdentity::generate()), Arc::new(NodeIdentity::generate()));
        let settings = config();
        let (from_a, from_b) =
            tokio::join!(handshake(&mut a, &alice, &settings), handshake(&mut b, &bob, &settings));
        assert_eq!(from_a.unwrap().node_id, bob.node_id());
        assert_eq!(from_b.unwrap().node_id, alice.node_id());
    }

    /// Plays a peer that sends `hello`, proves `identity`'s key on the network it claims, and
    /// then only listens.
    async fn scripted(connection: &mut Connection, hello: Hello, identity: &NodeIdentity) {
        let network = hello.network.clone();
        connection.sender.send(MeshMessage::Hello(hello)).await.unwrap();
        if let Some(Ok(MeshMessage::Hello(ours))) = connection.receiver.recv().await {
            let ack = HelloAck::prove(identity, &network, &ours.nonce);
            connection.sender.send(MeshMessage::HelloAck(ack)).await.unwrap();
        }
        while connection.receiver.recv().await.is_some() {}
    }

    fn hello(identity: &NodeIdentity) -> Hello {
        Hello {
            network: NetworkId::devnet(),
            protocol_version: PROTOCOL_VERSION,
            node_id: identity.node_id(),
            public_key: identity.public_key(),
            listen_addr: None,
            user_agent: "test".into(),
            nonce: [9; NONCE_LEN],
        }
    }

    #[tokio::test]
    async fn an_incompatible_version_disconnects_without_a_ban() {
        let (mut a, mut b) = pair().await;
        let peer = NodeIdentity::generate();
        let theirs = Hello { protocol_version: PROTOCOL_VERSION + 1, ..hello(&peer) };
        let (me, settings) = (NodeIdentity::generate(), config());
        let (result, ()) = tokio::join!(handshake(&mut a, &me, &settings), scripted(&mut b, theirs, &peer));
        let failure = result.unwrap_err();
        assert!(
            matches!(failure.error, TransportError::ProtocolMismatch { received, .. } if received == PROTOCOL_VERSION + 1)
        );
        assert_eq!(failure.error.ban_reason(), None);
        assert_eq!(failure.hello.map(|hello| hello.node_id), Some(peer.node_id()));
    }

    #[tokio::test]
    async fn another_network_is_a_ban_reason() {
        let (mut a, mut b) = pair().await;
        let peer = NodeIdentity::generate();
        let theirs = Hello { network: NetworkId::testnet(), ..hello(&peer) };
        let (me, settings) = (NodeIdentity::generate(), config());
        let (result, ()) = tokio::join!(handshake(&mut a, &me, &settings), scripted(&mut b, theirs, &peer));
        let failure = result.unwrap_err();
        assert!(matches!(failure.error, TransportError::NetworkMismatch { .. }), "{}", failure.error);
        assert!(failure.error.ban_reason().is_some());
        assert!(failure.proven, "the key was proven before the network was judged");
    }

    #[tokio::test]
    async fn a_copied_key_without_its_proof_is_not_proven() {
        let (mut a, mut b) = pair().await;
        let victim = NodeIdentity::generate();
        let forger = NodeIdentity::generate();
        // The victim's id and key on the wrong network, "proven" with the forger's key.
        let theirs = Hello { network: NetworkId::testnet(), ..hello(&victim) };
        let (me, settings) = (NodeIdentity::generate(), config());
        let (result, ()) = tokio::join!(handshake(&mut a, &me, &settings), scripted(&mut b, theirs, &forger));
        let failure = result.unwrap_err();
        assert!(matches!(failure.error, TransportError::InvalidKeyProof { .. }), "{}", failure.error);
        assert!(!failure.proven, "nothing may be held against the victim's key");
    }

    #[tokio::test]
    async fn over_a_session_the_hello_must_name_the_authenticated_key() {
        let (mut a, mut b) = pair().await;
        let (me, peer) = (NodeIdentity::generate(), NodeIdentity::generate());
        // As a transport with sessions would set it: this end authenticated another key.
        a.remote_identity = Some(NodeIdentity::generate().public_key());
        let settings = config();
        let (result, ()) =
            tokio::join!(handshake(&mut a, &me, &settings), scripted(&mut b, hello(&peer), &peer));
        let failure = result.unwrap_err();
        assert!(matches!(failure.error, TransportError::SessionKeyMismatch { .. }), "{}", failure.error);
        assert!(!failure.proven);

        // The authenticated keys themselves pass, on both sides.
        let (mut a, mut b) = pair().await;
        a.remote_identity = Some(peer.public_key());
        b.remote_identity = Some(me.public_key());
        let (from_a, from_b) =
            tokio::join!(handshake(&mut a, &me, &settings), handshake(&mut b, &peer, &settings));
        assert_eq!(from_a.unwrap().public_key, peer.public_key());
        assert_eq!(from_b.unwrap().public_key, me.public_key());
    }

    #[tokio::test]
    async fn without_a_session_there_is_no_key_to_match() {
        let (a, b) = pair().await;
        assert_eq!((a.remote_identity, b.remote_identity), (None, None), "the memory transport has none");
    }

    #[tokio::test]
    async fn connecting_to_itself_is_recognised() {
        let (mut a, mut b) = pair().await;
        let me = NodeIdentity::from_secret_bytes(&[3; 32]);
        let settings = config();
        let (result, ()) = tokio::join!(handshake(&mut a, &me, &settings), scripted(&mut b, hello(&me), &me));
        assert!(matches!(result.unwrap_err().error, TransportError::SelfConnection { .. }));
    }

    #[tokio::test]
    async fn anything_but_a_hello_first_fails_the_handshake() {
        let (mut a, b) = pair().await;
        b.sender
            .send(MeshMessage::Ping(Heartbeat {
                nonce: 1,
                is_provider: false,
                peer_count: 0,
                sent_at: mesh_types::chrono::DateTime::UNIX_EPOCH,
                provider_hops: None,
            }))
            .await
            .unwrap();
        let error = handshake(&mut a, &NodeIdentity::generate(), &config()).await.unwrap_err().error;
        assert!(matches!(error, TransportError::HandshakeFailed { .. }), "{error}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_peer_times_out() {
        let (mut a, _b) = pair().await;
        let error = handshake(&mut a, &NodeIdentity::generate(), &config()).await.unwrap_err().error;
        assert!(matches!(error, TransportError::HandshakeTimeout { .. }), "{error}");
        // The peer took the connection but never answered: dialling it again soon will not help.
        assert!(!error.is_retryable(), "a handshake timeout is not retryable");
    }
}
