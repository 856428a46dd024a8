//! [`RecentAnnouncements`]: the latest signed announcement of the nodes heard from most
//! recently, which a node passes on to each new peer so that the peer counts the network and
//! lists its providers within seconds of joining, not an announcement interval later.
//!
//! Bounded to [`MAX_RECENT`] nodes, below any peer's notice rate budget, so greeting a peer
//! never costs the greeter its score; the rest of the network reaches the newcomer with the
//! next round of announcements.

use std::collections::VecDeque;
use std::time::Duration;

use mesh_types::{Announce, NodeId, Timestamp};

/// Most announcements kept and passed on.
pub(crate) const MAX_RECENT: usize = 64;

/// Announcements older than this are not passed on: peers refuse gossip older than 120 s, and
/// a newer one is on its way anyway.
const PASS_ON_AGE: Duration = Duration::from_secs(100);

/// The latest announcement of each of the last [`MAX_RECENT`] nodes heard.
#[derive(Debug, Default)]
pub(crate) struct RecentAnnouncements {
    latest: VecDeque<Announce>,
}

impl RecentAnnouncements {
    /// Keeps `announce` as its node's latest, the most recent of all.
    pub(crate) fn keep(&mut self, announce: Announce) {
        self.latest.retain(|held| held.node_id != announce.node_id);
        self.latest.push_back(announce);
        while self.latest.len() > MAX_RECENT {
            self.latest.pop_front();
        }
    }

    /// The announcements worth passing on to `peer` at `now`: not its own, not too old.
    pub(crate) fn recent(&self, peer: NodeId, now: Timestamp) -> Vec<Announce> {
        self.latest
            .iter()
            .filter(|announce| announce.node_id != peer)
            .filter(|announce| {
                now.signed_duration_since(announce.timestamp).to_std().is_ok_and(|age| age <= PASS_ON_AGE)
            })
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use mesh_types::{NetworkId, NodeIdentity};

    use super::*;

    fn announce(identity: &NodeIdentity, at: Timestamp) -> Announce {
        Announce::new_signed(identity, &NetworkId::devnet(), false, None, 10, at)
    }

    #[test]
    fn each_node_is_kept_once_the_most_recent_last_and_the_list_is_bounded() {
        let now = mesh_types::chrono::Utc::now();
        let nodes: Vec<NodeIdentity> = (0..MAX_RECENT + 5).map(|_| NodeIdentity::generate()).collect();
        let mut recent = RecentAnnouncements::default();
        for node in &nodes {
            recent.keep(announce(node, now));
        }
        recent.keep(announce(&nodes[MAX_RECENT + 4], now));
        assert_eq!(recent.latest.len(), MAX_RECENT);
        let stranger = NodeIdentity::generate().node_id();
        assert_eq!(recent.recent(stranger, now).len(), MAX_RECENT);
        let peer = nodes[MAX_RECENT].node_id();
        assert!(recent.recent(peer, now).iter().all(|a| a.node_id != peer), "a peer is not told of itself");
        let later = now + mesh_types::chrono::Duration::seconds(101);
        assert!(recent.recent(stranger, later).is_empty(), "too old to pass on");
    }
}
