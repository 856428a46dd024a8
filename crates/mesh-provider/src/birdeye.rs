//! [`BirdeyeSource`]: the Birdeye HTTP client (`GET /defi/multi_price`, one request per chain).
//!
//! Error handling:
//!
//! | answer | result | retried |
//! | --- | --- | --- |
//! | 401 / 403 | [`SourceError::InvalidApiKey`] | no |
//! | 429 | [`SourceError::RateLimited`] with `Retry-After` when given | no |
//! | 5xx, timeout, connection error | [`SourceError::Unavailable`] once every retry failed | yes, after each of `retry_delays` |
//! | 200 with `"success": false` or a body of the wrong shape | [`SourceError::Malformed`] | no |
//! | other statuses | [`SourceError::Malformed`] | no |
//!
//! When the asked assets span several chains, a bad key or a rate limit ends the whole fetch
//! (they apply to the account, not to one chain), while a chain that is unavailable or answers
//! nonsense is logged and skipped: the prices of the other chains are still returned. Only when
//! every chain failed is the last failure returned.
//!
//! Prices are converted from the JSON float (parsed exactly: `serde_json/float_roundtrip`)
//! with `Decimal::try_from(f64)`, never through a formatted string: it keeps the digits the float
//! carries (about 15 significant) and drops the binary noise, so `23.40138801321701` stays
//! exactly that rather than `23.401388013217008676747354912`. Zero, negative,
//! non-finite or out-of-range values, `null` entries and tokens missing from the answer are
//! skipped with a log line. `updateUnixTime` is only logged: the published update carries the
//! fetch time.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use mesh_types::rust_decimal::Decimal;
use mesh_types::{Asset, PriceData};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, HeaderValue, RETRY_AFTER};
use serde::Deserialize;

use crate::symbols::{SOL_MINT, SymbolEntry};
use crate::{ApiKey, PriceSource, Result, SourceError, SymbolTable};

/// Birdeye accepts at most this many addresses in one `multi_price` request.
const MAX_ADDRESSES_PER_REQUEST: usize = 100;

/// Settings of a [`BirdeyeSource`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BirdeyeConfig {
    /// Where the API lives (`MESH_BIRDEYE_BASE_URL`); tests point it at a local server.
    pub base_url: String,
    /// The limit for one request, connecting included.
    pub timeout: Duration,
    /// The waits before each retry of a request that failed with 5xx, a timeout or a
    /// connection error; its length is the number of retries. A field (not a constant) so tests
    /// can use milliseconds.
    pub retry_delays: Vec<Duration>,
    /// Which chain and address price each asset.
    pub symbols: SymbolTable,
}

impl BirdeyeConfig {
    /// The production API.
    pub const DEFAULT_BASE_URL: &'static str = "https://public-api.birdeye.so";
    /// Default request timeout: 10 s.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
    /// Default backoff: 3 retries after 1 s, 2 s and 4 s.
    pub const DEFAULT_RETRY_DELAYS: [Duration; 3] =
        [Duration::from_secs(1), Duration::from_secs(2), Duration::from_secs(4)];
}

impl Default for BirdeyeConfig {
    fn default() -> Self {
        Self {
            base_url: Self::DEFAULT_BASE_URL.to_owned(),
            timeout: Self::DEFAULT_TIMEOUT,
            retry_delays: Self::DEFAULT_RETRY_DELAYS.to_vec(),
            symbols: SymbolTable::default(),
        }
    }
}

/// Prices from Birdeye's public API.
pub struct BirdeyeSource {
    client: reqwest::Client,
    /// `base_url` without a trailing slash, checked to parse as a URL.
    base_url: String,
    config: BirdeyeConfig,
    key: ApiKey,
}

impl fmt::Debug for BirdeyeSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BirdeyeSource")
            .field("base_url", &self.base_url)
            .field("timeout", &self.config.timeout)
            .field("retry_delays", &self.config.retry_delays)
            .field("symbols", &self.config.symbols.len())
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// How one HTTP attempt failed.
enum Failure {
    /// Worth another attempt (5xx, timeout, connection error); what happened.
    Transient(String),
    /// Final.
    Final(SourceError),
}

/// The envelope of every Birdeye answer.
#[derive(Deserialize)]
struct Envelope {
    success: bool,
    #[serde(default)]
    data: Option<serde_json::Value>,
    #[serde(default)]
    message: Option<String>,
}

