//! [`MeshPriceService`]: one pricemesh node as a library. It composes the connection manager,
//! the gossip engine, the stores, the fetch coordinator and the status tracker, and publishes
//! [`ServiceEvent`]s (changed prices, status changes, warnings) for the API to serve.
//!
//! One task consumes the transport's events in order and drives the engine with them:
//!
//! - a `PriceUpdate` goes through [`GossipEngine::process_update`]; accepted ones are relayed,
//!   their changed prices published, their provider recorded in the status and reported to the
//!   coordinator; rejections that earn a ban ban the peer;
//! - anti-entropy: on connect and every sync interval each peer gets this node's `Digest`; a
//!   `Digest` turns into a `Request` for what is newer, a `Request` into the original signed
//!   updates, and those answers go through [`GossipEngine::process_synced`];
//! - `Announce`s (signed, deduplicated, relayed) count the network; `Alert`s (the same) become
//!   warnings.
//!
//! Other tasks announce this node, run the sync timer, and refresh the status and warnings.
//! Build one with [`MeshPriceService::builder`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use mesh_coordination::{FetchCoordinator, ObservedCoordinator};
use mesh_dedup::{LayeredTracker, MemoryTracker, MessageTracker, TrackerConfig};
use mesh_gossip::{Accepted, GossipConfig, GossipEngine, Notice, Outcome, PushConfig, PushTree, Received};
use mesh_peer_store::{MemoryPeerStore, PeerStore};
use mesh_price_cache::{LayeredPriceStore, MemoryPriceStore, PriceStore};
use mesh_provider::{ProviderNode, ProviderTask};
use mesh_transport::{
    ConnectionManager, EventReceiver, LinkConfig, ManagerConfig, StartError, TcpTransport, Transport,
    TransportEvent,
};
use mesh_types::{
    Alert, Announce, Asset, CachedPriceData, Gossiped, MeshMessage, MeshWarning, NetworkStatus,
    NetworkStatusSummary, NodeId, NodeIdentity, PeerAddress, PriceUpdate, ServedPrice, ServedPriceMap,
    Supervisor, Timestamp, WarningKind,
};
use mesh_types::{ProviderConfig, ProviderConfigError};
use thiserror::Error;
use tokio::sync::{broadcast, mpsc};

mod push;
mod role;

pub use role::EnableError;

use crate::gauges::PriceGauges;
use crate::greeting::{MAX_ANNOUNCEMENTS, MAX_UPDATES, Recent};
use crate::journal::{Journal, ReplayGap, Sequenced};
use crate::status::{NetworkStatusTracker, StatusConfig};

/// Most price updates taken off the queue at once to verify as one batch: enough to halve the
/// signature cost under load, few enough that the first waits little for the last.
const MAX_UPDATE_BATCH: usize = 64;

/// How often expired seen ids, bans and fetch records are swept.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// How long shutdown waits for the node's tasks to end after telling them to.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How the node behaves beyond the network layer's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceConfig {
    /// The network layer: listen address, bootstrap peers, peer limits, heartbeats.
    pub network: ManagerConfig,
    /// How updates are judged: validation limits, trusted providers, misbehaviour scoring.
    pub gossip: GossipConfig,
    /// How updates are relayed: lazy push along a tree (the default) or flooding.
    pub push: PushConfig,
    /// Status thresholds and warnings.
    pub status: StatusConfig,
    /// Seen-message cache (`MESH_SEEN_MESSAGES_CACHE_SIZE`, `…_EXPIRATION_SECS`), for the
    /// default in-memory tracker.
    pub tracker: TrackerConfig,
    /// Time between anti-entropy rounds (`MESH_SYNC_INTERVAL_SECS`, default 30 s).
    pub sync_interval: Duration,
    /// Time between this node's announcements (`MESH_ANNOUNCE_INTERVAL_SECS`, default 60 s).
    /// [`StatusConfig::liveness`] should be [`ServiceConfig::liveness_for`] it.
    pub announce_interval: Duration,
    /// TTL of announcements and alerts this node originates (`MESH_MESSAGE_TTL`, default 10).
    pub message_ttl: u8,
    /// Time between status and warning checks (default 1 s).
    pub status_interval: Duration,
    /// Room for events not yet taken by a subscriber (default 1,024); a subscriber that falls
    /// further behind misses events (and is told so by the broadcast channel).
    pub event_capacity: usize,
    /// How many changed items (prices, statuses, warnings) the numbered history keeps for
    /// subscribers that resume (`MESH_FEED_HISTORY`, default 16,384).
    pub feed_history: usize,
}

impl ServiceConfig {
    /// Default history of the feed: 16,384 items, a few hours of six assets every 30 s.
    pub const DEFAULT_FEED_HISTORY: usize = 16_384;

    /// How long a node stays counted after its last announcement, for announcements every
    /// `announce_interval`: three intervals, so one or two lost ones do not drop it.
    pub const fn liveness_for(announce_interval: Duration) -> Duration {
        announce_interval.saturating_mul(3)
    }

    /// The project's defaults (listed with each field) for `network`.
    pub fn new(network: ManagerConfig) -> Self {
        Self {
            network,
            gossip: GossipConfig::default(),
            push: PushConfig::default(),
            status: StatusConfig::default(),
            tracker: TrackerConfig::default(),
            sync_interval: Duration::from_secs(30),
            announce_interval: Duration::from_secs(60),
            message_ttl: 10,
            status_interval: Duration::from_secs(1),
            event_capacity: 1024,
            feed_history: Self::DEFAULT_FEED_HISTORY,
        }
    }
}

/// Why the service could not start.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// The network layer could not start.
    #[error("cannot start the network layer: {0}")]
    Network(#[from] StartError),
}

/// Something the node's users may want to know about.
#[derive(Debug, Clone, PartialEq)]
pub enum ServiceEvent {
    /// These served prices changed: each asset's quorum aggregate moved.
    Prices(Vec<ServedPrice>),
    /// The network status changed.
    Status(NetworkStatusSummary),
    /// A warning for users.
    Warning(MeshWarning),
}

