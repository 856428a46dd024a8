//! [`ApiState`], what every handler shares: the node (which also holds its provider role),
//! how to build a price source from an API key, the metrics handle, the readiness flag and the [`ApiConfig`].

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use mesh_provider::{ApiKey, BirdeyeConfig, BirdeyeSource, PriceSource, SourceError};
use mesh_service::MeshPriceService;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::watch;

/// Builds the price source for a key received by `POST /api/mesh/provider/enable`.
///
/// The binary passes [`birdeye_factory`]; tests pass a stand-in. It may fail (a base URL that
/// does not parse), which the endpoint reports as a 500.
pub type SourceFactory = Arc<dyn Fn(ApiKey) -> Result<Arc<dyn PriceSource>, SourceError> + Send + Sync>;

/// A [`SourceFactory`] that builds a [`BirdeyeSource`] with `config` for each key.
pub fn birdeye_factory(config: BirdeyeConfig) -> SourceFactory {
    Arc::new(move |key| Ok(Arc::new(BirdeyeSource::new(key, config.clone())?) as Arc<dyn PriceSource>))
}

/// Settings of the HTTP API.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiConfig {
    /// When set, `POST /api/mesh/provider/enable` and `…/disable` require
    /// `Authorization: Bearer <token>`. The binary sets it whenever the API binds a
    /// non-loopback address. An empty token matches nothing.
    pub admin_token: Option<String>,
    /// The largest request body accepted, in bytes (default 16 KiB); larger ones get 413.
    pub max_body_bytes: usize,
    /// Per WebSocket client, the most distinct pending items (assets plus warnings) waiting to
    /// be written (default 1,024). A client that would exceed it is disconnected as slow, so it
    /// must be at least the number of assets the node carries.
    pub ws_queue: usize,
    /// A WebSocket client whose oldest unwritten item has waited longer than this is
    /// disconnected as slow (default 10 s).
    pub ws_max_lag: Duration,
    /// How often each WebSocket client is pinged (default 20 s); a client that sends nothing,
    /// not even a pong, for two intervals is disconnected.
    pub ws_ping_interval: Duration,
    /// The most WebSocket clients served at once (default 10,000); more get 503.
    pub ws_max_clients: usize,
    /// The most HTTP connections open at once, WebSocket clients included (default 11,000);
    /// more are answered 503 and closed.
    pub max_connections: usize,
    /// How long a client may take to send a request head (default 10 s); a slower one is
    /// answered 408 and closed, so idle half-requests cannot pile up.
    pub header_timeout: Duration,
    /// The `Host` names (without port) requests must carry, so a web page cannot reach a
    /// loopback node through DNS rebinding (default: `localhost`, `127.0.0.1`, `[::1]`);
    /// `None` accepts any, for an API behind a proxy that checks it.
    pub allowed_hosts: Option<Vec<String>>,
    /// Web origins whose pages may call the API and open the feed (`https://dash.example`);
    /// pages served by the node itself and requests without an `Origin` (curl, programs)
    /// are always allowed. Default: none.
    pub allowed_origins: Vec<String>,
}

impl ApiConfig {
    /// Default body limit: 16 KiB.
    pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024;
    /// Default per-client queue: 1,024 pending items.
    pub const DEFAULT_WS_QUEUE: usize = 1024;
    /// Default lag limit: 10 s.
    pub const DEFAULT_WS_MAX_LAG: Duration = Duration::from_secs(10);
    /// Default ping interval: 20 s.
    pub const DEFAULT_WS_PING_INTERVAL: Duration = Duration::from_secs(20);
    /// Default client limit: 10,000.
    pub const DEFAULT_WS_MAX_CLIENTS: usize = 10_000;
    /// Default connection limit: the WebSocket clients plus 1,000 for REST.
    pub const DEFAULT_MAX_CONNECTIONS: usize = Self::DEFAULT_WS_MAX_CLIENTS + 1000;
    /// Default request-head deadline: 10 s.
    pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
    /// The names a node on loopback answers to by default.
    pub const LOOPBACK_HOSTS: [&'static str; 3] = ["localhost", "127.0.0.1", "[::1]"];
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            admin_token: None,
            max_body_bytes: Self::DEFAULT_MAX_BODY_BYTES,
            ws_queue: Self::DEFAULT_WS_QUEUE,
            ws_max_lag: Self::DEFAULT_WS_MAX_LAG,
            ws_ping_interval: Self::DEFAULT_WS_PING_INTERVAL,
            ws_max_clients: Self::DEFAULT_WS_MAX_CLIENTS,
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
            header_timeout: Self::DEFAULT_HEADER_TIMEOUT,
            allowed_hosts: Some(Self::LOOPBACK_HOSTS.iter().map(|host| (*host).to_owned()).collect()),
            allowed_origins: Vec::new(),
        }
    }
}

