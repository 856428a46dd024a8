//! [`GossipEngine`]: what a node does with a price update.
//!
//! For an update from a peer, in this order:
//!
//! 1. **Rate**: a peer beyond its token bucket is flooding; the update is dropped unread.
//! 2. **Duplicate**: an id already seen is dropped — before any signature work, so every copy
//!    after the first costs one lookup.
//! 3. **Validation**: prices, timestamp, TTL, id/key consistency ([`PriceUpdate::validate`]).
//! 4. **Trust**: the source must be allowed by the [`TrustPolicy`].
//! 5. **Signature**: verified once per node.
//! 6. **Mark seen**: only now, atomically ([`MessageTracker::check_and_mark`]), so a forged copy
//!    that carries a real message's id and arrives first cannot suppress the real one; and if
//!    another process sharing the tracker won the race, this copy is a duplicate after all.
//! 7. **Store** each price newest-wins; the prices that changed are delivered locally.
//! 8. **Relay**: if `ttl > 0`, the copy with `ttl - 1` and `hop_count + 1` (everything else
//!    unchanged) goes to every connected peer except the sender.
//!
//! Invalid updates and bad signatures raise the sender's misbehaviour score; past the threshold
//! the outcome asks for a ban. The engine does no I/O of its own beyond the stores it is given:
//! it returns decisions, and the node acts on them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use mesh_dedup::MessageTracker;
use mesh_peer_store::BanReason;
use mesh_price_cache::PriceStore;
use mesh_types::{
    Asset, CachedPriceData, Digest, DigestEntry, NodeId, PriceUpdate, Request, SignedMessage, Timestamp,
    ValidationError, ValidationPolicy,
};
use thiserror::Error;

use crate::scoring::{Scores, ScoringConfig};
use crate::trust::TrustPolicy;

/// How the engine judges updates.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GossipConfig {
    /// Limits every update must respect.
    pub validation: ValidationPolicy,
    /// Whose prices are accepted.
    pub trust: TrustPolicy,
    /// Misbehaviour scoring and the per-peer rate limit.
    pub scoring: ScoringConfig,
}

/// A storage failure while processing an update; the update was not accepted.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// The seen-message tracker failed.
    #[error("seen-message tracker failed: {0}")]
    Dedup(#[from] mesh_dedup::Error),
    /// The price store failed.
    #[error("price store failed: {0}")]
    Prices(#[from] mesh_price_cache::Error),
}

/// What to do with an update.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// New and valid.
    Accepted(Accepted),
    /// Already seen: nothing to do.
    Duplicate,
    /// Refused.
    Rejected(Rejected),
}

/// An accepted update's consequences.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    /// The provider that signed it.
    pub source: NodeId,
    /// How many hops it travelled to reach this node.
    pub hop_count: u8,
    /// Its timestamp.
    pub timestamp: Timestamp,
    /// The prices that are now held (newer than what was held): deliver them to local
    /// subscribers.
    pub changed: Vec<CachedPriceData>,
    /// The copy to relay (`ttl - 1`, `hop_count + 1`), or `None` when the TTL is spent.
    pub relay: Option<PriceUpdate>,
    /// The peer not to relay to: the one it came from.
    pub except: Option<NodeId>,
}

/// A refused update.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// Why.
    pub reason: RejectReason,
    /// A ban the sender has earned with this, if any.
    pub ban: Option<Ban>,
}

/// Why an update was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum RejectReason {
    /// It broke a validation rule or its signature failed.
    Invalid(ValidationError),
    /// Its source is not a trusted provider.
    Untrusted(NodeId),
    /// The sender exceeded its rate limit.
    RateLimited,
}

/// A ban for a misbehaving peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ban {
    /// The peer.
    pub peer: NodeId,
    /// Why: misbehaviour with the score reached.
    pub reason: BanReason,
    /// For how long.
    pub duration: Duration,
}

