//! The pricemesh protocol engine: given an update from a peer, decide whether it is valid and
//! new, store its prices newest-wins, and say what to deliver locally and which peers to relay
//! to — plus anti-entropy (digest exchange) and misbehaviour scoring.
//!
//! The engine is pure in the sense that matters: it does no network I/O and keeps no timers;
//! it works on the [`mesh_dedup::MessageTracker`] and [`mesh_price_cache::PriceStore`] it is
//! given and returns [`Outcome`]s, which the node turns into sends, deliveries and bans. That
//! makes it property-testable and lets one process simulate many nodes.
//!
//! Anti-entropy: [`GossipEngine::digest`] summarises what a node holds; a peer's
//! [`GossipEngine::on_digest`] turns that into a request for what is newer;
//! [`GossipEngine::on_request`] answers with the original signed updates, which the requester
//! takes through [`GossipEngine::process_synced`].
//!
//! Relaying: [`PushTree`] decides which peers get an accepted update's payload and which only
//! its id (lazy push along a spanning tree, repaired by grafts).

mod engine;
mod push;
mod requests;
mod scoring;
mod trust;

pub use engine::{
    Accepted, Ban, Error, GossipConfig, GossipEngine, GossipStats, MAX_DIGEST_ENTRIES, MAX_HELD_ASSETS,
    Notice, Outcome, Received, RejectReason, Rejected,
};
pub use push::{
    Due, MAX_MISSING, MAX_MISSING_PER_PEER, MAX_RECENT, PRUNE_AFTER_DUPLICATES, PushConfig, PushMode,
    PushTree,
};
pub use requests::{MAX_PENDING_PER_PEER, MAX_REQUEST_ASSETS};
pub use scoring::ScoringConfig;
pub use trust::{TrustEntryError, TrustPolicy};
