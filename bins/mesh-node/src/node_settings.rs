//! [`NodeSettings`]: every setting of a node, resolved (the binary layers flags, environment,
//! a TOML file and these defaults), validated with one clear line naming the setting at fault,
//! and turned into the libraries' configurations.
//!
//! The defaults are the project's choices, each stated on its field.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use mesh_dedup::TrackerConfig;
use mesh_gossip::{GossipConfig, PushConfig, PushMode, ScoringConfig, TrustPolicy};
use mesh_provider::BirdeyeConfig;
use mesh_transport::{LanDiscovery, ManagerConfig};
use mesh_types::{Asset, NetworkId, ProviderConfig, ValidationPolicy};
use thiserror::Error;

use mesh_service::{ServiceConfig, StatusConfig};

/// The longest any duration setting may be: a year.
pub const MAX_DURATION_SETTING: Duration = Duration::from_secs(365 * 24 * 3600);

/// The most items `MESH_FEED_HISTORY` may keep: a million, a few hundred megabytes.
pub const MAX_FEED_HISTORY: usize = 1_000_000;

/// Where a provider node gets its prices (`MESH_PRICE_SOURCE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PriceSourceKind {
    /// A deterministic random walk: no key, no internet.
    Simulated,
    /// The Birdeye API (needs `BIRDEYE_API_KEY`).
    Birdeye,
    /// None: the node relays and serves, and can be made a provider through the API.
    None,
}

impl std::str::FromStr for PriceSourceKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "simulated" => Ok(Self::Simulated),
            "birdeye" => Ok(Self::Birdeye),
            "none" | "" => Ok(Self::None),
            other => Err(format!("{other:?} is not one of simulated, birdeye, none")),
        }
    }
}

