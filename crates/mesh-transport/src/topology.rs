//! Distance to the providers, and the preference for peers close to them.
//!
//! - **Distance.** Each node counts its hops to the nearest provider from its peers'
//!   heartbeats, as a distance-vector router counts routes: 0 when it is a provider, else one
//!   more than its closest peer's count. It tells each peer the count it would have without
//!   that peer (split horizon), so two neighbours never keep each other's distance alive after
//!   the provider behind them has gone; a longer loop counts up, one hop per heartbeat, until
//!   [`MAX_PROVIDER_HOPS`], which means "none known".
//! - **Hints.** Peer exchanges carry the counts the sender heard from the peers it lists.
//!   [`HopHints`] keeps them, bounded in number and age, as the candidates a node may move
//!   towards.
//! - **Preference.** [`choose`] decides one step at a time: with room above its minimum a
//!   node dials the closest candidate that would shorten its own distance, and when full it
//!   swaps its farthest *preferred* peer for it. Peers the node holds for its minimum are never
//!   dropped for distance: they are its robustness, chosen without regard to anyone's claims.
//!
//! The counts are claims nobody can check: a peer that says "0" attracts the preference of
//! its neighbours. That is why the claims only ever decide the slots between the minimum and
//! the maximum (see SECURITY.md).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use mesh_types::{MAX_PROVIDER_HOPS, NodeId};
use rand::RngExt;
use tokio::time::Instant;

/// A hop count heard from a peer, or `None` for "no provider known"; counts past
/// [`MAX_PROVIDER_HOPS`] mean the same.
pub(crate) fn heard(claim: Option<u8>) -> Option<u8> {
    claim.filter(|hops| *hops <= MAX_PROVIDER_HOPS)
}

/// This node's hops to the nearest provider, given whether it is one and the counts its peers
/// last reported.
pub(crate) fn distance(is_provider: bool, peers: impl IntoIterator<Item = Option<u8>>) -> Option<u8> {
    if is_provider {
        return Some(0);
    }
    peers.into_iter().flatten().min().and_then(|hops| hops.checked_add(1)).and_then(|hops| heard(Some(hops)))
}

/// The most hints kept.
pub(crate) const MAX_HINTS: usize = 1024;

/// Candidate addresses with the hop counts peers reported for them, each forgotten after
/// `ttl` and at most [`MAX_HINTS`] at once (the oldest give way).
#[derive(Debug)]
pub(crate) struct HopHints {
    hints: HashMap<SocketAddr, (u8, Instant)>,
    ttl: Duration,
}

impl HopHints {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self { hints: HashMap::new(), ttl }
    }

    /// Remembers that `addr` was said to be `hops` from a provider. A count of `None` is no
    /// news (the sender may just not be connected to it): an older hint stands until it ages out.
    pub(crate) fn record(&mut self, addr: SocketAddr, hops: Option<u8>, now: Instant) {
        let Some(hops) = heard(hops) else { return };
        if self.hints.len() >= MAX_HINTS && !self.hints.contains_key(&addr) {
            self.expire(now);
            let oldest = self.hints.iter().min_by_key(|(_, (_, at))| *at).map(|(addr, _)| *addr);
            if let Some(oldest) = oldest {
                self.hints.remove(&oldest);
            }
        }
        self.hints.insert(addr, (hops, now));
    }

    pub(crate) fn forget(&mut self, addr: SocketAddr) {
        self.hints.remove(&addr);
    }

    /// The closest fresh candidate that `usable` accepts; among equals one at random, so the
    /// nodes that heard the same exchange do not all dial the same peer.
    pub(crate) fn closest(
        &mut self,
        now: Instant,
        usable: impl Fn(SocketAddr) -> bool,
    ) -> Option<(SocketAddr, u8)> {
        self.expire(now);
        let best = self.hints.iter().filter(|(addr, _)| usable(**addr)).map(|(_, (hops, _))| *hops).min()?;
        let equals: Vec<SocketAddr> = self
            .hints
            .iter()
            .filter(|(addr, (hops, _))| *hops == best && usable(**addr))
            .map(|(addr, _)| *addr)
            .collect();
        let pick = equals.get(rand::rng().random_range(0..equals.len().max(1))).copied()?;
        Some((pick, best))
    }

    fn expire(&mut self, now: Instant) {
        let ttl = self.ttl;
        self.hints.retain(|_, (_, at)| now.saturating_duration_since(*at) < ttl);
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.hints.len()
    }
}

