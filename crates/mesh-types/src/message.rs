//! [`MeshMessage`]: everything one node sends another, as the wire protocol of the design
//! carries it.
//!
//! Encoding is positional (postcard), so variants and fields are never reordered or removed;
//! new variants go at the end, and an incompatible change bumps
//! [`crate::codec::WIRE_FORMAT_VERSION`] or [`PROTOCOL_VERSION`].

use std::net::SocketAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::canonical::CanonicalWriter;
use crate::serde_util::{fixed_bytes, timestamp};
use crate::signing::SignedMessage;
use crate::{
    Asset, MessageId, NetworkId, NodeId, NodeIdentity, PriceUpdate, PublicKey, Signature, Timestamp,
    WarningKind,
};

/// The protocol version a node speaks, exchanged in [`Hello`] and bound into the session's
/// prologue, so nodes of different versions refuse each other at the handshake instead of
/// misreading each other's frames.
///
/// 2: heartbeats carry the sender's time, announcements the sender's clock offset, and
/// `CLOCK_SKEW` joined the warning kinds.
///
/// 3: heartbeats and peer exchange entries carry hop counts to the nearest provider.
///
/// 4: lazy push: [`MeshMessage::IHave`], [`MeshMessage::Graft`] and [`MeshMessage::Prune`].
pub const PROTOCOL_VERSION: u16 = 4;

/// Most message ids in one [`IHave`] or [`Graft`]; a longer list is cut to this many by the
/// receiver, and a sender splits its own.
pub const MAX_LAZY_IDS: usize = 512;

/// The farthest a node counts its distance to a provider; a longer distance (or a loop
/// counting up after a provider left) means "no provider known".
pub const MAX_PROVIDER_HOPS: u8 = 16;

/// Length of a handshake nonce in bytes.
pub const NONCE_LEN: usize = 32;

/// One message between two connected nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MeshMessage {
    /// Opens a connection: who I am and which network I am on.
    Hello(Hello),
    /// Completes a connection: proof that I hold the key I claimed.
    HelloAck(HelloAck),
    /// Heartbeat request.
    Ping(Heartbeat),
    /// Heartbeat answer, echoing the ping's nonce.
    Pong(Heartbeat),
    /// Signed prices being gossiped. Shared: a node passes one received update to its store's
    /// log and to every peer it relays to without copying it.
    PriceUpdate(Arc<PriceUpdate>),
    /// Anti-entropy: the newest timestamp I hold per asset.
    Digest(Digest),
    /// Anti-entropy: send me your updates for these assets.
    Request(Request),
    /// Addresses of peers I know to be good.
    PeerExchange(PeerExchange),
    /// A node's presence and role, gossiped.
    Announce(Announce),
    /// A mesh-wide warning, gossiped.
    Alert(Alert),
    /// I am closing this connection, and why.
    Goodbye(Goodbye),
    /// Lazy push: I accepted these updates and did not send you their payloads.
    IHave(LazyIds),
    /// Lazy push: send me these updates' payloads, and push updates to me eagerly from now on.
    Graft(LazyIds),
    /// Lazy push: your payload reached me by another path first; send me only ids from now on.
    Prune,
}

impl From<PriceUpdate> for MeshMessage {
    fn from(update: PriceUpdate) -> Self {
        Self::PriceUpdate(Arc::new(update))
    }
}

impl From<Arc<PriceUpdate>> for MeshMessage {
    fn from(update: Arc<PriceUpdate>) -> Self {
        Self::PriceUpdate(update)
    }
}