/// A signed update this node accepted, with the prices it changed: what a bridge out of the
/// mesh (NATS, a log) passes on, so its readers can check the provider's signature themselves,
/// and what a measurement counts as delivered.
#[derive(Debug, Clone)]
pub struct AcceptedUpdate {
    /// The update as this node holds it.
    pub update: Arc<PriceUpdate>,
    /// Its prices that were newer than what the node held, and are held now: none when it
    /// arrived after a newer update of the same assets.
    pub changed: Vec<CachedPriceData>,
}

/// Accepted updates a slow reader of [`MeshPriceService::accepted_updates`] may fall behind
/// by before it misses some (it is told how many).
pub const ACCEPTED_UPDATES_BUFFER: usize = 1024;

/// Builds a [`MeshPriceService`]; every part defaults to the embedded in-memory choice.
pub struct ServiceBuilder {
    identity: Arc<NodeIdentity>,
    config: ServiceConfig,
    transport: Option<Arc<dyn Transport>>,
    peer_store: Option<Arc<dyn PeerStore>>,
    tracker: Option<Arc<dyn MessageTracker>>,
    prices: Option<Arc<dyn PriceStore>>,
    coordinator: Option<Arc<dyn FetchCoordinator>>,
    /// Durable stores to put behind memory at start (see [`ServiceBuilder::with_durable_prices`]).
    durable_prices: Option<Arc<dyn PriceStore>>,
    durable_tracker: Option<Arc<dyn MessageTracker>>,
    storage_flush_interval: Duration,
    supervisor: Option<Supervisor>,
}

impl std::fmt::Debug for ServiceBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceBuilder").field("node_id", &self.identity.node_id()).finish_non_exhaustive()
    }
}

impl ServiceBuilder {
    /// The transport (default: TCP).
    #[must_use]
    pub fn transport(mut self, transport: Arc<dyn Transport>) -> Self {
        self.transport = Some(transport);
        self
    }

    /// The peer store (default: in memory).
    #[must_use]
    pub fn peer_store(mut self, store: Arc<dyn PeerStore>) -> Self {
        self.peer_store = Some(store);
        self
    }

    /// The seen-message tracker (default: in memory, sized by the configuration).
    #[must_use]
    pub fn tracker(mut self, tracker: Arc<dyn MessageTracker>) -> Self {
        self.tracker = Some(tracker);
        self
    }

    /// A durable tracker (Redis, PostgreSQL) for the seen messages: at start the node puts
    /// memory in front of it ([`LayeredTracker`], sized by the configuration, written behind
    /// every [`ServiceBuilder::storage_flush_interval`]), warms memory from it, and flushes
    /// it at shutdown. Replaces [`ServiceBuilder::tracker`].
    #[must_use]
    pub fn with_durable_tracker(mut self, tracker: Arc<dyn MessageTracker>) -> Self {
        self.durable_tracker = Some(tracker);
        self
    }

    /// The price store (default: in memory).
    #[must_use]
    pub fn prices(mut self, prices: Arc<dyn PriceStore>) -> Self {
        self.prices = Some(prices);
        self
    }

    /// A durable price store (Redis, PostgreSQL): at start the node puts memory in front of
    /// it ([`LayeredPriceStore`], written behind every
    /// [`ServiceBuilder::storage_flush_interval`]), restores the prices it holds, and flushes
    /// it at shutdown. Replaces [`ServiceBuilder::prices`].
    #[must_use]
    pub fn with_durable_prices(mut self, prices: Arc<dyn PriceStore>) -> Self {
        self.durable_prices = Some(prices);
        self
    }

    /// How often the durable stores are written behind (`MESH_STORAGE_FLUSH_INTERVAL_MS`,
    /// default 100 ms).
    #[must_use]
    pub const fn storage_flush_interval(mut self, interval: Duration) -> Self {
        self.storage_flush_interval = interval;
        self
    }

    /// The supervisor that owns the node's tasks (default: a new one, see
    /// [`MeshPriceService::supervisor`]). Pass one to put other tasks of the process — the
    /// API server's, say — under the same health.
    #[must_use]
    pub fn supervisor(mut self, supervisor: Supervisor) -> Self {
        self.supervisor = Some(supervisor);
        self
    }

    /// The fetch coordinator (default: mesh-observed, which needs no shared infrastructure).
    #[must_use]
    pub fn coordinator(mut self, coordinator: Arc<dyn FetchCoordinator>) -> Self {
        self.coordinator = Some(coordinator);
        self
    }