/// Where a node stands when it considers a move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Standing {
    /// Its own distance.
    pub(crate) own: Option<u8>,
    /// Peers connected and dials in progress.
    pub(crate) have: usize,
    pub(crate) min_peers: usize,
    pub(crate) max_peers: usize,
    /// The peers it dialled for their distance, with the distance they report now.
    pub(crate) preferred: Vec<(NodeId, Option<u8>)>,
}

/// One step towards the providers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Move {
    /// Dial the candidate into a free slot.
    Dial(SocketAddr),
    /// Drop a preferred peer to make room, then dial the candidate.
    Replace {
        /// The preferred peer to drop.
        drop: NodeId,
        /// The candidate.
        dial: SocketAddr,
    },
}

/// The move that would bring a node closer to the providers through `candidate` (its address
/// and reported hops), if there is one: the candidate must shorten the node's own distance,
/// and a full node only ever gives up a preferred peer farther than the candidate, and only
/// while it holds more than its minimum.
pub(crate) fn choose(standing: &Standing, candidate: (SocketAddr, u8)) -> Option<Move> {
    let (addr, hops) = candidate;
    let through = hops.checked_add(1)?;
    if standing.own.is_some_and(|own| through >= own) {
        return None;
    }
    if standing.have < standing.max_peers {
        return Some(Move::Dial(addr));
    }
    if standing.have <= standing.min_peers {
        return None;
    }
    // The farthest preferred peer, "none known" counting as farthest.
    let (drop, drop_hops) =
        standing.preferred.iter().max_by_key(|(node, hops)| (hops.map_or(u16::MAX, u16::from), *node))?;
    drop_hops.is_none_or(|far| far > hops).then_some(Move::Replace { drop: *drop, dial: addr })
}