/// One token's price in a `multi_price` answer.
#[derive(Deserialize)]
struct TokenPrice {
    #[serde(default)]
    value: Option<f64>,
    #[serde(default, rename = "updateUnixTime")]
    update_unix_time: Option<i64>,
    #[serde(default, rename = "priceChange24h")]
    price_change_24h: Option<f64>,
}

impl BirdeyeSource {
    /// A client for `config.base_url` with `key`.
    ///
    /// # Errors
    /// [`SourceError::InvalidConfig`] when the base URL does not parse or the HTTP client cannot
    /// be built.
    pub fn new(key: ApiKey, config: BirdeyeConfig) -> Result<Self> {
        let base_url = config.base_url.trim().trim_end_matches('/').to_owned();
        let parsed = reqwest::Url::parse(&base_url).map_err(|error| SourceError::InvalidConfig {
            detail: format!("Birdeye base URL {base_url:?} does not parse: {error}"),
        })?;
        match parsed.scheme() {
            "https" => {}
            "http" if is_loopback(&parsed) => {}
            "http" => {
                return Err(SourceError::InvalidConfig {
                    detail: format!(
                        "Birdeye base URL {base_url:?} uses plain http to a remote host, which would send \
                         the API key in the clear; use https (plain http is accepted for loopback only)"
                    ),
                });
            }
            _ => {
                return Err(SourceError::InvalidConfig {
                    detail: format!("Birdeye base URL {base_url:?} must use https (or http to loopback)"),
                });
            }
        }
        let client = reqwest::Client::builder()
            .redirect(same_origin_redirects())
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .user_agent(concat!("pricemesh/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| SourceError::InvalidConfig {
                detail: format!("cannot build the HTTP client: {}", error_chain(&error)),
            })?;
        Ok(Self { client, base_url, config, key })
    }

    /// The settings in use.
    pub const fn config(&self) -> &BirdeyeConfig {
        &self.config
    }

