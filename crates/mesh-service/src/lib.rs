//! The pricemesh node as a library: `MeshPriceService` composes the transport, the gossip
//! engine, the stores, the fetch coordinator and the provider loop by dependency injection, and
//! tracks network status and warnings for the API.
//!
//! It arrives with the mesh issue; until then the crate is intentionally empty.
