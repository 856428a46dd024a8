//! [`ClientConfig`]: which nodes to follow, which assets, and how to reconnect.

use std::sync::Arc;
use std::time::Duration;

use mesh_types::Asset;
use thiserror::Error;

/// A setting the client cannot work with.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ClientError {
    /// No node was given.
    #[error("no node to connect to: give at least one node address, such as http://127.0.0.1:8080")]
    NoNodes,
    /// A node address is not `http://host:port` (or `ws://host:port`).
    #[error("invalid node address {address:?}: expected http://host:port or ws://host:port")]
    InvalidAddress {
        /// The address as given.
        address: String,
    },
    /// An `https://` or `wss://` address: this client speaks plain WebSocket only.
    #[error(
        "cannot connect to {address:?}: this client has no TLS; run it beside the node (http on loopback) or \
         behind a local TLS-terminating proxy"
    )]
    TlsUnsupported {
        /// The address as given.
        address: String,
    },
}

/// What a [`crate::MeshClient`] connects to and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Each node's base address, as given (`http://127.0.0.1:8080`).
    pub(crate) nodes: Vec<Arc<str>>,
    /// Only these assets, when any are given.
    pub assets: Vec<Asset>,
    /// The first wait before reconnecting (default 100 ms); it doubles on each failure.
    pub min_backoff: Duration,
    /// The longest wait between reconnection attempts (default 5 s).
    pub max_backoff: Duration,
    /// How long a connection attempt may take (default 5 s).
    pub connect_timeout: Duration,
    /// Events waiting to be taken with [`crate::MeshClient::next`] (default 1,024). When it
    /// is full, the connections stop reading; the nodes conflate meanwhile, and a node that
    /// gives up on the client is resumed from where it stood.
    pub capacity: usize,
}

impl ClientConfig {
    /// Follows every asset of `nodes`, each given as `http://host:port` (or `ws://host:port`;
    /// a trailing `/` or `/ws` is fine).
    ///
    /// # Errors
    /// No node, or an address of another form.
    pub fn new<I, S>(nodes: I) -> Result<Self, ClientError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let nodes: Vec<Arc<str>> =
            nodes.into_iter().map(|node| base_address(node.as_ref())).collect::<Result<_, _>>()?;
        if nodes.is_empty() {
            return Err(ClientError::NoNodes);
        }
        Ok(Self {
            nodes,
            assets: Vec::new(),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            capacity: 1024,
        })
    }

    /// Only `assets` (prices and discrepancy warnings of other assets are not sent).
    #[must_use]
    pub fn assets(mut self, assets: impl IntoIterator<Item = Asset>) -> Self {
        self.assets = assets.into_iter().collect();
        self
    }

    /// The nodes, as their base addresses.
    pub fn nodes(&self) -> &[Arc<str>] {
        &self.nodes
    }

    /// The feed address of `node` (a base address), resuming after `since` when given.
    pub(crate) fn feed_url(&self, node: &str, since: Option<u64>) -> String {
        let mut query = Vec::new();
        if !self.assets.is_empty() {
            let assets: Vec<&str> = self.assets.iter().map(Asset::as_str).collect();
            query.push(format!("assets={}", assets.join(",")));
        }
        if let Some(since) = since {
            query.push(format!("since={since}"));
        }
        if query.is_empty() { format!("{node}/ws") } else { format!("{node}/ws?{}", query.join("&")) }
    }
}

/// `http://host:port/` → `ws://host:port`.
fn base_address(address: &str) -> Result<Arc<str>, ClientError> {
    let invalid = || ClientError::InvalidAddress { address: address.to_owned() };
    let trimmed = address.trim();
    let (scheme, rest) = trimmed.split_once("://").ok_or_else(invalid)?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "http" | "ws" => "ws",
        "https" | "wss" => return Err(ClientError::TlsUnsupported { address: address.to_owned() }),
        _ => return Err(invalid()),
    };
    let rest = rest.trim_end_matches('/');
    let rest = rest.strip_suffix("/ws").unwrap_or(rest);
    // A path prefix is fine (a node behind a proxy at `/pricemesh`); a query is not.
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() || rest.contains(['?', '#', ' ']) {
        return Err(invalid());
    }
    Ok(Arc::from(format!("{scheme}://{rest}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_addresses_become_feed_addresses() {
        let config =
            ClientConfig::new(["http://127.0.0.1:8080/", "ws://node.example/ws", "ws://[::1]:9"]).unwrap();
        let nodes: Vec<&str> = config.nodes().iter().map(|node| &**node).collect();
        assert_eq!(nodes, ["ws://127.0.0.1:8080", "ws://node.example", "ws://[::1]:9"]);
        assert_eq!(config.feed_url(nodes[0], None), "ws://127.0.0.1:8080/ws");
        let proxied = ClientConfig::new(["http://proxy.example/pricemesh/"]).unwrap();
        assert_eq!(proxied.feed_url(&proxied.nodes()[0], None), "ws://proxy.example/pricemesh/ws");
        let filtered = config.clone().assets([Asset::new("SOL").unwrap(), Asset::new("eth").unwrap()]);
        assert_eq!(filtered.feed_url(nodes[0], Some(42)), "ws://127.0.0.1:8080/ws?assets=SOL,ETH&since=42");
    }

    #[test]
    fn bad_addresses_are_refused_with_the_address() {
        assert_eq!(ClientConfig::new(Vec::<String>::new()), Err(ClientError::NoNodes));
        for bad in ["127.0.0.1:8080", "ftp://x", "http://", "http:///ws", "http://a?x=1"] {
            let err = ClientConfig::new([bad]).unwrap_err();
            assert_eq!(err, ClientError::InvalidAddress { address: bad.to_owned() });
            assert!(err.to_string().contains(bad), "{err}");
        }
        let tls = ClientConfig::new(["https://node.example"]).unwrap_err();
        assert!(
            matches!(tls, ClientError::TlsUnsupported { .. }) && tls.to_string().contains("no TLS"),
            "{tls}"
        );
    }
}