/// The protocol engine of one node.
pub struct GossipEngine {
    tracker: Arc<dyn MessageTracker>,
    prices: Arc<dyn PriceStore>,
    config: GossipConfig,
    // std Mutexes: held for map operations only, never across an await.
    scores: Mutex<Scores>,
    /// The signed update behind each held price, to answer anti-entropy requests with the
    /// original signatures.
    log: Mutex<HashMap<Asset, Arc<PriceUpdate>>>,
}

impl std::fmt::Debug for GossipEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GossipEngine").field("config", &self.config).finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update leaves the maps consistent, even if a holder panicked.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl GossipEngine {
    /// An engine deduplicating with `tracker` and storing into `prices`.
    pub fn new(tracker: Arc<dyn MessageTracker>, prices: Arc<dyn PriceStore>, config: GossipConfig) -> Self {
        metrics::describe_counter!(
            "mesh_gossip_updates_total",
            "Price updates received, by outcome (accepted, duplicate, invalid, untrusted, rate_limited)"
        );
        if config.trust.accepts_anyone() {
            tracing::info!("no trusted providers configured: accepting every correctly signed provider");
        }
        Self {
            tracker,
            prices,
            scores: Mutex::new(Scores::new(config.scoring)),
            config,
            log: Mutex::new(HashMap::new()),
        }
    }

    /// Processes an update that arrived from `from` at `now`.
    ///
    /// # Errors
    /// When a store fails. If the price store fails after the id was marked seen, later copies
    /// count as duplicates; anti-entropy ([`GossipEngine::process_synced`], which ignores the
    /// seen mark) repairs the price within one sync interval.
    pub async fn process_update(
        &self,
        from: NodeId,
        update: PriceUpdate,
        now: Timestamp,
    ) -> Result<Outcome, Error> {
        if let Some(limited) = self.rate_limit(from, &update, now) {
            return Ok(limited);
        }
        self.process(Some(from), update, now).await
    }

    /// Processes an update this node publishes itself (as a provider): validated and stored
    /// like any other, then relayed to every peer.
    ///
    /// # Errors
    /// When a store fails.
    pub async fn publish(&self, update: PriceUpdate, now: Timestamp) -> Result<Outcome, Error> {
        self.process(None, update, now).await
    }

    async fn process(
        &self,
        from: Option<NodeId>,
        update: PriceUpdate,
        now: Timestamp,
    ) -> Result<Outcome, Error> {
        if self.tracker.has_seen(update.message_id).await? {
            metrics::counter!("mesh_gossip_updates_total", "outcome" => "duplicate").increment(1);
            return Ok(Outcome::Duplicate);
        }
        if let Some(rejected) = self.check(from, &update, now) {
            return Ok(rejected);
        }
        if !self.tracker.check_and_mark(update.message_id).await? {
            // Another copy (or another process sharing the tracker) got there first.
            return Ok(Outcome::Duplicate);
        }
        let changed = self.store(&update, from.is_some()).await?;
        metrics::counter!("mesh_gossip_updates_total", "outcome" => "accepted").increment(1);
        Ok(Outcome::Accepted(Accepted {
            source: update.source_node_id,
            hop_count: update.hop_count,
            timestamp: update.timestamp,
            changed,
            relay: update.relayed(),
            except: from,
        }))
    }

    /// Takes one update from `from`'s budget; `Some` is the rejection of a flooding peer.
    fn rate_limit(&self, from: NodeId, update: &PriceUpdate, now: Timestamp) -> Option<Outcome> {
        if lock(&self.scores).take_token(from, now) {
            return None;
        }
        let points = self.config.scoring.flood;
        Some(self.reject(from, update, RejectReason::RateLimited, points, now))
    }

    /// Validation, trust and signature; `Some` is the rejection.
    fn check(&self, from: Option<NodeId>, update: &PriceUpdate, now: Timestamp) -> Option<Outcome> {
        let scoring = &self.config.scoring;
        if let Err(error) = update.validate(&self.config.validation, now) {
            return Some(self.reject_from(
                from,
                update,
                RejectReason::Invalid(error),
                scoring.invalid_update,
                now,
            ));
        }
        if !self.config.trust.allows(update.source_node_id) {
            return Some(self.reject_from(
                from,
                update,
                RejectReason::Untrusted(update.source_node_id),
                scoring.untrusted,
                now,
            ));
        }
        if let Err(error) = update.verify_signature() {
            return Some(self.reject_from(
                from,
                update,
                RejectReason::Invalid(error),
                scoring.bad_signature,
                now,
            ));
        }
        None
    }

    fn reject_from(
        &self,
        from: Option<NodeId>,
        update: &PriceUpdate,
        reason: RejectReason,
        points: f64,
        now: Timestamp,
    ) -> Outcome {
        match from {
            Some(peer) => self.reject(peer, update, reason, points, now),
            None => {
                tracing::warn!(source = %update.source_node_id, ?reason, "refusing to publish an invalid update");
                Outcome::Rejected(Rejected { reason, ban: None })
            }
        }
    }

    /// Logs the rejection with the sending peer and the source, scores the peer, and asks for a
    /// ban once the score reaches the threshold.
    fn reject(
        &self,
        peer: NodeId,
        update: &PriceUpdate,
        reason: RejectReason,
        points: f64,
        now: Timestamp,
    ) -> Outcome {
        match &reason {
            RejectReason::Invalid(error) => tracing::warn!(
                %peer, source = %update.source_node_id, code = %error.code(), %error,
                "validation failed"
            ),
            RejectReason::Untrusted(source) => {
                tracing::debug!(%peer, %source, "dropping an update from an untrusted provider");
            }
            RejectReason::RateLimited => tracing::debug!(%peer, "peer exceeds its update rate; dropping"),
        }
        let label = match reason {
            RejectReason::Invalid(_) => "invalid",
            RejectReason::Untrusted(_) => "untrusted",
            RejectReason::RateLimited => "rate_limited",
        };
        metrics::counter!("mesh_gossip_updates_total", "outcome" => label).increment(1);
        let ban = if points > 0.0 {
            let mut scores = lock(&self.scores);
            let banned = scores.penalise(peer, points, now).map(|score| Ban {
                peer,
                reason: BanReason::Misbehaviour { score },
                duration: scores.config().ban_duration,
            });
            if banned.is_some() {
                scores.forget(peer);
                tracing::warn!(%peer, "peer misbehaved past the threshold; banning it");
            }
            banned
        } else {
            None
        };
        Outcome::Rejected(Rejected { reason, ban })
    }

    /// Stores every price newest-wins and remembers the signed update behind each one that
    /// changed, as this node would pass it on: one hop more than it arrived with when it came
    /// from a peer, so a node synced from here learns its true distance from the source.
    /// Returns the changed prices.
    async fn store(&self, update: &PriceUpdate, from_peer: bool) -> Result<Vec<CachedPriceData>, Error> {
        let mut changed = Vec::new();
        for price in update.cached_prices() {
            if self.prices.store(price.clone()).await?.changed() {
                changed.push(price);
            }
        }
        if !changed.is_empty() {
            let hop_count = update.hop_count.saturating_add(u8::from(from_peer));
            let signed = Arc::new(PriceUpdate { ttl: 0, hop_count, ..update.clone() });
            let mut log = lock(&self.log);
            for price in &changed {
                log.insert(price.asset, signed.clone());
            }
        }
        Ok(changed)
    }

    // ---- anti-entropy -------------------------------------------------------------------

    /// This node's digest: the newest price held per asset, by its position in the
    /// newest-wins order.
    ///
    /// # Errors
    /// When the price store fails.
    pub async fn digest(&self) -> Result<Digest, Error> {
        let entries = self.prices.get_all().await?.values().map(DigestEntry::of).collect();
        Ok(Digest { entries })
    }

    /// The assets a peer's `digest` holds newer prices for, as a request; `None` when this node
    /// is up to date.
    ///
    /// # Errors
    /// When the price store fails.
    pub async fn on_digest(&self, digest: &Digest) -> Result<Option<Request>, Error> {
        let held = self.prices.get_all().await?;
        let assets: Vec<Asset> = digest
            .entries
            .iter()
            .filter(|entry| held.get(&entry.asset).is_none_or(|mine| entry.newer_than(mine)))
            .map(|entry| entry.asset)
            .collect();
        Ok((!assets.is_empty()).then_some(Request { assets }))
    }

    /// The original signed updates behind the requested assets (each once, with `ttl` 0 so
    /// they are not gossiped again, and the hop count they would have if relayed from here). Assets restored from storage after a restart have no
    /// signed update until a fresh one arrives, and are left out.
    pub fn on_request(&self, request: &Request) -> Vec<PriceUpdate> {
        let log = lock(&self.log);
        let mut seen = std::collections::HashSet::new();
        request
            .assets
            .iter()
            .filter_map(|asset| log.get(asset))
            .filter(|update| seen.insert(update.message_id))
            .map(|update| PriceUpdate::clone(update))
            .collect()
    }

    /// Processes an update received in answer to a request: like a gossiped one, except that
    /// an id already seen is still stored (this node may have seen it and lost the price, e.g.
    /// in a restart), and nothing is relayed.
    ///
    /// # Errors
    /// When a store fails.
    pub async fn process_synced(
        &self,
        from: NodeId,
        update: PriceUpdate,
        now: Timestamp,
    ) -> Result<Outcome, Error> {
        if let Some(limited) = self.rate_limit(from, &update, now) {
            return Ok(limited);
        }
        if let Some(rejected) = self.check(Some(from), &update, now) {
            return Ok(rejected);
        }
        self.tracker.mark_seen(update.message_id).await?;
        let changed = self.store(&update, true).await?;
        Ok(Outcome::Accepted(Accepted {
            source: update.source_node_id,
            hop_count: update.hop_count,
            timestamp: update.timestamp,
            changed,
            relay: None,
            except: Some(from),
        }))
    }
}

