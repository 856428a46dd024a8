//! `mesh-client`: the prices of one or more pricemesh nodes in your Rust application.
//!
//! [`MeshClient`] connects to every node you give it over their WebSocket feeds (`/ws`), at
//! once. Each connection reconnects with backoff when it drops and resumes where it left off
//! with `?since=`, so a node's restart or a short outage costs no update. The connections are
//! merged into one stream of typed [`ClientEvent`]s and one [`MeshClient::latest`] view:
//!
//! - a price is delivered once, by whichever node sent it first, and never goes back in time
//!   (newest wins, in the same order the nodes use);
//! - a [`ClientEvent::Gap`] is reported only when changes may really have been missed: a
//!   node could not replay what happened while its connection was down, and no other
//!   connection was up the whole time.
//!
//! It speaks plain WebSocket (no TLS): run it beside the node, as pricemesh is meant to be
//! run, or behind a local TLS-terminating proxy.
//!
//! ```no_run
//! # async fn run() -> Result<(), mesh_client::ClientError> {
//! use mesh_client::{ClientConfig, ClientEvent, MeshClient};
//!
//! let config = ClientConfig::new(["http://127.0.0.1:8080", "http://127.0.0.1:8081"])?;
//! let mut client = MeshClient::connect(config);
//! while let Some(event) = client.next().await {
//!     match event {
//!         ClientEvent::Update(price) => println!("{} {}", price.price.asset, price.price.price),
//!         ClientEvent::Gap { node, .. } => eprintln!("{node} could not replay; prices were refreshed"),
//!         _ => {}
//!     }
//! }
//! # Ok(())
//! # }
//! ```

mod client;
mod config;
mod connection;
mod event;
mod view;

pub use client::MeshClient;
pub use config::{ClientConfig, ClientError};
pub use event::ClientEvent;
