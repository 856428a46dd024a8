//! The pricemesh protocol engine: given an update from a peer, decide whether it is valid and
//! new, store its prices newest-wins, and say what to deliver locally and which peers to relay
//! to — plus anti-entropy (digest exchange) and misbehaviour scoring.
//!
//! The engine is pure: it does no I/O of its own and returns decisions, so it can be property
//! tested and simulated at scale. It arrives with the mesh issue; until then the crate is
//! intentionally empty.