    /// Starts the node: binds its address, starts the network layer and the service's tasks.
    ///
    /// # Errors
    /// When the network layer cannot start (bad configuration, address in use).
    pub async fn start(self) -> Result<MeshPriceService, ServiceError> {
        let mut config = self.config;
        config.gossip.trust = config.gossip.trust.including(self.identity.node_id());
        // One network for everything: signatures are checked for the one the node joined.
        config.gossip.validation.network = config.network.network.clone();
        let transport = self.transport.unwrap_or_else(|| {
            Arc::new(TcpTransport::new(LinkConfig::default(), &self.identity, &config.network.network))
        });
        let peer_store = self.peer_store.unwrap_or_else(|| Arc::new(MemoryPeerStore::new()));
        let supervisor = self.supervisor.unwrap_or_default();
        let flush_interval = self.storage_flush_interval;
        let tracker: Arc<dyn MessageTracker> = match self.durable_tracker {
            Some(durable) => {
                Arc::new(LayeredTracker::start(config.tracker, durable, flush_interval, &supervisor).await)
            }
            None => self.tracker.unwrap_or_else(|| Arc::new(MemoryTracker::new(config.tracker))),
        };
        let prices: Arc<dyn PriceStore> = match self.durable_prices {
            Some(durable) => Arc::new(LayeredPriceStore::start(durable, flush_interval, &supervisor).await),
            None => self.prices.unwrap_or_else(|| Arc::new(MemoryPriceStore::new())),
        };
        let coordinator = self.coordinator.unwrap_or_else(|| Arc::new(ObservedCoordinator::new()));
        describe_metrics();
        let (manager, transport_events) = ConnectionManager::start_supervised(
            config.network.clone(),
            self.identity.clone(),
            transport,
            peer_store.clone(),
            &supervisor,
        )
        .await?;
        let (events, _) = broadcast::channel(config.event_capacity.max(1));
        let mut status = NetworkStatusTracker::new(self.identity.node_id(), config.status);
        match prices.get_all().await {
            Ok(held) => status.restore(held.into_values()),
            Err(err) => {
                tracing::warn!(error = %err, "cannot read the prices held from before; serving what arrives")
            }
        }
        let start = u64::try_from(now().timestamp_micros()).unwrap_or(0);
        let inner = Arc::new(Inner {
            engine: GossipEngine::new(tracker.clone(), prices.clone(), config.gossip.clone()),
            status: Mutex::new(status),
            journal: Mutex::new(Journal::new(start, config.feed_history.max(1), events)),
            announcements: Mutex::new(Recent::new(MAX_ANNOUNCEMENTS)),
            provider_updates: Mutex::new(Recent::new(MAX_UPDATES)),
            accepted_updates: broadcast::channel(ACCEPTED_UPDATES_BUFFER).0,
            own_announce: Mutex::new(None),
            sync_soon: tokio::sync::Notify::new(),
            push: Mutex::new(PushTree::new(config.push)),
            push_due: tokio::sync::Notify::new(),
            identity: self.identity,
            manager,
            tracker,
            prices,
            coordinator,
            peer_store,
            is_provider: AtomicBool::new(false),
            provider: Mutex::new(None),
            propagation_latency: metrics::histogram!("mesh_message_propagation_latency_seconds"),
            supervisor,
            config,
        });
        inner.supervisor.spawn_service("event_loop", inner.clone().event_loop(transport_events));
        inner.supervisor.spawn_service("timers", inner.clone().timers());
        inner.supervisor.spawn_service("sweeps", inner.clone().sweeps());
        inner.supervisor.spawn_service("lazy_push", inner.clone().push_loop());
        Ok(MeshPriceService { inner })
    }
}

/// One running pricemesh node. Cloning gives another handle to the same node.
#[derive(Clone)]
pub struct MeshPriceService {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MeshPriceService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshPriceService").field("node_id", &self.node_id()).finish_non_exhaustive()
    }
}

struct Inner {
    identity: Arc<NodeIdentity>,
    config: ServiceConfig,
    manager: ConnectionManager,
    engine: GossipEngine,
    tracker: Arc<dyn MessageTracker>,
    prices: Arc<dyn PriceStore>,
    coordinator: Arc<dyn FetchCoordinator>,
    peer_store: Arc<dyn PeerStore>,
    // std Mutexes: held for map updates only, never across an await. When both are held,
    // `status` is taken first: a price change is numbered while the status that serves it is
    // locked, so a snapshot and its sequence number always agree.
    status: Mutex<NetworkStatusTracker>,
    journal: Mutex<Journal>,
    /// The latest announcements heard, passed on to each new peer.
    announcements: Mutex<Recent<Announce>>,
    /// The latest update of each provider heard from recently, passed on to each new peer.
    provider_updates: Mutex<Recent<Arc<PriceUpdate>>>,
    /// Every accepted update; sending never waits for a reader.
    accepted_updates: broadcast::Sender<AcceptedUpdate>,
    /// This node's latest announcement, re-sent to new peers while recent.
    own_announce: Mutex<Option<Announce>>,
    /// Woken when an update changed prices here but is not relayed (an anti-entropy answer):
    /// the timers then send the digest early, so what a healed partition brings crosses the
    /// mesh in round trips instead of one hop per sync interval.
    sync_soon: tokio::sync::Notify,
    /// Which peers get payloads and which only ids (see `service/push.rs`).
    push: Mutex<PushTree>,
    /// Woken when the push tree has something due sooner than the push task knows.
    push_due: tokio::sync::Notify,
    is_provider: AtomicBool,
    /// The provider loop and its task (stopped at shutdown); the role changes in `role.rs`.
    provider: Mutex<Option<(ProviderNode, ProviderTask)>>,
    /// `mesh_message_propagation_latency_seconds`, registered once: recording is per update.
    propagation_latency: metrics::Histogram,
    /// Owns every task of the node; its shutdown stops them.
    supervisor: Supervisor,
}