#[cfg(test)]
mod tests {
    use mesh_dedup::{MemoryTracker, TrackerConfig};
    use mesh_price_cache::MemoryPriceStore;
    use mesh_types::rust_decimal::Decimal;
    use mesh_types::{Asset, NodeIdentity, PriceData, Signature};

    use super::*;

    fn engine(config: GossipConfig) -> GossipEngine {
        GossipEngine::new(
            Arc::new(MemoryTracker::new(TrackerConfig::default())),
            Arc::new(MemoryPriceStore::new()),
            config,
        )
    }

    fn now() -> Timestamp {
        mesh_types::chrono::Utc::now()
    }

    fn update(provider: &NodeIdentity, symbol: &str, cents: i64, ttl: u8) -> PriceUpdate {
        let price = PriceData {
            asset: Asset::new(symbol).unwrap(),
            price: Decimal::new(cents, 2),
            blockchain: "Solana".into(),
            change_24h: None,
        };
        PriceUpdate::new_signed(provider, [price], ttl, now())
    }

    fn peer(n: u8) -> NodeId {
        NodeIdentity::from_secret_bytes(&[n; 32]).node_id()
    }

    fn accepted(outcome: Outcome) -> Accepted {
        match outcome {
            Outcome::Accepted(accepted) => accepted,
            other => panic!("expected acceptance, got {other:?}"),
        }
    }