/// Every setting of a node, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSettings {
    /// `MESH_NETWORK` (default `mainnet`).
    pub network: NetworkId,
    /// `MESH_LISTEN_ADDR`: where peers connect (default `0.0.0.0:9470`).
    pub listen_addr: SocketAddr,
    /// `MESH_ADVERTISED_ADDR`: the address to tell peers, when it differs.
    pub advertised_addr: Option<SocketAddr>,
    /// `MESH_API_ADDR`: the HTTP API (default `127.0.0.1:8080`).
    pub api_addr: SocketAddr,
    /// `MESH_BOOTSTRAP_PEERS`: `host:port` entries.
    pub bootstrap_peers: Vec<String>,
    /// `MESH_DATA_DIR`: the key file and the peer file (default `data`).
    pub data_dir: PathBuf,
    /// `MESH_PRICE_SOURCE` (default `none`).
    pub price_source: PriceSourceKind,
    /// `MESH_ASSETS`: what a provider fetches.
    pub assets: Vec<Asset>,
    /// `MESH_BIRDEYE_BASE_URL` (default `https://public-api.birdeye.so`).
    pub birdeye_base_url: String,
    /// `BIRDEYE_API_KEY`; never logged.
    pub birdeye_api_key: Option<String>,
    /// `REDIS_URL`: Redis-backed dedup, price cache and coordination.
    pub redis_url: Option<String>,
    /// `REDIS_POOL_SIZE` (default 10).
    pub redis_pool_size: usize,
    /// `MESH_REDIS_PREFIX` (default `mesh:`).
    pub redis_prefix: String,
    /// `MESH_REDIS_PRICE_TTL_SECS` (default 3,600).
    pub redis_price_ttl: Duration,
    /// `DATABASE_URL`: PostgreSQL persistence (migrations run on start).
    pub database_url: Option<String>,
    /// `MESH_STORAGE_FLUSH_INTERVAL_MS`: how often the layered stores write their changes
    /// behind to Redis or PostgreSQL, the lag those run behind memory (default 100).
    pub storage_flush_interval: Duration,
    /// `MESH_ADMIN_TOKEN`: required for provider enable/disable when the API is not on
    /// loopback; never logged.
    pub admin_token: Option<String>,
    /// `MESH_API_ALLOWED_HOSTS`: host names the API answers to besides the loopback names.
    pub api_allowed_hosts: Vec<String>,
    /// `MESH_API_ALLOWED_ORIGINS`: web origins whose pages may use the API and the feed.
    pub api_allowed_origins: Vec<String>,
    /// `MESH_PROVIDER_FETCH_INTERVAL_SECS` (default 30).
    pub fetch_interval: Duration,
    /// `MESH_COORDINATION_WINDOW_SECS` (default 5).
    pub coordination_window: Duration,
    /// `MESH_MESSAGE_TTL` (default 10).
    pub message_ttl: u8,
    /// `MESH_SEEN_MESSAGES_CACHE_SIZE` (default 10,000).
    pub seen_cache_size: usize,
    /// `MESH_SEEN_MESSAGES_EXPIRATION_SECS` (default 300).
    pub seen_expiration: Duration,
    /// `MESH_STALENESS_THRESHOLD_SECS` (default 3,600).
    pub staleness_threshold: Duration,
    /// `MESH_MAX_PEER_CONNECTIONS` (default 10).
    pub max_peers: usize,
    /// `MESH_MIN_PEER_CONNECTIONS` (default 3).
    pub min_peers: usize,
    /// `MESH_OFFLINE_INDICATOR_THRESHOLD_SECS` (default 600).
    pub offline_threshold: Duration,
    /// `MESH_PRICE_DISCREPANCY_THRESHOLD_PERCENT` (default 5.0).
    pub discrepancy_threshold_percent: f64,
    /// `MESH_SYNC_INTERVAL_SECS` (default 30).
    pub sync_interval: Duration,
    /// `MESH_TRUSTED_PROVIDERS`: node ids or public keys whose prices are accepted.
    pub trusted_providers: Vec<String>,
    /// `MESH_OPEN_PROVIDERS`: accept prices from any correctly signed source when
    /// `MESH_TRUSTED_PROVIDERS` is empty. Required for that on every network but `devnet` and
    /// `testnet` (default false), because anyone can make a key and overwrite any price.
    pub open_providers: bool,
    /// `MESH_LAN_DISCOVERY` (default false).
    pub lan_discovery: bool,
    /// `MESH_PREFER_CLOSE_PEERS`: give the peer slots above the minimum to peers closer to the
    /// providers (default true).
    pub prefer_close_peers: bool,
    /// `MESH_LAZY_PUSH`: send each update's payload along a spanning tree and only its id on
    /// the other links (default true); false floods the payload to every peer.
    pub lazy_push: bool,
    /// `MESH_PREFERENCE_INTERVAL_SECS`: the least time between two moves towards the providers
    /// (default 30).
    pub preference_interval: Duration,
    /// `MESH_HEARTBEAT_INTERVAL_SECS` (default 5).
    pub heartbeat_interval: Duration,
    /// `MESH_HEARTBEAT_TIMEOUT_SECS` (default 30).
    pub heartbeat_timeout: Duration,
    /// `MESH_PEER_RATE_LIMIT`: updates per second a peer may send (default 200).
    pub peer_rate_limit: f64,
    /// `MESH_BAN_DURATION_SECS`: how long a misbehaving peer stays banned (default 3,600).
    pub ban_duration: Duration,
    /// `MESH_PROVIDER_QUORUM`: how many distinct providers' fresh quotes an asset needs to be
    /// served; the served price is their median (default 1).
    pub provider_quorum: u32,
    /// `MESH_FEED_HISTORY`: how many changed items the feed keeps for clients that resume
    /// with `?since=` (default 16,384).
    pub feed_history: usize,
    /// `MESH_ANNOUNCE_INTERVAL_SECS`: how often the node announces itself (default 60); a node
    /// silent for three intervals leaves others' network size and providers list.
    pub announce_interval: Duration,
    /// `MESH_CLOCK_SKEW_THRESHOLD_MS`: a provider whose clock is further than this from the
    /// node's raises `CLOCK_SKEW` (default 1,000).
    pub clock_skew_threshold: Duration,
    /// `MESH_TEST_CLOCK_OFFSET_MS`: **for tests only**, runs the node's clock this far ahead
    /// (behind when negative) of the system's, to play a node whose clock is wrong (default 0).
    pub test_clock_offset_ms: i64,
    /// `MESH_NATS_URL`: publish every accepted price to NATS, subject
    /// `pricemesh.<network>.<asset>` (default: off).
    pub nats_url: Option<String>,
    /// `MESH_NATS_STREAM`: a JetStream stream keeping the newest price per asset for late
    /// subscribers (default: none; plain NATS publishes).
    pub nats_stream: Option<String>,
}