/// HELP lines for the node's metrics.
fn describe_metrics() {
    metrics::describe_gauge!(
        "mesh_network_active_providers",
        "Providers heard from within the offline threshold"
    );
    metrics::describe_gauge!("mesh_network_size", "Distinct live nodes known, this one included");
    metrics::describe_gauge!(
        "mesh_network_provider_hops",
        "Hops from this node to the nearest provider, as its peers' heartbeats count them; -1 when none is known"
    );
    metrics::describe_counter!(
        "mesh_provider_broadcast_attempts_total",
        "Updates this node published to its peers"
    );
    metrics::describe_counter!(
        "mesh_provider_broadcast_success_total",
        "Updates this node published that at least one peer took"
    );
    metrics::describe_histogram!(
        "mesh_message_propagation_latency_seconds",
        metrics::Unit::Seconds,
        "Time from a provider signing an update to this node accepting it"
    );
    metrics::describe_gauge!("mesh_cache_data_age_seconds", "Age of the newest price held, in seconds");
    metrics::describe_gauge!("mesh_seen_messages_cache_size", "Message ids remembered for deduplication");
    PriceGauges::describe();
    mesh_types::describe_supervisor_metrics();
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each update leaves the data consistent, even if a holder panicked.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// When an early digest may go after the last one, of `pages` pages: a tenth of the sync
/// interval later, and for a digest of several pages at least two seconds a page later, so the
/// digests a peer receives stay under its control budget (a burst of 16, then one a second)
/// however many answers arrive.
fn early_sync_at(last: (tokio::time::Instant, usize), sync_interval: Duration) -> tokio::time::Instant {
    let (at, pages) = last;
    let mut spacing = sync_interval.checked_div(10).unwrap_or_default();
    if pages > 1 {
        let per_pages = Duration::from_secs(u64::try_from(pages).unwrap_or(u64::MAX).saturating_mul(2));
        spacing = spacing.max(per_pages);
    }
    at.checked_add(spacing).unwrap_or(at).max(tokio::time::Instant::now())
}

/// Sleeps until `at`, or for ever without one.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// `first` and the updates already waiting behind it (up to [`MAX_UPDATE_BATCH`]), so their
/// signatures are verified as one batch; the first other event is held back in `held`, so the
/// order of events is kept.
fn gather_updates(
    first: (NodeId, Arc<PriceUpdate>),
    events: &mut EventReceiver,
    held: &mut Option<TransportEvent>,
) -> Vec<(NodeId, Arc<PriceUpdate>)> {
    let mut batch = vec![first];
    while batch.len() < MAX_UPDATE_BATCH {
        match events.try_recv() {
            Ok(TransportEvent::Message { from, message: MeshMessage::PriceUpdate(update) }) => {
                batch.push((from, update));
            }
            Ok(other) => {
                *held = Some(other);
                break;
            }
            Err(_) => break,
        }
    }
    batch
}

/// The node's clock: what it stamps and judges with (the wall clock, unless a test set an
/// offset, see [`mesh_types::clock`]).
fn now() -> Timestamp {
    mesh_types::clock::now()
}

impl MeshPriceService {
    /// A builder for a node with `identity` and `config`.
    pub fn builder(identity: Arc<NodeIdentity>, config: ServiceConfig) -> ServiceBuilder {
        ServiceBuilder {
            identity,
            config,
            transport: None,
            peer_store: None,
            tracker: None,
            prices: None,
            coordinator: None,
            durable_prices: None,
            durable_tracker: None,
            storage_flush_interval: LayeredPriceStore::DEFAULT_FLUSH_INTERVAL,
            supervisor: None,
        }
    }

    /// The supervisor of the node's tasks: [`Supervisor::failures`] says which died (the API's
    /// `/health` reports them).
    pub fn supervisor(&self) -> &Supervisor {
        &self.inner.supervisor
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.inner.identity.node_id()
    }

    /// The network this node joined: what it signs for and checks signatures against.
    pub fn network_id(&self) -> &mesh_types::NetworkId {
        &self.inner.config.network.network
    }

    /// This node's identity (for signing what it publishes).
    pub fn identity(&self) -> Arc<NodeIdentity> {
        self.inner.identity.clone()
    }

    /// Where the node accepts peers, if it does.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.inner.manager.local_addr()
    }

    /// The network layer.
    pub fn network(&self) -> &ConnectionManager {
        &self.inner.manager
    }

    /// How many price updates this node has processed, by outcome: accepted, duplicate
    /// copies, rejected.
    pub fn gossip_stats(&self) -> mesh_gossip::GossipStats {
        self.inner.engine.stats()
    }

    /// The prices this node holds.
    pub fn prices(&self) -> Arc<dyn PriceStore> {
        self.inner.prices.clone()
    }

    /// The fetch coordinator, for this node's provider loop.
    pub fn coordinator(&self) -> Arc<dyn FetchCoordinator> {
        self.inner.coordinator.clone()
    }

    /// The network as this node sees it now.
    pub fn network_status(&self) -> NetworkStatus {
        let mut status = lock(&self.inner.status);
        status.set_connected_peers(u32::try_from(self.inner.manager.peer_count()).unwrap_or(u32::MAX));
        status.set_provider(self.inner.is_provider.load(Ordering::Relaxed));
        status.status(now())
    }

    /// The backends failing now, by what they serve (`"prices"`, `"dedup"`,
    /// `"coordination"`): the node serves from memory (and coordinates through the mesh)
    /// meanwhile, and catches up when they return.
    pub fn degraded_backends(&self) -> Vec<&'static str> {
        let inner = &self.inner;
        [
            ("prices", inner.prices.is_degraded()),
            ("dedup", inner.tracker.is_degraded()),
            ("coordination", inner.coordinator.is_degraded()),
        ]
        .into_iter()
        .filter_map(|(name, degraded)| degraded.then_some(name))
        .collect()
    }

    /// Every signed update this node accepts from now on (new to it, authentic, trusted), its
    /// own included, with the prices it changed. A reader that falls [`ACCEPTED_UPDATES_BUFFER`] behind misses the oldest and
    /// is told how many (`RecvError::Lagged`); the node never waits for it.
    pub fn accepted_updates(&self) -> broadcast::Receiver<AcceptedUpdate> {
        self.inner.accepted_updates.subscribe()
    }

    /// A stream of what changes on this node, each numbered. Subscribe before taking a
    /// [`MeshPriceService::snapshot`] or a [`MeshPriceService::replay_since`], and skip events
    /// numbered at or below what those returned.
    pub fn subscribe(&self) -> broadcast::Receiver<Sequenced> {
        lock(&self.inner.journal).subscribe()
    }

    /// Every price served now (the assets at quorum), and the number of the last change they
    /// reflect.
    pub fn snapshot(&self) -> (u64, ServedPriceMap) {
        let status = lock(&self.inner.status);
        let prices = status.served_prices(now());
        let seq = lock(&self.inner.journal).last();
        (seq, prices)
    }

    /// Every price served now (the assets at quorum).
    pub fn served_prices(&self) -> ServedPriceMap {
        lock(&self.inner.status).served_prices(now())
    }

    /// The price served for `asset`, with the quotes that made it when `with_quotes`. A price
    /// below quorum comes back flagged [`ServedPrice::below_quorum`]; `None` when no fresh
    /// quote is held.
    pub fn served_price(&self, asset: &Asset, with_quotes: bool) -> Option<ServedPrice> {
        lock(&self.inner.status).served(asset, now(), with_quotes)
    }

    /// How many distinct providers an asset needs to be served.
    pub fn quorum(&self) -> u32 {
        self.inner.config.status.quorum.max(1)
    }

    /// The events after `since`, oldest first, and the number of the last event.
    ///
    /// # Errors
    /// When the history no longer reaches back to `since`, or `since` is not a position this
    /// run of the node gave out.
    pub fn replay_since(&self, since: u64) -> Result<(u64, Vec<Sequenced>), ReplayGap> {
        let journal = lock(&self.inner.journal);
        Ok((journal.last(), journal.since(since)?))
    }

    /// Tells peers (in heartbeats and announcements) whether this node is a provider: for a
    /// node that publishes its own updates ([`MeshPriceService::publish`]) without a provider
    /// loop. A node with a loop changes its role with [`MeshPriceService::enable_provider`]
    /// and [`MeshPriceService::disable_provider`], which call this.
    pub fn set_provider(&self, is_provider: bool) {
        self.inner.is_provider.store(is_provider, Ordering::Relaxed);
        self.inner.manager.set_provider(is_provider);
    }

    /// Publishes an update this node signed (as a provider): stored here and sent to every
    /// peer.
    ///
    /// # Errors
    /// When a store fails.
    pub async fn publish(&self, update: PriceUpdate) -> Result<Outcome, mesh_gossip::Error> {
        self.inner.publish(update).await
    }

    /// Feeds the updates a provider loop sends on `updates` into [`MeshPriceService::publish`]
    /// until the channel closes or the node shuts down.
    pub fn publish_from(&self, mut updates: mpsc::Receiver<PriceUpdate>) {
        let service = self.clone();
        self.inner.supervisor.spawn_worker("provider_publish", async move {
            loop {
                let update = tokio::select! {
                    () = service.inner.supervisor.cancelled() => break,
                    update = updates.recv() => update,
                };
                let Some(update) = update else { break };
                if let Err(err) = service.publish(update).await {
                    tracing::warn!(error = %err, "cannot publish a price update");
                }
            }
        });
    }

    /// Starts this node's provider loop: every fetch interval it asks the node's coordinator
    /// for the window, fetches `assets` from its price source, signs the prices with the node's
    /// key and publishes them here. It starts disabled; enable it with a source through
    /// [`MeshPriceService::enable_provider`], which also tells peers this node is a provider.
    ///
    /// # Errors
    /// When `config` cannot work.
    pub fn start_provider(
        &self,
        mut config: ProviderConfig,
        assets: Vec<Asset>,
    ) -> Result<ProviderNode, ProviderConfigError> {
        // Its updates are signed for the network this node is on, whatever the config said.
        config.network = self.inner.config.network.network.clone();
        let (updates, published) = mpsc::channel(64);
        let provider = ProviderNode::new(
            config,
            self.inner.identity.clone(),
            self.inner.coordinator.clone(),
            assets,
            updates,
        )?;
        let task = provider.start_supervised(&self.inner.supervisor);
        *lock(&self.inner.provider) = Some((provider.clone(), task));
        self.publish_from(published);
        Ok(provider)
    }

    /// Stops the node: goodbyes to peers, then the layered stores write what they hold
    /// behind to their durable stores, then every task is waited for (up to
    /// [`SHUTDOWN_GRACE`]).
    pub async fn shutdown(&self) {
        let provider = lock(&self.inner.provider).take();
        if let Some((_, task)) = provider {
            task.shutdown().await;
        }
        self.inner.manager.shutdown().await;
        // The layered stores write behind: what changed since their last flush interval is
        // only in memory until these return.
        match self.inner.prices.flush().await {
            Ok(count) => tracing::debug!(count, "flushed prices to durable storage"),
            Err(err) => tracing::warn!(error = %err, "cannot flush prices to durable storage at shutdown"),
        }
        match self.inner.tracker.flush().await {
            Ok(count) => tracing::debug!(count, "flushed seen messages to durable storage"),
            Err(err) => {
                tracing::warn!(error = %err, "cannot flush seen messages to durable storage at shutdown")
            }
        }
        self.inner.supervisor.shutdown(SHUTDOWN_GRACE).await;
    }
}

