//! [`HostilePeer`]: a stranger on a real node's peer port. It completes a genuine Noise session
//! and `Hello` exchange under a key of its own, as any new node would, and from then on sends
//! whatever a test scripts: forged, replayed, cross-network, misdated or poisoned updates,
//! floods of control messages. Tests use it against `mesh-node` processes to show that what a
//! stranger can do stays bounded.
//!
//! Updates it makes are signed for real (or deliberately not), so a node can only refuse them
//! by its own checks, never because the attacker got the wire format wrong.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mesh_transport::handshake::{self, HandshakeConfig, PeerInfo};
use mesh_transport::{Connection, LinkConfig, TcpTransport, Transport, TransportError};
use mesh_types::{MeshMessage, NetworkId, NodeIdentity, PriceData, PriceUpdate, Timestamp};

/// How long [`HostilePeer::join`] waits for the node's side of the handshake.
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A peer that completed the protocol's handshake with a node and now misbehaves on cue.
#[derive(Debug)]
pub struct HostilePeer {
    identity: Arc<NodeIdentity>,
    network: NetworkId,
    connection: Connection,
    node: PeerInfo,
}

impl HostilePeer {
    /// Dials `addr` as `identity` on `network` and completes the Noise session and the `Hello`
    /// exchange.
    ///
    /// # Errors
    /// What the node answered instead: a refused or closed connection (a node that banned this
    /// key or this address closes it at once), a failed session or handshake.
    pub async fn join(
        addr: SocketAddr,
        identity: Arc<NodeIdentity>,
        network: NetworkId,
    ) -> Result<Self, TransportError> {
        let transport = TcpTransport::new(LinkConfig::default(), &identity, &network);
        let mut connection = transport.dial(addr).await?;
        let mut config = HandshakeConfig::new(network.clone());
        config.user_agent = "hostile-peer/0".to_owned();
        config.timeout = JOIN_TIMEOUT;
        let node = handshake::handshake(&mut connection, &identity, &config)
            .await
            .map_err(|failure| failure.error)?;
        Ok(Self { identity, network, connection, node })
    }

    /// The key this peer signs with.
    #[must_use]
    pub const fn identity(&self) -> &Arc<NodeIdentity> {
        &self.identity
    }

    /// What the node proved about itself in the handshake.
    #[must_use]
    pub const fn node(&self) -> &PeerInfo {
        &self.node
    }

    /// An update of `prices` at `at`, signed by this peer for `network` (its own network, or
    /// another one to play a cross-network replay).
    #[must_use]
    pub fn signed_for(&self, network: &NetworkId, prices: Vec<PriceData>, at: Timestamp) -> PriceUpdate {
        PriceUpdate::new_signed(&self.identity, network, prices, 10, at)
    }

    /// An update of `prices` at `at`, signed by this peer for the node's network.
    #[must_use]
    pub fn signed(&self, prices: Vec<PriceData>, at: Timestamp) -> PriceUpdate {
        self.signed_for(&self.network, prices, at)
    }

    /// An update whose signature does not cover its content: signed, then its first price
    /// changed.
    #[must_use]
    pub fn forged(&self, prices: Vec<PriceData>, at: Timestamp) -> PriceUpdate {
        let mut update = self.signed(prices, at);
        if let Some(mut first) = update.prices.first_entry() {
            let price = &mut first.get_mut().price;
            *price = price.saturating_mul(2.into());
        }
        update
    }

    /// Sends `message` to the node.
    ///
    /// # Errors
    /// When the node has closed the connection.
    pub async fn send(&self, message: impl Into<MeshMessage>) -> Result<(), TransportError> {
        self.connection.sender.send(message.into()).await
    }

    /// The next message the node sends within `wait`, skipping heartbeats; `None` on silence.
    ///
    /// # Errors
    /// When the node closed the connection or a frame failed to decode.
    pub async fn recv(&mut self, wait: Duration) -> Result<Option<MeshMessage>, TransportError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.connection.receiver.recv()).await {
                Err(_) => return Ok(None),
                Ok(None) => return Err(TransportError::Closed { addr: self.node.remote_addr }),
                Ok(Some(Err(err))) => return Err(err),
                Ok(Some(Ok(MeshMessage::Ping(ping)))) => {
                    // Answer, so the node keeps this peer as long as the test wants it.
                    let _ = self.connection.sender.try_send(MeshMessage::Pong(ping));
                }
                Ok(Some(Ok(MeshMessage::Pong(_)))) => {}
                Ok(Some(Ok(message))) => return Ok(Some(message)),
            }
        }
    }

    /// Every message the node sends within `wait` (heartbeats answered and left out), and
    /// whether the node closed the connection meanwhile.
    pub async fn drain(&mut self, wait: Duration) -> (Vec<MeshMessage>, bool) {
        let deadline = tokio::time::Instant::now() + wait;
        let mut received = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv(left).await {
                Ok(Some(message)) => received.push(message),
                Ok(None) => return (received, false),
                Err(_) => return (received, true),
            }
        }
    }
}
