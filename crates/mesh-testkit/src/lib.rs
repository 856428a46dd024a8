//! Test support for the storage backends' suites (a dev-dependency only, never linked into a
//! node): find the real PostgreSQL and Redis a test should use, and give each test an isolated
//! place on them — a fresh schema with the migrations applied, or a unique key prefix — that it
//! removes afterwards.
//!
//! [`TcpProxy`] sits between a client and a real server so a test can cut the connection and
//! restore it. `HostilePeer` (feature `hostile-peer`) joins a real node's mesh as a stranger and misbehaves on
//! cue.
//!
//! Without `MESH_TEST_DATABASE_URL` / `MESH_TEST_REDIS_URL` a test skips with a printed
//! reason; with `MESH_REQUIRE_BACKENDS=1` (CI) a missing URL fails it instead.

#[cfg(feature = "hostile-peer")]
mod hostile;
mod proxy;

#[cfg(feature = "hostile-peer")]
pub use hostile::HostilePeer;
pub use proxy::TcpProxy;

use deadpool_redis::redis::AsyncCommands;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Executor, PgPool};

/// Variable holding the PostgreSQL URL for tests.
pub const DATABASE_URL_VAR: &str = "MESH_TEST_DATABASE_URL";
/// Variable holding the Redis URL for tests.
pub const REDIS_URL_VAR: &str = "MESH_TEST_REDIS_URL";
/// Variable that, set to `1`, turns a skipped backend test into a failure.
pub const REQUIRE_VAR: &str = "MESH_REQUIRE_BACKENDS";

/// The URL in `var`, or `None` after printing why `test` skips.
///
/// # Panics
/// When the URL is missing and `MESH_REQUIRE_BACKENDS=1`.
pub fn backend_url(var: &str, test: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var(REQUIRE_VAR).is_ok_and(|value| value == "1") => {
            panic!("{test}: {var} is not set but {REQUIRE_VAR}=1 requires this backend")
        }
        _ => {
            eprintln!("skipping {test}: set {var} to run it against a real server");
            None
        }
    }
}

/// The migrations every PostgreSQL backend relies on (the workspace's `migrations/`).
pub use mesh_storage_core::MIGRATOR;

/// A fresh PostgreSQL schema with the migrations applied, dropped by [`PgSchema::cleanup`].
#[derive(Debug)]
pub struct PgSchema {
    url: String,
    name: String,
    pool: PgPool,
}

impl PgSchema {
    /// Creates a uniquely named schema on the server at `url` and migrates it.
    ///
    /// # Panics
    /// When the server cannot be reached or the migrations fail: the test cannot proceed.
    pub async fn create(url: &str) -> Self {
        let name = format!("mesh_test_{}", uuid::Uuid::new_v4().simple());
        let admin = PgPool::connect(url).await.unwrap_or_else(|err| panic!("connect to {url}: {err}"));
        admin.execute(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}"))).await.expect("create schema");
        admin.close().await;
        let schema = Self { url: url.to_owned(), pool: Self::connect(url, &name, 8).await, name };
        MIGRATOR.run(&schema.pool).await.expect("apply migrations");
        schema
    }

    async fn connect(url: &str, schema: &str, max_connections: u32) -> PgPool {
        let options: PgConnectOptions = url.parse().expect("valid database URL");
        PgPoolOptions::new()
            .max_connections(max_connections)
            .connect_with(options.options([("search_path", schema)]))
            .await
            .expect("connect with search_path")
    }

    /// A pool on this schema that connects through `addr` (a [`TcpProxy`]) instead of the
    /// server's own address.
    pub async fn pool_via(&self, addr: std::net::SocketAddr) -> PgPool {
        let options: PgConnectOptions = self.url.parse().expect("valid database URL");
        PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(std::time::Duration::from_secs(2))
            .connect_with(
                options
                    .host(&addr.ip().to_string())
                    .port(addr.port())
                    .options([("search_path", self.name.as_str())]),
            )
            .await
            .expect("connect through the proxy")
    }