impl Default for NodeSettings {
    fn default() -> Self {
        Self {
            network: NetworkId::mainnet(),
            listen_addr: SocketAddr::from(([0, 0, 0, 0], 9470)),
            advertised_addr: None,
            api_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            bootstrap_peers: Vec::new(),
            data_dir: PathBuf::from("data"),
            price_source: PriceSourceKind::None,
            assets: ["SOL", "ETH", "BTC", "USDC", "BONK", "JUP"]
                .into_iter()
                .filter_map(|symbol| Asset::new(symbol).ok())
                .collect(),
            birdeye_base_url: "https://public-api.birdeye.so".to_owned(),
            birdeye_api_key: None,
            redis_url: None,
            redis_pool_size: 10,
            redis_prefix: "mesh:".to_owned(),
            redis_price_ttl: Duration::from_secs(3600),
            database_url: None,
            storage_flush_interval: Duration::from_millis(100),
            admin_token: None,
            api_allowed_hosts: Vec::new(),
            api_allowed_origins: Vec::new(),
            fetch_interval: Duration::from_secs(ProviderConfig::DEFAULT_FETCH_INTERVAL_SECS),
            coordination_window: Duration::from_secs(ProviderConfig::DEFAULT_COORDINATION_WINDOW_SECS),
            message_ttl: ProviderConfig::DEFAULT_MESSAGE_TTL,
            seen_cache_size: TrackerConfig::DEFAULT_CAPACITY,
            seen_expiration: TrackerConfig::DEFAULT_EXPIRATION,
            staleness_threshold: Duration::from_secs(3600),
            max_peers: 10,
            min_peers: 3,
            offline_threshold: Duration::from_secs(600),
            discrepancy_threshold_percent: 5.0,
            sync_interval: Duration::from_secs(30),
            trusted_providers: Vec::new(),
            open_providers: false,
            lan_discovery: false,
            prefer_close_peers: true,
            lazy_push: true,
            preference_interval: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(5),
            heartbeat_timeout: Duration::from_secs(30),
            peer_rate_limit: 200.0,
            ban_duration: Duration::from_secs(3600),
            provider_quorum: 1,
            feed_history: ServiceConfig::DEFAULT_FEED_HISTORY,
            announce_interval: Duration::from_secs(60),
            clock_skew_threshold: Duration::from_secs(1),
            test_clock_offset_ms: 0,
            nats_url: None,
            nats_stream: None,
        }
    }
}

