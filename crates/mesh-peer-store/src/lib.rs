//! Known-peer bookkeeping for pricemesh: the peers a node has met, their status (valid,
//! inaccessible, banned, unknown), why and until when a peer is banned, and where each listens.
//!
//! This crate will hold `Peer`, `PeerStatus`, `BanReason` and the `PeerStore` trait with its
//! in-memory (optionally persisted to a JSON file) and PostgreSQL (`mesh_peers` table)
//! backends. They arrive with the storage issue; until then the crate is intentionally empty.
