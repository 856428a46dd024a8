//! Talking to a node: its REST API behind the `{success, data, error}` envelope, and the
//! WebSocket feed at `/ws`.
//!
//! The WebSocket handshake goes through the same `reqwest` client as REST (an HTTP/1.1 upgrade,
//! then `tokio-tungstenite` on the upgraded connection), so `https://` nodes get `wss://` with
//! the same TLS stack, and a node that cannot be reached fails with the same sentence either
//! way: `cannot reach the node at http://…: connection refused`.

use std::error::Error as _;
use std::io;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use mesh_types::{ApiResponse, Asset};
use reqwest::header::{
    AUTHORIZATION, CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE,
};
use reqwest::{RequestBuilder, Response, StatusCode, Url};
use serde::de::DeserializeOwned;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::Secret;

/// How long to wait for a TCP (and TLS) connection to the node.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a whole REST request may take, answer included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the WebSocket handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of a non-pricemesh answer quoted in an error.
const QUOTE_LEN: usize = 120;

/// The feed's connection, over the HTTP connection `reqwest` upgraded.
pub(crate) type Feed = WebSocketStream<reqwest::Upgraded>;

/// A node's API, addressed by its base URL (`http://host:port`, optionally with a path prefix).
#[derive(Debug)]
pub(crate) struct Node {
    /// The base URL without a trailing slash, as shown in errors.
    base: String,
    /// For REST calls: bounded in total time.
    client: reqwest::Client,
    /// For the WebSocket upgrade: HTTP/1.1 only (an upgrade does not exist in HTTP/2), and no
    /// total timeout, which would cut a feed that is meant to run for hours.
    upgrade_client: reqwest::Client,
}

impl Node {
    /// A client for the node at `url`, which must be an `http://` or `https://` URL.
    pub(crate) fn new(url: &str) -> anyhow::Result<Self> {
        let usage = || {
            format!("--node must be an http:// or https:// URL such as http://127.0.0.1:8080, not {url:?}")
        };
        let mut parsed = Url::parse(url.trim()).with_context(usage)?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
            bail!(usage());
        }
        parsed.set_query(None);
        parsed.set_fragment(None);
        let base = parsed.as_str().trim_end_matches('/').to_owned();
        let agent = concat!("meshctl/", env!("CARGO_PKG_VERSION"));
        let client = reqwest::Client::builder()
            .user_agent(agent)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .context("cannot set up the HTTP client")?;
        let upgrade_client = reqwest::Client::builder()
            .user_agent(agent)
            .connect_timeout(CONNECT_TIMEOUT)
            .http1_only()
            .build()
            .context("cannot set up the HTTP client")?;
        Ok(Self { base, client, upgrade_client })
    }

    /// The node's base URL, as shown in messages.
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET path`; the envelope's `data` on success.
    pub(crate) async fn get(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        self.call(self.client.get(self.url(path))).await
    }

    /// `POST path` with an optional JSON body and admin token; the envelope's `data` on success.
    pub(crate) async fn post(
        &self,
        path: &str,
        body: Option<&serde_json::Value>,
        admin_token: Option<&Secret>,
    ) -> anyhow::Result<serde_json::Value> {
        let mut request = self.client.post(self.url(path));
        if let Some(body) = body {
            request = request.json(body);
        }
        if let Some(token) = admin_token {
            request = request.header(AUTHORIZATION, format!("Bearer {}", token.expose()));
        }
        self.call(request).await
    }

    async fn call(&self, request: RequestBuilder) -> anyhow::Result<serde_json::Value> {
        let response = request.send().await.map_err(|err| self.unreachable(&err))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|err| {
            anyhow!("the connection to the node at {} broke during its answer: {}", self.base, reason(&err))
        })?;
        match serde_json::from_slice::<ApiResponse<serde_json::Value>>(&body) {
            Ok(envelope) => envelope.into_result().map_err(|failure| anyhow!(failure)),
            Err(_) => Err(self.not_pricemesh(status, &body)),
        }
    }

    /// Opens the live feed, filtered to `assets` when any are given.
    pub(crate) async fn feed(&self, assets: &[Asset]) -> anyhow::Result<(Feed, String)> {
        let mut url = Url::parse(&self.url("/ws")).context("cannot form the feed URL")?;
        if !assets.is_empty() {
            // Asset symbols are `A-Z 0-9 . _ -` only, so they need no escaping.
            let list: Vec<&str> = assets.iter().map(Asset::as_str).collect();
            url.set_query(Some(&format!("assets={}", list.join(","))));
        }
        let shown = websocket_form(&url);
        let key = generate_key();
        let request = self
            .upgrade_client
            .get(url)
            .header(CONNECTION, "Upgrade")
            .header(UPGRADE, "websocket")
            .header(SEC_WEBSOCKET_VERSION, "13")
            .header(SEC_WEBSOCKET_KEY, &key);
        let response = tokio::time::timeout(HANDSHAKE_TIMEOUT, request.send())
            .await
            .map_err(|_| anyhow!("cannot reach the node at {}: timed out", self.base))?
            .map_err(|err| self.unreachable(&err))?;
        self.check_upgrade(response, &key, &shown).await.map(|feed| (feed, shown))
    }

    async fn check_upgrade(&self, response: Response, key: &str, shown: &str) -> anyhow::Result<Feed> {
        let status = response.status();
        if status != StatusCode::SWITCHING_PROTOCOLS {
            let body = tokio::time::timeout(HANDSHAKE_TIMEOUT, response.bytes()).await;
            let body = body.ok().and_then(Result::ok).unwrap_or_default();
            let detail = match serde_json::from_slice::<ApiResponse<serde_json::Value>>(&body) {
                Ok(ApiResponse { error: Some(message), .. }) => format!("{status}: {message}"),
                _ => status.to_string(),
            };
            bail!("the node refused the feed at {shown}: {detail}");
        }
        let accept = response.headers().get(SEC_WEBSOCKET_ACCEPT).and_then(|value| value.to_str().ok());
        if accept != Some(derive_accept_key(key.as_bytes()).as_str()) {
            bail!(
                "the server at {shown} answered the WebSocket handshake wrongly (bad Sec-WebSocket-Accept)"
            );
        }
        let upgraded = response
            .upgrade()
            .await
            .map_err(|err| anyhow!("cannot open the feed at {shown}: {}", reason(&err)))?;
        Ok(WebSocketStream::from_raw_socket(upgraded, Role::Client, None).await)
    }

    fn unreachable(&self, err: &reqwest::Error) -> anyhow::Error {
        anyhow!("cannot reach the node at {}: {}", self.base, reason(err))
    }

    fn not_pricemesh(&self, status: StatusCode, body: &[u8]) -> anyhow::Error {
        let text = String::from_utf8_lossy(body);
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let quote = if text.is_empty() {
            "an empty body".to_owned()
        } else if text.chars().count() > QUOTE_LEN {
            format!("{:?}…", text.chars().take(QUOTE_LEN).collect::<String>())
        } else {
            format!("{text:?}")
        };
        anyhow!(
            "the server at {} answered {status} with {quote}, not a pricemesh response (is --node a pricemesh node?)",
            self.base
        )
    }
}

/// Reads `data` as `T`, or says which answer had an unexpected shape.
pub(crate) fn parse<T: DeserializeOwned>(data: serde_json::Value, what: &str) -> anyhow::Result<T> {
    serde_json::from_value(data)
        .with_context(|| format!("the node's {what} answer is not in the expected shape"))
}

/// `http://…` as `ws://…`, `https://…` as `wss://…`: the feed's address as people know it.
fn websocket_form(url: &Url) -> String {
    let mut shown = url.clone();
    let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
    // Both are special schemes, so the change is always allowed; on the impossible failure the
    // http form is still a fine thing to show.
    let _ = shown.set_scheme(scheme);
    shown.to_string()
}

