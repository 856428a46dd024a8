//! The pricemesh NATS bridge: every price a node accepts, published to NATS so that systems
//! outside the mesh can read it, with the provider's signed update attached so that they need
//! not trust the node that bridged it.
//!
//! - **Subjects**: `pricemesh.<network>.<asset>`, e.g. `pricemesh.mainnet.SOL` ([`subject`]);
//!   subscribe to `pricemesh.<network>.>` ([`network_subjects`]) for every asset.
//! - **Payload**: the REST API's JSON price object (`serde_json` of
//!   [`mesh_types::CachedPriceData`]): `{"asset","price","timestamp","source_node_id",
//!   "blockchain","change_24h"}`.
//! - **Header** [`UPDATE_HEADER`] (`Pricemesh-Update`): lowercase hex of the provider's
//!   [`mesh_types::PriceUpdate`] as a wire payload (`meshctl decode HEX` reads it). [`verify`]
//!   and [`verify_message`] check its signature and that the payload is one of its prices.
//! - **JetStream** (optional, [`NatsConfig::stream`]): a stream over `pricemesh.<network>.>`
//!   keeping one message per subject, so a late subscriber gets the newest price per asset.
//!
//! [`NatsBridge::start`] runs one supervised task (`nats_bridge`, see
//! [`mesh_types::Supervisor`]) that reads [`mesh_service::MeshPriceService::accepted_updates`]
//! and never holds up gossip: every wait on NATS is bounded, and what cannot be published in
//! time is dropped and counted (see [`telemetry`] for the metrics).
//!
//! ```no_run
//! # async fn run(node: &mesh_service::MeshPriceService) -> Result<(), mesh_nats::NatsError> {
//! use mesh_nats::{NatsBridge, NatsConfig};
//!
//! let config = NatsConfig { stream: Some("PRICEMESH".into()), ..NatsConfig::new("nats://127.0.0.1:4222") };
//! let bridge = NatsBridge::start(config, node).await?;
//! // ... run the node ...
//! bridge.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod bridge;
mod config;
mod error;
mod subject;
pub mod telemetry;
mod verify;

pub use bridge::{BridgeStats, NatsBridge};
pub use config::{MAX_STREAM_NAME_LEN, NatsConfig};
pub use error::NatsError;
pub use subject::{SUBJECT_PREFIX, network_subjects, subject};
pub use verify::{UPDATE_HEADER, VerifyError, verify, verify_message, verify_stream_message};

/// Re-exported so users name the same client version this crate speaks.
pub use async_nats;