    /// A pool whose connections use this schema.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Another, independent pool on the same schema, as a second process would have.
    pub async fn second_pool(&self) -> PgPool {
        Self::connect(&self.url, &self.name, 8).await
    }

    /// The schema's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The host and port of the server, for a [`TcpProxy`] target.
    pub fn server_addr(&self) -> String {
        let options: PgConnectOptions = self.url.parse().expect("valid database URL");
        format!("{}:{}", options.get_host(), options.get_port())
    }

    /// Drops the schema and everything in it.
    ///
    /// # Panics
    /// When the server refuses.
    pub async fn cleanup(self) {
        self.pool.close().await;
        let admin = PgPool::connect(&self.url).await.expect("connect");
        admin
            .execute(sqlx::AssertSqlSafe(format!("DROP SCHEMA {} CASCADE", self.name)))
            .await
            .expect("drop schema");
        admin.close().await;
    }
}

/// A unique Redis key prefix, whose keys [`RedisNamespace::cleanup`] deletes.
#[derive(Debug)]
pub struct RedisNamespace {
    url: String,
    prefix: String,
    pool: deadpool_redis::Pool,
}

impl RedisNamespace {
    /// A pool to the server at `url` and a prefix no other test uses.
    ///
    /// # Panics
    /// When the URL is invalid.
    pub fn create(url: &str) -> Self {
        let prefix = format!("mesh-test:{}:", uuid::Uuid::new_v4().simple());
        Self { url: url.to_owned(), pool: Self::connect(url), prefix }
    }

    fn connect(url: &str) -> deadpool_redis::Pool {
        deadpool_redis::Config::from_url(url)
            .create_pool(Some(deadpool_redis::Runtime::Tokio1))
            .unwrap_or_else(|err| panic!("redis pool for {url}: {err}"))
    }

    /// A pool to the server.
    pub fn pool(&self) -> &deadpool_redis::Pool {
        &self.pool
    }

    /// Another, independent pool to the same server, as a second process would have.
    pub fn second_pool(&self) -> deadpool_redis::Pool {
        Self::connect(&self.url)
    }

    /// A pool that connects through `addr` (a [`TcpProxy`]) instead of the server's own
    /// address; `url` must be a `redis://host:port` URL without a path or credentials.
    pub fn pool_via(&self, addr: std::net::SocketAddr) -> deadpool_redis::Pool {
        let mut config = deadpool_redis::Config::from_url(format!("redis://{addr}"));
        config.pool = Some(deadpool_redis::PoolConfig {
            timeouts: deadpool_redis::Timeouts {
                wait: Some(std::time::Duration::from_secs(2)),
                create: Some(std::time::Duration::from_secs(2)),
                recycle: Some(std::time::Duration::from_secs(2)),
            },
            ..deadpool_redis::PoolConfig::default()
        });
        config.create_pool(Some(deadpool_redis::Runtime::Tokio1)).expect("redis pool through the proxy")
    }

    /// The host and port of the server, for a [`TcpProxy`] target.
    pub fn server_addr(&self) -> String {
        self.url.trim_start_matches("redis://").trim_end_matches('/').to_owned()
    }

    /// The unique prefix; a test may extend it (`{prefix}a:`) for several instances.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Deletes every key under the prefix.
    ///
    /// # Panics
    /// When the server cannot be reached.
    pub async fn cleanup(self) {
        let mut connection = self.pool.get().await.expect("redis connection");
        let pattern = format!("{}*", self.prefix);
        let keys: Vec<String> = {
            let mut iter = connection.scan_match::<_, String>(&pattern).await.expect("scan");
            let mut keys = Vec::new();
            while let Some(key) = iter.next_item().await {
                keys.push(key.expect("scan item"));
            }
            keys
        };
        // In slices: one DEL of a benchmark's 100,000 keys outlasts the client's response
        // timeout.
        for keys in keys.chunks(1000) {
            let _: () = connection.del(keys).await.expect("delete test keys");
        }
    }
}