/// A setting that cannot work, named as the environment spells it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid setting {setting}: {problem}")]
pub struct SettingsError {
    /// The setting, e.g. `MESH_MIN_PEER_CONNECTIONS`.
    pub setting: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

impl SettingsError {
    /// A problem with `setting`.
    pub fn new(setting: &'static str, problem: impl Into<String>) -> Self {
        Self { setting, problem: problem.into() }
    }
}

impl NodeSettings {
    /// Every duration setting is at most [`MAX_DURATION_SETTING`]: timers and timestamp
    /// arithmetic overflow on values near `u64::MAX` seconds, and none of these means anything
    /// past a year.
    fn check_durations(&self) -> Result<(), SettingsError> {
        let durations = [
            ("MESH_REDIS_PRICE_TTL_SECS", self.redis_price_ttl),
            ("MESH_PROVIDER_FETCH_INTERVAL_SECS", self.fetch_interval),
            ("MESH_COORDINATION_WINDOW_SECS", self.coordination_window),
            ("MESH_SEEN_MESSAGES_EXPIRATION_SECS", self.seen_expiration),
            ("MESH_STALENESS_THRESHOLD_SECS", self.staleness_threshold),
            ("MESH_OFFLINE_INDICATOR_THRESHOLD_SECS", self.offline_threshold),
            ("MESH_SYNC_INTERVAL_SECS", self.sync_interval),
            ("MESH_HEARTBEAT_INTERVAL_SECS", self.heartbeat_interval),
            ("MESH_HEARTBEAT_TIMEOUT_SECS", self.heartbeat_timeout),
            ("MESH_PREFERENCE_INTERVAL_SECS", self.preference_interval),
            ("MESH_BAN_DURATION_SECS", self.ban_duration),
            ("MESH_ANNOUNCE_INTERVAL_SECS", self.announce_interval),
            ("MESH_CLOCK_SKEW_THRESHOLD_MS", self.clock_skew_threshold),
        ];
        match durations.into_iter().find(|(_, duration)| *duration > MAX_DURATION_SETTING) {
            Some((setting, duration)) => Err(SettingsError::new(
                setting,
                format!(
                    "{} s is longer than the longest allowed, {} s (a year)",
                    duration.as_secs(),
                    MAX_DURATION_SETTING.as_secs()
                ),
            )),
            None => Ok(()),
        }
    }
}

impl NodeSettings {
    /// Checks the settings fit together.
    ///
    /// # Errors
    /// The first setting at fault.
    pub fn validate(&self) -> Result<(), SettingsError> {
        self.check_durations()?;
        if self.max_peers == 0 || self.min_peers > self.max_peers {
            return Err(SettingsError::new(
                "MESH_MIN_PEER_CONNECTIONS",
                format!(
                    "{} must not exceed MESH_MAX_PEER_CONNECTIONS ({}), which must be at least 1",
                    self.min_peers, self.max_peers
                ),
            ));
        }
        self.provider_config().validate().map_err(|err| {
            let setting = match err {
                mesh_types::ProviderConfigError::ZeroTtl => "MESH_MESSAGE_TTL",
                mesh_types::ProviderConfigError::WindowExceedsInterval { .. } => {
                    "MESH_COORDINATION_WINDOW_SECS"
                }
                _ => "MESH_PROVIDER_FETCH_INTERVAL_SECS",
            };
            SettingsError::new(setting, err.to_string())
        })?;
        if self.message_ttl > ValidationPolicy::DEFAULT_MAX_TTL {
            return Err(SettingsError::new(
                "MESH_MESSAGE_TTL",
                format!(
                    "{} exceeds the largest TTL peers accept ({})",
                    self.message_ttl,
                    ValidationPolicy::DEFAULT_MAX_TTL
                ),
            ));
        }
        self.tracker_config()
            .validate()
            .map_err(|err| SettingsError::new("MESH_SEEN_MESSAGES_CACHE_SIZE", err.to_string()))?;
        if self.heartbeat_timeout <= self.heartbeat_interval {
            return Err(SettingsError::new(
                "MESH_HEARTBEAT_TIMEOUT_SECS",
                "must be longer than MESH_HEARTBEAT_INTERVAL_SECS",
            ));
        }
        if self.storage_flush_interval.is_zero() || self.storage_flush_interval > Duration::from_secs(60) {
            return Err(SettingsError::new(
                "MESH_STORAGE_FLUSH_INTERVAL_MS",
                "must be between 1 and 60000 milliseconds",
            ));
        }
        // A day either way is far beyond any test, and keeps every timestamp in range.
        if self.test_clock_offset_ms.unsigned_abs() > 86_400_000 {
            return Err(SettingsError::new(
                "MESH_TEST_CLOCK_OFFSET_MS",
                "must be within a day (86400000 ms) either way",
            ));
        }
        if self.announce_interval.is_zero() {
            return Err(SettingsError::new("MESH_ANNOUNCE_INTERVAL_SECS", "must be at least 1"));
        }
        if self.sync_interval.is_zero() {
            return Err(SettingsError::new("MESH_SYNC_INTERVAL_SECS", "must be at least 1"));
        }
        if !(self.discrepancy_threshold_percent.is_finite() && self.discrepancy_threshold_percent > 0.0) {
            return Err(SettingsError::new(
                "MESH_PRICE_DISCREPANCY_THRESHOLD_PERCENT",
                "must be a positive number",
            ));
        }
        if !(self.peer_rate_limit.is_finite() && self.peer_rate_limit > 0.0) {
            return Err(SettingsError::new("MESH_PEER_RATE_LIMIT", "must be a positive number"));
        }
        if self.price_source == PriceSourceKind::Birdeye
            && self.birdeye_api_key.as_deref().is_none_or(str::is_empty)
        {
            return Err(SettingsError::new("BIRDEYE_API_KEY", "MESH_PRICE_SOURCE=birdeye needs an API key"));
        }
        if !self.api_addr.ip().is_loopback() && self.admin_token.as_deref().is_none_or(str::is_empty) {
            return Err(SettingsError::new(
                "MESH_ADMIN_TOKEN",
                format!(
                    "the API listens on {} (not loopback), so provider enable/disable need an admin token",
                    self.api_addr
                ),
            ));
        }
        let trust = self.trust_policy()?;
        self.check_quorum()?;
        if self.feed_history == 0 || self.feed_history > MAX_FEED_HISTORY {
            return Err(SettingsError::new(
                "MESH_FEED_HISTORY",
                format!("must be between 1 and {MAX_FEED_HISTORY} items"),
            ));
        }
        if trust.accepts_anyone() && !self.open_providers && !self.network_is_open_by_default() {
            return Err(SettingsError::new(
                "MESH_TRUSTED_PROVIDERS",
                format!(
                    "network {} needs the node ids or public keys of the providers to trust, since \
                     anyone can make a key and sign prices; set MESH_OPEN_PROVIDERS=true to accept \
                     any signed provider anyway (devnet and testnet accept any by default)",
                    self.network
                ),
            ));
        }
        let policy = ValidationPolicy::default();
        let oldest = policy.max_age.saturating_add(policy.max_clock_skew);
        if self.seen_expiration < oldest {
            return Err(SettingsError::new(
                "MESH_SEEN_MESSAGES_EXPIRATION_SECS",
                format!(
                    "must be at least {} s: the oldest update accepted ({} s) plus the clock skew \
                     ({} s), or a replayed update could be accepted again once forgotten",
                    oldest.as_secs(),
                    policy.max_age.as_secs(),
                    policy.max_clock_skew.as_secs()
                ),
            ));
        }
        self.manager_config()
            .validate()
            .map_err(|err| SettingsError::new("MESH_BOOTSTRAP_PEERS", err.to_string()))?;
        Ok(())
    }

