//! The pricemesh node as a library: [`MeshPriceService`] composes the transport and connection
//! manager, the gossip engine, the stores, the fetch coordinator and the
//! [`NetworkStatusTracker`] by dependency injection, and reports changed prices, status
//! changes and warnings as [`ServiceEvent`]s.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use mesh_service::{MeshPriceService, ServiceConfig};
//! use mesh_transport::ManagerConfig;
//! use mesh_types::{NetworkId, NodeIdentity};
//!
//! let mut network = ManagerConfig::new(NetworkId::devnet());
//! network.listen_addr = Some("0.0.0.0:9470".parse()?);
//! network.bootstrap = vec!["seed.example.org:9470".into()];
//! let node = MeshPriceService::builder(Arc::new(NodeIdentity::generate()), ServiceConfig::new(network))
//!     .start()
//!     .await?;
//! let mut events = node.subscribe();
//! while let Ok(event) = events.recv().await {
//!     println!("{event:?}");
//! }
//! # Ok(())
//! # }
//! ```

mod gauges;
mod greeting;
mod journal;
pub mod quorum;
mod service;
mod status;

pub use gauges::MAX_PRICE_SERIES;
pub use journal::{ReplayGap, Sequenced};
pub use service::{
    ACCEPTED_UPDATES_BUFFER, AcceptedUpdate, EnableError, MeshPriceService, SHUTDOWN_GRACE, SWEEP_INTERVAL,
    ServiceBuilder, ServiceConfig, ServiceError, ServiceEvent,
};
pub use status::{MAX_TRACKED_NODES, NetworkStatusTracker, Recorded, StatusConfig};
