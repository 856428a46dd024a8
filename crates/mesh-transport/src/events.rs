//! What the connection manager reports to the rest of the node: [`TransportEvent`]s on an
//! [`EventReceiver`], bounded by count and by the bytes of the messages waiting in it, and
//! [`ConnectedPeer`] snapshots.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mesh_types::{BanReason, GoodbyeReason, MeshMessage, NodeId};
use tokio::sync::{Semaphore, mpsc};

use crate::TransportError;
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
        /// Why.
        reason: DisconnectReason,
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

/// Why a peer is gone. Its `Display` is the words the log and tests show.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// This node is shutting down.
    Shutdown,
    /// The connection closed without a goodbye.
    Closed,
    /// The connection failed: a read error, an oversized frame, a message that did not decrypt.
    Failed(Arc<TransportError>),
    /// The peer said goodbye, for this reason (its words cut to a bound).
    Goodbye(GoodbyeReason),
    /// The peer sent a handshake message after the handshake.
    HandshakeAfterHandshake,
    /// Whoever consumes the node's events has stopped.
    ConsumerGone,
    /// The peer was silent past the heartbeat timeout.
    HeartbeatTimeout,
    /// This node banned it.
    Banned(BanReason),
    /// This node gave its slot to a peer closer to the providers.
    ReplacedByCloserPeer,
    /// This node's owner asked ([`crate::ConnectionManager::disconnect`]), in these words.
    Requested(String),
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Shutdown => f.write_str("shutdown"),
            Self::Closed => f.write_str("connection closed"),
            Self::Failed(error) => write!(f, "{error}"),
            Self::Goodbye(reason) => write!(f, "peer said goodbye: {reason:?}"),
            Self::HandshakeAfterHandshake => {
                f.write_str("protocol violation: handshake message after the handshake")
            }
            Self::ConsumerGone => f.write_str("the node is shutting down"),
            Self::HeartbeatTimeout => f.write_str("heartbeat timeout"),
            Self::Banned(reason) => write!(f, "banned: {reason:?}"),
            Self::ReplacedByCloserPeer => f.write_str("replaced by a peer closer to the providers"),
            Self::Requested(words) => f.write_str(words),
        }
    }
}

/// The bytes of received messages waiting for the consumer, shared by the manager (which takes
/// a message's [`MeshMessage::weight`] before queueing it, waiting while the budget is spent)
/// and the [`EventReceiver`] (which gives it back as the consumer takes the message).
#[derive(Debug)]
pub(crate) struct EventBudget {
    bytes: Semaphore,
    total: usize,
}

impl EventBudget {
    pub(crate) fn new(total: usize) -> Arc<Self> {
        let total = total.clamp(1, Semaphore::MAX_PERMITS);
        Arc::new(Self { bytes: Semaphore::new(total), total })
    }

    /// What `message` is charged: its weight, at most the whole budget (so one message larger
    /// than the budget still passes, alone).
    pub(crate) fn charge(&self, message: &MeshMessage) -> u32 {
        u32::try_from(message.weight().min(self.total)).unwrap_or(u32::MAX)
    }

    /// Waits until `charge` bytes are free and takes them; `false` if the budget is closed.
    pub(crate) async fn take(&self, charge: u32) -> bool {
        match self.bytes.acquire_many(charge).await {
            Ok(permit) => {
                permit.forget();
                true
            }
            Err(_) => false,
        }
    }

    fn give_back(&self, charge: u32) {
        self.bytes.add_permits(usize::try_from(charge).unwrap_or(0));
    }

    fn queued(&self) -> usize {
        self.total.saturating_sub(self.bytes.available_permits())
    }
}

/// The events of a [`crate::ConnectionManager`], in order. At most
/// [`crate::ManagerConfig::event_queue`] wait, holding at most
/// [`crate::ManagerConfig::event_queue_bytes`] of messages: past either, the manager stops
/// reading from the peers whose messages wait, and TCP pushes back on them.
#[derive(Debug)]
pub struct EventReceiver {
    queue: mpsc::Receiver<(TransportEvent, u32)>,
    budget: Arc<EventBudget>,
}

impl EventReceiver {
    pub(crate) fn new(queue: mpsc::Receiver<(TransportEvent, u32)>, budget: Arc<EventBudget>) -> Self {
        Self { queue, budget }
    }

    /// The next event; `None` once the manager has stopped.
    pub async fn recv(&mut self) -> Option<TransportEvent> {
        let (event, charge) = self.queue.recv().await?;
        self.budget.give_back(charge);
        Some(event)
    }

    /// The next event if one is waiting.
    ///
    /// # Errors
    /// [`mpsc::error::TryRecvError::Empty`] when none is, `Disconnected` once the manager has
    /// stopped.
    pub fn try_recv(&mut self) -> Result<TransportEvent, mpsc::error::TryRecvError> {
        let (event, charge) = self.queue.try_recv()?;
        self.budget.give_back(charge);
        Ok(event)
    }

    /// The bytes of the messages waiting, by [`MeshMessage::weight`].
    pub fn queued_bytes(&self) -> usize {
        self.budget.queued()
    }

    /// How many events are waiting.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether no event is waiting.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
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
    /// How far its clock is ahead of this node's, in milliseconds (negative when behind),
    /// from the fastest of its recent heartbeat exchanges.
    pub clock_offset_ms: Option<i64>,
    /// Whether its last heartbeat said it is a provider.
    pub is_provider: bool,
    /// How many peers its last heartbeat said it has.
    pub peer_count: u32,
    /// Its hops to the nearest provider, as its last heartbeat said (a claim).
    pub provider_hops: Option<u8>,
    /// Whether this node dialled it for being closer to the providers (a slot above the
    /// minimum, which a closer candidate may take over).
    pub preferred: bool,
}

impl ConnectedPeer {
    /// The address to dial this peer at: its advertised listen address, if any.
    pub fn dial_addr(&self) -> Option<SocketAddr> {
        self.info.listen_addr
    }
}