    fn rejected(outcome: Outcome) -> Rejected {
        match outcome {
            Outcome::Rejected(rejected) => rejected,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_new_update_is_stored_delivered_and_relayed_to_all_but_the_sender() {
        let engine = engine(GossipConfig::default());
        let provider = NodeIdentity::generate();
        let original = update(&provider, "SOL", 12345, 10);
        let outcome = accepted(engine.process_update(peer(1), original.clone(), now()).await.unwrap());
        assert_eq!(outcome.changed.len(), 1);
        assert_eq!(outcome.except, Some(peer(1)), "never back to the sender");
        let relay = outcome.relay.expect("ttl 10 is relayed");
        assert_eq!((relay.ttl, relay.hop_count), (9, 1));
        assert_eq!(
            PriceUpdate { ttl: 10, hop_count: 0, ..relay.clone() },
            original,
            "everything else unchanged"
        );
        assert!(relay.verify_signature().is_ok(), "the signature still verifies at the next hop");
    }

    #[tokio::test]
    async fn duplicates_are_dropped_before_any_signature_work() {
        let engine = engine(GossipConfig::default());
        let original = update(&NodeIdentity::generate(), "SOL", 100, 10);
        accepted(engine.process_update(peer(1), original.clone(), now()).await.unwrap());
        assert_eq!(
            engine.process_update(peer(2), original.clone(), now()).await.unwrap(),
            Outcome::Duplicate
        );
        // A copy with a broken signature is still just a duplicate: it never reaches verification.
        let broken = PriceUpdate { signature: Signature::from_bytes([1; 64]), ..original };
        assert_eq!(engine.process_update(peer(3), broken, now()).await.unwrap(), Outcome::Duplicate);
    }

    #[tokio::test]
    async fn nothing_is_relayed_at_ttl_zero() {
        let engine = engine(GossipConfig::default());
        let outcome = accepted(
            engine
                .process_update(peer(1), update(&NodeIdentity::generate(), "SOL", 1, 0), now())
                .await
                .unwrap(),
        );
        assert_eq!(outcome.relay, None);
        assert_eq!(outcome.changed.len(), 1, "but it is still stored and delivered");
    }

    #[tokio::test]
    async fn a_forged_copy_with_a_real_id_does_not_suppress_the_real_update() {
        let engine = engine(GossipConfig::default());
        let real = update(&NodeIdentity::generate(), "SOL", 100, 10);
        let mut forged = real.clone();
        if let Some(price) = forged.prices.values_mut().next() {
            price.price = Decimal::new(1, 2);
        }
        let refused = rejected(engine.process_update(peer(6), forged, now()).await.unwrap());
        assert!(matches!(refused.reason, RejectReason::Invalid(ValidationError::BadSignature { .. })));
        let outcome = accepted(engine.process_update(peer(1), real, now()).await.unwrap());
        assert_eq!(outcome.changed[0].price, Decimal::new(100, 2), "the real price is held");
    }

    #[tokio::test]
    async fn invalid_updates_are_dropped_and_score_until_a_ban() {
        let engine = engine(GossipConfig::default());
        let provider = NodeIdentity::generate();
        // One instant, so no score decays between the updates.
        let at = now();
        let mut bans = Vec::new();
        for i in 0..5 {
            let bad = update(&provider, "SOL", -5 - i, 10);
            let refused = rejected(engine.process_update(peer(7), bad, at).await.unwrap());
            assert!(matches!(
                refused.reason,
                RejectReason::Invalid(ValidationError::NonPositivePrice { .. })
            ));
            bans.extend(refused.ban);
        }
        assert_eq!(bans.len(), 1, "five invalid updates (20 points each) reach the threshold of 100");
        assert_eq!(bans[0].peer, peer(7));
        assert!(matches!(bans[0].reason, BanReason::Misbehaviour { score: 100 }));
    }

    #[tokio::test]
    async fn a_future_timestamp_is_refused_and_not_relayed() {
        let engine = engine(GossipConfig::default());
        let provider = NodeIdentity::generate();
        let price = PriceData {
            asset: Asset::new("ETH").unwrap(),
            price: Decimal::ONE,
            blockchain: "Ethereum".into(),
            change_24h: None,
        };
        let future =
            PriceUpdate::new_signed(&provider, [price], 10, now() + mesh_types::chrono::Duration::hours(1));
        let refused = rejected(engine.process_update(peer(1), future, now()).await.unwrap());
        assert!(matches!(refused.reason, RejectReason::Invalid(ValidationError::FutureTimestamp { .. })));
    }

    #[tokio::test]
    async fn a_peer_pushing_many_untrusted_updates_is_banned() {
        let trusted = NodeIdentity::generate();
        let engine =
            engine(GossipConfig { trust: TrustPolicy::only([trusted.node_id()]), ..GossipConfig::default() });
        let stranger = NodeIdentity::generate();
        let at = now();
        let mut ban = None;
        for _ in 0..150 {
            if let Outcome::Rejected(Rejected { ban: Some(b), .. }) =
                engine.process_update(peer(4), update(&stranger, "SOL", 1, 10), at).await.unwrap()
            {
                ban = Some(b);
                break;
            }
        }
        assert!(
            ban.is_some_and(|ban| ban.peer == peer(4)),
            "100 untrusted updates at once reach the threshold"
        );
    }

    #[tokio::test]
    async fn untrusted_providers_are_dropped_without_blaming_the_relay() {
        let trusted = NodeIdentity::generate();
        let engine =
            engine(GossipConfig { trust: TrustPolicy::only([trusted.node_id()]), ..GossipConfig::default() });
        let stranger = NodeIdentity::generate();
        let refused =
            rejected(engine.process_update(peer(1), update(&stranger, "SOL", 1, 10), now()).await.unwrap());
        assert_eq!(refused.reason, RejectReason::Untrusted(stranger.node_id()));
        assert_eq!(refused.ban, None);
        accepted(engine.process_update(peer(1), update(&trusted, "SOL", 1, 10), now()).await.unwrap());
    }

    #[tokio::test]
    async fn a_flooding_peer_is_rate_limited_and_banned() {
        let scoring =
            ScoringConfig { rate_per_second: 10.0, burst: 10.0, flood: 5.0, ..ScoringConfig::default() };
        let engine = engine(GossipConfig { scoring, ..GossipConfig::default() });
        let provider = NodeIdentity::generate();
        let at = now();
        let mut limited = 0;
        let mut ban = None;
        for _ in 0..40 {
            match engine.process_update(peer(9), update(&provider, "SOL", 1, 10), at).await.unwrap() {
                Outcome::Rejected(Rejected { reason: RejectReason::RateLimited, ban: Some(b) }) => {
                    ban = Some(b);
                    break;
                }
                Outcome::Rejected(Rejected { reason: RejectReason::RateLimited, ban: None }) => limited += 1,
                Outcome::Accepted(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(limited > 0, "updates beyond the burst are dropped");
        assert!(ban.is_some_and(|ban| ban.peer == peer(9)), "and the flooder is banned");
    }

    #[tokio::test]
    async fn anti_entropy_brings_a_late_joiner_up_to_date_with_signed_updates() {
        let (early, late) = (engine(GossipConfig::default()), engine(GossipConfig::default()));
        let provider = NodeIdentity::generate();
        for (symbol, cents) in [("SOL", 100), ("ETH", 200), ("BTC", 300)] {
            early.publish(update(&provider, symbol, cents, 10), now()).await.unwrap();
        }
        let request =
            late.on_digest(&early.digest().await.unwrap()).await.unwrap().expect("the late node is behind");
        assert_eq!(request.assets.len(), 3);
        let answers = early.on_request(&request);
        assert_eq!(answers.len(), 3);
        for answer in answers {
            assert!(answer.verify_signature().is_ok(), "the original signatures travel");
            accepted(late.process_synced(peer(1), answer, now()).await.unwrap());
        }
        assert_eq!(late.on_digest(&early.digest().await.unwrap()).await.unwrap(), None, "now up to date");
        assert_eq!(early.prices.get_all().await.unwrap(), late.prices.get_all().await.unwrap());
    }

    #[tokio::test]
    async fn a_synced_update_carries_the_hops_it_took_to_reach_the_answering_node() {
        let (provider_node, relay, consumer) = (
            engine(GossipConfig::default()),
            engine(GossipConfig::default()),
            engine(GossipConfig::default()),
        );
        let provider = NodeIdentity::generate();
        let original = update(&provider, "SOL", 100, 10);
        provider_node.publish(original.clone(), now()).await.unwrap();
        let sol = Request { assets: vec![Asset::new("SOL").unwrap()] };
        assert_eq!(provider_node.on_request(&sol)[0].hop_count, 0, "from the source itself");

        // The relay got the update straight from the provider; the consumer syncs from the relay.
        accepted(relay.process_update(peer(1), original, now()).await.unwrap());
        let answer = relay.on_request(&sol).remove(0);
        assert_eq!((answer.ttl, answer.hop_count), (0, 1), "one relay between source and consumer");
        let synced = accepted(consumer.process_synced(peer(2), answer, now()).await.unwrap());
        assert_eq!(synced.hop_count, 1);
    }
}
