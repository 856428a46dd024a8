//! [`ProviderNode`]: the provider loop. Every fetch interval (±10 % jitter, so providers that
//! started together drift apart) while provider mode is enabled, it asks the
//! [`FetchCoordinator`] for the window, fetches the configured assets from the current
//! [`PriceSource`], signs a [`PriceUpdate`] with `ttl = MESH_MESSAGE_TTL` and hands it to the
//! bounded update channel, from which the node service gossips it.
//!
//! Lifecycle: [`ProviderNode::new`] builds a disabled provider; [`ProviderNode::start`] spawns
//! the loop and returns a [`ProviderTask`]; [`ProviderNode::enable`] validates a source (a bad
//! key leaves everything unchanged) and wakes the loop for an immediate fetch;
//! [`ProviderNode::disable`] stops fetching (the loop keeps running, idle). The loop ends when
//! the [`ProviderTask`] is shut down or dropped, or when the update channel's receiver is gone.
//!
//! Backpressure: updates are offered with `try_send`. When the channel is full the update is
//! dropped with a warning — the next fetch carries newer prices anyway — so a slow consumer
//! never stalls the schedule or grows memory.
//!
//! Metrics (label `source` = the source's name): `mesh_provider_fetch_attempts_total`,
//! `mesh_provider_fetch_success_total`, `mesh_provider_fetch_failures_total` (plus `reason`),
//! `mesh_provider_api_latency_seconds` (histogram of whole fetches, retries included),
//! `mesh_provider_updates_published_total` (label `result`: `queued`, `dropped`, `closed`);
//! the node counts `mesh_provider_broadcast_*` when it sends updates on to its peers.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use mesh_coordination::FetchCoordinator;
use mesh_types::chrono::Utc;
use mesh_types::{
    Asset, NodeId, NodeIdentity, PriceUpdate, ProviderConfig, ProviderConfigError, ProviderState,
    ProviderStatus, Supervisor, Timestamp,
};
use rand::RngExt;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::{PriceSource, SourceError};

/// The fetch interval varies by up to this fraction either way.
const JITTER: f64 = 0.1;
/// The furthest off a fetch is scheduled: about 30 years, as tokio caps its own timers (in
/// effect never), so no configured interval overflows the clock.
const MAX_WAIT: Duration = Duration::from_secs(30 * 365 * 86_400);

/// Counters of a provider since it was built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProviderCounters {
    /// Fetches started (the coordinator granted the window).
    pub attempts: u64,
    /// Fetches that returned (possibly no prices).
    pub successes: u64,
    /// Fetches that failed, rate limits included.
    pub failures: u64,
    /// Failed fetches that were rate limits (429).
    pub rate_limited: u64,
    /// Ticks skipped because another provider held the coordination window.
    pub coordination_skips: u64,
    /// Signed updates handed to the update channel.
    pub published: u64,
}

/// The provider: configuration, current source, and counters. Cheap to clone; clones share
/// everything.
#[derive(Clone)]
pub struct ProviderNode {
    inner: Arc<Inner>,
}

struct Inner {
    config: ProviderConfig,
    identity: Arc<NodeIdentity>,
    coordinator: Arc<dyn FetchCoordinator>,
    assets: Vec<Asset>,
    updates: mpsc::Sender<PriceUpdate>,
    /// `Some` while provider mode is enabled. A std lock: held only to clone or swap the `Arc`.
    source: RwLock<Option<Arc<dyn PriceSource>>>,
    /// Serializes `enable` and `disable` so they take effect in call order, even though
    /// `enable` awaits the key check. A tokio mutex because it is held across that await.
    control: tokio::sync::Mutex<()>,
    /// Wakes the loop for a fetch right away (after `enable`).
    wake: Notify,
    /// Whether a loop is running, so a second `start` cannot double the fetch rate.
    running: AtomicBool,
    /// When the last successful fetch ended. A std mutex: held for an assignment or a copy.
    last_fetch_time: Mutex<Option<Timestamp>>,
    fetch_count: AtomicU64,
    attempts: AtomicU64,
    successes: AtomicU64,
    failures: AtomicU64,
    rate_limited: AtomicU64,
    coordination_skips: AtomicU64,
    published: AtomicU64,
}

