//! The shared vocabulary of pricemesh: every type that crosses a crate boundary, the network or
//! the HTTP API.
//!
//! - **Identity**: [`NodeIdentity`] (an Ed25519 key kept in a private key file), the
//!   self-certifying [`NodeId`] derived from its public key, [`MessageId`].
//! - **Prices**: [`Asset`], [`PriceData`], the signed [`PriceUpdate`], [`CachedPriceData`],
//!   [`DataFreshness`].
//! - **Network health**: [`ProviderInfo`], [`NetworkStatus`], [`MeshWarning`].
//! - **API shapes**: [`ApiResponse`], [`ProviderStatus`], [`ServedPrice`], [`FeedMessage`] in its
//!   sequenced [`FeedFrame`], as the API renders them in JSON (the OpenAPI contract at
//!   `/api/openapi.json`; pricemesh's additions, such as a served price's `providers` and
//!   `spread`, sit beside the plain fields).
//! - **Wire protocol**: [`MeshMessage`] and its [`Codec`] (a version byte + postcard).
//! - **Trust**: [`SignedMessage`] and [`PriceUpdate::validate`], with errors mapped to the API's
//!   codes ([`ErrorCode`]).
//! - **Tasks**: the [`Supervisor`] that owns every long-running task of a node.
//!
//! This crate depends on no other pricemesh crate and does no I/O except reading and writing
//! the key file.
//!
//! ```
//! use mesh_types::{Asset, Codec, MeshMessage, NodeIdentity, PriceData, PriceUpdate, SignedMessage, ValidationPolicy};
//! use rust_decimal::Decimal;
//!
//! let provider = NodeIdentity::generate();
//! let sol = PriceData {
//!     asset: Asset::new("SOL")?,
//!     price: Decimal::new(12345, 2),
//!     blockchain: "Solana".into(),
//!     change_24h: None,
//! };
//! let update = PriceUpdate::new_signed(&provider, &mesh_types::NetworkId::mainnet(), [sol], 10, chrono::Utc::now());
//!
//! let codec = Codec::default();
//! let payload = codec.encode(&MeshMessage::from(update.clone()))?;
//! let MeshMessage::PriceUpdate(received) = codec.decode(&payload)? else { unreachable!() };
//! received.validate_and_verify(&ValidationPolicy::default(), chrono::Utc::now())?;
//! assert_eq!(*received, update);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod api;
mod asset;
mod author_key;
mod ban;
mod canonical;
pub mod clock;
pub mod codec;
mod freshness;
mod gossiped;
mod identity;
mod ids;
mod keys;
mod message;
mod network;
#[cfg(feature = "openapi")]
pub mod openapi;
mod price;
mod provider;
mod serde_util;
mod served;
mod signing;
mod status;
mod supervisor;
mod update;
mod validation;
mod warning;

pub use api::{ApiFailure, ApiResponse, FeedFrame, FeedMessage, ProviderState, ProviderStatus};
pub use asset::{Asset, AssetError, MAX_ASSET_LEN};
pub use author_key::{AuthorKey, verify_batch};
pub use ban::BanReason;
pub use codec::{Codec, CodecError};
pub use freshness::DataFreshness;
pub use gossiped::Gossiped;
pub use identity::{IdentityError, KEY_FILE_NAME, NodeIdentity};
pub use ids::{MessageId, NodeId};
pub use keys::{PUBLIC_KEY_LEN, PublicKey, SIGNATURE_LEN, Signature};
pub use message::{
    Alert, Announce, Digest, DigestEntry, Goodbye, GoodbyeReason, Heartbeat, Hello, HelloAck, LazyIds,
    MAX_LAZY_IDS, MAX_PROVIDER_HOPS, MeshMessage, NONCE_LEN, PROTOCOL_VERSION, PeerAddress, PeerExchange,
    Request, handshake_proof_bytes,
};
pub use network::{MAX_NETWORK_ID_LEN, NetworkId, NetworkIdError};
pub use price::{CachedPriceData, MAX_BLOCKCHAIN_LEN, PriceData, PriceMap};
pub use provider::{ProviderConfig, ProviderConfigError};
pub use served::{Quote, ServedPrice, ServedPriceMap};
pub use signing::SignedMessage;
pub use status::{NetworkStatus, NetworkStatusSummary, ProviderInfo};
pub use supervisor::{Supervisor, TaskFailure, describe_supervisor_metrics};
pub use update::PriceUpdate;
pub use validation::{ErrorCode, ValidationError, ValidationPolicy};
pub use warning::{MeshWarning, Severity, WarningCode, WarningKind};

/// A point in time, in UTC. JSON renders it as RFC 3339 (`2024-01-01T12:00:00Z`).
pub type Timestamp = chrono::DateTime<chrono::Utc>;

/// Re-exported so users name the same versions this crate's types use.
pub use chrono;
/// Re-exported so users name the same versions this crate's types use.
pub use rust_decimal;

#[cfg(any(test, feature = "proptest"))]
pub mod strategies;

#[cfg(test)]
mod json_tests;
