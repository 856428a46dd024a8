//! The node's settings from three sources, in order of precedence: a command-line flag, then
//! the environment variable, then the `--config` TOML file, then the default
//! ([`NodeSettings::default`]). Every setting has all three spellings: `--min-peers`,
//! `MESH_MIN_PEER_CONNECTIONS`, and `min_peers` in the file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::node_settings::{NodeSettings, PriceSourceKind, SettingsError};
use anyhow::Context;
use clap::Args;
use mesh_types::{Asset, NetworkId};
use serde::{Deserialize, Serialize};

/// Settings a flag or environment variable can give; unset ones fall back to the file.
#[derive(Debug, Clone, Default, Args, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SettingArgs {
    /// Network to join: mainnet, testnet, devnet or a custom name.
    #[arg(long, env = "MESH_NETWORK")]
    pub network: Option<String>,
    /// Address peers connect to [default: 0.0.0.0:9470].
    #[arg(long, env = "MESH_LISTEN_ADDR")]
    pub listen_addr: Option<SocketAddr>,
    /// Address to tell peers, when it differs from the listen address.
    #[arg(long, env = "MESH_ADVERTISED_ADDR")]
    pub advertised_addr: Option<SocketAddr>,
    /// Address of the HTTP API [default: 127.0.0.1:8080].
    #[arg(long, env = "MESH_API_ADDR")]
    pub api_addr: Option<SocketAddr>,
    /// Bootstrap peers, comma-separated host:port.
    #[arg(long, env = "MESH_BOOTSTRAP_PEERS", value_delimiter = ',')]
    pub bootstrap_peers: Option<Vec<String>>,
    /// Directory for the node key and the peer file [default: data].
    #[arg(long, env = "MESH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Price source of a provider node: simulated, birdeye or none [default: none].
    #[arg(long, env = "MESH_PRICE_SOURCE")]
    pub price_source: Option<String>,
    /// Assets a provider fetches, comma-separated [default: SOL,ETH,BTC,USDC,BONK,JUP].
    #[arg(long, env = "MESH_ASSETS", value_delimiter = ',')]
    pub assets: Option<Vec<String>>,
    /// Base URL of the Birdeye API [default: https://public-api.birdeye.so].
    #[arg(long, env = "MESH_BIRDEYE_BASE_URL")]
    pub birdeye_base_url: Option<String>,
    /// Birdeye API key (prefer the environment: flags show up in process lists).
    #[arg(long, env = "BIRDEYE_API_KEY", hide_env_values = true)]
    pub birdeye_api_key: Option<String>,
    /// Redis URL: Redis-backed dedup, price cache and fetch coordination.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Redis connection pool size [default: 10].
    #[arg(long, env = "REDIS_POOL_SIZE")]
    pub redis_pool_size: Option<usize>,
    /// Prefix of every Redis key [default: mesh:].
    #[arg(long, env = "MESH_REDIS_PREFIX")]
    pub redis_prefix: Option<String>,
    /// Seconds a price lives in Redis without a refresh [default: 3600].
    #[arg(long, env = "MESH_REDIS_PRICE_TTL_SECS")]
    pub redis_price_ttl_secs: Option<u64>,
    /// PostgreSQL URL: persistent prices, seen messages and peers (migrations run on start).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Milliseconds between writes of changed prices and seen ids to Redis or PostgreSQL
    /// [default: 100].
    #[arg(long, env = "MESH_STORAGE_FLUSH_INTERVAL_MS")]
    pub storage_flush_interval_ms: Option<u64>,
    /// Admin token for provider enable/disable; required when the API is not on loopback.
    #[arg(long, env = "MESH_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// File holding the admin token (its first line).
    #[arg(long, env = "MESH_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Host names the API answers to besides localhost, 127.0.0.1 and [::1] (comma-separated;
    /// with the API beyond loopback and none listed, any).
    #[arg(long, env = "MESH_API_ALLOWED_HOSTS", value_delimiter = ',')]
    pub api_allowed_hosts: Option<Vec<String>>,
    /// Web origins whose pages may use the API and feed, e.g. https://dash.example
    /// (comma-separated).
    #[arg(long, env = "MESH_API_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub api_allowed_origins: Option<Vec<String>>,
    /// Seconds between provider fetches [default: 30].
    #[arg(long, env = "MESH_PROVIDER_FETCH_INTERVAL_SECS")]
    pub fetch_interval_secs: Option<u64>,
    /// Seconds within which only one provider fetches [default: 5].
    #[arg(long, env = "MESH_COORDINATION_WINDOW_SECS")]
    pub coordination_window_secs: Option<u64>,
    /// TTL of published updates [default: 10].
    #[arg(long, env = "MESH_MESSAGE_TTL")]
    pub message_ttl: Option<u8>,
    /// Seen-message cache entries [default: 10000].
    #[arg(long, env = "MESH_SEEN_MESSAGES_CACHE_SIZE")]
    pub seen_messages_cache_size: Option<usize>,
    /// Seconds a message id stays seen [default: 300].
    #[arg(long, env = "MESH_SEEN_MESSAGES_EXPIRATION_SECS")]
    pub seen_messages_expiration_secs: Option<u64>,
    /// Seconds after which prices are stale [default: 3600].
    #[arg(long, env = "MESH_STALENESS_THRESHOLD_SECS")]
    pub staleness_threshold_secs: Option<u64>,
    /// Most peers [default: 10].
    #[arg(long, env = "MESH_MAX_PEER_CONNECTIONS")]
    pub max_peers: Option<usize>,
    /// Fewest peers the node keeps dialling for [default: 3].
    #[arg(long, env = "MESH_MIN_PEER_CONNECTIONS")]
    pub min_peers: Option<usize>,
    /// Seconds before a silent provider counts as offline [default: 600].
    #[arg(long, env = "MESH_OFFLINE_INDICATOR_THRESHOLD_SECS")]
    pub offline_indicator_threshold_secs: Option<u64>,
    /// Percentage between providers' prices that raises a warning [default: 5.0].
    #[arg(long, env = "MESH_PRICE_DISCREPANCY_THRESHOLD_PERCENT")]
    pub price_discrepancy_threshold_percent: Option<f64>,
    /// Seconds between anti-entropy rounds [default: 30].
    #[arg(long, env = "MESH_SYNC_INTERVAL_SECS")]
    pub sync_interval_secs: Option<u64>,
    /// Trusted providers, comma-separated node ids or public keys. Required on mainnet (and
    /// any network but devnet and testnet) unless --open-providers.
    #[arg(long, env = "MESH_TRUSTED_PROVIDERS", value_delimiter = ',')]
    pub trusted_providers: Option<Vec<String>>,
    /// Accept prices from any signed provider when no trusted providers are listed
    /// [default: false; devnet and testnet are open anyway].
    #[arg(long, env = "MESH_OPEN_PROVIDERS")]
    pub open_providers: Option<bool>,
    /// Find peers on the local network by multicast beacons [default: false].
    #[arg(long, env = "MESH_LAN_DISCOVERY")]
    pub lan_discovery: Option<bool>,
    /// Give the peer slots above the minimum to peers closer to the providers
    /// [default: true].
    #[arg(long, env = "MESH_PREFER_CLOSE_PEERS")]
    pub prefer_close_peers: Option<bool>,
    /// Send each update's payload along a spanning tree and only its id on the other links;
    /// false floods the payload to every peer [default: true].
    #[arg(long, env = "MESH_LAZY_PUSH")]
    pub lazy_push: Option<bool>,
    /// Least seconds between two moves towards the providers [default: 30].
    #[arg(long, env = "MESH_PREFERENCE_INTERVAL_SECS")]
    pub preference_interval_secs: Option<u64>,
    /// Seconds between heartbeats [default: 5].
    #[arg(long, env = "MESH_HEARTBEAT_INTERVAL_SECS")]
    pub heartbeat_interval_secs: Option<u64>,
    /// Seconds of silence before a peer is dropped [default: 30].
    #[arg(long, env = "MESH_HEARTBEAT_TIMEOUT_SECS")]
    pub heartbeat_timeout_secs: Option<u64>,
    /// Updates per second a peer may send [default: 200].
    #[arg(long, env = "MESH_PEER_RATE_LIMIT")]
    pub peer_rate_limit: Option<f64>,
    /// Seconds a misbehaving peer stays banned [default: 3600].
    #[arg(long, env = "MESH_BAN_DURATION_SECS")]
    pub ban_duration_secs: Option<u64>,
    /// Distinct trusted providers whose fresh quotes an asset needs to be served; the served
    /// price is their median [default: 1].
    #[arg(long, env = "MESH_PROVIDER_QUORUM")]
    pub provider_quorum: Option<u32>,
    /// Changed items the feed keeps for clients resuming with ?since= [default: 16384].
    #[arg(long, env = "MESH_FEED_HISTORY")]
    pub feed_history: Option<usize>,
    /// Seconds between the node's announcements; a node silent for three leaves the network
    /// size [default: 60].
    #[arg(long, env = "MESH_ANNOUNCE_INTERVAL_SECS")]
    pub announce_interval_secs: Option<u64>,
    /// Milliseconds a provider's clock may be off before CLOCK_SKEW is raised [default: 1000].
    #[arg(long, env = "MESH_CLOCK_SKEW_THRESHOLD_MS")]
    pub clock_skew_threshold_ms: Option<u64>,
    /// FOR TESTS ONLY: run the node's clock this many milliseconds ahead of the system's
    /// (behind when negative), to play a node whose clock is wrong [default: 0].
    #[arg(long, env = "MESH_TEST_CLOCK_OFFSET_MS", allow_hyphen_values = true)]
    pub test_clock_offset_ms: Option<i64>,
    /// NATS server to publish every accepted price to, subject pricemesh.<network>.<asset>
    /// (e.g. nats://127.0.0.1:4222) [default: off].
    #[arg(long, env = "MESH_NATS_URL", hide_env_values = true)]
    pub nats_url: Option<String>,
    /// JetStream stream keeping the newest price per asset for late subscribers (needs
    /// MESH_NATS_URL) [default: none].
    #[arg(long, env = "MESH_NATS_STREAM")]
    pub nats_stream: Option<String>,
}

