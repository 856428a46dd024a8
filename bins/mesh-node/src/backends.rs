//! The composition root of storage: which backend each store uses, chosen by which URLs are
//! set. `REDIS_URL` → Redis-backed dedup, price cache and fetch coordination; `DATABASE_URL` →
//! PostgreSQL persistence (prices, seen messages, peers; migrations run first); neither → the
//! embedded in-memory defaults, with the peer list kept in `DATA_DIR/peers.json`.
//! The service puts memory in front of the durable stores (`with_durable_prices`,
//! `with_durable_tracker`), written behind every `MESH_STORAGE_FLUSH_INTERVAL_MS`, so the node
//! never waits on a server, keeps serving when one goes away, and resyncs when it returns.

use std::sync::Arc;

use anyhow::Context;
use mesh_coordination::{FallbackCoordinator, FetchCoordinator, ObservedCoordinator, RedisCoordinator};
use mesh_dedup::{MessageTracker, PostgresTracker, RedisTracker};
use mesh_node::NodeSettings;
use mesh_peer_store::{MemoryPeerStore, PeerStore, PostgresPeerStore};
use mesh_price_cache::{PostgresPriceStore, PriceStore, RedisPriceStore};
use mesh_service::ServiceBuilder;
use mesh_storage_core::MIGRATOR;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// The stores a node runs with.
pub(crate) struct Backends {
    /// The durable stores, if a server is configured (the service puts memory in front).
    tracker: Option<Arc<dyn MessageTracker>>,
    prices: Option<Arc<dyn PriceStore>>,
    flush_interval: std::time::Duration,
    coordinator: Arc<dyn FetchCoordinator>,
    peer_store: Arc<dyn PeerStore>,
    /// What was chosen, for the start-up log line.
    pub(crate) summary: String,
}

/// How long the pool waits for a connection once the server has answered at start.
const PG_ACQUIRE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Connects to PostgreSQL and applies the migrations.
///
/// One connection is opened directly first: the pool alone retries for its whole acquire
/// timeout (30 s by default) and then reports only "pool timed out", even when the port
/// refused at once. The direct attempt fails as fast as the server does, with its cause.
pub(crate) async fn migrate(url: &str) -> anyhow::Result<sqlx::PgPool> {
    use sqlx::ConnectOptions;
    let options: PgConnectOptions = url.parse().context("invalid DATABASE_URL")?;
    let target = format!("{}:{}", options.get_host(), options.get_port());
    let probe = options.connect().await.map_err(|err| {
        anyhow::anyhow!("cannot connect to PostgreSQL at {target} (DATABASE_URL): {}", cause(&err))
    })?;
    let _ = sqlx::Connection::close(probe).await;
    let pool = PgPoolOptions::new()
        .acquire_timeout(PG_ACQUIRE_TIMEOUT)
        .connect_with(options)
        .await
        .with_context(|| format!("cannot connect to PostgreSQL at {target} (DATABASE_URL)"))?;
    MIGRATOR.run(&pool).await.context("cannot apply the database migrations")?;
    Ok(pool)
}

/// The innermost cause of a connection error ("Connection refused (os error 111)"), which
/// sqlx wraps in "error communicating with database".
fn cause(err: &sqlx::Error) -> String {
    let mut source: &dyn std::error::Error = err;
    while let Some(inner) = source.source() {
        source = inner;
    }
    source.to_string()
}