impl MeshMessage {
    /// The variant's name, for logs and metrics.
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::Hello(_) => "hello",
            Self::HelloAck(_) => "hello_ack",
            Self::Ping(_) => "ping",
            Self::Pong(_) => "pong",
            Self::PriceUpdate(_) => "price_update",
            Self::Digest(_) => "digest",
            Self::Request(_) => "request",
            Self::PeerExchange(_) => "peer_exchange",
            Self::Announce(_) => "announce",
            Self::Alert(_) => "alert",
            Self::Goodbye(_) => "goodbye",
            Self::IHave(_) => "ihave",
            Self::Graft(_) => "graft",
            Self::Prune => "prune",
        }
    }

    /// About how many bytes this message holds once decoded: its fixed part and what each of
    /// its items takes. Queues of received messages are bounded by it as well as by count,
    /// since one frame may carry a megabyte.
    pub fn weight(&self) -> usize {
        /// The fixed part of any message, its header and allocations, rounded up.
        const BASE: usize = 256;
        /// One price of an update in its map: the asset, two decimals, the map node.
        const PRICE: usize = 96;
        let items = match self {
            Self::PriceUpdate(update) => update
                .prices
                .values()
                .map(|price| PRICE.saturating_add(price.blockchain.len()))
                .fold(0usize, usize::saturating_add),
            Self::Digest(digest) => digest.entries.len().saturating_mul(size_of::<DigestEntry>()),
            Self::Request(request) => request.assets.len().saturating_mul(size_of::<Asset>()),
            Self::PeerExchange(exchange) => exchange.peers.len().saturating_mul(size_of::<PeerAddress>()),
            Self::Hello(hello) => hello.user_agent.len(),
            Self::IHave(lazy) | Self::Graft(lazy) => lazy.ids.len().saturating_mul(size_of::<MessageId>()),
            Self::Prune
            | Self::HelloAck(_)
            | Self::Ping(_)
            | Self::Pong(_)
            | Self::Announce(_)
            | Self::Alert(_)
            | Self::Goodbye(_) => 0,
        };
        BASE.saturating_add(items)
    }
}

/// The first message on a connection, sent by both sides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The network the sender belongs to; a mismatch ends the connection.
    pub network: NetworkId,
    /// The sender's protocol version.
    pub protocol_version: u16,
    /// The sender's id; must derive from `public_key`.
    pub node_id: NodeId,
    /// The sender's public key.
    pub public_key: PublicKey,
    /// Where the sender accepts connections, if it does.
    pub listen_addr: Option<SocketAddr>,
    /// Software and version, e.g. `pricemesh/0.1.0`.
    pub user_agent: String,
    /// Fresh randomness the other side must sign in its [`HelloAck`].
    #[serde(with = "fixed_bytes")]
    pub nonce: [u8; NONCE_LEN],
}

/// Proof of key possession: the signature over the other side's [`Hello::nonce`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloAck {
    /// Signature over [`handshake_proof_bytes`] of the peer's nonce.
    pub proof: Signature,
}

/// Domain tag of the handshake proof.
const HANDSHAKE_DOMAIN: &str = "pricemesh/handshake/v1";

/// The bytes a node signs to prove it holds its key: bound to the network, the peer's nonce and
/// the signer's id, so a proof is useless on another network, connection or node.
pub fn handshake_proof_bytes(network: &NetworkId, peer_nonce: &[u8; NONCE_LEN], signer: &NodeId) -> Vec<u8> {
    let mut writer = CanonicalWriter::new(HANDSHAKE_DOMAIN, network);
    writer.raw(peer_nonce).node_id(signer);
    writer.finish()
}

impl HelloAck {
    /// The proof `identity` sends in answer to a peer's `peer_nonce`.
    pub fn prove(identity: &NodeIdentity, network: &NetworkId, peer_nonce: &[u8; NONCE_LEN]) -> Self {
        Self { proof: identity.sign(&handshake_proof_bytes(network, peer_nonce, &identity.node_id())) }
    }

    /// Checks this proof answers `our_nonce` and was made by the key in the peer's `hello`.
    pub fn verifies(&self, hello: &Hello, our_nonce: &[u8; NONCE_LEN]) -> bool {
        if !hello.node_id.is_derived_from(&hello.public_key) {
            return false;
        }
        let Ok(key) = hello.public_key.verifying_key() else {
            return false;
        };
        let bytes = handshake_proof_bytes(&hello.network, our_nonce, &hello.node_id);
        key.verify_strict(&bytes, &self.proof.to_dalek()).is_ok()
    }
}

/// A heartbeat ([`MeshMessage::Ping`] or [`MeshMessage::Pong`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Chosen by the pinger and echoed in the pong, to match them and measure round-trip time.
    pub nonce: u64,
    /// Whether the sender is a provider right now.
    pub is_provider: bool,
    /// How many peers the sender is connected to.
    pub peer_count: u32,
    /// The sender's clock when it sent this: with the round-trip time, it tells the receiver
    /// how far the sender's clock is from its own (NTP style).
    #[serde(with = "timestamp")]
    pub sent_at: Timestamp,
    /// Hops from the sender to the nearest provider, as it counts them without the receiver:
    /// 0 when it is one, `None` when it knows none (or only through the receiver).
    pub provider_hops: Option<u8>,
}

