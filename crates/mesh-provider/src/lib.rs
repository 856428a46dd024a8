//! Where prices come from: the `PriceSource` trait with a Birdeye HTTP client and a
//! deterministic simulated source, and the provider loop that fetches (when the fetch
//! coordinator grants the window), signs and publishes [`mesh_types::PriceUpdate`]s.
//!
//! It arrives with the mesh issue; until then the crate is intentionally empty.