impl Backends {
    /// Opens the stores `settings` ask for.
    pub(crate) async fn open(settings: &NodeSettings) -> anyhow::Result<Self> {
        let redis = match &settings.redis_url {
            Some(url) => {
                let mut config = deadpool_redis::Config::from_url(url.as_str());
                config.pool = Some(deadpool_redis::PoolConfig::new(settings.redis_pool_size.max(1)));
                let pool =
                    config.create_pool(Some(deadpool_redis::Runtime::Tokio1)).context("invalid REDIS_URL")?;
                Some(pool)
            }
            None => None,
        };
        let postgres = match &settings.database_url {
            Some(url) => Some(migrate(url).await?),
            None => None,
        };
        let tracker_config = settings.tracker_config();
        let prefix = settings.redis_prefix.as_str();

        let tracker: Option<Arc<dyn MessageTracker>> = match (&redis, &postgres) {
            (Some(pool), _) => {
                Some(Arc::new(RedisTracker::new(pool.clone(), prefix, tracker_config.expiration)))
            }
            (None, Some(pool)) => {
                Some(Arc::new(PostgresTracker::new(pool.clone(), tracker_config.expiration)))
            }
            (None, None) => None,
        };
        let prices: Option<Arc<dyn PriceStore>> = match (&redis, &postgres) {
            (_, Some(pool)) => Some(Arc::new(PostgresPriceStore::new(pool.clone()))),
            (Some(pool), None) => {
                Some(Arc::new(RedisPriceStore::new(pool.clone(), prefix, settings.redis_price_ttl)))
            }
            (None, None) => None,
        };
        let coordinator: Arc<dyn FetchCoordinator> = match &redis {
            // While Redis is away, providers coordinate through the updates they see, instead
            // of skipping every round (which froze every consumer's prices).
            Some(pool) => Arc::new(FallbackCoordinator::new(
                Arc::new(RedisCoordinator::new(pool.clone(), prefix)),
                "redis",
            )),
            None => Arc::new(ObservedCoordinator::new()),
        };
        let peer_store: Arc<dyn PeerStore> = match &postgres {
            Some(pool) => Arc::new(PostgresPeerStore::new(pool.clone())),
            None => Arc::new(peer_file(settings).await),
        };

        let backend = |redis_first: bool| match (redis.is_some(), postgres.is_some()) {
            (true, true) => {
                if redis_first {
                    "redis"
                } else {
                    "postgres"
                }
            }
            (true, false) => "redis",
            (false, true) => "postgres",
            (false, false) => "memory",
        };
        let (dedup, prices_backend) = (backend(true), backend(false));
        publish_backends(dedup, prices_backend);
        let summary = format!(
            "dedup: {dedup}, prices: {prices_backend}, coordination: {}, peers: {}",
            if redis.is_some() { "redis" } else { "mesh-observed" },
            if postgres.is_some() { "postgres" } else { "file" },
        );
        Ok(Self {
            tracker,
            prices,
            flush_interval: settings.storage_flush_interval,
            coordinator,
            peer_store,
            summary,
        })
    }

    /// Hands the stores to a service builder.
    pub(crate) fn apply(self, mut builder: ServiceBuilder) -> ServiceBuilder {
        builder = builder
            .coordinator(self.coordinator)
            .peer_store(self.peer_store)
            .storage_flush_interval(self.flush_interval);
        if let Some(tracker) = self.tracker {
            builder = builder.with_durable_tracker(tracker);
        }
        if let Some(prices) = self.prices {
            builder = builder.with_durable_prices(prices);
        }
        builder
    }
}

/// `mesh_storage_backend_info{store, backend}`: which server is behind each layered store, for
/// alert rules to tell a Redis outage from a PostgreSQL one (they join it with
/// `mesh_storage_degraded`).
fn publish_backends(dedup: &'static str, prices: &'static str) {
    metrics::describe_gauge!(
        "mesh_storage_backend_info",
        "1 for the backend (redis, postgres, memory) behind each store (dedup, prices)"
    );
    metrics::gauge!("mesh_storage_backend_info", "store" => "dedup", "backend" => dedup).set(1.0);
    metrics::gauge!("mesh_storage_backend_info", "store" => "prices", "backend" => prices).set(1.0);
}

/// The peer list in `DATA_DIR/peers.json`. A corrupt file is moved aside by the store; the
/// node says so and starts a fresh list in its place rather than refusing to run.
async fn peer_file(settings: &NodeSettings) -> MemoryPeerStore {
    let path = settings.data_dir.join("peers.json");
    match MemoryPeerStore::with_file(&path).await {
        Ok(store) => store,
        Err(err) => {
            tracing::warn!(error = %err, "starting a fresh peer list");
            match MemoryPeerStore::with_file(&path).await {
                Ok(store) => store,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot keep a peer file; peers live in memory only");
                    MemoryPeerStore::new()
                }
            }
        }
    }
}
