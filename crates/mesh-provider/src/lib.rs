//! Where prices come from: the [`PriceSource`] trait with a Birdeye HTTP client
//! ([`BirdeyeSource`]) and a deterministic simulated source ([`SimulatedSource`]), and the
//! provider loop ([`ProviderNode`]) that fetches when the fetch coordinator grants the window,
//! signs and publishes [`mesh_types::PriceUpdate`]s.
//!
//! | source | type | needs |
//! | --- | --- | --- |
//! | Birdeye `multi_price` | [`BirdeyeSource`] | an [`ApiKey`] and the internet (or a stand-in server) |
//! | seeded random walk | [`SimulatedSource`] | nothing: a node runs with no key and no internet |
//!
//! The Birdeye API key is an [`ApiKey`]: its `Debug` prints `ApiKey(***)`, it has no `Display`
//! and no `Serialize`, and no error or log line of this crate contains it.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use mesh_coordination::MemoryCoordinator;
//! use mesh_provider::{ProviderNode, SimulatedSource};
//! use mesh_types::{Asset, NodeIdentity, ProviderConfig};
//!
//! let (updates, mut received) = tokio::sync::mpsc::channel(16);
//! let provider = ProviderNode::new(
//!     ProviderConfig::default(),
//!     Arc::new(NodeIdentity::generate()),
//!     Arc::new(MemoryCoordinator::new()),
//!     vec![Asset::new("SOL")?, Asset::new("BTC")?],
//!     updates,
//! )?;
//! let task = provider.start();
//! provider.enable(Arc::new(SimulatedSource::new(7))).await?;
//! let update = received.recv().await;
//! task.shutdown().await;
//! # drop(update);
//! # Ok(())
//! # }
//! ```

use std::time::Duration;

use async_trait::async_trait;
use mesh_types::{Asset, PriceData};
use thiserror::Error;

mod birdeye;
mod node;
mod secret;
mod simulated;
mod symbols;

pub use birdeye::{BirdeyeConfig, BirdeyeSource, parse_multi_price};

/// The longest back-off a rate limit can impose: a price API that asks for more (or a
/// `Retry-After` of billions of seconds, which would overflow the clock) gets this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
pub use node::{ProviderCounters, ProviderNode, ProviderTask};
pub use secret::ApiKey;
pub use simulated::SimulatedSource;
pub use symbols::{SymbolEntry, SymbolTable};

/// Why a price source could not deliver prices.
///
/// No variant carries the API key, and no message contains it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The API refused the key (HTTP 401 or 403), or the key was empty. The message is the one
    /// the REST API returns for `POST /api/mesh/provider/enable`.
    #[error("Invalid API key: authentication failed with Birdeye API")]
    InvalidApiKey,
    /// The API answered 429: the plan's request quota is spent for now.
    #[error("price API rate limit reached{}", retry_after_suffix(.retry_after))]
    RateLimited {
        /// How long the API asked us to wait (`Retry-After`), when it said.
        retry_after: Option<Duration>,
    },
    /// The API could not be reached or kept failing: 5xx answers after every retry, timeouts,
    /// connection errors.
    #[error("price API unavailable: {detail}")]
    Unavailable {
        /// What went wrong, last attempt first.
        detail: String,
    },
    /// The API answered with a body that is not the documented shape, or with
    /// `"success": false`.
    #[error("price API returned a malformed response: {detail}")]
    Malformed {
        /// What was wrong with it.
        detail: String,
    },
    /// None of the requested assets is known to the source (no symbol table entry).
    #[error("no price source mapping for asset {asset}; add it to the symbol table")]
    UnknownAsset {
        /// The first requested asset that is not known.
        asset: Asset,
    },
    /// The source's settings cannot work (for example an unparsable base URL).
    #[error("invalid price source configuration: {detail}")]
    InvalidConfig {
        /// What is wrong.
        detail: String,
    },
}

fn retry_after_suffix(retry_after: &Option<Duration>) -> String {
    retry_after.map(|wait| format!("; retry after {} s", wait.as_secs())).unwrap_or_default()
}

impl SourceError {
    /// Whether trying again later may succeed: true for [`SourceError::RateLimited`] and
    /// [`SourceError::Unavailable`]; a bad key, a malformed answer, an unknown asset or a bad
    /// configuration stay wrong until someone changes something.
    pub const fn is_retryable(&self) -> bool {
        matches!(self, Self::RateLimited { .. } | Self::Unavailable { .. })
    }
}

/// Result of price source operations.
pub type Result<T, E = SourceError> = std::result::Result<T, E>;

/// Something that prices assets: a price API client or a simulation.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait PriceSource: Send + Sync {
    /// The prices of `assets` that the source could get, in no particular order. Assets the
    /// source cannot price (unknown, `null` or missing in the answer, non-positive) are left
    /// out, never published as 0; an empty `assets` gives an empty list.
    ///
    /// # Errors
    /// [`SourceError::InvalidApiKey`], [`SourceError::RateLimited`],
    /// [`SourceError::Unavailable`] or [`SourceError::Malformed`] when the source failed as a
    /// whole; [`SourceError::UnknownAsset`] when no requested asset is known.
    async fn fetch(&self, assets: &[Asset]) -> Result<Vec<PriceData>>;

    /// A cheap check that the source works with its credentials (one small request for
    /// Birdeye; always `Ok` for the simulation).
    ///
    /// # Errors
    /// [`SourceError::InvalidApiKey`] when the key is refused, other variants when the check
    /// could not be made.
    async fn validate(&self) -> Result<()>;

    /// A short name for logs and metrics labels, e.g. `"birdeye"`.
    fn name(&self) -> &'static str;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_what_went_wrong_and_retryability_follows_the_kind() {
        assert_eq!(
            SourceError::InvalidApiKey.to_string(),
            "Invalid API key: authentication failed with Birdeye API"
        );
        let limited = SourceError::RateLimited { retry_after: Some(Duration::from_secs(60)) };
        assert_eq!(limited.to_string(), "price API rate limit reached; retry after 60 s");
        assert_eq!(
            SourceError::RateLimited { retry_after: None }.to_string(),
            "price API rate limit reached"
        );
        assert!(limited.is_retryable());
        assert!(SourceError::Unavailable { detail: "timeout".into() }.is_retryable());
        assert!(!SourceError::InvalidApiKey.is_retryable());
        assert!(!SourceError::Malformed { detail: "x".into() }.is_retryable());
        let unknown = SourceError::UnknownAsset { asset: Asset::new("XYZ").unwrap() };
        assert!(!unknown.is_retryable());
        assert!(unknown.to_string().contains("XYZ"));
    }
}
