//! What the connection manager reports to the rest of the node: [`TransportEvent`]s on a
//! bounded channel, and [`ConnectedPeer`] snapshots.

use std::net::SocketAddr;
use std::time::Duration;

use mesh_types::{MeshMessage, NodeId};

use crate::handshake::PeerInfo;

/// Something that happened on the network layer.
#[derive(Debug, Clone)]
pub enum TransportEvent {
    /// A peer completed the handshake and is connected.
    Connected(PeerInfo),
    /// A peer is gone.
    Disconnected {
        /// The peer.
        node_id: NodeId,
        /// Why, in words.
        reason: String,
    },
    /// A peer sent a message for the layers above (everything except the handshake,
    /// heartbeats, peer exchange and goodbyes, which the manager handles).
    Message {
        /// The sender.
        from: NodeId,
        /// The message.
        message: MeshMessage,
    },
}

/// Which side opened a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// The peer dialled this node.
    Inbound,
    /// This node dialled the peer.
    Outbound,
}

/// A connected peer, as [`crate::ConnectionManager::connected_peers`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectedPeer {
    /// Its identity and addresses.
    pub info: PeerInfo,
    /// Who dialled.
    pub direction: Direction,
    /// The last measured heartbeat round trip.
    pub round_trip: Option<Duration>,
    /// Whether its last heartbeat said it is a provider.
    pub is_provider: bool,
    /// How many peers its last heartbeat said it has.
    pub peer_count: u32,
}

impl ConnectedPeer {
    /// The address to dial this peer at: its advertised listen address, if any.
    pub fn dial_addr(&self) -> Option<SocketAddr> {
        self.info.listen_addr
    }
}
