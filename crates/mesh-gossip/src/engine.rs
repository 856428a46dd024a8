//! [`GossipEngine`]: what a node does with a price update.
//!
//! For an update from a peer, in this order:
//!
//! 1. **Rate**: a peer beyond its token bucket is flooding; the update is dropped unread.
//! 2. **Duplicate**: an id already seen is dropped — before any signature work, so every copy
//!    after the first costs one lookup.
//! 3. **Validation**: prices, timestamp, TTL, id/key consistency ([`PriceUpdate::validate`]).
//! 4. **Trust**: the source must be allowed by the [`TrustPolicy`].
//! 5. **Signature**: verified once per node, with the provider's key decompressed once and
//!    cached ([`AuthorKey`]); updates that arrive together are verified as one batch
//!    ([`GossipEngine::process_batch`]), which costs about half as much per update.
//! 6. **Mark seen**: only now, atomically ([`MessageTracker::check_and_mark`]), so a forged copy
//!    that carries a real message's id and arrives first cannot suppress the real one; and if
//!    another process sharing the tracker won the race, this copy is a duplicate after all.
//! 7. **Store** each price newest-wins; the prices that changed are delivered locally.
//! 8. **Relay**: if `ttl > 0`, the copy with `ttl - 1` and `hop_count + 1` (everything else
//!    unchanged) goes to every connected peer except the sender. The update is shared, not
//!    copied: the relay copy is the received one with those two fields changed in place.
//!
//! Invalid updates and bad signatures raise the sender's misbehaviour score; past the threshold
//! the outcome asks for a ban. The engine does no I/O of its own beyond the stores it is given:
//! it returns decisions, and the node acts on them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use mesh_dedup::MessageTracker;
use mesh_price_cache::PriceStore;
use mesh_types::{
    Asset, AuthorKey, BanReason, CachedPriceData, Digest, DigestEntry, Gossiped, MessageId, NodeId,
    PriceUpdate, PublicKey, Request, Timestamp, ValidationError, ValidationPolicy,
};
use quick_cache::sync::Cache;
use thiserror::Error;

use crate::requests::{MAX_REQUEST_ASSETS, Requested};
use crate::scoring::{Scores, ScoringConfig};
use crate::trust::TrustPolicy;

/// Most entries in one digest message: a page of them fits a frame many times over (about
/// 100 bytes each), so a node holding any number of assets can always be synced.
pub const MAX_DIGEST_ENTRIES: usize = 4096;

/// Most assets a node holds. Peers decide which assets exist, so a flood of made-up symbols
/// must stop somewhere: a price for an asset beyond this many is not stored.
pub const MAX_HELD_ASSETS: usize = 20_000;

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
    /// Every price of the update this node holds the asset of, newer than what was held or
    /// not: each is this source's quote, which a quorum of providers is judged on.
    pub quotes: Vec<CachedPriceData>,
    /// The update as this node holds it (`ttl - 1`, `hop_count + 1`; neither is signed), for
    /// whoever passes it on outside the mesh with its signature.
    pub update: Arc<PriceUpdate>,
    /// The copy to relay (the same as `update`), or `None` when the TTL is spent.
    pub relay: Option<Arc<PriceUpdate>>,
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

/// Most provider keys the engine keeps decompressed. Providers are few; the bound only stops a
/// stream of made-up keys from growing memory.
const AUTHOR_KEY_CACHE: usize = 1024;

/// What to do with an announcement or an alert ([`GossipEngine::process_notice`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Notice<M> {
    /// New and authentic: act on `notice`, and pass `relay` on (when its TTL allows) to every
    /// peer but the sender.
    Accepted {
        /// The message.
        notice: M,
        /// The copy to relay, one hop further.
        relay: Option<M>,
    },
    /// Already seen.
    Duplicate,
    /// Refused.
    Rejected(Rejected),
}

/// An update as it arrived, for [`GossipEngine::process_batch`].
#[derive(Debug, Clone)]
pub struct Received {
    /// The peer that sent it.
    pub from: NodeId,
    /// The update.
    pub update: Arc<PriceUpdate>,
    /// It answers this node's anti-entropy request: stored even if its id was seen (this node
    /// may have lost the price), and not relayed unless it is new here and passes as gossip
    /// (answers from [`GossipEngine::on_request`] carry a TTL of 0).
    pub synced: bool,
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
    /// Provider keys already checked and decompressed.
    authors: Cache<PublicKey, Arc<AuthorKey>>,
    /// What this node asked each peer for in anti-entropy.
    requested: Mutex<Requested>,
    counters: Counters,
}

/// How many updates this engine has processed, by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GossipStats {
    /// New and valid: stored and relayed.
    pub accepted: u64,
    /// Copies of updates already seen.
    pub duplicate: u64,
    /// Refused: invalid, bad signature, untrusted source or over the sender's rate.
    pub rejected: u64,
}

impl GossipStats {
    /// Every update received or published, whatever became of it.
    pub const fn total(&self) -> u64 {
        self.accepted.saturating_add(self.duplicate).saturating_add(self.rejected)
    }
}

/// `mesh_gossip_updates_total` by outcome, registered once so counting costs an atomic add,
/// and the same counts for [`GossipEngine::stats`].
struct Counters {
    accepted: metrics::Counter,
    duplicate: metrics::Counter,
    invalid: metrics::Counter,
    untrusted: metrics::Counter,
    rate_limited: metrics::Counter,
    stats: [AtomicU64; 3],
}

