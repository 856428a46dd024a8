//! LAN discovery: nodes on one network segment find each other with no bootstrap address, by
//! UDP multicast beacons. Off by default (`MESH_LAN_DISCOVERY=true` turns it on).
//!
//! Every [`LanDiscovery::interval`] a listening node sends a small beacon to the multicast
//! group: its network, node id and listening port. A node that hears a beacon from its own
//! network records the sender's address (the beacon's source IP and the announced port) in the
//! peer store as a dial candidate; the connection manager dials it like any other, and the
//! handshake proves who is there. Beacons from other networks, this node, or of the wrong
//! shape are ignored.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use mesh_types::{NetworkId, NodeId};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

/// Where and how often beacons are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LanDiscovery {
    /// The multicast group and port (default `239.255.70.70:9471`, in the organisation-local
    /// scope, so routers keep it on the site).
    pub group: SocketAddrV4,
    /// The local interface to send and listen on (default: the one the OS picks).
    pub interface: Ipv4Addr,
    /// Time between beacons (default 5 s).
    pub interval: Duration,
}

impl Default for LanDiscovery {
    fn default() -> Self {
        Self {
            group: SocketAddrV4::new(Ipv4Addr::new(239, 255, 70, 70), 9471),
            interface: Ipv4Addr::UNSPECIFIED,
            interval: Duration::from_secs(5),
        }
    }
}

/// Marks a pricemesh beacon.
const MAGIC: &[u8; 4] = b"PMLD";
/// The beacon format version.
const VERSION: u8 = 1;
/// Beacons are small; anything longer is not ours.
pub(crate) const MAX_BEACON: usize = 64;

/// What a beacon says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Beacon {
    pub(crate) network: NetworkId,
    pub(crate) node_id: NodeId,
    pub(crate) listen_port: u16,
}

impl Beacon {
    /// `MAGIC | version | node id (16) | port (u16 BE) | network length (u8) | network`.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let network = self.network.as_str().as_bytes();
        let mut bytes = Vec::with_capacity(network.len().saturating_add(24));
        bytes.extend_from_slice(MAGIC);
        bytes.push(VERSION);
        bytes.extend_from_slice(self.node_id.as_uuid().as_bytes());
        bytes.extend_from_slice(&self.listen_port.to_be_bytes());
        // Network ids are at most 32 bytes.
        bytes.push(network.len() as u8);
        bytes.extend_from_slice(network);
        bytes
    }

    /// The beacon in `bytes`, or `None` for anything else.
    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        let rest = bytes.strip_prefix(MAGIC)?;
        let (&version, rest) = rest.split_first()?;
        if version != VERSION {
            return None;
        }
        let (id, rest) = rest.split_first_chunk::<16>()?;
        let (port, rest) = rest.split_first_chunk::<2>()?;
        let (&len, network) = rest.split_first()?;
        if network.len() != usize::from(len) {
            return None;
        }
        let network = NetworkId::new(std::str::from_utf8(network).ok()?).ok()?;
        Some(Self {
            network,
            node_id: NodeId::from_uuid(uuid::Uuid::from_bytes(*id)),
            listen_port: u16::from_be_bytes(*port),
        })
    }
}

/// A UDP socket that has joined the group. Address and port reuse let several nodes on one
/// host listen to the same group; loopback lets them hear each other.
pub(crate) fn bind(config: &LanDiscovery) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, config.group.port())).into())?;
    socket.join_multicast_v4(config.group.ip(), &config.interface)?;
    socket.set_multicast_if_v4(&config.interface)?;
    socket.set_multicast_loop_v4(true)?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beacon() -> Beacon {
        Beacon {
            network: NetworkId::devnet(),
            node_id: mesh_types::NodeIdentity::generate().node_id(),
            listen_port: 9470,
        }
    }

    #[test]
    fn beacons_round_trip_and_fit_the_limit() {
        let beacon = beacon();
        let bytes = beacon.encode();
        assert!(bytes.len() <= MAX_BEACON);
        assert_eq!(Beacon::decode(&bytes), Some(beacon));
    }

    #[test]
    fn anything_else_is_ignored() {
        let bytes = beacon().encode();
        for cut in 0..bytes.len() {
            assert_eq!(Beacon::decode(&bytes[..cut]), None, "a beacon cut at {cut}");
        }
        let mut wrong_version = bytes.clone();
        wrong_version[4] = 2;
        assert_eq!(Beacon::decode(&wrong_version), None);
        let mut longer = bytes;
        longer.push(b'x');
        assert_eq!(Beacon::decode(&longer), None);
        assert_eq!(Beacon::decode(b"hello world"), None);
    }
}
