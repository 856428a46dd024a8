//! [`RedisCoordinator`]: the last fetch as one Redis hash, `{prefix}coordination:last_fetch`,
//! with fields `node` and `ms` (the server's clock in milliseconds).
//!
//! The decision runs on the server as a Lua script that reads the server's own clock, so every
//! process sharing the server decides atomically and by one clock, whatever their clocks say.

use std::time::Duration;

use async_trait::async_trait;
use deadpool_redis::redis::{self, Script};
use deadpool_redis::{Connection, Pool};
use mesh_storage_core::{BackendError, Corrupt};
use mesh_types::{NodeId, Timestamp};

use crate::{Error, FetchCoordinator, Result};

const BACKEND: &str = "redis";

/// KEYS[1]: the record. ARGV: node, window in ms. Returns 1 when granted.
const TRY_ACQUIRE: &str = r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local held = redis.call('HMGET', KEYS[1], 'node', 'ms')
if held[1] and held[1] ~= ARGV[1] and now - tonumber(held[2]) < tonumber(ARGV[2]) then
  return 0
end
redis.call('HSET', KEYS[1], 'node', ARGV[1], 'ms', now)
return 1
";

/// KEYS[1]: the record. ARGV: maximum age in ms. Returns 1 when a stale record was deleted.
const CLEANUP: &str = r"
local ms = redis.call('HGET', KEYS[1], 'ms')
if not ms then return 0 end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
if now - tonumber(ms) > tonumber(ARGV[1]) then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
";

/// Coordination between every process sharing a Redis server and prefix.
pub struct RedisCoordinator {
    pool: Pool,
    key: String,
    try_acquire: Script,
    cleanup: Script,
}

impl std::fmt::Debug for RedisCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCoordinator").field("key", &self.key).finish_non_exhaustive()
    }
}

impl RedisCoordinator {
    /// Default key prefix.
    pub const DEFAULT_PREFIX: &'static str = "mesh:";

    /// A coordinator on `pool` whose key starts with `prefix`.
    pub fn new(pool: Pool, prefix: &str) -> Self {
        Self {
            pool,
            key: format!("{prefix}coordination:last_fetch"),
            try_acquire: Script::new(TRY_ACQUIRE),
            cleanup: Script::new(CLEANUP),
        }
    }

    async fn connection(&self) -> Result<Connection> {
        self.pool.get().await.map_err(|err| BackendError::redis_pool(err).into())
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[async_trait]
impl FetchCoordinator for RedisCoordinator {
    async fn try_acquire(&self, node: NodeId, window: Duration) -> Result<bool> {
        let mut connection = self.connection().await?;
        let granted: i64 = self
            .try_acquire
            .key(&self.key)
            .arg(node.to_string())
            .arg(millis(window))
            .invoke_async(&mut connection)
            .await
            .map_err(BackendError::redis)?;
        Ok(granted == 1)
    }

    async fn last_fetch_time(&self) -> Result<Option<Timestamp>> {
        let mut connection = self.connection().await?;
        let ms: Option<i64> = redis::cmd("HGET")
            .arg(&self.key)
            .arg("ms")
            .query_async(&mut connection)
            .await
            .map_err(BackendError::redis)?;
        ms.map(|ms| {
            Timestamp::from_timestamp_millis(ms).ok_or_else(|| {
                Error::from(Corrupt::new(
                    BACKEND,
                    "fetch record",
                    format!("fetch time {ms} ms is out of range"),
                ))
            })
        })
        .transpose()
    }

    async fn cleanup_stale_records(&self, max_age: Duration) -> Result<usize> {
        let mut connection = self.connection().await?;
        let removed: i64 = self
            .cleanup
            .key(&self.key)
            .arg(millis(max_age))
            .invoke_async(&mut connection)
            .await
            .map_err(BackendError::redis)?;
        Ok(usize::try_from(removed).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use mesh_testkit::{REDIS_URL_VAR, RedisNamespace, backend_url};

    use super::*;
    use crate::conformance::{self, Fixture};

    // The model workloads need tokio's paused clock; the script reads the server's.
    crate::fetch_coordinator_conformance!(
        suite,
        async {
            let url = backend_url(REDIS_URL_VAR, "redis coordinator conformance")?;
            let namespace = RedisNamespace::create(&url);
            let coordinator = RedisCoordinator::new(namespace.pool().clone(), namespace.prefix());
            Some(Fixture::new(Arc::new(coordinator)).then(namespace.cleanup()))
        },
        without_model
    );

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_processes_sharing_redis_fetch_once_per_window() {
        let Some(url) = backend_url(REDIS_URL_VAR, "redis coordinator across pools") else { return };
        let namespace = RedisNamespace::create(&url);
        let first = RedisCoordinator::new(namespace.pool().clone(), namespace.prefix());
        let second = RedisCoordinator::new(namespace.second_pool(), namespace.prefix());
        let (a, b) = (conformance::fresh_node(), conformance::fresh_node());
        assert!(first.try_acquire(a, conformance::WINDOW).await.unwrap());
        assert!(
            !second.try_acquire(b, conformance::WINDOW).await.unwrap(),
            "the other process sees the fetch"
        );
        assert!(second.last_fetch_time().await.unwrap().is_some());
        namespace.cleanup().await;
    }

    #[tokio::test]
    async fn an_unreachable_server_is_a_retryable_error() {
        let pool = deadpool_redis::Config::from_url("redis://127.0.0.1:1")
            .create_pool(Some(deadpool_redis::Runtime::Tokio1))
            .unwrap();
        let err = RedisCoordinator::new(pool, "mesh:")
            .try_acquire(conformance::fresh_node(), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(err.is_retryable(), "{err}");
    }
}