impl Inner {
    fn me(&self) -> NodeId {
        self.identity.node_id()
    }

    fn emit(&self, event: ServiceEvent) {
        lock(&self.journal).emit(event);
    }

    async fn publish(&self, update: PriceUpdate) -> Result<Outcome, mesh_gossip::Error> {
        if !self.is_provider.swap(true, Ordering::Relaxed) {
            self.manager.set_provider(true);
        }
        let outcome = self.engine.publish(update, now()).await?;
        if let Outcome::Accepted(accepted) = &outcome {
            if let Some(relay) = &accepted.relay {
                lock(&self.provider_updates).keep(accepted.source, accepted.timestamp, Arc::clone(relay));
                metrics::counter!("mesh_provider_broadcast_attempts_total").increment(1);
                let sent = self.relay(accepted);
                tracing::info!(assets = accepted.changed.len(), peers = sent, "provider broadcast complete");
                if sent > 0 {
                    metrics::counter!("mesh_provider_broadcast_success_total").increment(1);
                }
            }
            self.record(accepted.source, 0, &accepted.quotes).await;
            self.pass_on(accepted);
        }
        Ok(outcome)
    }

    /// Records an accepted update's quotes in the status, publishes the served prices they
    /// changed and any discrepancy they reveal. `distance` is the provider's distance in hops
    /// (0 for this node).
    async fn record(&self, source: NodeId, distance: u8, quotes: &[CachedPriceData]) {
        let warnings = {
            let mut status = lock(&self.status);
            let recorded = status.update_received(source, distance, quotes, now());
            if !recorded.prices.is_empty() {
                // Numbered under the status lock: see `Inner::status`.
                self.emit(ServiceEvent::Prices(recorded.prices));
            }
            recorded.warnings
        };
        for warning in warnings {
            self.raise_alert(&warning).await;
            self.emit(ServiceEvent::Warning(warning));
        }
    }