impl fmt::Debug for ProviderNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderNode")
            .field("node_id", &self.node_id())
            .field("enabled", &self.is_enabled())
            .field("source", &self.inner.current_source().map(|source| source.name()))
            .field("assets", &self.inner.assets)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// The running provider loop. [`ProviderTask::shutdown`] stops it and waits for it; dropping
/// the handle also stops it (at the loop's next await point, without waiting). A fetch in
/// flight is abandoned either way.
#[derive(Debug)]
pub struct ProviderTask {
    /// Dropping or sending on it stops the loop.
    stop: Option<oneshot::Sender<()>>,
    join: Option<JoinHandle<()>>,
}

impl ProviderTask {
    /// Stops the loop and waits until it has ended.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            // The loop may have ended already (its channel closed); nothing to stop then.
            let _ = stop.send(());
        }
        if let Some(join) = self.join.take()
            && let Err(error) = join.await
            && error.is_panic()
        {
            tracing::error!(%error, "the provider loop panicked");
        }
    }

    /// Whether the loop has ended.
    pub fn is_finished(&self) -> bool {
        self.join.as_ref().is_none_or(JoinHandle::is_finished)
    }
}

impl ProviderNode {
    /// A disabled provider that will fetch `assets` and publish into `updates`.
    /// `config.enabled` is not acted on here: the caller enables with a source once it has
    /// one.
    ///
    /// # Errors
    /// The first inconsistency in `config` ([`ProviderConfig::validate`]).
    pub fn new(
        config: ProviderConfig,
        identity: Arc<NodeIdentity>,
        coordinator: Arc<dyn FetchCoordinator>,
        assets: Vec<Asset>,
        updates: mpsc::Sender<PriceUpdate>,
    ) -> Result<Self, ProviderConfigError> {
        config.validate()?;
        describe_metrics();
        let mut unique = Vec::with_capacity(assets.len());
        for asset in assets {
            if !unique.contains(&asset) {
                unique.push(asset);
            }
        }
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                identity,
                coordinator,
                assets: unique,
                updates,
                source: RwLock::new(None),
                control: tokio::sync::Mutex::new(()),
                wake: Notify::new(),
                running: AtomicBool::new(false),
                last_fetch_time: Mutex::new(None),
                fetch_count: AtomicU64::new(0),
                attempts: AtomicU64::new(0),
                successes: AtomicU64::new(0),
                failures: AtomicU64::new(0),
                rate_limited: AtomicU64::new(0),
                coordination_skips: AtomicU64::new(0),
                published: AtomicU64::new(0),
            }),
        })
    }

    /// Spawns the provider loop on the current tokio runtime. The first tick comes after a
    /// random part of the coordination window (so providers started together do not ask at the
    /// same instant); it fetches only if provider mode is enabled by then.
    ///
    /// Only one loop runs per provider: a loop started while another is running logs a warning
    /// and ends at once.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn start(&self) -> ProviderTask {
        self.start_supervised(&Supervisor::new())
    }

    /// [`ProviderNode::start`] with the loop owned by `supervisor` (as the task `provider`): a
    /// panic in it shows in the node's health.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn start_supervised(&self, supervisor: &Supervisor) -> ProviderTask {
        let (stop, stopped) = oneshot::channel();
        let join = supervisor.spawn_worker("provider", run(Arc::clone(&self.inner), stopped));
        ProviderTask { stop: Some(stop), join: Some(join) }
    }

    /// Turns provider mode on with `source`, after [`PriceSource::validate`] succeeded, and
    /// wakes the loop for a fetch within a random part of the coordination window. Enabling
    /// again replaces the source.
    ///
    /// # Errors
    /// The validation error ([`SourceError::InvalidApiKey`] for a refused key); the provider
    /// is then left exactly as it was (disabled if it was disabled).
    pub async fn enable(&self, source: Arc<dyn PriceSource>) -> Result<(), SourceError> {
        let _control = self.inner.control.lock().await;
        if let Err(error) = source.validate().await {
            tracing::warn!(source = source.name(), %error, "provider mode not enabled: source validation failed");
            return Err(error);
        }
        tracing::info!(source = source.name(), assets = ?self.inner.assets, "provider mode enabled");
        register_source_metrics(source.name());
        *self.inner.source.write().unwrap_or_else(PoisonError::into_inner) = Some(source);
        // Wakes a waiting loop; a loop that is not waiting yet fetches at its first tick anyway.
        self.inner.wake.notify_waiters();
        Ok(())
    }

    /// Turns provider mode off: no fetch starts after this returns, and an update fetched
    /// before is not published. The node keeps relaying other providers' updates. Waits for an
    /// `enable` in progress, so the two take effect in call order.
    pub async fn disable(&self) {
        let _control = self.inner.control.lock().await;
        let previous = self.inner.source.write().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(source) = previous {
            tracing::info!(source = source.name(), "provider mode disabled");
        }
    }

    /// Whether provider mode is on.
    pub fn is_enabled(&self) -> bool {
        self.inner.current_source().is_some()
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.inner.identity.node_id()
    }

    /// The assets fetched each round.
    pub fn assets(&self) -> &[Asset] {
        &self.inner.assets
    }

    /// The configuration in use.
    pub fn config(&self) -> &ProviderConfig {
        &self.inner.config
    }

    /// The body of the enable/disable answers.
    pub fn state(&self) -> ProviderState {
        ProviderState { enabled: self.is_enabled(), node_id: self.node_id() }
    }

    /// The body of `GET /api/mesh/provider/status`. `fetch_count` and `last_fetch_time` count
    /// successful fetches.
    pub fn status(&self) -> ProviderStatus {
        ProviderStatus {
            enabled: self.is_enabled(),
            node_id: self.node_id(),
            last_fetch_time: *self.inner.last_fetch_time.lock().unwrap_or_else(PoisonError::into_inner),
            fetch_count: self.inner.fetch_count.load(Ordering::Relaxed),
        }
    }

    /// The counters since the provider was built.
    pub fn counters(&self) -> ProviderCounters {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let inner = &self.inner;
        ProviderCounters {
            attempts: load(&inner.attempts),
            successes: load(&inner.successes),
            failures: load(&inner.failures),
            rate_limited: load(&inner.rate_limited),
            coordination_skips: load(&inner.coordination_skips),
            published: load(&inner.published),
        }
    }
}