/// The largest config file read: far more than every setting takes.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// The largest admin token file read (only its first line is the token).
pub const MAX_TOKEN_FILE_BYTES: u64 = 64 * 1024;

/// The UTF-8 text of `path`, refusing more than `limit` bytes: a path such as `/dev/zero`
/// must not fill memory.
fn read_bounded(path: &Path, limit: u64) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?.take(limit.saturating_add(1)).read_to_string(&mut text)?;
    if u64::try_from(text.len()).unwrap_or(u64::MAX) > limit {
        return Err(std::io::Error::other(format!("larger than the {limit}-byte limit")));
    }
    Ok(text)
}

macro_rules! prefer {
    ($flag:expr, $file:expr) => {
        $flag.take().or($file.take())
    };
}

impl SettingArgs {
    /// Reads a TOML settings file (keys as the long flags, with `_` for `-`) of at most
    /// [`MAX_CONFIG_BYTES`].
    ///
    /// # Errors
    /// When the file cannot be read, is too large, or is not valid settings TOML.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = read_bounded(path, MAX_CONFIG_BYTES)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        Self::from_toml(&text).with_context(|| format!("invalid config file {}", path.display()))
    }

    /// Parses settings TOML (keys as the long flags, with `_` for `-`); an unknown key is an
    /// error, so a typo never goes unnoticed.
    ///
    /// # Errors
    /// When `text` is not TOML or names a key or value these settings do not have.
    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// These settings, then `file`'s, then the defaults, checked.
    ///
    /// # Errors
    /// The first setting that is invalid, by name.
    pub fn resolve(mut self, mut file: Self) -> Result<NodeSettings, SettingsError> {
        let defaults = NodeSettings::default();
        let secs = |value: Option<u64>, default: Duration| value.map_or(default, Duration::from_secs);
        let network = parse_network(prefer!(self.network, file.network), defaults.network)?;
        let price_source =
            parse_price_source(prefer!(self.price_source, file.price_source), defaults.price_source)?;
        let assets = parse_assets(prefer!(self.assets, file.assets), defaults.assets)?;
        let admin_token = admin_token(
            prefer!(self.admin_token, file.admin_token),
            prefer!(self.admin_token_file, file.admin_token_file),
        )?;
        let settings = NodeSettings {
            network,
            listen_addr: prefer!(self.listen_addr, file.listen_addr).unwrap_or(defaults.listen_addr),
            advertised_addr: prefer!(self.advertised_addr, file.advertised_addr),
            api_addr: prefer!(self.api_addr, file.api_addr).unwrap_or(defaults.api_addr),
            bootstrap_peers: trimmed(prefer!(self.bootstrap_peers, file.bootstrap_peers)),
            data_dir: prefer!(self.data_dir, file.data_dir).unwrap_or(defaults.data_dir),
            price_source,
            assets,
            birdeye_base_url: prefer!(self.birdeye_base_url, file.birdeye_base_url)
                .unwrap_or(defaults.birdeye_base_url),
            birdeye_api_key: prefer!(self.birdeye_api_key, file.birdeye_api_key),
            redis_url: prefer!(self.redis_url, file.redis_url).filter(|url| !url.is_empty()),
            redis_pool_size: prefer!(self.redis_pool_size, file.redis_pool_size)
                .unwrap_or(defaults.redis_pool_size),
            redis_prefix: prefer!(self.redis_prefix, file.redis_prefix).unwrap_or(defaults.redis_prefix),
            redis_price_ttl: secs(
                prefer!(self.redis_price_ttl_secs, file.redis_price_ttl_secs),
                defaults.redis_price_ttl,
            ),
            database_url: prefer!(self.database_url, file.database_url).filter(|url| !url.is_empty()),
            storage_flush_interval: prefer!(self.storage_flush_interval_ms, file.storage_flush_interval_ms)
                .map_or(defaults.storage_flush_interval, Duration::from_millis),
            admin_token,
            api_allowed_hosts: prefer!(self.api_allowed_hosts, file.api_allowed_hosts).unwrap_or_default(),
            api_allowed_origins: prefer!(self.api_allowed_origins, file.api_allowed_origins)
                .unwrap_or_default(),
            fetch_interval: secs(
                prefer!(self.fetch_interval_secs, file.fetch_interval_secs),
                defaults.fetch_interval,
            ),
            coordination_window: secs(
                prefer!(self.coordination_window_secs, file.coordination_window_secs),
                defaults.coordination_window,
            ),
            message_ttl: prefer!(self.message_ttl, file.message_ttl).unwrap_or(defaults.message_ttl),
            seen_cache_size: prefer!(self.seen_messages_cache_size, file.seen_messages_cache_size)
                .unwrap_or(defaults.seen_cache_size),
            seen_expiration: secs(
                prefer!(self.seen_messages_expiration_secs, file.seen_messages_expiration_secs),
                defaults.seen_expiration,
            ),
            staleness_threshold: secs(
                prefer!(self.staleness_threshold_secs, file.staleness_threshold_secs),
                defaults.staleness_threshold,
            ),
            max_peers: prefer!(self.max_peers, file.max_peers).unwrap_or(defaults.max_peers),
            min_peers: prefer!(self.min_peers, file.min_peers).unwrap_or(defaults.min_peers),
            offline_threshold: secs(
                prefer!(self.offline_indicator_threshold_secs, file.offline_indicator_threshold_secs),
                defaults.offline_threshold,
            ),
            discrepancy_threshold_percent: prefer!(
                self.price_discrepancy_threshold_percent,
                file.price_discrepancy_threshold_percent
            )
            .unwrap_or(defaults.discrepancy_threshold_percent),
            sync_interval: secs(
                prefer!(self.sync_interval_secs, file.sync_interval_secs),
                defaults.sync_interval,
            ),
            trusted_providers: prefer!(self.trusted_providers, file.trusted_providers).unwrap_or_default(),
            open_providers: prefer!(self.open_providers, file.open_providers)
                .unwrap_or(defaults.open_providers),
            lan_discovery: prefer!(self.lan_discovery, file.lan_discovery).unwrap_or(defaults.lan_discovery),
            prefer_close_peers: prefer!(self.prefer_close_peers, file.prefer_close_peers)
                .unwrap_or(defaults.prefer_close_peers),
            lazy_push: prefer!(self.lazy_push, file.lazy_push).unwrap_or(defaults.lazy_push),
            preference_interval: secs(
                prefer!(self.preference_interval_secs, file.preference_interval_secs),
                defaults.preference_interval,
            ),
            heartbeat_interval: secs(
                prefer!(self.heartbeat_interval_secs, file.heartbeat_interval_secs),
                defaults.heartbeat_interval,
            ),
            heartbeat_timeout: secs(
                prefer!(self.heartbeat_timeout_secs, file.heartbeat_timeout_secs),
                defaults.heartbeat_timeout,
            ),
            peer_rate_limit: prefer!(self.peer_rate_limit, file.peer_rate_limit)
                .unwrap_or(defaults.peer_rate_limit),
            ban_duration: secs(
                prefer!(self.ban_duration_secs, file.ban_duration_secs),
                defaults.ban_duration,
            ),
            provider_quorum: prefer!(self.provider_quorum, file.provider_quorum)
                .unwrap_or(defaults.provider_quorum),
            feed_history: prefer!(self.feed_history, file.feed_history).unwrap_or(defaults.feed_history),
            announce_interval: secs(
                prefer!(self.announce_interval_secs, file.announce_interval_secs),
                defaults.announce_interval,
            ),
            clock_skew_threshold: prefer!(self.clock_skew_threshold_ms, file.clock_skew_threshold_ms)
                .map_or(defaults.clock_skew_threshold, Duration::from_millis),
            test_clock_offset_ms: prefer!(self.test_clock_offset_ms, file.test_clock_offset_ms)
                .unwrap_or(defaults.test_clock_offset_ms),
            nats_url: prefer!(self.nats_url, file.nats_url).filter(|url| !url.is_empty()),
            nats_stream: prefer!(self.nats_stream, file.nats_stream).filter(|name| !name.is_empty()),
        };
        settings.validate()?;
        Ok(settings)
    }
}

