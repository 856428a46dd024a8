//! [`RedisTracker`]: seen ids as Redis keys `{prefix}seen:{id}` that expire on the server.
//!
//! `check_and_mark` is one `SET key 1 NX PX <ms>`: the server decides atomically which caller
//! is first, across every process sharing the server. `mark_seen` is `PSETEX key <ms> 1`;
//! `mark_seen_many` pipelines one `PSETEX` per id into one round trip.

use async_trait::async_trait;
use deadpool_redis::redis::{self, AsyncCommands};
use deadpool_redis::{Connection, Pool};
use mesh_storage_core::{BackendError, Corrupt};
use mesh_types::MessageId;
use tokio::time::Duration;

use crate::{MessageTracker, Result};

const BACKEND: &str = "redis";

/// Seen ids in Redis, shared by every process using the same server and prefix.
#[derive(Clone)]
pub struct RedisTracker {
    pool: Pool,
    prefix: String,
    expiration_ms: u64,
}

impl std::fmt::Debug for RedisTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTracker").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

impl RedisTracker {
    /// Default key prefix.
    pub const DEFAULT_PREFIX: &'static str = "mesh:";
    /// Most commands one pipeline of [`MessageTracker::mark_seen_many`] carries; more ids are
    /// several pipelines, one after another.
    const IDS_PER_PIPELINE: usize = 8192;

    /// A tracker on `pool` whose keys start with `prefix` and expire after `expiration`.
    pub fn new(pool: Pool, prefix: impl Into<String>, expiration: Duration) -> Self {
        let expiration_ms = u64::try_from(expiration.as_millis()).unwrap_or(u64::MAX).max(1);
        Self { pool, prefix: prefix.into(), expiration_ms }
    }

    fn key(&self, id: MessageId) -> String {
        format!("{}seen:{id}", self.prefix)
    }

    async fn connection(&self) -> Result<Connection> {
        self.pool.get().await.map_err(|err| BackendError::redis_pool(err).into())
    }

    /// Up to `limit` ids of this tracker, by `SCAN` (never `KEYS`, which blocks the server).
    async fn scan_ids(&self, limit: usize) -> Result<Vec<MessageId>> {
        let mut connection = self.connection().await?;
        let pattern = format!("{}seen:*", self.prefix);
        let mut keys = connection.scan_match::<_, String>(&pattern).await.map_err(BackendError::redis)?;
        let mut ids = Vec::new();
        while ids.len() < limit {
            let Some(key) = keys.next_item().await else { break };
            let key = key.map_err(BackendError::redis)?;
            let text = key.rsplit(':').next().unwrap_or_default();
            let id = text.parse::<MessageId>().map_err(|err| {
                Corrupt::because(BACKEND, format!("entry {key:?}"), "not a message id", err)
            })?;
            ids.push(id);
        }
        Ok(ids)
    }
}

#[async_trait]
impl MessageTracker for RedisTracker {
    async fn check_and_mark(&self, id: MessageId) -> Result<bool> {
        let mut connection = self.connection().await?;
        let reply: Option<String> = redis::cmd("SET")
            .arg(self.key(id))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(self.expiration_ms)
            .query_async(&mut connection)
            .await
            .map_err(BackendError::redis)?;
        Ok(reply.is_some())
    }

    async fn has_seen(&self, id: MessageId) -> Result<bool> {
        let mut connection = self.connection().await?;
        connection.exists(self.key(id)).await.map_err(|err| BackendError::redis(err).into())
    }

    async fn mark_seen(&self, id: MessageId) -> Result<()> {
        let mut connection = self.connection().await?;
        connection
            .pset_ex(self.key(id), 1, self.expiration_ms)
            .await
            .map_err(|err| BackendError::redis(err).into())
    }

    async fn mark_seen_many(&self, ids: &[MessageId]) -> Result<()> {
        if ids.is_empty() {
            // Redis refuses an empty pipeline.
            return Ok(());
        }
        let mut connection = self.connection().await?;
        for chunk in ids.chunks(Self::IDS_PER_PIPELINE) {
            let mut pipe = redis::pipe();
            for id in chunk {
                pipe.pset_ex(self.key(*id), 1, self.expiration_ms).ignore();
            }
            let () = pipe.query_async(&mut connection).await.map_err(BackendError::redis)?;
        }
        Ok(())
    }

    async fn cleanup_expired(&self) -> Result<usize> {
        // The server expires keys itself.
        Ok(0)
    }

    async fn len(&self) -> Result<usize> {
        Ok(self.scan_ids(usize::MAX).await?.len())
    }

    async fn recent(&self, limit: usize) -> Result<Vec<MessageId>> {
        self.scan_ids(limit).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use mesh_testkit::{REDIS_URL_VAR, RedisNamespace, backend_url};

    use super::*;
    use crate::conformance::{self, Fixture};

    crate::message_tracker_conformance!(suite, |expiration| async move {
        let url = backend_url(REDIS_URL_VAR, "redis tracker conformance")?;
        let namespace = RedisNamespace::create(&url);
        let tracker = RedisTracker::new(namespace.pool().clone(), namespace.prefix(), expiration);
        Some(Fixture::new(Arc::new(tracker)).then(namespace.cleanup()))
    });

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_pools_admit_one_winner() {
        let Some(url) = backend_url(REDIS_URL_VAR, "redis tracker across pools") else { return };
        let namespace = RedisNamespace::create(&url);
        // Two pools, as two processes would have, still admit exactly one winner. Marks last
        // long enough that connecting the fresh pools cannot outlast the first one.
        let expiration = conformance::MODEL_EXPIRATION;
        let first = RedisTracker::new(namespace.pool().clone(), namespace.prefix(), expiration);
        let second = RedisTracker::new(namespace.second_pool(), namespace.prefix(), expiration);
        conformance::one_winner_under_concurrency(&[Arc::new(first), Arc::new(second)]).await;
        namespace.cleanup().await;
    }

    #[tokio::test]
    async fn an_unreachable_server_is_a_retryable_error() {
        let pool = deadpool_redis::Config::from_url("redis://127.0.0.1:1")
            .create_pool(Some(deadpool_redis::Runtime::Tokio1))
            .unwrap();
        let tracker = RedisTracker::new(pool, "mesh:", Duration::from_secs(1));
        let err = tracker.check_and_mark(MessageId::new()).await.unwrap_err();
        assert!(err.is_retryable(), "{err}");
        assert!(err.to_string().starts_with("redis unavailable"), "{err}");
    }
}