/// Clears the running flag when the loop ends, however it ends.
struct Running<'a>(&'a AtomicBool);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// The interval scaled by a random factor in `[1 - JITTER, 1 + JITTER]`.
fn jittered(interval: Duration) -> Duration {
    // `mul_f64`, without its panic when an interval near `u64::MAX` seconds grows past the range.
    let factor = rand::rng().random_range(1.0 - JITTER..=1.0 + JITTER);
    Duration::try_from_secs_f64(factor * interval.as_secs_f64()).unwrap_or(Duration::MAX)
}

/// The `reason` label of every fetch failure, as [`failure_reason`] names them.
const FAILURE_REASONS: [&str; 6] =
    ["invalid_api_key", "rate_limited", "unavailable", "malformed", "unknown_asset", "invalid_config"];

/// The `reason` label of a fetch failure.
const fn failure_reason(error: &SourceError) -> &'static str {
    match error {
        SourceError::InvalidApiKey => FAILURE_REASONS[0],
        SourceError::RateLimited { .. } => FAILURE_REASONS[1],
        SourceError::Unavailable { .. } => FAILURE_REASONS[2],
        SourceError::Malformed { .. } => FAILURE_REASONS[3],
        SourceError::UnknownAsset { .. } => FAILURE_REASONS[4],
        SourceError::InvalidConfig { .. } => FAILURE_REASONS[5],
    }
}

