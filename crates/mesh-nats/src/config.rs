//! [`NatsConfig`]: where the bridge publishes and how long it may wait for NATS.

use std::time::Duration;

use async_nats::ServerAddr;

use crate::NatsError;

/// Where the bridge publishes and how patient it is. Build one with [`NatsConfig::new`] and
/// change what you need: `NatsConfig { stream: Some("PRICEMESH".into()), ..NatsConfig::new(url) }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsConfig {
    /// The server: `nats://host:4222` (or `tls://…`), several separated by commas. Credentials
    /// in the URL (`nats://user:password@host`) are used, and never logged.
    pub url: String,
    /// A JetStream stream to publish through: created (or updated) over
    /// `pricemesh.<network>.>` keeping one message per subject, so late subscribers get the
    /// newest price of each asset. `None` (default): plain NATS publishes.
    pub stream: Option<String>,
    /// Publishes the client holds while it cannot write to the server (default 256). When it
    /// is full, further prices are dropped and counted instead of waited for.
    pub client_capacity: usize,
    /// Longest wait for the client to take one publish and, with a stream, for the stream to
    /// acknowledge it (default 2 s). Also bounds each stream setup request.
    pub publish_timeout: Duration,
    /// Longest wait at shutdown for what the client still holds to be written (default 2 s).
    pub flush_timeout: Duration,
    /// Longest wait for one connection attempt (default 5 s).
    pub connect_timeout: Duration,
    /// Longest pause between reconnection attempts (default 4 s); the pauses grow up to it.
    pub reconnect_delay_max: Duration,
    /// Time between the client's pings (default 10 s): a server that stops answering is
    /// noticed after two unanswered ones.
    pub ping_interval: Duration,
    /// Most stream publishes awaiting their acknowledgement at once (default 256); beyond it
    /// prices are dropped and counted.
    pub max_pending_acks: usize,
}

/// The longest stream name accepted, in bytes.
pub const MAX_STREAM_NAME_LEN: usize = 64;

impl NatsConfig {
    /// Plain NATS publishes to `url` with the default limits.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            stream: None,
            client_capacity: 256,
            publish_timeout: Duration::from_secs(2),
            flush_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(5),
            reconnect_delay_max: Duration::from_secs(4),
            ping_interval: Duration::from_secs(10),
            max_pending_acks: 256,
        }
    }

    /// Checks the settings and parses the server addresses.
    pub(crate) fn validate(&self) -> Result<Vec<ServerAddr>, NatsError> {
        let servers = parse_servers(&self.url)?;
        if let Some(name) = &self.stream {
            validate_stream_name(name)?;
        }
        let positive = [
            ("client_capacity", self.client_capacity > 0),
            ("max_pending_acks", self.max_pending_acks > 0),
            ("publish_timeout", !self.publish_timeout.is_zero()),
            ("flush_timeout", !self.flush_timeout.is_zero()),
            ("connect_timeout", !self.connect_timeout.is_zero()),
            ("ping_interval", !self.ping_interval.is_zero()),
        ];
        if let Some((setting, _)) = positive.iter().find(|(_, ok)| !ok) {
            return Err(NatsError::InvalidSetting { setting, reason: "must be greater than zero".into() });
        }
        Ok(servers)
    }
}

fn parse_servers(url: &str) -> Result<Vec<ServerAddr>, NatsError> {
    let servers = url
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| {
            part.parse::<ServerAddr>()
                .map_err(|err| NatsError::InvalidUrl { url: redact(part), reason: err.to_string() })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if servers.is_empty() {
        return Err(NatsError::InvalidUrl { url: String::new(), reason: "no server given".into() });
    }
    Ok(servers)
}

/// `url` without what sits before an `@` (user, password, token), for logs and errors.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at.saturating_add(1)..])
        }
        (None, Some(at)) => format!("***@{}", &url[at.saturating_add(1)..]),
        _ => url.to_owned(),
    }
}

/// The servers as `host:port`, for logs.
pub(crate) fn describe_servers(servers: &[ServerAddr]) -> String {
    servers.iter().map(|server| format!("{}:{}", server.host(), server.port())).collect::<Vec<_>>().join(",")
}

/// JetStream refuses names with `.`, `*`, `>`, whitespace or path separators; we keep to the
/// characters every tool handles.
fn validate_stream_name(name: &str) -> Result<(), NatsError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_STREAM_NAME_LEN
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid { Ok(()) } else { Err(NatsError::InvalidStreamName { name: name.to_owned() }) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_several_servers_parse() {
        let config = NatsConfig::new("nats://127.0.0.1:4222, nats://10.0.0.2:4223");
        let servers = config.validate().unwrap();
        assert_eq!(describe_servers(&servers), "127.0.0.1:4222,10.0.0.2:4223");
        assert_eq!(describe_servers(&NatsConfig::new("localhost").validate().unwrap()), "localhost:4222");
    }

    #[test]
    fn bad_settings_are_refused_with_what_to_fix() {
        let err = NatsConfig::new("http://example.org").validate().unwrap_err();
        assert!(matches!(err, NatsError::InvalidUrl { .. }), "{err}");
        assert!(err.to_string().contains("nats://host:4222"), "{err}");
        let err = NatsConfig::new(" , ").validate().unwrap_err();
        assert!(matches!(err, NatsError::InvalidUrl { .. }), "{err}");
        for name in ["", "a.b", "a b", "a*", "a>", "a/b", &"x".repeat(65)] {
            let config = NatsConfig { stream: Some(name.to_owned()), ..NatsConfig::new("localhost") };
            assert!(matches!(config.validate(), Err(NatsError::InvalidStreamName { .. })), "{name:?}");
        }
        let config = NatsConfig { publish_timeout: Duration::ZERO, ..NatsConfig::new("localhost") };
        let err = config.validate().unwrap_err();
        assert!(err.to_string().contains("publish_timeout"), "{err}");
    }

    #[test]
    fn credentials_never_reach_logs_or_errors() {
        assert_eq!(redact("nats://user:secret@host:4222"), "nats://***@host:4222");
        assert_eq!(redact("token@host"), "***@host");
        assert_eq!(redact("nats://host:4222"), "nats://host:4222");
        let err = NatsConfig::new("nats://user:secret@host:notaport").validate().unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
    }
}
