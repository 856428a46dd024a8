//! The network layer of pricemesh: how nodes find each other, prove who they are and stay
//! connected.
//!
//! This crate will hold the `Transport` trait with a TCP implementation (length-delimited
//! frames carrying the [`mesh_types::Codec`] payloads) and an in-memory one with fault
//! injection, the `Hello`/`HelloAck` handshake, the connection manager, heartbeats and peer
//! discovery. It emits connection and message events and knows nothing about prices. The
//! implementation arrives with the transport issue; until then the crate is intentionally
//! empty.