/// Registers `source`'s fetch counters at zero: a failure rate over `rate()` then sees the
/// very first failure, which a series born at 1 would hide.
fn register_source_metrics(source: &'static str) {
    metrics::counter!("mesh_provider_fetch_attempts_total", "source" => source).increment(0);
    metrics::counter!("mesh_provider_fetch_success_total", "source" => source).increment(0);
    for reason in FAILURE_REASONS {
        metrics::counter!("mesh_provider_fetch_failures_total", "source" => source, "reason" => reason)
            .increment(0);
    }
}

/// HELP lines for the provider's metrics.
fn describe_metrics() {
    metrics::describe_counter!(
        "mesh_provider_coordination_failures_total",
        "Fetch rounds skipped because the fetch coordinator (Redis) could not be asked"
    );
    metrics::counter!("mesh_provider_coordination_failures_total").increment(0);
    metrics::describe_counter!("mesh_provider_fetch_attempts_total", "Price fetches attempted, by source");
    metrics::describe_counter!(
        "mesh_provider_fetch_success_total",
        "Price fetches that succeeded, by source"
    );
    metrics::describe_counter!(
        "mesh_provider_fetch_failures_total",
        "Price fetches that failed, by source and reason"
    );
    metrics::describe_histogram!(
        "mesh_provider_api_latency_seconds",
        metrics::Unit::Seconds,
        "Duration of a whole fetch from the price API, retries included"
    );
    metrics::describe_counter!(
        "mesh_provider_updates_published_total",
        "Signed updates handed to the node, by result (queued, dropped, closed)"
    );
}

/// A random delay in `[0, window)`.
fn start_delay(window: Duration) -> Duration {
    window.mul_f64(rand::rng().random_range(0.0..1.0))
}

async fn run(inner: Arc<Inner>, mut stop: oneshot::Receiver<()>) {
    if inner.running.swap(true, Ordering::AcqRel) {
        tracing::warn!("a provider loop is already running; not starting another");
        return;
    }
    let _running = Running(&inner.running);
    if inner.assets.is_empty() {
        tracing::warn!("provider loop started with no assets to fetch");
    }
    let interval = inner.config.fetch_interval();
    let window = inner.config.coordination_window();
    // Providers started together (or enabled together) would ask the coordinator at the same
    // instant, before either hears of the other's fetch; a random start within the
    // coordination window spreads them apart.
    let mut next = Instant::now().checked_add(start_delay(window).min(MAX_WAIT)).unwrap_or_else(Instant::now);
    // Until when a rate limit's `Retry-After` keeps this provider from fetching.
    let mut backoff_until: Option<Instant> = None;
    loop {
        let woken = tokio::select! {
            biased;
            _ = &mut stop => break,
            () = tokio::time::sleep_until(next) => false,
            () = inner.wake.notified() => true,
        };
        if woken {
            tokio::select! {
                biased;
                _ = &mut stop => break,
                () = tokio::time::sleep(start_delay(window)) => {}
            }
        }
        next = Instant::now().checked_add(jittered(interval).min(MAX_WAIT)).unwrap_or_else(Instant::now);
        tokio::select! {
            biased;
            _ = &mut stop => break,
            keep_going = inner.tick(&mut backoff_until) => if !keep_going { break },
        }
    }
    tracing::debug!("provider loop stopped");
}