/// Why a request failed, in a few lowercase words: `connection refused`, `timed out`, …
fn reason(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        return "timed out".to_owned();
    }
    let mut innermost: Option<&(dyn std::error::Error + 'static)> = None;
    let mut io_error: Option<&io::Error> = None;
    let mut source = err.source();
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<io::Error>() {
            io_error = Some(io);
        }
        innermost = Some(cause);
        source = cause.source();
    }
    if let Some(io) = io_error {
        match io.kind() {
            io::ErrorKind::ConnectionRefused => return "connection refused".to_owned(),
            io::ErrorKind::ConnectionReset => return "connection reset".to_owned(),
            io::ErrorKind::ConnectionAborted => return "connection aborted".to_owned(),
            io::ErrorKind::TimedOut => return "timed out".to_owned(),
            _ => {}
        }
    }
    let text = innermost.map_or_else(|| err.to_string(), ToString::to_string);
    // "Connection refused (os error 111)" → "connection refused".
    let text = text.split(" (os error").next().unwrap_or(&text).trim();
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| first.to_lowercase().chain(chars).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_urls_must_be_http() {
        assert_eq!(Node::new("http://127.0.0.1:8080/").unwrap().base(), "http://127.0.0.1:8080");
        assert_eq!(Node::new("https://mesh.example/api/?x=1").unwrap().base(), "https://mesh.example/api");
        for bad in ["127.0.0.1:8080", "localhost:8080", "ws://127.0.0.1:8080", "not a url", ""] {
            let err = Node::new(bad).unwrap_err().to_string();
            assert!(err.starts_with("--node must be an http:// or https:// URL"), "{bad}: {err}");
        }
    }

    #[test]
    fn feed_address_uses_websocket_schemes() {
        let url = Url::parse("http://127.0.0.1:8080/ws?assets=SOL").unwrap();
        assert_eq!(websocket_form(&url), "ws://127.0.0.1:8080/ws?assets=SOL");
        let url = Url::parse("https://mesh.example/ws").unwrap();
        assert_eq!(websocket_form(&url), "wss://mesh.example/ws");
    }
}
