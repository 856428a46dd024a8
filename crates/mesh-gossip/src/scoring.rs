//! Misbehaviour scoring: each peer has a score that invalid updates, bad signatures and floods
//! raise and that decays with time; a peer past the threshold is banned. Floods are measured by
//! a token bucket per peer.
//!
//! Only what a peer provably did wrong scores: an update this node refuses for its own policy
//! (an untrusted source, a clock ahead or behind) may have been relayed honestly, so it costs
//! nothing. A ban does not wipe the slate: the score stays at the threshold and starts decaying
//! only when the ban ends, so a peer back from a ban is banned again at its next offence.
//! Standings are kept for at most [`MAX_TRACKED_PEERS`] peers; past that, the one with the
//! lowest score goes.

use std::collections::HashMap;
use std::time::Duration;

use mesh_types::{NodeId, Timestamp};

/// How misbehaviour is counted and punished.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoringConfig {
    /// Points for an update that fails validation (default 20).
    pub invalid_update: f64,
    /// Points for a signature that does not verify (default 50).
    pub bad_signature: f64,
    /// Points per update beyond the rate limit (default 1).
    pub flood: f64,
    /// Points forgiven per second (default 1).
    pub decay_per_second: f64,
    /// A score at or above this bans the peer (default 100).
    pub ban_threshold: f64,
    /// How long a misbehaving peer stays banned (default 1 h).
    pub ban_duration: Duration,
    /// Updates per second a peer may send on average (default 200).
    pub rate_per_second: f64,
    /// Updates a peer may send in a burst (default 400).
    pub burst: f64,
}

impl Default for ScoringConfig {
    fn default() -> Self {
        Self {
            invalid_update: 20.0,
            bad_signature: 50.0,
            flood: 1.0,
            decay_per_second: 1.0,
            ban_threshold: 100.0,
            ban_duration: Duration::from_secs(3600),
            rate_per_second: 200.0,
            burst: 400.0,
        }
    }
}

/// One peer's standing.
#[derive(Debug, Clone, Copy)]
struct Standing {
    score: f64,
    tokens: f64,
    /// The budget for anti-entropy and discovery messages, which are rare.
    control_tokens: f64,
    updated: Timestamp,
}

/// Anti-entropy and discovery messages a peer may send in a burst: a digest of several pages
/// on connect, its requests, a peer exchange.
const CONTROL_BURST: f64 = 16.0;
/// ... and then per second.
const CONTROL_RATE_PER_SECOND: f64 = 1.0;

/// Most peers whose standing is kept: connections are few, but every reconnection under a
/// fresh key is a new peer.
pub(crate) const MAX_TRACKED_PEERS: usize = 4096;

/// Scores and rate budgets of all peers.
#[derive(Debug)]
pub(crate) struct Scores {
    config: ScoringConfig,
    peers: HashMap<NodeId, Standing>,
}

impl Scores {
    pub(crate) fn new(config: ScoringConfig) -> Self {
        Self { config, peers: HashMap::new() }
    }

    /// The peer's standing brought up to `now`: score decayed, tokens refilled.
    fn standing(&mut self, peer: NodeId, now: Timestamp) -> &mut Standing {
        let config = self.config;
        if !self.peers.contains_key(&peer) && self.peers.len() >= MAX_TRACKED_PEERS {
            self.evict_one();
        }
        let standing = self.peers.entry(peer).or_insert(Standing {
            score: 0.0,
            tokens: config.burst,
            control_tokens: CONTROL_BURST,
            updated: now,
        });
        // A banned peer's `updated` lies at the ban's end: no decay until then.
        let elapsed =
            now.signed_duration_since(standing.updated).to_std().unwrap_or(Duration::ZERO).as_secs_f64();
        if elapsed > 0.0 {
            standing.score = (standing.score - elapsed * config.decay_per_second).max(0.0);
            standing.tokens = (standing.tokens + elapsed * config.rate_per_second).min(config.burst);
            standing.control_tokens =
                (standing.control_tokens + elapsed * CONTROL_RATE_PER_SECOND).min(CONTROL_BURST);
            standing.updated = now;
        }
        standing
    }