/// Anti-entropy summary: the newest timestamp held per asset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    /// One entry per asset held.
    pub entries: Vec<DigestEntry>,
}

/// The newest price a node holds for one asset, by its position in the newest-wins order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestEntry {
    /// The asset.
    pub asset: Asset,
    /// Timestamp of the newest price held.
    #[serde(with = "timestamp")]
    pub timestamp: Timestamp,
    /// Its source, which decides between equal timestamps.
    pub source_node_id: NodeId,
    /// Its [`crate::CachedPriceData::content_digest`], which decides between two prices one
    /// source published for the same instant.
    #[serde(with = "fixed_bytes")]
    pub content: [u8; 32],
}

impl DigestEntry {
    /// The entry describing `price`.
    pub fn of(price: &crate::CachedPriceData) -> Self {
        Self {
            asset: price.asset,
            timestamp: price.timestamp,
            source_node_id: price.source_node_id,
            content: price.content_digest(),
        }
    }

    /// Whether the price this entry describes is newer, in the newest-wins order, than `price`.
    pub fn newer_than(&self, price: &crate::CachedPriceData) -> bool {
        (self.timestamp, self.source_node_id, self.content)
            > (price.timestamp, price.source_node_id, price.content_digest())
    }
}

/// Anti-entropy pull: the assets the sender wants the newest signed updates for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The assets.
    pub assets: Vec<Asset>,
}

/// The ids of an [`MeshMessage::IHave`] or a [`MeshMessage::Graft`]: at most
/// [`MAX_LAZY_IDS`] are read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LazyIds {
    /// The updates' ids ([`crate::PriceUpdate::seen_key`]).
    pub ids: Vec<MessageId>,
}

/// Addresses of peers known to be good.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerExchange {
    /// The peers.
    pub peers: Vec<PeerAddress>,
}

/// Where a known node listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PeerAddress {
    /// The node.
    pub node_id: NodeId,
    /// Its listen address.
    pub addr: SocketAddr,
    /// Its hops to the nearest provider, when the sender is connected to it and heard them in
    /// its last heartbeat; `None` otherwise. A claim: see [`MAX_PROVIDER_HOPS`].
    pub provider_hops: Option<u8>,
}

/// A node's signed statement of presence and role, gossiped so every node can count the
/// network and list its providers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announce {
    /// Unique per announcement (deduplicated like price updates).
    pub message_id: MessageId,
    /// The announcing node; must derive from `public_key`.
    pub node_id: NodeId,
    /// Its public key.
    pub public_key: PublicKey,
    /// Whether it is a provider.
    pub is_provider: bool,
    /// Where it accepts connections, if it does.
    pub listen_addr: Option<SocketAddr>,
    /// When it announced.
    #[serde(with = "timestamp")]
    pub timestamp: Timestamp,
    /// Hops it may still travel. Not signed.
    pub ttl: u8,
    /// Hops travelled. Not signed.
    pub hop_count: u8,
    /// Signature by `public_key` over everything except `ttl` and `hop_count`.
    pub signature: Signature,
    /// How far the announcer's clock is ahead of its peers' (their median, from heartbeats),
    /// in milliseconds; negative when behind. Nodes that are not its peers correct its
    /// timestamps by it. Only its own claim: a provider can sign any timestamp anyway, so
    /// the claim gives it no power it lacked.
    pub clock_offset_ms: i64,
}

const ANNOUNCE_DOMAIN: &str = "pricemesh/announce/v1";

impl Announce {
    /// A signed announcement by `identity`.
    pub fn new_signed(
        identity: &NodeIdentity,
        network: &NetworkId,
        is_provider: bool,
        listen_addr: Option<SocketAddr>,
        ttl: u8,
        timestamp: Timestamp,
    ) -> Self {
        Self::new_signed_with_offset(identity, network, is_provider, listen_addr, ttl, timestamp, 0)
    }

    /// A signed announcement by `identity` that says its clock is `clock_offset_ms` ahead of
    /// its peers'.
    pub fn new_signed_with_offset(
        identity: &NodeIdentity,
        network: &NetworkId,
        is_provider: bool,
        listen_addr: Option<SocketAddr>,
        ttl: u8,
        timestamp: Timestamp,
        clock_offset_ms: i64,
    ) -> Self {
        let mut announce = Self {
            message_id: MessageId::new(),
            node_id: identity.node_id(),
            public_key: identity.public_key(),
            is_provider,
            listen_addr,
            timestamp,
            ttl,
            hop_count: 0,
            signature: Signature::EMPTY,
            clock_offset_ms,
        };
        announce.signature = identity.sign(&announce.signing_bytes(network));
        announce
    }
}

