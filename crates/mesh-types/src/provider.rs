//! [`ProviderConfig`]: how a provider node fetches and publishes, with the project's defaults
//! (`MESH_PROVIDER_FETCH_INTERVAL_SECS` 30, `MESH_COORDINATION_WINDOW_SECS` 5,
//! `MESH_MESSAGE_TTL` 10).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Settings of a provider node. The Birdeye API key is not here: it is a secret, kept by the
/// provider crate and never serialized.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProviderConfig {
    /// Whether provider mode starts enabled.
    pub enabled: bool,
    /// Seconds between fetches (`MESH_PROVIDER_FETCH_INTERVAL_SECS`, default 30).
    pub fetch_interval_secs: u64,
    /// Seconds within which only one provider fetches (`MESH_COORDINATION_WINDOW_SECS`,
    /// default 5).
    pub coordination_window_secs: u64,
    /// TTL given to published updates (`MESH_MESSAGE_TTL`, default 10).
    pub message_ttl: u8,
    /// The network the updates are signed for (`MESH_NETWORK`, default `mainnet`): nodes of
    /// other networks refuse them.
    pub network: crate::NetworkId,
}

/// A [`ProviderConfig`] value that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ProviderConfigError {
    /// The fetch interval is zero.
    #[error("MESH_PROVIDER_FETCH_INTERVAL_SECS must be at least 1")]
    ZeroFetchInterval,
    /// The coordination window is longer than the fetch interval, so no provider could ever
    /// fetch twice in a row on schedule.
    #[error(
        "MESH_COORDINATION_WINDOW_SECS ({window}) must not exceed \
         MESH_PROVIDER_FETCH_INTERVAL_SECS ({interval})"
    )]
    WindowExceedsInterval {
        /// The window in seconds.
        window: u64,
        /// The interval in seconds.
        interval: u64,
    },
    /// The TTL is zero, so updates would never leave the provider.
    #[error("MESH_MESSAGE_TTL must be at least 1, or updates never leave the provider")]
    ZeroTtl,
}

impl ProviderConfig {
    /// Default fetch interval in seconds.
    pub const DEFAULT_FETCH_INTERVAL_SECS: u64 = 30;
    /// Default coordination window in seconds.
    pub const DEFAULT_COORDINATION_WINDOW_SECS: u64 = 5;
    /// Default message TTL.
    pub const DEFAULT_MESSAGE_TTL: u8 = 10;

    /// The fetch interval.
    pub const fn fetch_interval(&self) -> Duration {
        Duration::from_secs(self.fetch_interval_secs)
    }

    /// The coordination window.
    pub const fn coordination_window(&self) -> Duration {
        Duration::from_secs(self.coordination_window_secs)
    }

    /// Checks the settings fit together.
    ///
    /// # Errors
    /// The first inconsistency found.
    pub fn validate(&self) -> Result<(), ProviderConfigError> {
        if self.fetch_interval_secs == 0 {
            return Err(ProviderConfigError::ZeroFetchInterval);
        }
        if self.coordination_window_secs > self.fetch_interval_secs {
            return Err(ProviderConfigError::WindowExceedsInterval {
                window: self.coordination_window_secs,
                interval: self.fetch_interval_secs,
            });
        }
        if self.message_ttl == 0 {
            return Err(ProviderConfigError::ZeroTtl);
        }
        Ok(())
    }
}

impl Default for ProviderConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            fetch_interval_secs: Self::DEFAULT_FETCH_INTERVAL_SECS,
            coordination_window_secs: Self::DEFAULT_COORDINATION_WINDOW_SECS,
            message_ttl: Self::DEFAULT_MESSAGE_TTL,
            network: crate::NetworkId::mainnet(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_the_documented_values() {
        let config = ProviderConfig::default();
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(config.fetch_interval(), Duration::from_secs(30));
        assert_eq!(config.coordination_window(), Duration::from_secs(5));
        assert_eq!(config.message_ttl, 10);
    }

    #[test]
    fn inconsistent_settings_are_refused() {
        let zero = ProviderConfig { fetch_interval_secs: 0, ..ProviderConfig::default() };
        assert_eq!(zero.validate(), Err(ProviderConfigError::ZeroFetchInterval));
        let wide = ProviderConfig { coordination_window_secs: 60, ..ProviderConfig::default() };
        assert!(matches!(wide.validate(), Err(ProviderConfigError::WindowExceedsInterval { .. })));
        let ttl = ProviderConfig { message_ttl: 0, ..ProviderConfig::default() };
        assert_eq!(ttl.validate(), Err(ProviderConfigError::ZeroTtl));
    }
}