/// Indexes into [`Counters::stats`].
const ACCEPTED: usize = 0;
const DUPLICATE: usize = 1;
const REJECTED: usize = 2;

impl Counters {
    fn new() -> Self {
        let counter =
            |outcome: &'static str| metrics::counter!("mesh_gossip_updates_total", "outcome" => outcome);
        Self {
            accepted: counter("accepted"),
            duplicate: counter("duplicate"),
            invalid: counter("invalid"),
            untrusted: counter("untrusted"),
            rate_limited: counter("rate_limited"),
            stats: Default::default(),
        }
    }

    fn accepted(&self) {
        self.accepted.increment(1);
        self.stats[ACCEPTED].fetch_add(1, Ordering::Relaxed);
    }

    fn duplicate(&self) {
        self.duplicate.increment(1);
        self.stats[DUPLICATE].fetch_add(1, Ordering::Relaxed);
    }

    fn rejected(&self, reason: &RejectReason) {
        match reason {
            RejectReason::Invalid(_) => self.invalid.increment(1),
            RejectReason::Untrusted(_) => self.untrusted.increment(1),
            RejectReason::RateLimited => self.rate_limited.increment(1),
        }
        self.stats[REJECTED].fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> GossipStats {
        let load = |index: usize| self.stats[index].load(Ordering::Relaxed);
        GossipStats { accepted: load(ACCEPTED), duplicate: load(DUPLICATE), rejected: load(REJECTED) }
    }
}

/// Where an update stands after the checks that need no signature work.
enum Screened {
    /// Decided already.
    Done(Outcome),
    /// Its signature is to be verified with this key.
    Verify(Arc<AuthorKey>),
}

impl std::fmt::Debug for GossipEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GossipEngine").field("config", &self.config).finish_non_exhaustive()
    }
}

/// When a ban of `duration` from `now` ends (at the latest time the clock can express).
fn ban_end(now: Timestamp, duration: Duration) -> Timestamp {
    mesh_types::chrono::Duration::from_std(duration)
        .ok()
        .and_then(|duration| now.checked_add_signed(duration))
        .unwrap_or(Timestamp::MAX_UTC)
}