impl SignedMessage for Announce {
    fn signer(&self) -> (NodeId, &PublicKey) {
        (self.node_id, &self.public_key)
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn signing_bytes(&self, network: &NetworkId) -> Vec<u8> {
        let mut writer = CanonicalWriter::new(ANNOUNCE_DOMAIN, network);
        writer
            .message_id(&self.message_id)
            .node_id(&self.node_id)
            .public_key(&self.public_key)
            .bool(self.is_provider)
            .str(&self.listen_addr.map(|addr| addr.to_string()).unwrap_or_default())
            .timestamp(&self.timestamp)
            .i64(self.clock_offset_ms);
        writer.finish()
    }
}

/// A signed mesh-wide warning, e.g. a price discrepancy one node noticed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Unique per alert (deduplicated like price updates).
    pub message_id: MessageId,
    /// The node that raised it; must derive from `origin_key`.
    pub origin: NodeId,
    /// Its public key.
    pub origin_key: PublicKey,
    /// When it was raised.
    #[serde(with = "timestamp")]
    pub timestamp: Timestamp,
    /// What it is about.
    pub kind: WarningKind,
    /// Hops it may still travel. Not signed.
    pub ttl: u8,
    /// Hops travelled. Not signed.
    pub hop_count: u8,
    /// Signature by `origin_key` over everything except `ttl` and `hop_count`.
    pub signature: Signature,
}

const ALERT_DOMAIN: &str = "pricemesh/alert/v1";

impl Alert {
    /// A signed alert raised by `identity`.
    pub fn new_signed(
        identity: &NodeIdentity,
        network: &NetworkId,
        kind: WarningKind,
        ttl: u8,
        timestamp: Timestamp,
    ) -> Self {
        let mut alert = Self {
            message_id: MessageId::new(),
            origin: identity.node_id(),
            origin_key: identity.public_key(),
            timestamp,
            kind,
            ttl,
            hop_count: 0,
            signature: Signature::EMPTY,
        };
        alert.signature = identity.sign(&alert.signing_bytes(network));
        alert
    }
}

impl SignedMessage for Alert {
    fn signer(&self) -> (NodeId, &PublicKey) {
        (self.origin, &self.origin_key)
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn signing_bytes(&self, network: &NetworkId) -> Vec<u8> {
        let mut writer = CanonicalWriter::new(ALERT_DOMAIN, network);
        writer
            .message_id(&self.message_id)
            .node_id(&self.origin)
            .public_key(&self.origin_key)
            .timestamp(&self.timestamp);
        match &self.kind {
            WarningKind::NoProviders => writer.u8(0),
            WarningKind::StaleData { age_seconds } => writer.u8(1).u64(*age_seconds),
            WarningKind::PriceDiscrepancy { asset, discrepancy_percent } => {
                writer.u8(2).asset(asset).u64(discrepancy_percent.to_bits())
            }
            WarningKind::ClockSkew { node_id, offset_ms } => writer.u8(3).node_id(node_id).i64(*offset_ms),
        };
        writer.finish()
    }
}

/// Why a node is closing a connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GoodbyeReason {
    /// The node is shutting down.
    Shutdown,
    /// The node has as many peers as it wants.
    TooManyPeers,
    /// The node is already connected to this peer.
    DuplicateConnection,
    /// The peer is on another network.
    NetworkMismatch,
    /// The peer speaks an incompatible protocol version.
    ProtocolMismatch,
    /// The peer broke the protocol (bad frame, failed proof, misbehaviour).
    ProtocolViolation,
    /// The peer is banned.
    Banned,
    /// Anything else, in words.
    Other(String),
}

/// An orderly disconnect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Goodbye {
    /// Why.
    pub reason: GoodbyeReason,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(assets: usize) -> MeshMessage {
        let asset = Asset::new("SOL").unwrap();
        MeshMessage::Request(Request { assets: vec![asset; assets] })
    }

    #[test]
    fn the_weight_grows_with_what_a_message_carries() {
        let goodbye = MeshMessage::Goodbye(Goodbye { reason: GoodbyeReason::Shutdown });
        assert_eq!(goodbye.weight(), request(0).weight(), "empty messages weigh their fixed part");
        assert!(request(1000).weight() >= request(0).weight() + 1000 * size_of::<Asset>());
    }
}