    /// Takes one update from the peer's budget; `false` means it is flooding.
    pub(crate) fn take_token(&mut self, peer: NodeId, now: Timestamp) -> bool {
        let standing = self.standing(peer, now);
        if standing.tokens >= 1.0 {
            standing.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Takes one anti-entropy or discovery message from the peer's budget; `false` means it
    /// sends them too fast.
    pub(crate) fn take_control_token(&mut self, peer: NodeId, now: Timestamp) -> bool {
        let standing = self.standing(peer, now);
        if standing.control_tokens >= 1.0 {
            standing.control_tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Adds `points`; returns the new score when it reached the ban threshold.
    pub(crate) fn penalise(&mut self, peer: NodeId, points: f64, now: Timestamp) -> Option<u32> {
        let threshold = self.config.ban_threshold;
        let standing = self.standing(peer, now);
        standing.score += points;
        (standing.score >= threshold).then(|| standing.score.round() as u32)
    }

    /// Records that `peer` was banned until `until`: its score stays at the threshold and
    /// decays only from then on.
    pub(crate) fn banned(&mut self, peer: NodeId, until: Timestamp) {
        let threshold = self.config.ban_threshold;
        if let Some(standing) = self.peers.get_mut(&peer) {
            standing.score = standing.score.max(threshold);
            standing.updated = standing.updated.max(until);
        }
    }

    /// Drops the standing with the lowest score (a clean one first).
    fn evict_one(&mut self) {
        let lowest =
            self.peers.iter().min_by(|(_, a), (_, b)| a.score.total_cmp(&b.score)).map(|(peer, _)| *peer);
        if let Some(peer) = lowest {
            self.peers.remove(&peer);
        }
    }

    /// How many peers have a standing.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.peers.len()
    }

    pub(crate) const fn config(&self) -> &ScoringConfig {
        &self.config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> NodeId {
        NodeId::from_public_key(&mesh_types::PublicKey::from_bytes([1; 32]))
    }

    #[test]
    fn scores_reach_the_threshold_and_decay() {
        let mut scores = Scores::new(ScoringConfig::default());
        let start = mesh_types::chrono::Utc::now();
        assert_eq!(scores.penalise(peer(), 50.0, start), None);
        assert_eq!(scores.penalise(peer(), 50.0, start), Some(100));
        let other = NodeId::from_public_key(&mesh_types::PublicKey::from_bytes([2; 32]));
        scores.penalise(other, 90.0, start);
        let later = start + mesh_types::chrono::Duration::seconds(30);
        assert_eq!(scores.penalise(other, 20.0, later), None, "30 points were forgiven meanwhile");
    }

    #[test]
    fn a_ban_does_not_reset_the_score() {
        let mut scores = Scores::new(ScoringConfig::default());
        let start = mesh_types::chrono::Utc::now();
        assert_eq!(scores.penalise(peer(), 100.0, start), Some(100));
        let ban_end = start + mesh_types::chrono::Duration::hours(1);
        scores.banned(peer(), ban_end);
        let back = ban_end + mesh_types::chrono::Duration::seconds(1);
        assert!(scores.penalise(peer(), 20.0, back).is_some(), "the next offence after the ban bans again");
    }

    #[test]
    fn standings_are_bounded_and_the_cleanest_go_first() {
        let mut scores = Scores::new(ScoringConfig::default());
        let start = mesh_types::chrono::Utc::now();
        let node = |n: u32| {
            let mut key = [0u8; 32];
            key[..4].copy_from_slice(&n.to_be_bytes());
            NodeId::from_public_key(&mesh_types::PublicKey::from_bytes(key))
        };
        scores.penalise(node(0), 90.0, start);
        for n in 1..(MAX_TRACKED_PEERS as u32 + 100) {
            scores.take_token(node(n), start);
        }
        assert_eq!(scores.len(), MAX_TRACKED_PEERS);
        assert_eq!(scores.penalise(node(0), 10.0, start), Some(100), "the misbehaving peer was kept");
    }

    #[test]
    fn the_bucket_allows_bursts_and_refills_at_the_rate() {
        let config = ScoringConfig { rate_per_second: 10.0, burst: 20.0, ..ScoringConfig::default() };
        let mut scores = Scores::new(config);
        let start = mesh_types::chrono::Utc::now();
        assert_eq!((0..25).filter(|_| scores.take_token(peer(), start)).count(), 20);
        let later = start + mesh_types::chrono::Duration::milliseconds(500);
        assert_eq!((0..25).filter(|_| scores.take_token(peer(), later)).count(), 5);
    }
}