#[cfg(test)]
mod tests {
    use mesh_types::NodeIdentity;
    use proptest::prelude::*;

    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], port))
    }

    fn standing(own: Option<u8>, have: usize, preferred: Vec<(NodeId, Option<u8>)>) -> Standing {
        Standing { own, have, min_peers: 2, max_peers: 4, preferred }
    }

    #[test]
    fn distance_is_one_more_than_the_closest_peer_and_zero_for_a_provider() {
        assert_eq!(distance(true, [Some(5)]), Some(0));
        assert_eq!(distance(false, [Some(3), None, Some(1)]), Some(2));
        assert_eq!(distance(false, [None, None]), None);
        assert_eq!(distance(false, []), None);
        // A loop counting up falls to "none" at the cap instead of overflowing.
        assert_eq!(distance(false, [Some(MAX_PROVIDER_HOPS)]), None);
        assert_eq!(distance(false, [Some(u8::MAX)]), None);
    }

    #[test]
    fn claims_past_the_cap_mean_no_provider() {
        assert_eq!(heard(Some(MAX_PROVIDER_HOPS)), Some(MAX_PROVIDER_HOPS));
        assert_eq!(heard(Some(MAX_PROVIDER_HOPS + 1)), None);
        assert_eq!(heard(Some(u8::MAX)), None);
    }

    #[test]
    fn a_candidate_is_dialled_only_when_it_shortens_the_distance() {
        let candidate = (addr(1), 1);
        assert_eq!(choose(&standing(Some(3), 2, vec![]), candidate), Some(Move::Dial(addr(1))));
        assert_eq!(choose(&standing(None, 2, vec![]), candidate), Some(Move::Dial(addr(1))));
        // Through the candidate the node would be 2 hops out: no better than now.
        assert_eq!(choose(&standing(Some(2), 2, vec![]), candidate), None);
        assert_eq!(choose(&standing(Some(0), 2, vec![]), (addr(1), 0)), None);
    }

    #[test]
    fn a_full_node_swaps_only_its_farthest_preferred_peer() {
        let (near, far) = (NodeIdentity::generate().node_id(), NodeIdentity::generate().node_id());
        let full = standing(Some(4), 4, vec![(near, Some(2)), (far, Some(3))]);
        assert_eq!(choose(&full, (addr(1), 1)), Some(Move::Replace { drop: far, dial: addr(1) }));
        // No preferred peer farther than the candidate: nothing to give up.
        let close = standing(Some(4), 4, vec![(near, Some(1))]);
        assert_eq!(choose(&close, (addr(1), 1)), None);
        // Nothing preferred at all: the node's peers are its minimum and its peers' choice.
        assert_eq!(choose(&standing(Some(4), 4, vec![]), (addr(1), 1)), None);
        // A preferred peer that lost its provider goes first.
        let lost = standing(Some(4), 4, vec![(near, Some(1)), (far, None)]);
        assert_eq!(choose(&lost, (addr(1), 1)), Some(Move::Replace { drop: far, dial: addr(1) }));
    }

    #[test]
    fn a_node_at_its_minimum_never_gives_up_a_peer() {
        let peer = NodeIdentity::generate().node_id();
        let at_minimum =
            Standing { own: Some(5), have: 2, min_peers: 2, max_peers: 2, preferred: vec![(peer, None)] };
        assert_eq!(choose(&at_minimum, (addr(1), 0)), None);
    }

    #[test]
    fn hints_are_bounded_expire_and_give_the_closest() {
        let start = Instant::now();
        let mut hints = HopHints::new(Duration::from_secs(60));
        for port in 0..u16::try_from(MAX_HINTS * 2).unwrap() {
            hints.record(addr(port), Some(3), start);
        }
        assert_eq!(hints.len(), MAX_HINTS);
        hints.record(addr(60_000), Some(1), start);
        hints.record(addr(60_001), Some(MAX_PROVIDER_HOPS + 1), start);
        assert_eq!(hints.closest(start, |_| true), Some((addr(60_000), 1)));
        assert_eq!(
            hints.closest(start, |candidate| candidate != addr(60_000)).map(|(_, hops)| hops),
            Some(3)
        );
        // "Not known" is no news; a refusal forgets the address.
        hints.record(addr(60_000), None, start);
        assert_eq!(hints.closest(start, |_| true), Some((addr(60_000), 1)));
        hints.forget(addr(60_000));
        assert_eq!(hints.closest(start, |_| true).map(|(_, hops)| hops), Some(3));
        assert_eq!(hints.closest(start + Duration::from_secs(61), |_| true), None);
        assert_eq!(hints.len(), 0);
    }

    proptest! {
        /// Whatever peers claim, a move always shortens the node's distance, a full node only
        /// gives up a preferred peer, and never one at or below its minimum.
        #[test]
        fn every_move_shortens_the_distance_and_keeps_the_minimum(
            own in proptest::option::of(0u8..=MAX_PROVIDER_HOPS),
            have in 0usize..8,
            min_peers in 0usize..6,
            extra in 0usize..4,
            claims in proptest::collection::vec(proptest::option::of(any::<u8>()), 0..6),
            hops in any::<u8>(),
        ) {
            let preferred: Vec<(NodeId, Option<u8>)> =
                claims.iter().map(|claim| (NodeIdentity::generate().node_id(), heard(*claim))).collect();
            let standing = Standing { own, have, min_peers, max_peers: min_peers + extra, preferred };
            match choose(&standing, (addr(1), hops)) {
                None => {}
                Some(Move::Dial(_)) => {
                    prop_assert!(have < standing.max_peers);
                    prop_assert!(own.is_none_or(|own| u16::from(hops) + 1 < u16::from(own)));
                }
                Some(Move::Replace { drop, .. }) => {
                    prop_assert!(have > min_peers && have >= standing.max_peers);
                    prop_assert!(standing.preferred.iter().any(|(node, _)| *node == drop));
                    prop_assert!(own.is_none_or(|own| u16::from(hops) + 1 < u16::from(own)));
                }
            }
        }
    }
}
