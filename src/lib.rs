//! pricemesh: a peer-to-peer mesh that carries signed cryptocurrency prices from provider nodes
//! to every node of the network, with no central server.
//!
//! This facade re-exports the member crates so a service needs one dependency. Each module is
//! the crate of the same name:
//!
//! | module | crate | what it is |
//! | --- | --- | --- |
//! | [`types`] | `mesh-types` | data model, wire codec, identity, signing, validation |
//! | [`dedup`] | `mesh-dedup` | `MessageTracker`: seen-message deduplication |
//! | [`price_cache`] | `mesh-price-cache` | `PriceStore`: newest-wins price storage |
//! | [`coordination`] | `mesh-coordination` | `FetchCoordinator`: one fetch per window |
//! | [`peer_store`] | `mesh-peer-store` | known peers, status and bans |
//! | [`transport`] | `mesh-transport` | connections, handshake, discovery |
//! | [`gossip`] | `mesh-gossip` | the protocol engine |
//! | [`provider`] | `mesh-provider` | price sources and the provider loop |
//! | [`service`] | `mesh-service` | the node as a library |
//! | [`api`] | `mesh-api` | REST, WebSocket, metrics |
//! | [`sim`] | `mesh-sim` | many nodes in one process |

pub use mesh_api as api;
pub use mesh_coordination as coordination;
pub use mesh_dedup as dedup;
pub use mesh_gossip as gossip;
pub use mesh_peer_store as peer_store;
pub use mesh_price_cache as price_cache;
pub use mesh_provider as provider;
pub use mesh_service as service;
pub use mesh_sim as sim;
pub use mesh_transport as transport;
pub use mesh_types as types;
