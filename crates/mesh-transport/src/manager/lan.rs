//! LAN discovery: multicast beacons that announce this node (when it listens) and reveal the
//! other nodes of the same network on the segment, learnt like a peer exchange.

use std::net::SocketAddr;
use std::sync::Arc;

use mesh_types::{PeerAddress, PeerExchange};

use super::Inner;
use crate::discovery::{self, Beacon, LanDiscovery};

impl Inner {
    /// Sends a beacon every interval (when listening) and records the nodes whose beacons
    /// arrive.
    pub(super) async fn lan_loop(self: Arc<Self>, socket: tokio::net::UdpSocket, lan: LanDiscovery) {
        let beacon = self.local_addr.map(|addr| {
            Beacon { network: self.config.network.clone(), node_id: self.me(), listen_port: addr.port() }
                .encode()
        });
        let mut ticker = tokio::time::interval(lan.interval);
        let mut buffer = [0u8; discovery::MAX_BEACON + 1];
        loop {
            tokio::select! {
                () = self.supervisor.cancelled() => break,
                _ = ticker.tick() => {
                    if let Some(beacon) = &beacon
                        && let Err(err) = socket.send_to(beacon, SocketAddr::V4(lan.group)).await
                    {
                        tracing::debug!(error = %err, "cannot send a LAN beacon");
                    }
                }
                received = socket.recv_from(&mut buffer) => {
                    let Ok((len, from)) = received else { continue };
                    let Some(heard) = buffer.get(..len).and_then(Beacon::decode) else { continue };
                    if heard.network != self.config.network || heard.node_id == self.me() || from.ip().is_unspecified() {
                        continue;
                    }
                    let addr = SocketAddr::new(from.ip(), heard.listen_port);
                    self.learn(PeerExchange {
                        peers: vec![PeerAddress { node_id: heard.node_id, addr, provider_hops: None }],
                    }).await;
                }
            }
        }
    }
}
