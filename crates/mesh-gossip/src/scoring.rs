//! Misbehaviour scoring: each peer has a score that invalid updates, bad signatures and floods
//! raise and that decays with time; a peer past the threshold is banned. Floods are measured by
//! a token bucket per peer.

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
    /// Points per update from a provider this node does not trust (default 1). Small on
    /// purpose: a relay whose own policy trusts that provider forwards it honestly, and at a
    /// normal rate the points decay away; only a peer pushing many such updates is banned.
    pub untrusted: f64,
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
            untrusted: 1.0,
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
    updated: Timestamp,
}

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
        let standing =
            self.peers.entry(peer).or_insert(Standing { score: 0.0, tokens: config.burst, updated: now });
        let elapsed =
            now.signed_duration_since(standing.updated).to_std().unwrap_or(Duration::ZERO).as_secs_f64();
        if elapsed > 0.0 {
            standing.score = (standing.score - elapsed * config.decay_per_second).max(0.0);
            standing.tokens = (standing.tokens + elapsed * config.rate_per_second).min(config.burst);
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

    /// Adds `points`; returns the new score when it reached the ban threshold.
    pub(crate) fn penalise(&mut self, peer: NodeId, points: f64, now: Timestamp) -> Option<u32> {
        let threshold = self.config.ban_threshold;
        let standing = self.standing(peer, now);
        standing.score += points;
        (standing.score >= threshold).then(|| standing.score.round() as u32)
    }

    /// Forgets a peer (after it is banned or gone).
    pub(crate) fn forget(&mut self, peer: NodeId) {
        self.peers.remove(&peer);
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
        scores.forget(peer());
        scores.penalise(peer(), 90.0, start);
        let later = start + mesh_types::chrono::Duration::seconds(30);
        assert_eq!(scores.penalise(peer(), 20.0, later), None, "30 points were forgiven meanwhile");
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
