//! What a node tells each new peer at once, so the peer is right within a second of joining
//! instead of an interval later: the latest signed announcement of the nodes heard from most
//! recently (the network size, the providers list), and the latest update of the providers
//! heard from most recently (a quote of each, so a quorum is met without waiting for every
//! provider's next fetch; anti-entropy alone brings only the newest price per asset). A
//! provider is greeted with its own latest update too: after a restart it has lost it, and
//! without it the provider would count itself toward a quorum only at its next fetch, which
//! fetch coordination may hold back for as long as another provider is fetching.
//!
//! [`Recent`] keeps one item per node, most recent last, bounded: [`MAX_ANNOUNCEMENTS`] and
//! [`MAX_UPDATES`] stay below any peer's rate budget, so greeting a peer never costs the
//! greeter its score. Each item is signed by its node and judged by the receiver like any
//! gossip.

use std::collections::VecDeque;
use std::time::Duration;

use mesh_types::{NodeId, Timestamp};

/// Most announcements passed on to a new peer.
pub(crate) const MAX_ANNOUNCEMENTS: usize = 64;
/// Most provider updates passed on to a new peer.
pub(crate) const MAX_UPDATES: usize = 16;

/// Items older than this are not passed on: peers refuse gossip older than 120 s, and a newer
/// one is on its way anyway.
const PASS_ON_AGE: Duration = Duration::from_secs(100);

/// The latest item of each of the last `capacity` nodes heard.
#[derive(Debug)]
pub(crate) struct Recent<T> {
    latest: VecDeque<(NodeId, Timestamp, T)>,
    capacity: usize,
}

impl<T: Clone> Recent<T> {
    /// Empty, keeping at most `capacity` nodes' items.
    pub(crate) const fn new(capacity: usize) -> Self {
        Self { latest: VecDeque::new(), capacity }
    }

    /// Keeps `item`, signed by `node` at `at`, as that node's latest and the most recent of all.
    pub(crate) fn keep(&mut self, node: NodeId, at: Timestamp, item: T) {
        self.latest.retain(|(held, ..)| *held != node);
        self.latest.push_back((node, at, item));
        while self.latest.len() > self.capacity {
            self.latest.pop_front();
        }
    }

    /// The items worth passing on at `now`: not too old, and not `except`'s own.
    pub(crate) fn recent(&self, except: Option<NodeId>, now: Timestamp) -> Vec<T> {
        self.latest
            .iter()
            .filter(|(node, at, _)| {
                Some(*node) != except
                    && now.signed_duration_since(*at).to_std().is_ok_and(|age| age <= PASS_ON_AGE)
            })
            .map(|(_, _, item)| item.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use mesh_types::{Announce, NetworkId, NodeIdentity};

    use super::*;

    fn announce(identity: &NodeIdentity, at: Timestamp) -> Announce {
        Announce::new_signed(identity, &NetworkId::devnet(), false, None, 10, at)
    }

    #[test]
    fn each_node_is_kept_once_the_most_recent_last_and_the_list_is_bounded() {
        let now = mesh_types::chrono::Utc::now();
        let nodes: Vec<NodeIdentity> = (0..MAX_ANNOUNCEMENTS + 5).map(|_| NodeIdentity::generate()).collect();
        let mut recent = Recent::new(MAX_ANNOUNCEMENTS);
        for node in &nodes {
            recent.keep(node.node_id(), now, announce(node, now));
        }
        let last = &nodes[MAX_ANNOUNCEMENTS + 4];
        recent.keep(last.node_id(), now, announce(last, now));
        assert_eq!(recent.latest.len(), MAX_ANNOUNCEMENTS);
        let stranger = NodeIdentity::generate().node_id();
        assert_eq!(recent.recent(Some(stranger), now).len(), MAX_ANNOUNCEMENTS);
        let peer = nodes[MAX_ANNOUNCEMENTS].node_id();
        assert!(
            recent.recent(Some(peer), now).iter().all(|a| a.node_id != peer),
            "a peer is not told of itself"
        );
        assert!(recent.recent(None, now).iter().any(|a| a.node_id == peer), "unless asked to be");
        let later = now + mesh_types::chrono::Duration::seconds(101);
        assert!(recent.recent(Some(stranger), later).is_empty(), "too old to pass on");
    }
}