    /// A quorum of at least one, and no more providers than are trusted (it could never be met).
    fn check_quorum(&self) -> Result<(), SettingsError> {
        let trusted = self.trusted_providers.len();
        if self.provider_quorum == 0 {
            return Err(SettingsError::new("MESH_PROVIDER_QUORUM", "must be at least 1"));
        }
        if trusted > 0 && usize::try_from(self.provider_quorum).unwrap_or(usize::MAX) > trusted {
            return Err(SettingsError::new(
                "MESH_PROVIDER_QUORUM",
                format!(
                    "{} exceeds the {trusted} providers of MESH_TRUSTED_PROVIDERS, so no price would ever be served",
                    self.provider_quorum
                ),
            ));
        }
        Ok(())
    }

    /// Whether this network accepts any signed provider without `MESH_OPEN_PROVIDERS`:
    /// `devnet` and `testnet`, where nobody trades on the prices.
    pub fn network_is_open_by_default(&self) -> bool {
        self.network == NetworkId::devnet() || self.network == NetworkId::testnet()
    }

    /// The trusted-provider policy.
    ///
    /// # Errors
    /// An entry that is neither a node id nor a public key.
    pub fn trust_policy(&self) -> Result<TrustPolicy, SettingsError> {
        TrustPolicy::parse(self.trusted_providers.iter().map(String::as_str))
            .map_err(|err| SettingsError::new("MESH_TRUSTED_PROVIDERS", err.to_string()))
    }

    /// The Birdeye client's configuration (`MESH_BIRDEYE_BASE_URL`; the key comes apart).
    pub fn birdeye_config(&self) -> BirdeyeConfig {
        BirdeyeConfig { base_url: self.birdeye_base_url.clone(), ..BirdeyeConfig::default() }
    }