/// Adds `points` to `peer`'s score; past the threshold, records the ban (the score stays until
/// it ends) and returns it.
fn penalise(scores: &mut Scores, peer: NodeId, points: f64, now: Timestamp) -> Option<Ban> {
    let ban = scores.penalise(peer, points, now).map(|score| Ban {
        peer,
        reason: BanReason::Misbehaviour { score },
        duration: scores.config().ban_duration,
    })?;
    scores.banned(peer, ban_end(now, ban.duration));
    tracing::warn!(%peer, "peer misbehaved past the threshold; banning it");
    Some(ban)
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
        metrics::describe_counter!(
            "mesh_gossip_notices_total",
            "Announcements and alerts received, by kind and outcome (accepted, rejected)"
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
            authors: Cache::new(AUTHOR_KEY_CACHE),
            requested: Mutex::new(Requested::default()),
            counters: Counters::new(),
        }
    }

    /// How many updates this engine has processed, by outcome.
    pub fn stats(&self) -> GossipStats {
        self.counters.snapshot()
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
        update: impl Into<Arc<PriceUpdate>>,
        now: Timestamp,
    ) -> Result<Outcome, Error> {
        self.process_one(Some(from), update.into(), false, now).await
    }

    /// Processes an update received in answer to a request: like a gossiped one, except that
    /// an id already seen is still stored (this node may have seen it and lost the price, e.g.
    /// in a restart), and it is relayed only if it is new here and passes as gossip (answers
    /// carry a TTL of 0; a gossiped copy taken for the answer does not).
    ///
    /// # Errors
    /// When a store fails.
    pub async fn process_synced(
        &self,
        from: NodeId,
        update: impl Into<Arc<PriceUpdate>>,
        now: Timestamp,
    ) -> Result<Outcome, Error> {
        self.process_one(Some(from), update.into(), true, now).await
    }

    /// Processes an update this node publishes itself (as a provider): validated and stored
    /// like any other, then relayed to every peer.
    ///
    /// # Errors
    /// When a store fails.
    pub async fn publish(
        &self,
        update: impl Into<Arc<PriceUpdate>>,
        now: Timestamp,
    ) -> Result<Outcome, Error> {
        self.process_one(None, update.into(), false, now).await
    }

    /// Processes updates that arrived together, in order, with one outcome each — the one
    /// [`GossipEngine::process_update`] (or, for `synced` ones,
    /// [`GossipEngine::process_synced`]) would have given. Their signatures are verified as
    /// one batch; copies of one update within the batch are verified once.
    ///
    /// # Errors
    /// When a store fails; the updates before the failing one have been processed.
    pub async fn process_batch(&self, batch: Vec<Received>, now: Timestamp) -> Result<Vec<Outcome>, Error> {
        let mut screened = Vec::with_capacity(batch.len());
        for received in &batch {
            let rate_limited = self.rate_limit(received.from, &received.update, now);
            screened.push(match rate_limited {
                Some(outcome) => Screened::Done(outcome),
                None => self.screen(Some(received.from), &received.update, received.synced, now).await?,
            });
        }
        let verdicts = self.verify_screened(&batch, &screened);
        let mut outcomes = Vec::with_capacity(batch.len());
        for ((received, screened), verdict) in batch.into_iter().zip(screened).zip(verdicts) {
            let outcome = match (screened, verdict) {
                (Screened::Done(outcome), _) => outcome,
                (Screened::Verify(_), Some(Err(error))) => {
                    self.reject_bad_signature(Some(received.from), &received.update, error, now)
                }
                (Screened::Verify(_), _) => {
                    self.accept(Some(received.from), received.update, received.synced, now).await?
                }
            };
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    async fn process_one(
        &self,
        from: Option<NodeId>,
        update: Arc<PriceUpdate>,
        synced: bool,
        now: Timestamp,
    ) -> Result<Outcome, Error> {
        if let Some(peer) = from
            && let Some(limited) = self.rate_limit(peer, &update, now)
        {
            return Ok(limited);
        }
        let key = match self.screen(from, &update, synced, now).await? {
            Screened::Done(outcome) => return Ok(outcome),
            Screened::Verify(key) => key,
        };
        if let Err(error) = key.verify(update.as_ref(), &self.config.validation.network) {
            return Ok(self.reject_bad_signature(from, &update, error, now));
        }
        self.accept(from, update, synced, now).await
    }

    /// Takes one update from `from`'s budget; `Some` is the rejection of a flooding peer.
    fn rate_limit(&self, from: NodeId, update: &PriceUpdate, now: Timestamp) -> Option<Outcome> {
        if lock(&self.scores).take_token(from, now) {
            return None;
        }
        let points = self.config.scoring.flood;
        Some(self.reject(from, update, RejectReason::RateLimited, points, now))
    }

    /// Everything before the signature: the seen-check (skipped for synced updates),
    /// validation, trust, and the provider's key.
    async fn screen(
        &self,
        from: Option<NodeId>,
        update: &PriceUpdate,
        synced: bool,
        now: Timestamp,
    ) -> Result<Screened, Error> {
        if !synced && self.tracker.has_seen(update.seen_key()).await? {
            self.counters.duplicate();
            return Ok(Screened::Done(Outcome::Duplicate));
        }
        let scoring = &self.config.scoring;
        let policy = &self.config.validation;
        let valid = if synced { update.validate_archived(policy, now) } else { update.validate(policy, now) };
        if let Err(error) = valid {
            // A clock that differs from ours is not the relay's fault.
            let points = if error.is_policy_difference() { 0.0 } else { scoring.invalid_update };
            let reason = RejectReason::Invalid(error);
            return Ok(Screened::Done(self.reject_from(from, update, reason, points, now)));
        }
        if !self.config.trust.allows(update.source_node_id) {
            // The relay may trust this provider; only this node's policy refuses it.
            let reason = RejectReason::Untrusted(update.source_node_id);
            return Ok(Screened::Done(self.reject_from(from, update, reason, 0.0, now)));
        }
        match self.author_key(update) {
            Ok(key) => Ok(Screened::Verify(key)),
            Err(error) => Ok(Screened::Done(self.reject_bad_signature(from, update, error, now))),
        }
    }

    /// The checked key of `update`'s source, from the cache or checked now.
    fn author_key(&self, update: &PriceUpdate) -> Result<Arc<AuthorKey>, ValidationError> {
        let key = match self.authors.get(&update.source_key) {
            Some(key) => key,
            None => {
                let key = Arc::new(AuthorKey::new(update.source_node_id, &update.source_key)?);
                self.authors.insert(update.source_key, key.clone());
                key
            }
        };
        // A cached key came with the id it derives; another claimed id is a mismatch.
        if key.node_id() == update.source_node_id {
            Ok(key)
        } else {
            Err(ValidationError::SourceKeyMismatch { claimed: update.source_node_id, derived: key.node_id() })
        }
    }

    /// The signature verdict of every screened update (`None` for those decided already):
    /// all at once in one batch, and each alone only if the batch fails. A copy of an update
    /// earlier in the batch — same id, same signed content — shares its verdict.
    fn verify_screened(
        &self,
        batch: &[Received],
        screened: &[Screened],
    ) -> Vec<Option<Result<(), ValidationError>>> {
        let mut verdicts: Vec<Option<Result<(), ValidationError>>> = vec![None; batch.len()];
        let mut first_of: HashMap<MessageId, usize> = HashMap::new();
        let mut copy_of: Vec<Option<usize>> = vec![None; batch.len()];
        let mut to_verify: Vec<(usize, &AuthorKey)> = Vec::new();
        for (index, (received, screened)) in batch.iter().zip(screened).enumerate() {
            let Screened::Verify(key) = screened else { continue };
            let update = &received.update;
            match first_of.get(&update.message_id) {
                Some(&first) if batch[first].update.same_signed_content(update) => {
                    copy_of[index] = Some(first)
                }
                _ => {
                    first_of.entry(update.message_id).or_insert(index);
                    to_verify.push((index, key));
                }
            }
        }
        let items: Vec<(&AuthorKey, &PriceUpdate)> =
            to_verify.iter().map(|(index, key)| (*key, batch[*index].update.as_ref())).collect();
        let network = &self.config.validation.network;
        let all_valid = items.len() > 1 && mesh_types::verify_batch(network, &items);
        for (index, key) in &to_verify {
            verdicts[*index] =
                Some(if all_valid { Ok(()) } else { key.verify(batch[*index].update.as_ref(), network) });
        }
        for (index, first) in copy_of.iter().enumerate() {
            if let Some(first) = first {
                verdicts[index] = verdicts[*first].clone();
            }
        }
        verdicts
    }

    fn reject_bad_signature(
        &self,
        from: Option<NodeId>,
        update: &PriceUpdate,
        error: ValidationError,
        now: Timestamp,
    ) -> Outcome {
        let points = self.config.scoring.bad_signature;
        self.reject_from(from, update, RejectReason::Invalid(error), points, now)
    }

    /// Marks a verified update seen, stores its prices, and turns it into the relay copy.
    async fn accept(
        &self,
        from: Option<NodeId>,
        mut update: Arc<PriceUpdate>,
        synced: bool,
        now: Timestamp,
    ) -> Result<Outcome, Error> {
        // An anti-entropy answer is stored whether or not its id was seen (this node may have
        // lost the price). Answers come with a TTL of 0, so they are not relayed; but a copy
        // that a peer gossiped while this node's request to it was open counts as the answer
        // too, and if it is new here and passes as gossip it is relayed like one: a node that
        // did not pass it on would leave the peers it pushes to eagerly waiting for a graft.
        let new = self.tracker.check_and_mark(update.seen_key()).await?;
        let gossip = !synced || (new && update.validate(&self.config.validation, now).is_ok());
        if !synced && !new {
            // Another copy (or another process sharing the tracker) got there first.
            self.counters.duplicate();
            return Ok(Outcome::Duplicate);
        }
        let (changed, quotes) = self.store(&update).await?;
        self.counters.accepted();
        let (source, hop_count, timestamp) = (update.source_node_id, update.hop_count, update.timestamp);
        // The copy this node passes on: one hop further, one hop less to go. Done in place (the
        // caller handed over the update); the log keeps the same copy, so a node synced from
        // here learns the distance the gossip would have told it.
        let relayed = Arc::make_mut(&mut update);
        relayed.hop_count = relayed.hop_count.saturating_add(1);
        let relay_allowed = relayed.ttl > 0 && gossip;
        relayed.ttl = relayed.ttl.saturating_sub(1);
        if !changed.is_empty() {
            let mut log = lock(&self.log);
            for price in &changed {
                log.insert(price.asset, update.clone());
            }
        }
        Ok(Outcome::Accepted(Accepted {
            source,
            hop_count,
            timestamp,
            changed,
            quotes,
            relay: relay_allowed.then(|| Arc::clone(&update)),
            update,
            except: from,
        }))
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
        self.counters.rejected(&reason);
        Outcome::Rejected(self.judge(peer, update.source_node_id, PriceUpdate::KIND, reason, points, now))
    }

    /// Logs a rejection of a message of `kind` by `source` from `peer`, scores the peer, and
    /// asks for a ban once the score reaches the threshold.
    fn judge(
        &self,
        peer: NodeId,
        source: NodeId,
        kind: &'static str,
        reason: RejectReason,
        points: f64,
        now: Timestamp,
    ) -> Rejected {
        match &reason {
            RejectReason::Invalid(error) => tracing::warn!(
                %peer, %source, kind, code = %error.code(), %error,
                "validation failed"
            ),
            RejectReason::Untrusted(source) => {
                tracing::debug!(%peer, %source, kind, "dropping a message from an untrusted provider");
            }
            RejectReason::RateLimited => {
                tracing::debug!(%peer, kind, "peer exceeds its message rate; dropping")
            }
        }
        let ban = if points > 0.0 { penalise(&mut lock(&self.scores), peer, points, now) } else { None };
        Rejected { reason, ban }
    }

    // ---- announcements and alerts -------------------------------------------------------

    /// Judges an `Announce` or `Alert` from `from` the way price updates are judged, in the
    /// same order: the sender's rate (one budget for every gossiped message), the seen key,
    /// the shared checks ([`Gossiped::validate_gossiped`]: TTL bound, clock, content), trust
    /// (alerts only from trusted providers when a list is set; anyone may announce), the
    /// signature, then the atomic mark. Penalties as for updates: only provable misbehaviour.
    ///
    /// # Errors
    /// When the seen-message tracker fails.
    pub async fn process_notice<M: Gossiped>(
        &self,
        from: NodeId,
        notice: M,
        needs_trust: bool,
        now: Timestamp,
    ) -> Result<Notice<M>, Error> {
        let (source, _) = notice.signer();
        let scoring = self.config.scoring;
        let outcome = |engine: &Self, reason, points| {
            metrics::counter!("mesh_gossip_notices_total", "kind" => M::KIND, "outcome" => "rejected")
                .increment(1);
            Ok(Notice::Rejected(engine.judge(from, source, M::KIND, reason, points, now)))
        };
        if !lock(&self.scores).take_token(from, now) {
            return outcome(self, RejectReason::RateLimited, scoring.flood);
        }
        let key = notice.seen_key();
        if self.tracker.has_seen(key).await? {
            return Ok(Notice::Duplicate);
        }
        if let Err(error) = notice.validate_gossiped(&self.config.validation, now) {
            let points = if error.is_policy_difference() { 0.0 } else { scoring.invalid_update };
            return outcome(self, RejectReason::Invalid(error), points);
        }
        if needs_trust && !self.config.trust.allows(source) {
            return outcome(self, RejectReason::Untrusted(source), 0.0);
        }
        if let Err(error) = notice.verify_signature(&self.config.validation.network) {
            return outcome(self, RejectReason::Invalid(error), scoring.bad_signature);
        }
        if !self.tracker.check_and_mark(key).await? {
            return Ok(Notice::Duplicate);
        }
        metrics::counter!("mesh_gossip_notices_total", "kind" => M::KIND, "outcome" => "accepted")
            .increment(1);
        let relay = (notice.ttl() > 0).then(|| notice.relayed());
        Ok(Notice::Accepted { notice, relay })
    }

    /// Stores every price newest-wins; returns the ones that changed, and every one of an
    /// asset held.
    async fn store(
        &self,
        update: &PriceUpdate,
    ) -> Result<(Vec<CachedPriceData>, Vec<CachedPriceData>), Error> {
        let mut changed = Vec::new();
        let mut quotes = Vec::new();
        for price in update.cached_prices() {
            let full = {
                let log = lock(&self.log);
                log.len() >= MAX_HELD_ASSETS && !log.contains_key(&price.asset)
            };
            if full {
                tracing::warn!(asset = %price.asset, "holding the most assets allowed; not storing a new one");
                continue;
            }
            if self.prices.store(price.clone()).await?.changed() {
                changed.push(price.clone());
            }
            quotes.push(price);
        }
        Ok((changed, quotes))
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

    /// This node's digest in pages of at most [`MAX_DIGEST_ENTRIES`] entries, each of which
    /// fits a frame: what the node sends, however many assets it holds.
    ///
    /// # Errors
    /// When the price store fails.
    pub async fn digest_pages(&self) -> Result<Vec<Digest>, Error> {
        let entries: Vec<DigestEntry> = self.prices.get_all().await?.values().map(DigestEntry::of).collect();
        Ok(entries.chunks(MAX_DIGEST_ENTRIES).map(|page| Digest { entries: page.to_vec() }).collect())
    }

    /// [`GossipEngine::on_digest`] for a digest from `peer`, remembering what is asked of it
    /// (within bounds: a request names at most 1,024 assets, and at most 4,096 stay
    /// outstanding per peer), so that its answers are recognised by
    /// [`GossipEngine::answers_request`].
    ///
    /// # Errors
    /// When the price store fails.
    pub async fn on_digest_from(&self, peer: NodeId, digest: &Digest) -> Result<Option<Request>, Error> {
        let Some(wanted) = self.on_digest(digest).await? else { return Ok(None) };
        let assets = lock(&self.requested).ask(peer, wanted.assets);
        Ok((!assets.is_empty()).then_some(Request { assets }))
    }

    /// Whether `update` from `peer` answers this node's request (then it is processed as
    /// synced); the assets it carries are no longer outstanding.
    pub fn answers_request(&self, peer: NodeId, update: &PriceUpdate) -> bool {
        lock(&self.requested).answered(peer, update)
    }

    /// Forgets `peer`'s outstanding requests (it disconnected).
    pub fn peer_left(&self, peer: NodeId) {
        lock(&self.requested).forget(peer);
    }

    /// Takes one anti-entropy or discovery message (`Digest`, `Request`, `PeerExchange`) from
    /// `peer`'s budget for them (a burst of 16, then one a second). `Err` carries the
    /// rejection of a peer sending them faster, with the ban it earned, if any.
    ///
    /// # Errors
    /// The peer is over its budget: drop the message.
    pub fn admit_control(&self, peer: NodeId, now: Timestamp) -> Result<(), Rejected> {
        let mut scores = lock(&self.scores);
        if scores.take_control_token(peer, now) {
            return Ok(());
        }
        self.counters.rejected(&RejectReason::RateLimited);
        let points = scores.config().flood;
        let ban = penalise(&mut scores, peer, points, now);
        tracing::debug!(%peer, "peer exceeds its anti-entropy message rate; dropping");
        Err(Rejected { reason: RejectReason::RateLimited, ban })
    }

    /// Whether `count` items of lazy push from `from` (ids it made this node wait for, or
    /// payloads it asked for) fit its update rate: each costs what an update costs, since each
    /// makes this node do an update's worth of work. A peer beyond it is scored as a flood.
    ///
    /// # Errors
    /// The rejection, with the ban the peer earned, if any.
    pub fn admit_lazy(&self, from: NodeId, count: usize, now: Timestamp) -> Result<(), Rejected> {
        let mut scores = lock(&self.scores);
        if (0..count).all(|_| scores.take_token(from, now)) {
            return Ok(());
        }
        self.counters.rejected(&RejectReason::RateLimited);
        let points = scores.config().flood;
        let ban = penalise(&mut scores, from, points, now);
        tracing::debug!(peer = %from, "peer exceeds its rate with lazy-push messages; dropping");
        Err(Rejected { reason: RejectReason::RateLimited, ban })
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

    /// The original signed updates behind the requested assets, each once, with `ttl` 0 so
    /// they are not gossiped again and the hop count they would have if relayed from here.
    /// Assets restored from storage after a restart have no signed update until a fresh one
    /// arrives, and are left out.
    pub fn on_request(&self, request: &Request) -> Vec<Arc<PriceUpdate>> {
        let log = lock(&self.log);
        let mut seen = std::collections::HashSet::new();
        request
            .assets
            .iter()
            .take(MAX_REQUEST_ASSETS)
            .filter_map(|asset| log.get(asset))
            .filter(|update| seen.insert(update.message_id))
            .map(|update| {
                if update.ttl == 0 {
                    update.clone()
                } else {
                    Arc::new(PriceUpdate { ttl: 0, ..PriceUpdate::clone(update) })
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use mesh_dedup::{MemoryTracker, TrackerConfig};
    use mesh_price_cache::MemoryPriceStore;
    use mesh_types::rust_decimal::Decimal;
    use mesh_types::{Asset, NodeIdentity, PriceData, Signature, SignedMessage};

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
        PriceUpdate::new_signed(provider, &mesh_types::NetworkId::mainnet(), [price], ttl, now())
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
            PriceUpdate { ttl: 10, hop_count: 0, ..PriceUpdate::clone(&relay) },
            original,
            "everything else unchanged"
        );
        assert!(
            relay.verify_signature(&mesh_types::NetworkId::mainnet()).is_ok(),
            "the signature still verifies at the next hop"
        );
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
        let future = PriceUpdate::new_signed(
            &provider,
            &mesh_types::NetworkId::mainnet(),
            [price],
            10,
            now() + mesh_types::chrono::Duration::hours(1),
        );
        let refused = rejected(engine.process_update(peer(1), future, now()).await.unwrap());
        assert!(matches!(refused.reason, RejectReason::Invalid(ValidationError::FutureTimestamp { .. })));
        assert_eq!(refused.ban, None);
    }

    #[tokio::test]
    async fn a_relay_forwarding_updates_this_node_refuses_by_policy_is_never_banned() {
        // The attack: ~100 updates from a throwaway key, routed through an honest relay
        // (which accepts any provider), got the relay banned by every node with a trust list.
        let trusted = NodeIdentity::generate();
        let engine =
            engine(GossipConfig { trust: TrustPolicy::only([trusted.node_id()]), ..GossipConfig::default() });
        let stranger = NodeIdentity::generate();
        let at = now();
        for _ in 0..300 {
            let outcome = engine.process_update(peer(4), update(&stranger, "SOL", 1, 10), at).await.unwrap();
            assert_eq!(rejected(outcome).ban, None, "untrusted sources cost the relay nothing");
        }
        let mut skewed = update(&trusted, "SOL", 1, 10);
        skewed.timestamp = at + mesh_types::chrono::Duration::minutes(10);
        for _ in 0..50 {
            let outcome = engine.process_update(peer(4), skewed.clone(), at).await.unwrap();
            assert_eq!(rejected(outcome).ban, None, "nor do clocks that differ from ours");
        }
        accepted(engine.process_update(peer(4), update(&trusted, "SOL", 2, 10), at).await.unwrap());
    }

    #[tokio::test]
    async fn an_update_replayed_after_the_maximum_age_is_refused_but_an_old_anti_entropy_answer_is_stored() {
        let engine = engine(GossipConfig::default());
        let provider = NodeIdentity::generate();
        let signed_at = now() - mesh_types::chrono::Duration::minutes(10);
        let price = PriceData {
            asset: Asset::new("SOL").unwrap(),
            price: Decimal::ONE,
            blockchain: "Solana".into(),
            change_24h: None,
        };
        let old =
            PriceUpdate::new_signed(&provider, &mesh_types::NetworkId::mainnet(), [price], 10, signed_at);
        let refused = rejected(engine.process_update(peer(1), old.clone(), now()).await.unwrap());
        assert!(matches!(refused.reason, RejectReason::Invalid(ValidationError::TooOld { .. })));
        let synced = accepted(engine.process_synced(peer(1), old, now()).await.unwrap());
        assert_eq!((synced.changed.len(), synced.relay), (1, None), "stored, never relayed");
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
            assert!(
                answer.verify_signature(&mesh_types::NetworkId::mainnet()).is_ok(),
                "the original signatures travel"
            );
            accepted(late.process_synced(peer(1), answer, now()).await.unwrap());
        }
        assert_eq!(late.on_digest(&early.digest().await.unwrap()).await.unwrap(), None, "now up to date");
        assert_eq!(early.prices.get_all().await.unwrap(), late.prices.get_all().await.unwrap());
    }

    #[tokio::test]
    async fn a_synced_update_carries_the_hops_gossip_would_have_told() {
        let (provider_node, relay, consumer) = (
            engine(GossipConfig::default()),
            engine(GossipConfig::default()),
            engine(GossipConfig::default()),
        );
        let provider = NodeIdentity::generate();
        let published =
            accepted(provider_node.publish(update(&provider, "SOL", 100, 10), now()).await.unwrap());
        let sol = Request { assets: vec![Asset::new("SOL").unwrap()] };
        let first_hop = published.relay.expect("relayed");
        assert_eq!(
            provider_node.on_request(&sol)[0].hop_count,
            first_hop.hop_count,
            "as its neighbours hear it"
        );

        // The relay got the update straight from the provider; the consumer syncs from the relay.
        let relayed = accepted(relay.process_update(peer(1), first_hop, now()).await.unwrap());
        let gossiped_hops = relayed.relay.expect("relayed again").hop_count;
        let answer = relay.on_request(&sol).remove(0);
        assert_eq!((answer.ttl, answer.hop_count), (0, gossiped_hops), "not gossiped again");
        let synced = accepted(consumer.process_synced(peer(2), answer, now()).await.unwrap());
        assert_eq!(synced.hop_count, gossiped_hops);
        assert_eq!(synced.relay, None, "a synced update is never relayed");
    }

    #[tokio::test]
    async fn a_gossiped_copy_taken_for_an_answer_is_relayed_if_new_and_fresh() {
        let engine = engine(GossipConfig::default());
        let provider = NodeIdentity::generate();
        let fresh = update(&provider, "SOL", 100, 10);
        let taken = accepted(engine.process_synced(peer(1), fresh.clone(), now()).await.unwrap());
        assert!(taken.relay.is_some(), "new here, so the peers it pushes to get it");
        let again = accepted(engine.process_synced(peer(2), fresh, now()).await.unwrap());
        assert_eq!(again.relay, None, "seen already: stored again, not relayed");
    }

    fn many_prices(range: std::ops::Range<usize>) -> Vec<PriceData> {
        range
            .map(|n| PriceData {
                asset: Asset::new(&format!("A{n}")).unwrap(),
                price: Decimal::ONE,
                blockchain: "Solana".into(),
                change_24h: None,
            })
            .collect()
    }

    #[tokio::test]
    async fn a_digest_of_any_size_goes_in_pages_that_fit_a_frame() {
        let engine = engine(GossipConfig::default());
        let provider = NodeIdentity::generate();
        for start in (0..10_000).step_by(1000) {
            engine
                .publish(
                    PriceUpdate::new_signed(
                        &provider,
                        &mesh_types::NetworkId::mainnet(),
                        many_prices(start..start + 1000),
                        10,
                        now(),
                    ),
                    now(),
                )
                .await
                .unwrap();
        }
        let pages = engine.digest_pages().await.unwrap();
        assert_eq!(pages.len(), 3);
        assert_eq!(pages.iter().map(|page| page.entries.len()).sum::<usize>(), 10_000);
        let codec = mesh_types::Codec::default();
        for page in pages {
            assert!(page.entries.len() <= MAX_DIGEST_ENTRIES);
            let bytes = codec.encode(&mesh_types::MeshMessage::Digest(page)).expect("a page fits a frame");
            assert!(bytes.len() < 1 << 20);
        }
    }

    #[tokio::test]
    async fn assets_beyond_the_cap_are_not_stored() {
        let engine = engine(GossipConfig::default());
        let provider = NodeIdentity::generate();
        for start in (0..MAX_HELD_ASSETS + 1000).step_by(1000) {
            let update = PriceUpdate::new_signed(
                &provider,
                &mesh_types::NetworkId::mainnet(),
                many_prices(start..start + 1000),
                10,
                now(),
            );
            engine.process_update(peer(1), update, now()).await.unwrap();
        }
        assert_eq!(engine.prices.len().await.unwrap(), MAX_HELD_ASSETS);
    }

    #[tokio::test]
    async fn anti_entropy_messages_beyond_their_rate_are_dropped_and_a_flood_is_banned() {
        let engine = engine(GossipConfig::default());
        let at = now();
        for _ in 0..16 {
            engine.admit_control(peer(5), at).unwrap();
        }
        let refused = engine.admit_control(peer(5), at).unwrap_err();
        assert_eq!((refused.reason, refused.ban), (RejectReason::RateLimited, None));
        let banned = (0..200).find_map(|_| engine.admit_control(peer(5), at).err().and_then(|r| r.ban));
        assert!(banned.is_some_and(|ban| ban.peer == peer(5)));
        engine.admit_control(peer(6), at).expect("another peer has its own budget");
    }

    #[tokio::test]
    async fn answers_count_as_synced_only_for_what_was_asked_of_that_peer() {
        let (early, late) = (engine(GossipConfig::default()), engine(GossipConfig::default()));
        let provider = NodeIdentity::generate();
        early.publish(update(&provider, "SOL", 100, 10), now()).await.unwrap();
        let request = late.on_digest_from(peer(1), &early.digest().await.unwrap()).await.unwrap().unwrap();
        let answer = early.on_request(&request).remove(0);
        assert!(!late.answers_request(peer(2), &answer), "not asked of peer 2");
        assert!(late.answers_request(peer(1), &answer));
        assert!(!late.answers_request(peer(1), &answer), "each asked asset is answered once");
    }

    #[tokio::test]
    async fn notice_announcements_are_judged_like_updates_deduplicated_and_relayed_one_hop_further() {
        let engine = engine(GossipConfig::default());
        let node = NodeIdentity::generate();
        let announce = mesh_types::Announce::new_signed(
            &node,
            &mesh_types::NetworkId::mainnet(),
            false,
            None,
            10,
            now(),
        );
        let Notice::Accepted { relay, .. } =
            engine.process_notice(peer(1), announce.clone(), false, now()).await.unwrap()
        else {
            panic!("a fresh, signed announcement is accepted");
        };
        let relay = relay.expect("ttl 10 is relayed");
        assert_eq!((relay.ttl, relay.hop_count), (9, 1));
        assert_eq!(engine.process_notice(peer(2), relay, false, now()).await.unwrap(), Notice::Duplicate);

        let inflated = mesh_types::Announce {
            ttl: 16,
            hop_count: 5,
            ..mesh_types::Announce::new_signed(
                &node,
                &mesh_types::NetworkId::mainnet(),
                false,
                None,
                10,
                now(),
            )
        };
        let Notice::Rejected(refused) = engine.process_notice(peer(3), inflated, false, now()).await.unwrap()
        else {
            panic!("a TTL beyond the bound is refused");
        };
        assert!(matches!(refused.reason, RejectReason::Invalid(ValidationError::TtlTooHigh { .. })));

        let mut forged =
            mesh_types::Announce::new_signed(&node, &mesh_types::NetworkId::mainnet(), true, None, 10, now());
        forged.is_provider = false;
        let Notice::Rejected(refused) = engine.process_notice(peer(3), forged, false, now()).await.unwrap()
        else {
            panic!("a forged announcement is refused");
        };
        assert!(matches!(refused.reason, RejectReason::Invalid(ValidationError::BadSignature { .. })));
    }

    #[tokio::test]
    async fn notice_alerts_need_a_trusted_author_and_cost_a_relay_nothing_when_refused() {
        let trusted = NodeIdentity::generate();
        let engine =
            engine(GossipConfig { trust: TrustPolicy::only([trusted.node_id()]), ..GossipConfig::default() });
        let kind = mesh_types::WarningKind::NoProviders;
        let stranger = mesh_types::Alert::new_signed(
            &NodeIdentity::generate(),
            &mesh_types::NetworkId::mainnet(),
            kind.clone(),
            10,
            now(),
        );
        let Notice::Rejected(refused) = engine.process_notice(peer(1), stranger, true, now()).await.unwrap()
        else {
            panic!("an untrusted alert is refused");
        };
        assert!(matches!(refused.reason, RejectReason::Untrusted(_)));
        assert_eq!(refused.ban, None);
        let genuine =
            mesh_types::Alert::new_signed(&trusted, &mesh_types::NetworkId::mainnet(), kind, 10, now());
        assert!(matches!(
            engine.process_notice(peer(1), genuine, true, now()).await.unwrap(),
            Notice::Accepted { .. }
        ));
    }

    #[tokio::test]
    async fn notice_floods_share_the_senders_rate_budget() {
        let scoring = ScoringConfig { rate_per_second: 10.0, burst: 10.0, ..ScoringConfig::default() };
        let engine = engine(GossipConfig { scoring, ..GossipConfig::default() });
        let at = now();
        let mut limited = 0;
        for _ in 0..30 {
            let announce = mesh_types::Announce::new_signed(
                &NodeIdentity::generate(),
                &mesh_types::NetworkId::mainnet(),
                false,
                None,
                10,
                at,
            );
            if let Notice::Rejected(Rejected { reason: RejectReason::RateLimited, .. }) =
                engine.process_notice(peer(8), announce, false, at).await.unwrap()
            {
                limited += 1;
            }
        }
        assert_eq!(limited, 20, "beyond the burst of 10, every announcement is dropped");
    }

    fn received(from: u8, update: PriceUpdate) -> Received {
        Received { from: peer(from), update: Arc::new(update), synced: false }
    }

    #[tokio::test]
    async fn a_batch_gives_the_outcomes_of_one_by_one_processing() {
        let (batched, single) = (engine(GossipConfig::default()), engine(GossipConfig::default()));
        let providers: Vec<NodeIdentity> = (0..3).map(|_| NodeIdentity::generate()).collect();
        let updates: Vec<PriceUpdate> = ["SOL", "ETH", "BTC", "JUP", "BONK"]
            .iter()
            .enumerate()
            .map(|(i, symbol)| update(&providers[i % 3], symbol, 100 + i64::try_from(i).unwrap(), 10))
            .collect();
        let batch =
            updates.iter().cloned().enumerate().map(|(i, u)| received(u8::try_from(i).unwrap(), u)).collect();
        let outcomes = batched.process_batch(batch, now()).await.unwrap();
        for (i, (outcome, update)) in outcomes.into_iter().zip(updates).enumerate() {
            let one = single.process_update(peer(u8::try_from(i).unwrap()), update, now()).await.unwrap();
            assert_eq!(outcome, one);
        }
        assert_eq!(batched.prices.get_all().await.unwrap(), single.prices.get_all().await.unwrap());
    }

    #[tokio::test]
    async fn a_forged_update_in_a_batch_is_found_and_the_rest_accepted() {
        let engine = engine(GossipConfig::default());
        let provider = NodeIdentity::generate();
        let mut forged = update(&provider, "ETH", 200, 10);
        forged.prices.values_mut().for_each(|price| price.price = Decimal::new(1, 2));
        let batch = vec![
            received(1, update(&provider, "SOL", 100, 10)),
            received(2, forged),
            received(3, update(&provider, "BTC", 300, 10)),
        ];
        let outcomes = engine.process_batch(batch, now()).await.unwrap();
        accepted(outcomes[0].clone());
        let refused = rejected(outcomes[1].clone());
        assert!(matches!(refused.reason, RejectReason::Invalid(ValidationError::BadSignature { .. })));
        accepted(outcomes[2].clone());
        assert_eq!(engine.prices.len().await.unwrap(), 2);
    }

    #[tokio::test]
    async fn copies_within_a_batch_are_duplicates_but_a_forged_twin_cannot_suppress_the_real_one() {
        let engine = engine(GossipConfig::default());
        let real = update(&NodeIdentity::generate(), "SOL", 100, 10);
        let mut forged = real.clone();
        forged.prices.values_mut().for_each(|price| price.price = Decimal::new(1, 2));
        let relayed_copy = PriceUpdate { ttl: 7, hop_count: 3, ..real.clone() };
        let batch = vec![received(1, forged), received(2, real), received(3, relayed_copy)];
        let outcomes = engine.process_batch(batch, now()).await.unwrap();
        rejected(outcomes[0].clone());
        accepted(outcomes[1].clone());
        assert_eq!(outcomes[2], Outcome::Duplicate);
    }
}