    /// One GET with the Birdeye headers; the body of a 2xx answer.
    async fn attempt(&self, url: &str, chain: &str, query: &[(&str, &str)]) -> Result<Vec<u8>, Failure> {
        let mut key = HeaderValue::from_str(self.key.expose())
            .map_err(|_| Failure::Final(SourceError::InvalidApiKey))?;
        key.set_sensitive(true);
        let response = self
            .client
            .get(url)
            .query(query)
            .header(ACCEPT, "application/json")
            .header("x-chain", chain)
            .header("X-API-KEY", key)
            .send()
            .await
            .map_err(|error| Failure::Transient(self.describe(&error)))?;
        let status = response.status();
        match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                Err(Failure::Final(SourceError::InvalidApiKey))
            }
            StatusCode::TOO_MANY_REQUESTS => {
                let retry_after = response
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| value.trim().parse::<u64>().ok())
                    .map(|seconds| Duration::from_secs(seconds).min(crate::MAX_RETRY_AFTER));
                Err(Failure::Final(SourceError::RateLimited { retry_after }))
            }
            status if status.is_server_error() => Err(Failure::Transient(format!("HTTP {status}"))),
            status if status.is_success() => match response.bytes().await {
                Ok(body) => Ok(body.to_vec()),
                Err(error) => Err(Failure::Transient(self.describe(&error))),
            },
            status => {
                Err(Failure::Final(SourceError::Malformed { detail: format!("unexpected HTTP {status}") }))
            }
        }
    }

    /// GET `path` with retries; the parsed envelope of the answer.
    async fn get(&self, path: &str, chain: &str, query: &[(&str, &str)]) -> Result<Envelope> {
        let url = format!("{}{path}", self.base_url);
        let mut delays = self.config.retry_delays.iter();
        let mut attempts = 0_usize;
        let body = loop {
            attempts = attempts.saturating_add(1);
            match self.attempt(&url, chain, query).await {
                Ok(body) => break body,
                Err(Failure::Final(error)) => return Err(error),
                Err(Failure::Transient(detail)) => {
                    let Some(&delay) = delays.next() else {
                        return Err(SourceError::Unavailable {
                            detail: format!("{path} ({chain}) failed {attempts} times, last: {detail}"),
                        });
                    };
                    tracing::warn!(path, chain, attempt = attempts, ?delay, %detail, "Birdeye request failed; retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        };
        parse_envelope(&body, path, chain)
    }

    /// Prices of `wanted` (assets on `chain`), one request per chunk of addresses.
    async fn fetch_chain(&self, chain: &str, wanted: &[(Asset, &SymbolEntry)]) -> Result<Vec<PriceData>> {
        let mut addresses: Vec<&str> = Vec::with_capacity(wanted.len());
        for (_, entry) in wanted {
            if !addresses.contains(&entry.address.as_str()) {
                addresses.push(&entry.address);
            }
        }
        let mut prices = Vec::with_capacity(wanted.len());
        for chunk in addresses.chunks(MAX_ADDRESSES_PER_REQUEST) {
            let list = chunk.join(",");
            let envelope = self.get("/defi/multi_price", chain, &[("list_address", &list)]).await?;
            let asked: Vec<(Asset, &SymbolEntry)> =
                wanted.iter().filter(|(_, entry)| chunk.contains(&entry.address.as_str())).copied().collect();
            prices.extend(prices_in(envelope, chain, &asked)?);
        }
        Ok(prices)
    }

    fn describe(&self, error: &reqwest::Error) -> String {
        if error.is_timeout() {
            format!("timed out after {:?}", self.config.timeout)
        } else {
            error_chain(error)
        }
    }
}

/// The prices of `wanted` in a `/defi/multi_price` answer `body` for `chain`: what the client
/// makes of every answer Birdeye (or anything posing as it) sends. Entries that are missing,
/// not a positive finite number or too large for a `Decimal` are skipped with a warning.
///
/// # Errors
/// [`SourceError::Malformed`] when the body is not JSON, says `"success": false`, or has no
/// data object.
pub fn parse_multi_price(
    body: &[u8],
    chain: &str,
    wanted: &[(Asset, &SymbolEntry)],
) -> Result<Vec<PriceData>> {
    prices_in(parse_envelope(body, "/defi/multi_price", chain)?, chain, wanted)
}

/// The envelope of an answer to `path`, refused unless it says `"success": true`.
fn parse_envelope(body: &[u8], path: &str, chain: &str) -> Result<Envelope> {
    let envelope: Envelope = serde_json::from_slice(body).map_err(|error| SourceError::Malformed {
        detail: format!("{path} ({chain}) answered with invalid JSON: {error}"),
    })?;
    if !envelope.success {
        let message = envelope.message.as_deref().unwrap_or("no message");
        return Err(SourceError::Malformed {
            detail: format!("{path} ({chain}) answered \"success\": false ({message})"),
        });
    }
    Ok(envelope)
}

/// The prices of `wanted` in a `multi_price` envelope.
fn prices_in(envelope: Envelope, chain: &str, wanted: &[(Asset, &SymbolEntry)]) -> Result<Vec<PriceData>> {
    let data = match envelope.data {
        Some(serde_json::Value::Object(data)) => data,
        other => {
            return Err(SourceError::Malformed {
                detail: format!(
                    "/defi/multi_price ({chain}) answered without a data object (data: {})",
                    json_kind(other.as_ref())
                ),
            });
        }
    };
    // Birdeye may change the case of EVM addresses; fall back to a case-insensitive match.
    let folded: HashMap<String, &serde_json::Value> =
        data.iter().map(|(address, value)| (address.to_ascii_lowercase(), value)).collect();
    let mut prices = Vec::with_capacity(wanted.len());
    for (asset, entry) in wanted {
        let found =
            data.get(&entry.address).or_else(|| folded.get(&entry.address.to_ascii_lowercase()).copied());
        if let Some(price) = to_price_data(*asset, entry, found) {
            prices.push(price);
        }
    }
    Ok(prices)
}

/// `error` and its sources, joined with `": "`.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn json_kind(value: Option<&serde_json::Value>) -> &'static str {
    match value {
        None => "missing",
        Some(serde_json::Value::Null) => "null",
        Some(serde_json::Value::Bool(_)) => "a boolean",
        Some(serde_json::Value::Number(_)) => "a number",
        Some(serde_json::Value::String(_)) => "a string",
        Some(serde_json::Value::Array(_)) => "an array",
        Some(serde_json::Value::Object(_)) => "an object",
    }
}

/// Whether `url` names this machine: a loopback address or `localhost`.
fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else { return false };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => bare.eq_ignore_ascii_case("localhost"),
    }
}

