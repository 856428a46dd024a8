//! The node's provider role, changed in one place. Whether this node is a provider lives in
//! three spots that must agree: its provider loop (does it fetch?), the service (does it
//! announce itself as one and raise alerts?) and the connection manager (do its heartbeats say
//! so?). [`MeshPriceService::enable_provider`] and [`MeshPriceService::disable_provider`]
//! change all three together, and the API asks [`MeshPriceService::provider_status`] instead
//! of holding a provider loop of its own.

use std::sync::Arc;

use mesh_provider::{PriceSource, SourceError};
use mesh_types::{ProviderState, ProviderStatus};
use thiserror::Error;

use super::{MeshPriceService, lock};

/// Why provider mode could not be turned on.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum EnableError {
    /// The node was started without a provider loop ([`MeshPriceService::start_provider`]).
    #[error("this node has no provider loop")]
    NoProviderLoop,
    /// The price source refused (for a refused key, [`SourceError::InvalidApiKey`]).
    #[error(transparent)]
    Source(#[from] SourceError),
}

impl MeshPriceService {
    /// Turns provider mode on with `source`, once the source has accepted its key: the
    /// provider loop fetches from it, and peers hear that this node is a provider. Enabling
    /// again replaces the source. On an error nothing changes.
    ///
    /// # Errors
    /// [`EnableError::NoProviderLoop`] without [`MeshPriceService::start_provider`], or the
    /// source's refusal.
    pub async fn enable_provider(&self, source: Arc<dyn PriceSource>) -> Result<ProviderState, EnableError> {
        let provider = lock(&self.inner.provider).as_ref().map(|(provider, _)| provider.clone());
        let provider = provider.ok_or(EnableError::NoProviderLoop)?;
        provider.enable(source).await?;
        self.set_provider(true);
        Ok(provider.state())
    }

    /// Turns provider mode off: the loop stops fetching and peers hear that this node is no
    /// longer a provider. It keeps relaying.
    pub async fn disable_provider(&self) -> ProviderState {
        let provider = lock(&self.inner.provider).as_ref().map(|(provider, _)| provider.clone());
        if let Some(provider) = provider {
            provider.disable().await;
        }
        self.set_provider(false);
        ProviderState { enabled: false, node_id: self.node_id() }
    }

    /// The provider loop's state, as `GET /api/mesh/provider/status` shows it (disabled, never
    /// fetched, when the node has no loop).
    pub fn provider_status(&self) -> ProviderStatus {
        let provider = lock(&self.inner.provider).as_ref().map(|(provider, _)| provider.clone());
        provider.map_or_else(
            || ProviderStatus {
                enabled: false,
                node_id: self.node_id(),
                last_fetch_time: None,
                fetch_count: 0,
            },
            |provider| provider.status(),
        )
    }
}
