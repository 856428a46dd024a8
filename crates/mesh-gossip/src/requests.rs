//! [`Requested`]: which assets this node asked each peer for in anti-entropy, so that the
//! answers — updates whose ids the node may have seen already — are taken as synced instead of
//! dropped as duplicates.
//!
//! A peer's digest decides what is asked, so the book is bounded: at most
//! [`MAX_REQUEST_ASSETS`] assets per request, at most [`MAX_PENDING_PER_PEER`] outstanding per
//! peer (a digest that would ask for more asks for nothing more until answers arrive or the
//! peer leaves), and at most [`MAX_PEERS`] peers (the one asked longest ago is forgotten).

use std::collections::{HashMap, HashSet};

use mesh_types::{Asset, NodeId, PriceUpdate};

/// Most assets asked for in one request.
pub const MAX_REQUEST_ASSETS: usize = 1024;
/// Most assets outstanding per peer.
pub const MAX_PENDING_PER_PEER: usize = 4 * MAX_REQUEST_ASSETS;
/// Most peers with outstanding requests.
pub(crate) const MAX_PEERS: usize = 256;

/// The outstanding anti-entropy requests of one node.
#[derive(Debug, Default)]
pub(crate) struct Requested {
    peers: HashMap<NodeId, Pending>,
    /// Increases with every request, to find the peer asked longest ago.
    clock: u64,
}

#[derive(Debug, Default)]
struct Pending {
    assets: HashSet<Asset>,
    asked_at: u64,
}

impl Requested {
    /// Keeps as many of `wanted` as the bounds allow as asked of `peer`; returns those.
    pub(crate) fn ask(&mut self, peer: NodeId, wanted: impl IntoIterator<Item = Asset>) -> Vec<Asset> {
        if !self.peers.contains_key(&peer) && self.peers.len() >= MAX_PEERS {
            let oldest = self.peers.iter().min_by_key(|(_, pending)| pending.asked_at).map(|(peer, _)| *peer);
            if let Some(oldest) = oldest {
                self.peers.remove(&oldest);
            }
        }
        self.clock = self.clock.saturating_add(1);
        let pending = self.peers.entry(peer).or_default();
        pending.asked_at = self.clock;
        let room = MAX_PENDING_PER_PEER.saturating_sub(pending.assets.len()).min(MAX_REQUEST_ASSETS);
        let mut asked = Vec::new();
        for asset in wanted {
            if asked.len() == room {
                break;
            }
            if pending.assets.insert(asset) {
                asked.push(asset);
            }
        }
        asked
    }

    /// Whether `update` from `peer` answers a request: it carries an asset asked of that peer.
    /// Those assets are no longer outstanding.
    pub(crate) fn answered(&mut self, peer: NodeId, update: &PriceUpdate) -> bool {
        let Some(pending) = self.peers.get_mut(&peer) else { return false };
        let mut asked = false;
        for asset in update.prices.keys() {
            asked |= pending.assets.remove(asset);
        }
        if pending.assets.is_empty() {
            self.peers.remove(&peer);
        }
        asked
    }

    /// Forgets what was asked of `peer` (it disconnected).
    pub(crate) fn forget(&mut self, peer: NodeId) {
        self.peers.remove(&peer);
    }

    /// How many assets are outstanding in all.
    #[cfg(test)]
    pub(crate) fn outstanding(&self) -> usize {
        self.peers.values().map(|pending| pending.assets.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(n: u32) -> NodeId {
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(&n.to_be_bytes());
        NodeId::from_public_key(&mesh_types::PublicKey::from_bytes(key))
    }

    fn assets(range: std::ops::Range<usize>) -> Vec<Asset> {
        range.map(|n| Asset::new(&format!("A{n}")).unwrap()).collect()
    }

    #[test]
    fn one_digest_of_many_assets_cannot_grow_the_book_without_bound() {
        // The case: one digest named about 17 k assets, and all stayed asked for ever.
        let mut book = Requested::default();
        assert_eq!(book.ask(peer(1), assets(0..17_000)).len(), MAX_REQUEST_ASSETS);
        for _ in 0..10 {
            book.ask(peer(1), assets(0..17_000));
        }
        assert_eq!(book.outstanding(), MAX_PENDING_PER_PEER);
        for n in 2..(MAX_PEERS as u32 + 10) {
            book.ask(peer(n), assets(0..1));
        }
        assert!(book.peers.len() <= MAX_PEERS);
    }
}