impl Inner {
    fn current_source(&self) -> Option<Arc<dyn PriceSource>> {
        self.source.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// One round; `false` when the loop should end (nobody receives updates any more).
    async fn tick(&self, backoff_until: &mut Option<Instant>) -> bool {
        let Some(source) = self.current_source() else { return true };
        if let Some(until) = *backoff_until {
            if Instant::now() < until {
                tracing::debug!("rate limited: skipping this round, other providers cover it");
                return true;
            }
            *backoff_until = None;
        }
        let node = self.identity.node_id();
        match self.coordinator.try_acquire(node, self.config.coordination_window()).await {
            Ok(true) => {}
            Ok(false) => {
                self.coordination_skips.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("another provider fetched within the coordination window; skipping");
                return true;
            }
            Err(error) => {
                metrics::counter!("mesh_provider_coordination_failures_total").increment(1);
                tracing::warn!(%error, "fetch coordinator failed; skipping this round");
                return true;
            }
        }

        let name = source.name();
        self.attempts.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("mesh_provider_fetch_attempts_total", "source" => name).increment(1);
        let started = Instant::now();
        let result = source.fetch(&self.assets).await;
        metrics::histogram!("mesh_provider_api_latency_seconds", "source" => name)
            .record(started.elapsed().as_secs_f64());

        let prices = match result {
            Ok(prices) => prices,
            Err(error) => {
                self.record_failure(&source, &error, backoff_until);
                return true;
            }
        };
        self.successes.fetch_add(1, Ordering::Relaxed);
        self.fetch_count.fetch_add(1, Ordering::Relaxed);
        *self.last_fetch_time.lock().unwrap_or_else(PoisonError::into_inner) = Some(Utc::now());
        metrics::counter!("mesh_provider_fetch_success_total", "source" => name).increment(1);

        if prices.is_empty() {
            tracing::warn!(source = name, assets = ?self.assets, "fetch returned no prices; nothing to publish");
            return true;
        }
        if self.current_source().is_none() {
            tracing::debug!("provider mode was disabled during the fetch; not publishing");
            return true;
        }
        let update = PriceUpdate::new_signed(
            &self.identity,
            &self.config.network,
            prices,
            self.config.message_ttl,
            mesh_types::clock::now(),
        );
        let (id, count) = (update.message_id, update.prices.len());
        match self.updates.try_send(update) {
            Ok(()) => {
                self.published.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("mesh_provider_updates_published_total", "result" => "queued").increment(1);
                tracing::debug!(message_id = %id, prices = count, "published a signed price update");
                true
            }
            Err(TrySendError::Full(_)) => {
                metrics::counter!("mesh_provider_updates_published_total", "result" => "dropped")
                    .increment(1);
                tracing::warn!(message_id = %id, "update channel full; dropping this update, the next fetch replaces it");
                true
            }
            Err(TrySendError::Closed(_)) => {
                metrics::counter!("mesh_provider_updates_published_total", "result" => "closed").increment(1);
                tracing::info!("update channel closed; the provider loop stops");
                false
            }
        }
    }

    fn record_failure(
        &self,
        source: &Arc<dyn PriceSource>,
        error: &SourceError,
        backoff_until: &mut Option<Instant>,
    ) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let reason = failure_reason(error);
        metrics::counter!("mesh_provider_fetch_failures_total", "source" => source.name(), "reason" => reason)
            .increment(1);
        match error {
            SourceError::RateLimited { retry_after } => {
                self.rate_limited.fetch_add(1, Ordering::Relaxed);
                // The source's word is capped: a huge `Retry-After` would overflow the clock.
                *backoff_until =
                    retry_after.and_then(|wait| Instant::now().checked_add(wait.min(crate::MAX_RETRY_AFTER)));
                tracing::warn!(source = source.name(), %error, "price fetch rate limited; backing off");
            }
            SourceError::InvalidApiKey => {
                // The key stopped working (revoked or expired): every further fetch would fail
                // the same way, so provider mode turns off, unless a new source replaced this one.
                let mut current = self.source.write().unwrap_or_else(PoisonError::into_inner);
                if current.as_ref().is_some_and(|held| Arc::ptr_eq(held, source)) {
                    *current = None;
                }
                tracing::error!(source = source.name(), %error, "price API refused the key; provider mode disabled");
            }
            _ => tracing::warn!(source = source.name(), %error, "price fetch failed"),
        }
    }
}

#[cfg(test)]
mod tests;
