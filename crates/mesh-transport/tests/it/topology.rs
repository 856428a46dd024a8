//! Hop counts to the providers and the preference for close peers, with real managers on
//! loopback: the counts follow a provider that comes and goes, and a node at the end of a
//! chain climbs it one move at a time while keeping the peer it started with.

use std::sync::Arc;
use std::time::Duration;

use mesh_transport::ManagerConfig;
use mesh_types::NodeIdentity;

use crate::manager::{Node, config, eventually, start};

/// A node of a chain: at least one peer, preference as asked, moves every 300 ms.
fn chain_config(bootstrap: Option<&Node>, max_peers: usize, prefer: bool) -> ManagerConfig {
    let mut config = config("devnet", bootstrap.map(|node| node.addr().to_string()).into_iter().collect());
    config.min_peers = 1;
    config.max_peers = max_peers;
    config.max_inbound = max_peers;
    config.prefer_close_peers = prefer;
    config.preference_interval = Duration::from_millis(300);
    config
}

async fn chain_node(bootstrap: Option<&Node>, max_peers: usize, prefer: bool) -> Node {
    start(chain_config(bootstrap, max_peers, prefer), Arc::new(NodeIdentity::generate())).await
}

fn hops(nodes: &[&Node]) -> Vec<Option<u8>> {
    nodes.iter().map(|node| node.manager.provider_hops()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_counts_follow_the_provider_and_fall_to_none_when_it_stops() {
    // P - B - C, with nothing learnt: the chain stays a chain.
    let mut line = chain_config(None, 4, false);
    line.peer_exchange = false;
    let p = start(ManagerConfig { min_peers: 0, ..line.clone() }, Arc::new(NodeIdentity::generate())).await;
    let b = start(
        ManagerConfig { bootstrap: vec![p.addr().to_string()], ..line.clone() },
        Arc::new(NodeIdentity::generate()),
    )
    .await;
    let c = start(
        ManagerConfig { bootstrap: vec![b.addr().to_string()], ..line },
        Arc::new(NodeIdentity::generate()),
    )
    .await;
    let nodes = [&p, &b, &c];
    assert!(
        eventually(Duration::from_secs(5), || hops(&nodes) == [None, None, None]
            && c.manager.peer_count() == 1)
        .await
    );

    p.manager.set_provider(true);
    assert!(
        eventually(Duration::from_secs(5), || hops(&nodes) == [Some(0), Some(1), Some(2)]).await,
        "hops {:?}",
        hops(&nodes)
    );
    let seen_by_c = c.manager.connected_peers();
    assert_eq!(seen_by_c[0].provider_hops, Some(1), "C sees B one hop out");

    // B and C must not keep each other's distance alive: each tells the other what it has
    // without it (split horizon), so both fall to "none" within a few heartbeats.
    p.manager.set_provider(false);
    assert!(
        eventually(Duration::from_secs(5), || hops(&nodes) == [None, None, None]).await,
        "hops {:?}",
        hops(&nodes)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_at_the_end_of_a_chain_moves_next_to_the_provider_and_keeps_its_first_peer() {
    // P - R1 - R2 - R3 - X. The relays keep their places; X has room for one peer of its
    // choosing beside R3, so it must swap its way up: R2, then R1, then P.
    // With no peer minimum P never dials anyone itself (a node with only inbound peers would
    // dial one of its own choosing), so the chain stays a chain.
    let p = start(
        ManagerConfig { min_peers: 0, ..chain_config(None, 8, false) },
        Arc::new(NodeIdentity::generate()),
    )
    .await;
    p.manager.set_provider(true);
    let r1 = chain_node(Some(&p), 8, false).await;
    let r2 = chain_node(Some(&r1), 8, false).await;
    let r3 = chain_node(Some(&r2), 8, false).await;
    assert!(eventually(Duration::from_secs(5), || r3.manager.provider_hops() == Some(3)).await);

    let x = chain_node(Some(&r3), 2, true).await;
    let climbed = eventually(Duration::from_secs(20), || {
        let peers = x.manager.connected_peers();
        x.manager.provider_hops() == Some(1)
            && peers.iter().any(|peer| peer.info.node_id == p.manager.node_id() && peer.preferred)
            && peers.iter().any(|peer| peer.info.node_id == r3.manager.node_id() && !peer.preferred)
    })
    .await;
    assert!(
        climbed,
        "X at {:?} hops with {:?}",
        x.manager.provider_hops(),
        x.manager
            .connected_peers()
            .iter()
            .map(|peer| (peer.provider_hops, peer.preferred))
            .collect::<Vec<_>>()
    );
    assert_eq!(x.manager.peer_count(), 2, "never above its maximum");
    // It got there by giving up its preferred peers, never R3.
    let replaced =
        x.disconnect_reasons().iter().filter(|reason| reason.contains("closer to the providers")).count();
    assert!(replaced >= 1, "reasons: {:?}", x.disconnect_reasons());
}