    /// The provider loop's configuration.
    pub fn provider_config(&self) -> ProviderConfig {
        ProviderConfig {
            enabled: self.price_source != PriceSourceKind::None,
            fetch_interval_secs: self.fetch_interval.as_secs(),
            coordination_window_secs: self.coordination_window.as_secs(),
            message_ttl: self.message_ttl,
            network: self.network.clone(),
        }
    }

    /// The seen-message cache.
    pub const fn tracker_config(&self) -> TrackerConfig {
        TrackerConfig { capacity: self.seen_cache_size, expiration: self.seen_expiration }
    }

    /// The network layer's configuration.
    pub fn manager_config(&self) -> ManagerConfig {
        let mut manager = ManagerConfig::new(self.network.clone());
        manager.listen_addr = Some(self.listen_addr);
        manager.advertised_addr = self.advertised_addr;
        manager.bootstrap = self.bootstrap_peers.clone();
        manager.min_peers = self.min_peers;
        manager.max_peers = self.max_peers;
        manager.max_inbound = self.max_peers;
        manager.heartbeat_interval = self.heartbeat_interval;
        manager.heartbeat_timeout = self.heartbeat_timeout;
        manager.ban_duration = self.ban_duration;
        manager.lan_discovery = self.lan_discovery.then(LanDiscovery::default);
        manager.prefer_close_peers = self.prefer_close_peers;
        manager.preference_interval = self.preference_interval;
        // Links lost to a partition are retried as often as anti-entropy runs, so a healed
        // mesh joins up and converges within two sync intervals.
        manager.reconnect_interval = self.sync_interval;
        manager
    }