impl SettingArgs {
    /// Every setting of `settings`, spelt as these arguments: what a file would say to get
    /// them. `admin_token_file` is left unset (the token itself is there).
    pub fn from_settings(settings: &NodeSettings) -> Self {
        let secs = |duration: Duration| Some(duration.as_secs());
        let millis = |duration: Duration| Some(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX));
        let strings = |list: &[String]| Some(list.to_vec());
        Self {
            network: Some(settings.network.to_string()),
            listen_addr: Some(settings.listen_addr),
            advertised_addr: settings.advertised_addr,
            api_addr: Some(settings.api_addr),
            bootstrap_peers: strings(&settings.bootstrap_peers),
            data_dir: Some(settings.data_dir.clone()),
            price_source: Some(
                match settings.price_source {
                    PriceSourceKind::None => "none",
                    PriceSourceKind::Simulated => "simulated",
                    PriceSourceKind::Birdeye => "birdeye",
                }
                .to_owned(),
            ),
            assets: Some(settings.assets.iter().map(ToString::to_string).collect()),
            birdeye_base_url: Some(settings.birdeye_base_url.clone()),
            birdeye_api_key: settings.birdeye_api_key.clone(),
            redis_url: settings.redis_url.clone(),
            redis_pool_size: Some(settings.redis_pool_size),
            redis_prefix: Some(settings.redis_prefix.clone()),
            redis_price_ttl_secs: secs(settings.redis_price_ttl),
            database_url: settings.database_url.clone(),
            storage_flush_interval_ms: millis(settings.storage_flush_interval),
            admin_token: settings.admin_token.clone(),
            admin_token_file: None,
            api_allowed_hosts: strings(&settings.api_allowed_hosts),
            api_allowed_origins: strings(&settings.api_allowed_origins),
            fetch_interval_secs: secs(settings.fetch_interval),
            coordination_window_secs: secs(settings.coordination_window),
            message_ttl: Some(settings.message_ttl),
            seen_messages_cache_size: Some(settings.seen_cache_size),
            seen_messages_expiration_secs: secs(settings.seen_expiration),
            staleness_threshold_secs: secs(settings.staleness_threshold),
            max_peers: Some(settings.max_peers),
            min_peers: Some(settings.min_peers),
            offline_indicator_threshold_secs: secs(settings.offline_threshold),
            price_discrepancy_threshold_percent: Some(settings.discrepancy_threshold_percent),
            sync_interval_secs: secs(settings.sync_interval),
            trusted_providers: strings(&settings.trusted_providers),
            open_providers: Some(settings.open_providers),
            lan_discovery: Some(settings.lan_discovery),
            prefer_close_peers: Some(settings.prefer_close_peers),
            lazy_push: Some(settings.lazy_push),
            preference_interval_secs: secs(settings.preference_interval),
            heartbeat_interval_secs: secs(settings.heartbeat_interval),
            heartbeat_timeout_secs: secs(settings.heartbeat_timeout),
            peer_rate_limit: Some(settings.peer_rate_limit),
            ban_duration_secs: secs(settings.ban_duration),
            provider_quorum: Some(settings.provider_quorum),
            feed_history: Some(settings.feed_history),
            announce_interval_secs: secs(settings.announce_interval),
            clock_skew_threshold_ms: millis(settings.clock_skew_threshold),
            test_clock_offset_ms: Some(settings.test_clock_offset_ms),
            nats_url: settings.nats_url.clone(),
            nats_stream: settings.nats_stream.clone(),
        }
    }
}