    /// A provider that sees another provider's price diverge from the others tells the mesh,
    /// signed: nodes that trust it show the warning even if the quotes never reach them.
    /// Consumers only warn their own users; their alerts would be refused by every node with a
    /// trust list anyway.
    async fn raise_alert(&self, warning: &MeshWarning) {
        if !self.is_provider.load(Ordering::Relaxed) {
            return;
        }
        let network = &self.config.network.network;
        let alert =
            Alert::new_signed(&self.identity, network, warning.kind.clone(), self.config.message_ttl, now());
        if let Err(err) = self.tracker.mark_seen(alert.seen_key()).await {
            tracing::debug!(error = %err, "cannot mark an alert seen");
        }
        let peers = self.manager.broadcast(&MeshMessage::Alert(alert), None);
        tracing::info!(code = %warning.code(), peers, "raised a mesh-wide alert");
    }

    async fn event_loop(self: Arc<Self>, mut events: EventReceiver) {
        // An event taken off the queue while gathering a batch of updates, handled next.
        let mut held: Option<TransportEvent> = None;
        while let Some(event) = self.next_event(&mut events, &mut held).await {
            let result = match event {
                TransportEvent::Message { from, message: MeshMessage::PriceUpdate(update) } => {
                    let batch = gather_updates((from, update), &mut events, &mut held);
                    self.on_updates(batch).await
                }
                event => self.handle(event).await,
            };
            if let Err(err) = result {
                tracing::warn!(error = %err, "cannot process a message");
            }
        }
    }

    /// The event held back from the last batch, else the next one queued; `None` at shutdown
    /// or once the network layer has stopped.
    async fn next_event(
        &self,
        events: &mut EventReceiver,
        held: &mut Option<TransportEvent>,
    ) -> Option<TransportEvent> {
        if let Some(event) = held.take() {
            return Some(event);
        }
        tokio::select! {
            () = self.supervisor.cancelled() => None,
            event = events.recv() => event,
        }
    }

    async fn handle(&self, event: TransportEvent) -> Result<(), mesh_gossip::Error> {
        match event {
            TransportEvent::Connected(info) => {
                lock(&self.push).peer_joined(info.node_id);
                lock(&self.status).node_seen(info.node_id, now());
                self.greet(info.node_id).await;
                for page in self.engine.digest_pages().await? {
                    let _ = self.manager.send(info.node_id, MeshMessage::Digest(page));
                }
            }
            TransportEvent::Disconnected { node_id, .. } => {
                lock(&self.push).peer_left(node_id);
                self.engine.peer_left(node_id);
            }
            TransportEvent::Message { from, message } => self.on_message(from, message).await?,
        }
        Ok(())
    }

    async fn on_message(&self, from: NodeId, message: MeshMessage) -> Result<(), mesh_gossip::Error> {
        match message {
            MeshMessage::PriceUpdate(update) => self.on_updates(vec![(from, update)]).await?,
            MeshMessage::Digest(digest) => {
                if self.admit_control(from).await
                    && let Some(request) = self.engine.on_digest_from(from, &digest).await?
                {
                    let _ = self.manager.send(from, MeshMessage::Request(request));
                }
            }
            MeshMessage::Request(request) => {
                if self.admit_control(from).await {
                    for update in self.engine.on_request(&request) {
                        let _ = self.manager.send(from, MeshMessage::PriceUpdate(update));
                    }
                }
            }
            MeshMessage::Announce(announce) => self.on_announce(from, announce).await?,
            MeshMessage::Alert(alert) => self.on_alert(from, alert).await?,
            MeshMessage::IHave(notice) => self.on_ihave(from, &notice).await,
            MeshMessage::Graft(graft) => self.on_graft(from, &graft).await,
            MeshMessage::Prune => self.on_prune(from),
            // The network layer handles the handshake, heartbeats, peer exchange and goodbyes.
            other => tracing::debug!(kind = other.kind(), %from, "ignoring a message for the network layer"),
        }
        Ok(())
    }

    /// Whether an anti-entropy message from `from` is within its rate; a peer far beyond it
    /// is banned.
    async fn admit_control(&self, from: NodeId) -> bool {
        match self.engine.admit_control(from, now()) {
            Ok(()) => true,
            Err(rejected) => {
                if let Some(ban) = rejected.ban {
                    self.manager.ban_for(ban.peer, ban.reason, ban.duration).await;
                }
                false
            }
        }
    }

    async fn on_updates(&self, batch: Vec<(NodeId, Arc<PriceUpdate>)>) -> Result<(), mesh_gossip::Error> {
        let batch: Vec<Received> = batch
            .into_iter()
            .map(|(from, update)| {
                let synced = self.engine.answers_request(from, &update);
                Received { from, update, synced }
            })
            .collect();
        let gossiped: Vec<Option<NodeId>> =
            batch.iter().map(|received| (!received.synced).then_some(received.from)).collect();
        let outcomes = self.engine.process_batch(batch, now()).await?;
        for (outcome, gossiped_by) in outcomes.into_iter().zip(gossiped) {
            match outcome {
                Outcome::Accepted(accepted) => self.on_accepted(accepted).await,
                Outcome::Rejected(rejected) => {
                    if let Some(ban) = rejected.ban {
                        self.manager.ban_for(ban.peer, ban.reason, ban.duration).await;
                    }
                }
                Outcome::Duplicate => {
                    if let Some(from) = gossiped_by {
                        self.on_duplicate(from);
                    }
                }
            }
        }
        Ok(())
    }

