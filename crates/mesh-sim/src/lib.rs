//! The pricemesh simulator: many nodes in one process over the in-memory transport, with
//! chosen topologies, link latency, loss and partitions, reporting how fast and how redundantly
//! each update reaches every node.
//!
//! It arrives with the mesh issue; until then the crate is intentionally empty.