/// `MESH_NETWORK`, or `default`.
fn parse_network(name: Option<String>, default: NetworkId) -> Result<NetworkId, SettingsError> {
    name.map_or(Ok(default), |name| {
        NetworkId::new(&name).map_err(|err| SettingsError::new("MESH_NETWORK", err.to_string()))
    })
}

/// `MESH_PRICE_SOURCE`, or `default`.
fn parse_price_source(
    text: Option<String>,
    default: PriceSourceKind,
) -> Result<PriceSourceKind, SettingsError> {
    text.map_or(Ok(default), |text| {
        text.parse::<PriceSourceKind>().map_err(|err| SettingsError::new("MESH_PRICE_SOURCE", err))
    })
}

/// `MESH_ASSETS` (blank entries skipped), or `default`.
fn parse_assets(symbols: Option<Vec<String>>, default: Vec<Asset>) -> Result<Vec<Asset>, SettingsError> {
    let Some(symbols) = symbols else { return Ok(default) };
    symbols
        .iter()
        .filter(|symbol| !symbol.trim().is_empty())
        .map(|symbol| Asset::new(symbol.trim()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| SettingsError::new("MESH_ASSETS", err.to_string()))
}

/// `MESH_ADMIN_TOKEN`, else the first line of `MESH_ADMIN_TOKEN_FILE` (read bounded).
fn admin_token(token: Option<String>, file: Option<PathBuf>) -> Result<Option<String>, SettingsError> {
    match (token, file) {
        (Some(token), _) => Ok(Some(token)),
        (None, Some(path)) => {
            let text = read_bounded(&path, MAX_TOKEN_FILE_BYTES).map_err(|err| {
                SettingsError::new("MESH_ADMIN_TOKEN_FILE", format!("cannot read {}: {err}", path.display()))
            })?;
            Ok(Some(text.lines().next().unwrap_or_default().trim().to_owned()))
        }
        (None, None) => Ok(None),
    }
}

/// A list setting's entries, trimmed, blank ones dropped.
fn trimmed(entries: Option<Vec<String>>) -> Vec<String> {
    entries
        .unwrap_or_default()
        .into_iter()
        .map(|entry| entry.trim().to_owned())
        .filter(|entry| !entry.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Test {
        #[command(flatten)]
        settings: SettingArgs,
    }

    fn parse(args: &[&str]) -> SettingArgs {
        Test::try_parse_from(std::iter::once("test").chain(args.iter().copied())).unwrap().settings
    }

    #[test]
    fn settings_written_back_as_a_file_resolve_to_the_same_settings() {
        let file = SettingArgs::from_toml(
            "network = \"testnet\"\nmin_peers = 2\nassets = [\"sol\", \"eth\"]\nnats_url = \"nats://127.0.0.1:4222\"",
        )
        .unwrap();
        let settings =
            parse(&["--max-peers", "7", "--storage-flush-interval-ms", "250"]).resolve(file).unwrap();
        let written = toml::to_string(&SettingArgs::from_settings(&settings)).unwrap();
        let again = SettingArgs::default().resolve(SettingArgs::from_toml(&written).unwrap()).unwrap();
        assert_eq!(format!("{again:?}"), format!("{settings:?}"), "{written}");
    }

    #[test]
    fn an_endless_token_file_is_refused_rather_than_read_into_memory() {
        let file = SettingArgs::from_toml("admin_token_file = \"/dev/zero\"\nopen_providers = true").unwrap();
        let err = parse(&[]).resolve(file).unwrap_err();
        assert_eq!(err.setting, "MESH_ADMIN_TOKEN_FILE");
        assert!(err.problem.contains("limit"), "{}", err.problem);
    }

    #[test]
    fn a_year_long_interval_or_more_is_refused_by_name() {
        let file = SettingArgs::from_toml("sync_interval_secs = 18446744073709551615\nopen_providers = true")
            .unwrap();
        assert_eq!(parse(&[]).resolve(file).unwrap_err().setting, "MESH_SYNC_INTERVAL_SECS");
    }

    #[test]
    fn lazy_push_is_the_default_and_can_be_turned_off_for_flooding() {
        let open = ["--open-providers", "true"];
        let defaults = parse(&open).resolve(SettingArgs::default()).unwrap().service_config().unwrap();
        assert_eq!(defaults.push.mode, mesh_gossip::PushMode::Lazy);
        let file = SettingArgs::from_toml("lazy_push = false\nopen_providers = true").unwrap();
        let flooding = parse(&[]).resolve(file).unwrap().service_config().unwrap();
        assert_eq!(flooding.push.mode, mesh_gossip::PushMode::Flood);
    }

    #[test]
    fn the_close_peer_preference_reaches_the_connection_manager() {
        let open = ["--open-providers", "true"];
        let defaults = parse(&open).resolve(SettingArgs::default()).unwrap().manager_config();
        assert!(defaults.prefer_close_peers);
        assert_eq!(defaults.preference_interval, Duration::from_secs(30));
        let args = ["--prefer-close-peers", "false", "--preference-interval-secs", "5", open[0], open[1]];
        let manager = parse(&args).resolve(SettingArgs::default()).unwrap().manager_config();
        assert!(!manager.prefer_close_peers);
        assert_eq!(manager.preference_interval, Duration::from_secs(5));
        let file =
            SettingArgs::from_toml("preference_interval_secs = 99999999999\nopen_providers = true").unwrap();
        assert_eq!(parse(&[]).resolve(file).unwrap_err().setting, "MESH_PREFERENCE_INTERVAL_SECS");
    }

    #[test]
    fn a_flag_beats_the_file_which_beats_the_default() {
        let file: SettingArgs =
            toml::from_str("min_peers = 2\nmax_peers = 6\nnetwork = \"testnet\"").unwrap();
        let settings = parse(&["--max-peers", "8"]).resolve(file).unwrap();
        assert_eq!(settings.max_peers, 8, "the flag wins");
        assert_eq!(settings.min_peers, 2, "the file fills what flags leave");
        assert_eq!(settings.network, NetworkId::testnet());
        assert_eq!(settings.sync_interval, Duration::from_secs(30), "the default fills the rest");
        let settings = parse(&["--storage-flush-interval-ms", "250", "--open-providers", "true"])
            .resolve(SettingArgs::default())
            .unwrap();
        assert_eq!(settings.storage_flush_interval, Duration::from_millis(250));
        assert!(settings.open_providers);
    }

    #[test]
    fn mainnet_without_trusted_providers_stops_at_start_naming_the_setting() {
        let err = parse(&[]).resolve(SettingArgs::default()).unwrap_err();
        assert_eq!(err.setting, "MESH_TRUSTED_PROVIDERS");
        let file: SettingArgs = toml::from_str("open_providers = true").unwrap();
        assert!(parse(&[]).resolve(file).unwrap().open_providers, "the file can say so too");
    }

    #[test]
    fn lists_and_sources_parse() {
        let settings = parse(&[
            "--assets",
            "sol, eth",
            "--bootstrap-peers",
            "10.0.0.1:9470,seed.example.org:9470",
            "--price-source",
            "simulated",
            "--network",
            "devnet",
        ])
        .resolve(SettingArgs::default())
        .unwrap();
        assert_eq!(settings.assets.iter().map(|a| a.as_str()).collect::<Vec<_>>(), ["SOL", "ETH"]);
        assert_eq!(settings.bootstrap_peers.len(), 2);
        assert_eq!(settings.price_source, PriceSourceKind::Simulated);
    }

    #[test]
    fn invalid_values_name_their_setting() {
        let err = parse(&["--min-peers", "20"]).resolve(SettingArgs::default()).unwrap_err();
        assert_eq!(err.setting, "MESH_MIN_PEER_CONNECTIONS");
        let err = parse(&["--network", "Main Net"]).resolve(SettingArgs::default()).unwrap_err();
        assert_eq!(err.setting, "MESH_NETWORK");
        let err = parse(&["--assets", "S O L"]).resolve(SettingArgs::default()).unwrap_err();
        assert_eq!(err.setting, "MESH_ASSETS");
        assert!(toml::from_str::<SettingArgs>("unknown_key = 1").is_err(), "typos in the file are errors");
    }
}