impl fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiConfig")
            .field("admin_token", &self.admin_token.as_ref().map(|_| "***"))
            .field("max_body_bytes", &self.max_body_bytes)
            .field("ws_queue", &self.ws_queue)
            .field("ws_max_lag", &self.ws_max_lag)
            .field("ws_ping_interval", &self.ws_ping_interval)
            .field("ws_max_clients", &self.ws_max_clients)
            .field("max_connections", &self.max_connections)
            .field("header_timeout", &self.header_timeout)
            .field("allowed_hosts", &self.allowed_hosts)
            .field("allowed_origins", &self.allowed_origins)
            .finish()
    }
}

/// Counts of the WebSocket feed since the state was built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FeedStats {
    /// Clients connected now.
    pub clients: usize,
    /// Clients disconnected because they fell too far behind.
    pub slow_disconnects: u64,
    /// Times a client missed service events and was sent the current state again.
    pub resyncs: u64,
}

/// Everything the handlers share. Cheap to clone: clones share one state.
#[derive(Clone)]
pub struct ApiState {
    inner: Arc<Inner>,
}

struct Inner {
    service: MeshPriceService,
    source_factory: Option<SourceFactory>,
    metrics: Option<PrometheusHandle>,
    ready: Arc<AtomicBool>,
    config: ApiConfig,
    clients: AtomicUsize,
    slow_disconnects: AtomicU64,
    resyncs: AtomicU64,
    /// Turns `true` when the server shuts down, so WebSocket clients close.
    closing: watch::Sender<bool>,
}

impl fmt::Debug for ApiState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        f.debug_struct("ApiState")
            .field("node_id", &inner.service.node_id())
            .field("source_factory", &inner.source_factory.is_some())
            .field("metrics", &inner.metrics.is_some())
            .field("ready", &self.is_ready())
            .field("config", &inner.config)
            .finish_non_exhaustive()
    }
}

impl ApiState {
    /// A builder for the API of `service`; everything else is optional.
    pub fn builder(service: MeshPriceService) -> ApiStateBuilder {
        ApiStateBuilder {
            service,
            source_factory: None,
            metrics: None,
            ready: None,
            config: ApiConfig::default(),
        }
    }

    /// Everything at once; [`ApiState::builder`] names the parts instead.
    pub fn new(
        service: MeshPriceService,
        source_factory: SourceFactory,
        metrics: Option<PrometheusHandle>,
        ready: Arc<AtomicBool>,
        config: ApiConfig,
    ) -> Self {
        let mut builder =
            Self::builder(service).source_factory(source_factory).ready_flag(ready).config(config);
        builder.metrics = metrics;
        builder.build()
    }

    /// The node.
    pub fn service(&self) -> &MeshPriceService {
        &self.inner.service
    }

    /// The settings.
    pub fn config(&self) -> &ApiConfig {
        &self.inner.config
    }

    /// The Prometheus handle `/metrics` renders, if any.
    pub fn metrics_handle(&self) -> Option<&PrometheusHandle> {
        self.inner.metrics.as_ref()
    }

    /// The readiness flag: `/ready` answers 503 until it is `true`.
    pub fn ready_flag(&self) -> Arc<AtomicBool> {
        self.inner.ready.clone()
    }

    /// Sets the readiness flag.
    pub fn set_ready(&self, ready: bool) {
        self.inner.ready.store(ready, Ordering::Release);
    }

