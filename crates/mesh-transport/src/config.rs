//! [`ManagerConfig`]: the connection manager's settings, with the project's defaults
//! (`MESH_MIN_PEER_CONNECTIONS` 3, `MESH_MAX_PEER_CONNECTIONS` 10, heartbeat every 5 s, a peer
//! silent for 30 s is dropped).

use std::net::SocketAddr;
use std::time::Duration;

use mesh_types::NetworkId;
use thiserror::Error;

use crate::{LanDiscovery, LinkConfig};

/// How the connection manager behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagerConfig {
    /// The network this node belongs to (`MESH_NETWORK`).
    pub network: NetworkId,
    /// Where to accept connections (`MESH_LISTEN_ADDR`); `None` for an outbound-only node.
    pub listen_addr: Option<SocketAddr>,
    /// The address to tell peers, when it differs from the bound one (behind NAT, or when
    /// listening on `0.0.0.0`).
    pub advertised_addr: Option<SocketAddr>,
    /// Bootstrap peers as `host:port` (`MESH_BOOTSTRAP_PEERS`); names are resolved by DNS on
    /// every attempt.
    pub bootstrap: Vec<String>,
    /// Below this many peers the node dials whatever candidates it knows
    /// (`MESH_MIN_PEER_CONNECTIONS`, default 3).
    pub min_peers: usize,
    /// Never more peers than this, inbound and outbound together
    /// (`MESH_MAX_PEER_CONNECTIONS`, default 10).
    pub max_peers: usize,
    /// Never more inbound peers than this (default: `max_peers`), so outbound dials always
    /// find room.
    pub max_inbound: usize,
    /// The most inbound handshakes in progress at once (default 8): sockets that connect and
    /// say nothing wait here, never in the peer slots, so they cannot keep the node from its own
    /// dials.
    pub max_pending_inbound: usize,
    /// The most inbound connections (in handshake or established) from one IP address
    /// (default 4), so one host cannot fill the inbound slots. Loopback is exempt unless
    /// `limit_loopback`: nodes of one machine (tests, the demo) all connect from there.
    pub max_inbound_per_ip: usize,
    /// Apply `max_inbound_per_ip` to loopback addresses too (default off).
    pub limit_loopback: bool,
    /// How often each peer is pinged (default 5 s).
    pub heartbeat_interval: Duration,
    /// A peer silent this long is disconnected and marked inaccessible (default 30 s).
    pub heartbeat_timeout: Duration,
    /// How long a handshake may take (default 10 s).
    pub handshake_timeout: Duration,
    /// How often the manager looks for peers to dial (default 1 s).
    pub maintenance_interval: Duration,
    /// First delay before redialling an address that failed (default 1 s); it doubles per
    /// failure, with ±20 % jitter.
    pub backoff_initial: Duration,
    /// The longest delay between redials (default 60 s).
    pub backoff_max: Duration,
    /// How often a peer lost to silence (a heartbeat timeout) is dialled again while this node
    /// has a free slot (default 30 s; the service sets its anti-entropy interval). A partition
    /// that heals leaves each side at its minimum with no reason to dial; these dials join
    /// the sides again. Lost peers are remembered for an hour, at most 64 of them.
    pub reconnect_interval: Duration,
    /// How long a ban lasts (default 24 h).
    pub ban_duration: Duration,
    /// How often known peer addresses are shared with every peer (default 60 s; also on
    /// connect).
    pub peer_exchange_interval: Duration,
    /// The most addresses sent, or taken, in one peer exchange (default 32).
    pub peer_exchange_limit: usize,
    /// Whether to share and learn peer addresses (default on). A simulator that imposes a
    /// topology turns it off.
    pub peer_exchange: bool,
    /// Whether the slots above `min_peers` go to peers closer to the providers
    /// (`MESH_PREFER_CLOSE_PEERS`, default on): see [`crate::ConnectionManager`]. Needs peer
    /// exchange, which carries the distances of the candidates.
    pub prefer_close_peers: bool,
    /// The least time between two moves towards the providers
    /// (`MESH_PREFERENCE_INTERVAL_SECS`, default 30 s): long enough for the heartbeats to report
    /// the distance the last move gave.
    pub preference_interval: Duration,
    /// The most banned addresses recorded in the peer store (default 4,096); failed
    /// handshakes beyond it are not recorded, so they cannot grow the store without bound.
    pub max_banned_records: usize,
    /// The most untried addresses kept as dial candidates (default 1,024); learning stops at
    /// this many, so peers cannot grow the peer store without bound.
    pub max_candidates: usize,
    /// Room for events not yet taken by the consumer (default 4,096); a slow consumer slows
    /// reading from peers rather than growing memory.
    pub event_queue: usize,
    /// The most bytes of received messages (by [`mesh_types::MeshMessage::weight`]) waiting for
    /// the consumer (default 64 MiB): with frames of up to a megabyte, a count alone would let
    /// peers park gigabytes while the node is busy.
    pub event_queue_bytes: usize,
    /// Software and version sent in the handshake.
    pub user_agent: String,
    /// Find peers on the local network by multicast beacons (`MESH_LAN_DISCOVERY`, off by
    /// default).
    pub lan_discovery: Option<LanDiscovery>,
    /// Framing, queues and timeouts of each link.
    pub link: LinkConfig,
}