    async fn on_accepted(&self, accepted: Accepted) {
        self.relay(&accepted);
        if let Some(relay) = &accepted.relay {
            lock(&self.provider_updates).keep(accepted.source, accepted.timestamp, Arc::clone(relay));
        } else if !accepted.changed.is_empty() {
            // Anti-entropy answers are never relayed: the peers learn of the change from this
            // node's digest, sent early.
            self.sync_soon.notify_one();
        }
        if accepted.source != self.me() {
            if let Err(err) = self.coordinator.observe(accepted.source, accepted.timestamp).await {
                tracing::debug!(error = %err, "cannot report a fetch to the coordinator");
            }
            if let Ok(latency) = now().signed_duration_since(accepted.timestamp).to_std() {
                self.propagation_latency.record(latency.as_secs_f64());
            }
        }
        // Each relay counts its hop before sending, so the hop count is the distance.
        self.record(accepted.source, accepted.hop_count, &accepted.quotes).await;
        self.pass_on(&accepted);
    }

    /// Hands an accepted update to the readers of `accepted_updates`, if any.
    fn pass_on(&self, accepted: &Accepted) {
        if self.accepted_updates.receiver_count() == 0 {
            return;
        }
        let update =
            AcceptedUpdate { update: Arc::clone(&accepted.update), changed: accepted.changed.clone() };
        // An error only says nobody is reading.
        let _ = self.accepted_updates.send(update);
    }

    /// Runs an announcement or alert through the engine: bans a peer that earned it, relays
    /// an accepted one; the message when it is new and authentic.
    async fn judge_notice<M: Gossiped>(
        &self,
        from: NodeId,
        notice: M,
        needs_trust: bool,
        wrap: fn(M) -> MeshMessage,
    ) -> Result<Option<M>, mesh_gossip::Error> {
        match self.engine.process_notice(from, notice, needs_trust, now()).await? {
            Notice::Accepted { notice, relay } => {
                if let Some(relay) = relay {
                    self.manager.broadcast(&wrap(relay), Some(from));
                }
                Ok(Some(notice))
            }
            Notice::Duplicate => Ok(None),
            Notice::Rejected(rejected) => {
                if let Some(ban) = rejected.ban {
                    self.manager.ban_for(ban.peer, ban.reason, ban.duration).await;
                }
                Ok(None)
            }
        }
    }

    async fn on_announce(&self, from: NodeId, announce: Announce) -> Result<(), mesh_gossip::Error> {
        // Anyone may announce itself: announcements count the network, list providers, and
        // tell where nodes listen.
        let Some(announce) = self.judge_notice(from, announce, false, MeshMessage::Announce).await? else {
            return Ok(());
        };
        lock(&self.status).announced(
            announce.node_id,
            announce.is_provider,
            announce.hop_count,
            announce.clock_offset_ms,
            now(),
        );
        if let Some(addr) = announce.listen_addr {
            self.manager
                .learn_addresses(vec![PeerAddress { node_id: announce.node_id, addr, provider_hops: None }])
                .await;
        }
        if announce.ttl() > 0 {
            lock(&self.announcements).keep(announce.node_id, announce.timestamp, announce.relayed());
        }
        Ok(())
    }

    /// What a new peer is told at once (see [`crate::greeting`]): this node's own
    /// announcement, the latest ones it heard from others, and the latest update of each
    /// provider heard from recently.
    async fn greet(&self, peer: NodeId) {
        let own = self.own_announcement();
        // This node's own announcement must not come back to it as new.
        if let Err(err) = self.tracker.mark_seen(own.seen_key()).await {
            tracing::debug!(error = %err, "cannot mark an announcement seen");
        }
        let _ = self.manager.send(peer, MeshMessage::Announce(own));
        let heard = lock(&self.announcements).recent(Some(peer), now());
        for announce in heard {
            let _ = self.manager.send(peer, MeshMessage::Announce(announce));
        }
        // The peer's own latest update included: a provider that restarted has lost it.
        let quotes = lock(&self.provider_updates).recent(None, now());
        for update in quotes {
            let _ = self.manager.send(peer, MeshMessage::PriceUpdate(update));
        }
    }

    /// How far this node's clock is ahead of its peers': the median of their measured offsets,
    /// negated (0 with no measurement yet).
    fn own_clock_offset_ms(&self) -> i64 {
        let mut offsets: Vec<i64> =
            self.manager.connected_peers().iter().filter_map(|peer| peer.clock_offset_ms).collect();
        offsets.sort_unstable();
        offsets.get(offsets.len() / 2).map_or(0, |median| median.saturating_neg())
    }

    /// This node's announcement: the last one made, while it is recent (so every peer dedups
    /// the same message), or a new one.
    fn own_announcement(&self) -> Announce {
        let fresh_for = self.config.announce_interval.checked_div(2).unwrap_or_default();
        let mut own = lock(&self.own_announce);
        let is_provider = self.is_provider.load(Ordering::Relaxed);
        if let Some(announce) = own.as_ref()
            && announce.is_provider == is_provider
            && now().signed_duration_since(announce.timestamp).to_std().is_ok_and(|age| age < fresh_for)
        {
            return announce.clone();
        }
        let announce = Announce::new_signed_with_offset(
            &self.identity,
            &self.config.network.network,
            is_provider,
            self.manager.local_addr(),
            self.config.message_ttl,
            now(),
            self.own_clock_offset_ms(),
        );
        *own = Some(announce.clone());
        announce
    }

    async fn on_alert(&self, from: NodeId, alert: Alert) -> Result<(), mesh_gossip::Error> {
        // Alerts reach users, so only trusted providers may raise them (anyone in open mode).
        let Some(alert) = self.judge_notice(from, alert, true, MeshMessage::Alert).await? else {
            return Ok(());
        };
        let staleness = self.config.status.staleness_threshold;
        let warning = match &alert.kind {
            WarningKind::NoProviders => MeshWarning::no_providers(),
            WarningKind::StaleData { age_seconds } => {
                MeshWarning::stale_data(Duration::from_secs(*age_seconds), staleness)
            }
            WarningKind::PriceDiscrepancy { asset, discrepancy_percent } => {
                MeshWarning::price_discrepancy(*asset, *discrepancy_percent)
            }
            WarningKind::ClockSkew { node_id, offset_ms } => MeshWarning::clock_skew(*node_id, *offset_ms),
        };
        self.emit(ServiceEvent::Warning(warning));
        Ok(())
    }