/// Follows a redirect only to the same scheme, host and port, at most three times: the API key
/// travels in a header of every request, and reqwest strips only the standard credential
/// headers when a redirect leaves the origin, not `X-API-KEY`.
fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let same_origin =
            attempt.previous().first().is_some_and(|first| first.origin() == attempt.url().origin());
        if attempt.previous().len() > 3 {
            attempt.error("more than 3 redirects")
        } else if same_origin {
            attempt.follow()
        } else {
            attempt.stop()
        }
    })
}

/// A finite float as a `Decimal`, without going through text; `None` when it does not fit.
fn to_decimal(value: f64) -> Option<Decimal> {
    if !value.is_finite() {
        return None;
    }
    Decimal::try_from(value).ok()
}

/// The published price for `asset` from its entry in the answer, or `None` (logged) when the
/// entry is missing, `null`, of the wrong shape or not a positive price.
fn to_price_data(asset: Asset, entry: &SymbolEntry, found: Option<&serde_json::Value>) -> Option<PriceData> {
    let (chain, address) = (entry.chain.as_str(), entry.address.as_str());
    let value = match found {
        None => {
            tracing::warn!(%asset, chain, address, "Birdeye returned no price for the token; skipping it");
            return None;
        }
        Some(serde_json::Value::Null) => {
            tracing::warn!(%asset, chain, address, "Birdeye cannot price the token (null); skipping it");
            return None;
        }
        Some(value) => value,
    };
    let token = match TokenPrice::deserialize(value) {
        Ok(token) => token,
        Err(error) => {
            tracing::warn!(%asset, chain, address, %error, "Birdeye price entry has the wrong shape; skipping it");
            return None;
        }
    };
    let Some(raw) = token.value else {
        tracing::warn!(%asset, chain, address, "Birdeye price entry has no value; skipping it");
        return None;
    };
    let price = match to_decimal(raw) {
        Some(price) if price > Decimal::ZERO => price,
        _ => {
            tracing::warn!(%asset, chain, address, value = raw, "Birdeye price is not a positive number; skipping it");
            return None;
        }
    };
    let change_24h = token.price_change_24h.and_then(to_decimal);
    tracing::debug!(%asset, %price, updated = ?token.update_unix_time, "Birdeye price");
    Some(PriceData { asset, price, blockchain: entry.blockchain.as_str().into(), change_24h })
}

#[async_trait]
impl PriceSource for BirdeyeSource {
    async fn fetch(&self, assets: &[Asset]) -> Result<Vec<PriceData>> {
        // Chains in order of first appearance, each with its assets.
        let mut chains: Vec<(&str, Vec<(Asset, &SymbolEntry)>)> = Vec::new();
        let mut unknown = Vec::new();
        for &asset in assets {
            let Some(entry) = self.config.symbols.get(&asset) else {
                unknown.push(asset);
                continue;
            };
            match chains.iter_mut().find(|(chain, _)| *chain == entry.chain) {
                Some((_, wanted)) => {
                    if !wanted.iter().any(|(seen, _)| *seen == asset) {
                        wanted.push((asset, entry));
                    }
                }
                None => chains.push((&entry.chain, vec![(asset, entry)])),
            }
        }
        if !unknown.is_empty() {
            tracing::warn!(?unknown, "no Birdeye symbol table entry for these assets; skipping them");
        }
        if chains.is_empty() {
            return match unknown.first() {
                Some(&asset) => Err(SourceError::UnknownAsset { asset }),
                None => Ok(Vec::new()),
            };
        }

        let mut prices = Vec::new();
        let mut last_failure = None;
        let mut succeeded = 0_usize;
        for (chain, wanted) in &chains {
            match self.fetch_chain(chain, wanted).await {
                Ok(found) => {
                    succeeded = succeeded.saturating_add(1);
                    prices.extend(found);
                }
                Err(error @ (SourceError::InvalidApiKey | SourceError::RateLimited { .. })) => {
                    return Err(error);
                }
                Err(error) => {
                    tracing::warn!(chain, %error, "Birdeye fetch failed for this chain");
                    last_failure = Some(error);
                }
            }
        }
        match last_failure {
            Some(error) if succeeded == 0 => Err(error),
            _ => Ok(prices),
        }
    }

    async fn validate(&self) -> Result<()> {
        self.get("/defi/price", "solana", &[("address", SOL_MINT)]).await.map(drop)
    }

    fn name(&self) -> &'static str {
        "birdeye"
    }
}

#[cfg(test)]
mod tests;