    /// The service's configuration.
    ///
    /// # Errors
    /// A bad `MESH_TRUSTED_PROVIDERS` entry.
    pub fn service_config(&self) -> Result<ServiceConfig, SettingsError> {
        let mut service = ServiceConfig::new(self.manager_config());
        service.gossip = GossipConfig {
            validation: ValidationPolicy::default(),
            trust: self.trust_policy()?,
            scoring: ScoringConfig {
                rate_per_second: self.peer_rate_limit,
                burst: self.peer_rate_limit * 2.0,
                ban_duration: self.ban_duration,
                ..ScoringConfig::default()
            },
        };
        service.status = StatusConfig {
            offline_threshold: self.offline_threshold,
            liveness: ServiceConfig::liveness_for(self.announce_interval),
            staleness_threshold: self.staleness_threshold,
            discrepancy_percent: self.discrepancy_threshold_percent,
            quorum: self.provider_quorum,
            clock_skew_threshold: self.clock_skew_threshold,
        };
        service.feed_history = self.feed_history;
        service.announce_interval = self.announce_interval;
        service.tracker = self.tracker_config();
        service.sync_interval = self.sync_interval;
        service.message_ttl = self.message_ttl;
        service.push = PushConfig {
            mode: if self.lazy_push { PushMode::Lazy } else { PushMode::Flood },
            ..PushConfig::default()
        };
        Ok(service)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_the_documented_values() {
        let settings = NodeSettings { open_providers: true, ..NodeSettings::default() };
        assert_eq!(settings.validate(), Ok(()));
        assert_eq!(settings.api_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(settings.listen_addr.to_string(), "0.0.0.0:9470");
        let service = settings.service_config().unwrap();
        assert_eq!(service.network.min_peers, 3);
        assert_eq!(service.network.max_peers, 10);
        assert_eq!(service.tracker.capacity, 10_000);
        assert_eq!(service.sync_interval, Duration::from_secs(30));
        assert_eq!(service.network.reconnect_interval, service.sync_interval, "lost links retried per sync");
    }

    #[test]
    fn each_invalid_setting_is_named() {
        let cases: Vec<(NodeSettings, &str)> = vec![
            (NodeSettings { min_peers: 11, ..NodeSettings::default() }, "MESH_MIN_PEER_CONNECTIONS"),
            (NodeSettings { message_ttl: 0, ..NodeSettings::default() }, "MESH_MESSAGE_TTL"),
            (NodeSettings { message_ttl: 40, ..NodeSettings::default() }, "MESH_MESSAGE_TTL"),
            (
                NodeSettings { sync_interval: Duration::from_secs(u64::MAX), ..NodeSettings::default() },
                "MESH_SYNC_INTERVAL_SECS",
            ),
            (
                NodeSettings { ban_duration: MAX_DURATION_SETTING * 2, ..NodeSettings::default() },
                "MESH_BAN_DURATION_SECS",
            ),
            (
                NodeSettings { coordination_window: Duration::from_secs(60), ..NodeSettings::default() },
                "MESH_COORDINATION_WINDOW_SECS",
            ),
            (
                NodeSettings { price_source: PriceSourceKind::Birdeye, ..NodeSettings::default() },
                "BIRDEYE_API_KEY",
            ),
            (
                NodeSettings { api_addr: "0.0.0.0:8080".parse().unwrap(), ..NodeSettings::default() },
                "MESH_ADMIN_TOKEN",
            ),
            (
                NodeSettings { trusted_providers: vec!["nope".into()], ..NodeSettings::default() },
                "MESH_TRUSTED_PROVIDERS",
            ),
            (
                NodeSettings {
                    bootstrap_peers: vec!["no-port".into()],
                    open_providers: true,
                    ..NodeSettings::default()
                },
                "MESH_BOOTSTRAP_PEERS",
            ),
            (
                NodeSettings { discrepancy_threshold_percent: -1.0, ..NodeSettings::default() },
                "MESH_PRICE_DISCREPANCY_THRESHOLD_PERCENT",
            ),
            (
                NodeSettings { storage_flush_interval: Duration::ZERO, ..NodeSettings::default() },
                "MESH_STORAGE_FLUSH_INTERVAL_MS",
            ),
            (
                NodeSettings { provider_quorum: 0, open_providers: true, ..NodeSettings::default() },
                "MESH_PROVIDER_QUORUM",
            ),
            (
                NodeSettings {
                    provider_quorum: 2,
                    trusted_providers: vec![mesh_types::NodeIdentity::generate().node_id().to_string()],
                    ..NodeSettings::default()
                },
                "MESH_PROVIDER_QUORUM",
            ),
            (
                NodeSettings { feed_history: 0, open_providers: true, ..NodeSettings::default() },
                "MESH_FEED_HISTORY",
            ),
        ];
        for (settings, setting) in cases {
            let err = settings.validate().unwrap_err();
            assert_eq!(err.setting, setting, "{err}");
            assert!(err.to_string().starts_with(&format!("invalid setting {setting}: ")), "{err}");
        }
    }

    #[test]
    fn mainnet_without_a_trust_list_refuses_to_start_unless_told_to_be_open() {
        let err = NodeSettings::default().validate().unwrap_err();
        assert_eq!(err.setting, "MESH_TRUSTED_PROVIDERS");
        assert!(err.to_string().contains("MESH_OPEN_PROVIDERS=true"), "{err}");
        let trusted = NodeSettings {
            trusted_providers: vec![mesh_types::NodeIdentity::generate().node_id().to_string()],
            ..NodeSettings::default()
        };
        assert_eq!(trusted.validate(), Ok(()));
        assert_eq!(NodeSettings { open_providers: true, ..NodeSettings::default() }.validate(), Ok(()));
        for network in [NetworkId::devnet(), NetworkId::testnet()] {
            assert_eq!(NodeSettings { network, ..NodeSettings::default() }.validate(), Ok(()));
        }
        let private = NodeSettings { network: NetworkId::new("acme").unwrap(), ..NodeSettings::default() };
        assert_eq!(private.validate().unwrap_err().setting, "MESH_TRUSTED_PROVIDERS");
    }

    #[test]
    fn the_seen_cache_must_outlive_the_oldest_update_accepted() {
        let short = NodeSettings {
            seen_expiration: Duration::from_secs(60),
            open_providers: true,
            ..NodeSettings::default()
        };
        assert_eq!(short.validate().unwrap_err().setting, "MESH_SEEN_MESSAGES_EXPIRATION_SECS");
    }

    #[test]
    fn price_sources_parse() {
        assert_eq!("Simulated".parse::<PriceSourceKind>(), Ok(PriceSourceKind::Simulated));
        assert_eq!("birdeye".parse::<PriceSourceKind>(), Ok(PriceSourceKind::Birdeye));
        assert!("coingecko".parse::<PriceSourceKind>().is_err());
    }
}