    /// Sends every page of this node's anti-entropy digest to every peer; when it went out,
    /// and how many pages it had.
    async fn send_digest(&self) -> (tokio::time::Instant, usize) {
        let sent = match self.engine.digest_pages().await {
            Ok(pages) => {
                let count = pages.len();
                for page in pages {
                    self.manager.broadcast(&MeshMessage::Digest(page), None);
                }
                count
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot build the anti-entropy digest");
                0
            }
        };
        (tokio::time::Instant::now(), sent)
    }

    /// Announcements, anti-entropy rounds, status and warning checks.
    async fn timers(self: Arc<Self>) {
        let mut announce = tokio::time::interval(self.config.announce_interval);
        let mut sync = tokio::time::interval(self.config.sync_interval);
        let mut status = tokio::time::interval(self.config.status_interval);
        // `len` can be a scan of the durable store: sample it rarely.
        let mut seen_size = tokio::time::interval(Duration::from_secs(15));
        sync.tick().await;
        let mut last_summary: Option<NetworkStatusSummary> = None;
        let mut price_gauges = PriceGauges::default();
        // When the digest last went out, and when an early one is due.
        let mut last_sync = (tokio::time::Instant::now(), 0_usize);
        let mut early_sync: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                () = self.supervisor.cancelled() => break,
                _ = announce.tick() => self.announce().await,
                _ = seen_size.tick() => {
                    if let Ok(len) = self.tracker.len().await {
                        metrics::gauge!("mesh_seen_messages_cache_size").set(len as f64);
                    }
                }
                _ = sync.tick() => last_sync = self.send_digest().await,
                () = self.sync_soon.notified() => early_sync = Some(early_sync_at(last_sync, self.config.sync_interval)),
                () = sleep_until_some(early_sync) => {
                    early_sync = None;
                    last_sync = self.send_digest().await;
                }
                _ = status.tick() => {
                    let (summary, warnings, newest, served, active) = {
                        let mut tracker = lock(&self.status);
                        tracker.set_connected_peers(u32::try_from(self.manager.peer_count()).unwrap_or(u32::MAX));
                        tracker.set_provider(self.is_provider.load(Ordering::Relaxed));
                        tracker.set_peer_offsets(self.manager.connected_peers().into_iter().filter_map(|peer| {
                            peer.clock_offset_ms.map(|offset| (peer.info.node_id, offset))
                        }));
                        let at = now();
                        let summary = NetworkStatusSummary::from(&tracker.status(at));
                        let warnings = tracker.check_warnings(at);
                        (summary, warnings, tracker.newest_price(), tracker.served_prices(at), tracker.active_warnings())
                    };
                    price_gauges.publish(&served, now());
                    PriceGauges::publish_warnings(active);
                    if let Some(age) = newest.and_then(|newest| now().signed_duration_since(newest).to_std().ok()) {
                        metrics::gauge!("mesh_cache_data_age_seconds").set(age.as_secs_f64());
                    }
                    metrics::gauge!("mesh_network_active_providers").set(f64::from(summary.active_providers));
                    metrics::gauge!("mesh_network_size").set(f64::from(summary.total_network_size));
                    let hops = self.manager.provider_hops().map_or(-1.0, f64::from);
                    metrics::gauge!("mesh_network_provider_hops").set(hops);
                    for warning in warnings {
                        self.emit(ServiceEvent::Warning(warning));
                    }
                    if last_summary.as_ref() != Some(&summary) {
                        last_summary = Some(summary.clone());
                        self.emit(ServiceEvent::Status(summary));
                    }
                }
            }
        }
    }

    /// Every [`SWEEP_INTERVAL`]: forgets expired seen ids (the durable trackers keep them
    /// until swept), lifts bans that ran out, and drops fetch records older than any window.
    async fn sweeps(self: Arc<Self>) {
        let mut ticks = tokio::time::interval(SWEEP_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            tokio::select! {
                () = self.supervisor.cancelled() => break,
                _ = ticks.tick() => self.sweep().await,
            }
        }
    }

    async fn sweep(&self) {
        match self.tracker.cleanup_expired().await {
            Ok(removed) => tracing::debug!(removed, "swept expired seen ids"),
            Err(err) => tracing::warn!(error = %err, "cannot sweep expired seen ids"),
        }
        match self.peer_store.unban_expired().await {
            Ok(lifted) => tracing::debug!(lifted, "lifted expired bans"),
            Err(err) => tracing::warn!(error = %err, "cannot lift expired bans"),
        }
        // A fetch record matters for one coordination window; an hour covers any window.
        match self.coordinator.cleanup_stale_records(Duration::from_secs(3600)).await {
            Ok(removed) => tracing::debug!(removed, "swept stale fetch records"),
            Err(err) => tracing::warn!(error = %err, "cannot sweep stale fetch records"),
        }
    }

    async fn announce(&self) {
        *lock(&self.own_announce) = None;
        let announce = self.own_announcement();
        // This node's own announcement must not come back to it as new.
        if let Err(err) = self.tracker.mark_seen(announce.seen_key()).await {
            tracing::debug!(error = %err, "cannot mark an announcement seen");
        }
        self.manager.broadcast(&MeshMessage::Announce(announce), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn early_digests_keep_under_every_peers_control_budget() {
        let sync = Duration::from_secs(30);
        let now = tokio::time::Instant::now();
        let one_page = early_sync_at((now, 1), sync);
        assert!(one_page >= now + Duration::from_secs(3) && one_page < now + Duration::from_secs(4));
        // Five pages every ten seconds, beside the regular round, stay under one a second.
        assert!(early_sync_at((now, 5), sync) >= now + Duration::from_secs(10));
        // Long ago is now, not in the past.
        let long_ago = now.checked_sub(Duration::from_secs(60)).unwrap_or(now);
        assert!(early_sync_at((long_ago, 1), sync) >= now);
    }
}