    /// Whether `/ready` answers 200.
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::Acquire)
    }

    /// The WebSocket feed's counts.
    pub fn feed_stats(&self) -> FeedStats {
        FeedStats {
            clients: self.inner.clients.load(Ordering::Relaxed),
            slow_disconnects: self.inner.slow_disconnects.load(Ordering::Relaxed),
            resyncs: self.inner.resyncs.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn source_factory(&self) -> Option<&SourceFactory> {
        self.inner.source_factory.as_ref()
    }

    /// Asks every WebSocket client to close (server shutdown).
    pub(crate) fn close_feeds(&self) {
        self.inner.closing.send_replace(true);
    }

    /// Waits until every WebSocket client has ended, for at most `limit`.
    pub(crate) async fn feeds_closed(&self, limit: Duration) {
        // A limit past the clock's range is no limit.
        let deadline = tokio::time::Instant::now().checked_add(limit);
        while self.inner.clients.load(Ordering::Acquire) > 0
            && deadline.is_none_or(|deadline| tokio::time::Instant::now() < deadline)
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub(crate) fn closing(&self) -> watch::Receiver<bool> {
        self.inner.closing.subscribe()
    }

    /// A slot for one more WebSocket client, unless `ws_max_clients` are connected.
    pub(crate) fn feed_slot(&self) -> Option<FeedSlot> {
        let limit = self.inner.config.ws_max_clients;
        self.inner
            .clients
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < limit).then_some(n.saturating_add(1)))
            .ok()?;
        metrics::gauge!("mesh_api_ws_clients").increment(1.0);
        Some(FeedSlot { state: self.clone() })
    }

    pub(crate) fn count_slow_disconnect(&self, reason: &'static str) {
        self.inner.slow_disconnects.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("mesh_api_ws_slow_disconnects_total", "reason" => reason).increment(1);
    }

    pub(crate) fn count_resync(&self) {
        self.inner.resyncs.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("mesh_api_ws_resyncs_total").increment(1);
    }
}

/// One connected WebSocket client, counted in `mesh_api_ws_clients` until dropped.
pub(crate) struct FeedSlot {
    state: ApiState,
}

impl Drop for FeedSlot {
    fn drop(&mut self) {
        self.state.inner.clients.fetch_sub(1, Ordering::AcqRel);
        metrics::gauge!("mesh_api_ws_clients").decrement(1.0);
    }
}

/// Builds an [`ApiState`].
pub struct ApiStateBuilder {
    service: MeshPriceService,
    source_factory: Option<SourceFactory>,
    metrics: Option<PrometheusHandle>,
    ready: Option<Arc<AtomicBool>>,
    config: ApiConfig,
}

impl fmt::Debug for ApiStateBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiStateBuilder").field("node_id", &self.service.node_id()).finish_non_exhaustive()
    }
}

impl ApiStateBuilder {
    /// How to build a price source from an API key (see [`birdeye_factory`]).
    #[must_use]
    pub fn source_factory(mut self, factory: SourceFactory) -> Self {
        self.source_factory = Some(factory);
        self
    }

    /// The handle `/metrics` renders; without one `/metrics` answers 404.
    #[must_use]
    pub fn metrics(mut self, handle: PrometheusHandle) -> Self {
        self.metrics = Some(handle);
        self
    }

    /// A readiness flag shared with the caller (default: a new flag, initially not ready).
    #[must_use]
    pub fn ready_flag(mut self, ready: Arc<AtomicBool>) -> Self {
        self.ready = Some(ready);
        self
    }

    /// The settings (default: [`ApiConfig::default`]).
    #[must_use]
    pub fn config(mut self, config: ApiConfig) -> Self {
        self.config = config;
        self
    }

    /// The state.
    pub fn build(self) -> ApiState {
        crate::describe_metrics();
        let (closing, _) = watch::channel(false);
        ApiState {
            inner: Arc::new(Inner {
                service: self.service,
                source_factory: self.source_factory,
                metrics: self.metrics,
                ready: self.ready.unwrap_or_default(),
                config: self.config,
                clients: AtomicUsize::new(0),
                slow_disconnects: AtomicU64::new(0),
                resyncs: AtomicU64::new(0),
                closing,
            }),
        }
    }
}
