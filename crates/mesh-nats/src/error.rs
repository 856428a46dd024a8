//! [`NatsError`]: why the bridge could not start.

use thiserror::Error;

/// Why [`crate::NatsBridge::start`] refused. An unreachable server is not one of them: the
/// bridge starts anyway and connects when it can.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum NatsError {
    /// The server URL does not parse.
    #[error(
        "invalid NATS URL {url:?}: {reason}; use nats://host:4222 (or tls://…), several separated by commas"
    )]
    InvalidUrl {
        /// The refused URL, without credentials.
        url: String,
        /// What the parser said.
        reason: String,
    },
    /// The JetStream stream name is not one JetStream and its tools accept.
    #[error(
        "invalid JetStream stream name {name:?}: use 1-{max} characters of A-Z, a-z, 0-9, '-' and '_', e.g. PRICEMESH",
        max = crate::config::MAX_STREAM_NAME_LEN
    )]
    InvalidStreamName {
        /// The refused name.
        name: String,
    },
    /// A limit that cannot work (a zero capacity or timeout).
    #[error("invalid NATS bridge setting {setting}: {reason}")]
    InvalidSetting {
        /// The setting, as named in [`crate::NatsConfig`].
        setting: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The client refused to start.
    #[error("cannot start the NATS client for {servers}: {source}; check the URL")]
    Connect {
        /// The servers, as `host:port`.
        servers: String,
        /// What the client said.
        #[source]
        source: async_nats::ConnectError,
    },
}