/// A [`ManagerConfig`] that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The minimum number of peers exceeds the maximum, or the maximum is zero.
    #[error(
        "invalid connection limits: MESH_MIN_PEER_CONNECTIONS ({min}) must not exceed \
         MESH_MAX_PEER_CONNECTIONS ({max}), and the maximum must be at least 1"
    )]
    InvalidConnectionLimits {
        /// The minimum.
        min: usize,
        /// The maximum.
        max: usize,
    },
    /// Peers would be declared dead before they are pinged.
    #[error("the heartbeat timeout ({timeout:?}) must be longer than the heartbeat interval ({interval:?})")]
    HeartbeatTimeoutTooShort {
        /// The interval.
        interval: Duration,
        /// The timeout.
        timeout: Duration,
    },
    /// A bootstrap entry is not `host:port`.
    #[error("bootstrap peer {0:?} is not host:port (e.g. 10.0.0.5:9470 or seed.example.org:9470)")]
    InvalidBootstrap(String),
}

impl ManagerConfig {
    /// The defaults for a node on `network`.
    pub fn new(network: NetworkId) -> Self {
        Self {
            network,
            listen_addr: None,
            advertised_addr: None,
            bootstrap: Vec::new(),
            min_peers: 3,
            max_peers: 10,
            max_inbound: 10,
            max_pending_inbound: 8,
            max_inbound_per_ip: 4,
            limit_loopback: false,
            heartbeat_interval: Duration::from_secs(5),
            heartbeat_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            maintenance_interval: Duration::from_secs(1),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            reconnect_interval: Duration::from_secs(30),
            ban_duration: Duration::from_secs(24 * 3600),
            peer_exchange_interval: Duration::from_secs(60),
            peer_exchange_limit: 32,
            peer_exchange: true,
            prefer_close_peers: true,
            preference_interval: Duration::from_secs(30),
            max_candidates: 1024,
            max_banned_records: 4096,
            event_queue: 4096,
            event_queue_bytes: 64 * 1024 * 1024,
            user_agent: format!("pricemesh/{}", env!("CARGO_PKG_VERSION")),
            lan_discovery: None,
            link: LinkConfig::default(),
        }
    }

    /// Checks the settings fit together.
    ///
    /// # Errors
    /// The first problem found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_peers == 0 || self.min_peers > self.max_peers {
            return Err(ConfigError::InvalidConnectionLimits { min: self.min_peers, max: self.max_peers });
        }
        if self.heartbeat_timeout <= self.heartbeat_interval {
            return Err(ConfigError::HeartbeatTimeoutTooShort {
                interval: self.heartbeat_interval,
                timeout: self.heartbeat_timeout,
            });
        }
        if let Some(bad) = self.bootstrap.iter().find(|entry| !is_host_port(entry)) {
            return Err(ConfigError::InvalidBootstrap(bad.clone()));
        }
        Ok(())
    }
}

fn is_host_port(entry: &str) -> bool {
    entry.parse::<SocketAddr>().is_ok()
        || entry.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_limits_are_refused() {
        let config = ManagerConfig::new(NetworkId::devnet());
        assert_eq!(config.validate(), Ok(()));
        let inverted = ManagerConfig { min_peers: 5, max_peers: 3, ..config.clone() };
        assert_eq!(inverted.validate(), Err(ConfigError::InvalidConnectionLimits { min: 5, max: 3 }));
        let zero = ManagerConfig { min_peers: 0, max_peers: 0, ..config.clone() };
        assert!(zero.validate().is_err());
        let bootstrap = ManagerConfig { bootstrap: vec!["seed.example.org".into()], ..config.clone() };
        assert_eq!(bootstrap.validate(), Err(ConfigError::InvalidBootstrap("seed.example.org".into())));
        let named =
            ManagerConfig { bootstrap: vec!["seed.example.org:9470".into(), "[::1]:9470".into()], ..config };
        assert_eq!(named.validate(), Ok(()));
    }
}
