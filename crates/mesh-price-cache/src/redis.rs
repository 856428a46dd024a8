//! [`RedisPriceStore`]: one Redis hash per asset, `{prefix}price:{asset}`, with fields `secs`,
//! `nanos`, `source`, `tie` (the ordering key) and `data` (the price as JSON), expiring after a TTL
//! (default 1 hour) so prices no provider refreshes disappear.
//!
//! The newest-wins compare runs on the server as a Lua script, so two processes storing the
//! same asset at once cannot overwrite a newer price with an older one.

use std::collections::BTreeMap;

use async_trait::async_trait;
use deadpool_redis::redis::{self, AsyncCommands, Script};
use deadpool_redis::{Connection, Pool};
use mesh_types::{Asset, CachedPriceData, PriceMap, Timestamp};
use tokio::time::Duration;

use crate::{Error, PriceStore, Result, StoreOutcome};

const BACKEND: &str = "redis";

/// KEYS[1]: the asset's hash. ARGV: data, secs, nanos, source, ttl in ms, tie breaker.
/// Source ids compare as hyphenated lowercase UUIDs and tie breakers as lowercase hex, whose
/// string orders are their byte orders: the same order as `CachedPriceData::newer_than`.
const STORE_IF_NEWER: &str = r"
local held = redis.call('HMGET', KEYS[1], 'secs', 'nanos', 'source', 'tie')
local outcome = 'inserted'
if held[1] then
  local secs, nanos = tonumber(held[1]), tonumber(held[2])
  local new_secs, new_nanos = tonumber(ARGV[2]), tonumber(ARGV[3])
  local older = new_secs < secs or (new_secs == secs and (new_nanos < nanos or (new_nanos == nanos and
    (ARGV[4] < held[3] or (ARGV[4] == held[3] and ARGV[6] <= (held[4] or ''))))))
  if older then
    return 'ignored'
  end
  outcome = 'replaced'
end
redis.call('HSET', KEYS[1], 'secs', ARGV[2], 'nanos', ARGV[3], 'source', ARGV[4], 'tie', ARGV[6], 'data', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return outcome
";

/// Prices in Redis, shared by every process using the same server and prefix.
pub struct RedisPriceStore {
    pool: Pool,
    prefix: String,
    ttl_ms: u64,
    script: Script,
}

impl std::fmt::Debug for RedisPriceStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPriceStore")
            .field("prefix", &self.prefix)
            .field("ttl_ms", &self.ttl_ms)
            .finish_non_exhaustive()
    }
}

impl RedisPriceStore {
    /// Default key prefix.
    pub const DEFAULT_PREFIX: &'static str = "mesh:";
    /// Default time a price lives without being refreshed: 1 hour.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);

    /// A store on `pool` whose keys start with `prefix` and expire `ttl` after their last write.
    pub fn new(pool: Pool, prefix: impl Into<String>, ttl: Duration) -> Self {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        Self { pool, prefix: prefix.into(), ttl_ms, script: Script::new(STORE_IF_NEWER) }
    }

    fn key(&self, asset: Asset) -> String {
        format!("{}price:{asset}", self.prefix)
    }

    async fn connection(&self) -> Result<Connection> {
        self.pool.get().await.map_err(|err| Error::Unavailable { backend: BACKEND, detail: err.to_string() })
    }

    /// Every price key of this store, by `SCAN`.
    async fn keys(&self, connection: &mut Connection) -> Result<Vec<String>> {
        let pattern = format!("{}price:*", self.prefix);
        let mut iter = connection.scan_match::<_, String>(&pattern).await.map_err(redis_error)?;
        let mut keys = Vec::new();
        while let Some(key) = iter.next_item().await {
            keys.push(key.map_err(redis_error)?);
        }
        Ok(keys)
    }

    fn parse(key: &str, data: &str) -> Result<CachedPriceData> {
        serde_json::from_str(data).map_err(|err| Error::Corrupt {
            backend: BACKEND,
            key: key.to_owned(),
            detail: err.to_string(),
        })
    }
}

/// Connection-level failures are worth retrying; anything else is a backend error.
fn redis_error(err: redis::RedisError) -> Error {
    if err.is_io_error() || err.is_connection_refusal() || err.is_connection_dropped() || err.is_timeout() {
        Error::Unavailable { backend: BACKEND, detail: err.to_string() }
    } else {
        Error::Backend { backend: BACKEND, source: Box::new(err) }
    }
}

#[async_trait]
impl PriceStore for RedisPriceStore {
    async fn store(&self, price: CachedPriceData) -> Result<StoreOutcome> {
        let data = serde_json::to_string(&price)
            .map_err(|err| Error::Backend { backend: BACKEND, source: Box::new(err) })?;
        let mut connection = self.connection().await?;
        let outcome: String = self
            .script
            .key(self.key(price.asset))
            .arg(data)
            .arg(price.timestamp.timestamp())
            .arg(price.timestamp.timestamp_subsec_nanos())
            .arg(price.source_node_id.to_string())
            .arg(self.ttl_ms)
            .arg(price.tie_breaker())
            .invoke_async(&mut connection)
            .await
            .map_err(redis_error)?;
        match outcome.as_str() {
            "inserted" => Ok(StoreOutcome::Inserted),
            "replaced" => Ok(StoreOutcome::Replaced),
            "ignored" => Ok(StoreOutcome::Ignored),
            other => Err(Error::Corrupt {
                backend: BACKEND,
                key: self.key(price.asset),
                detail: format!("store script answered {other:?}"),
            }),
        }
    }

    async fn get(&self, asset: Asset) -> Result<Option<CachedPriceData>> {
        let key = self.key(asset);
        let mut connection = self.connection().await?;
        let data: Option<String> = connection.hget(&key, "data").await.map_err(redis_error)?;
        data.map(|data| Self::parse(&key, &data)).transpose()
    }

    async fn get_all(&self) -> Result<PriceMap> {
        let mut connection = self.connection().await?;
        let keys = self.keys(&mut connection).await?;
        if keys.is_empty() {
            // Redis refuses an empty pipeline.
            return Ok(PriceMap::new());
        }
        let mut pipe = redis::pipe();
        for key in &keys {
            pipe.hget(key, "data");
        }
        let values: Vec<Option<String>> = pipe.query_async(&mut connection).await.map_err(redis_error)?;
        let mut prices = PriceMap::new();
        // A key that expired between the scan and the read answers nil and is skipped. A
        // corrupt value is skipped too, loudly: one bad entry must not hide every other price.
        for (key, data) in keys.iter().zip(values) {
            match data.map(|data| Self::parse(key, &data)) {
                Some(Ok(price)) => {
                    prices.insert(price.asset, price);
                }
                Some(Err(err)) => tracing::warn!(error = %err, "skipping a corrupt price"),
                None => {}
            }
        }
        Ok(prices)
    }

    async fn digest(&self) -> Result<BTreeMap<Asset, Timestamp>> {
        Ok(self.get_all().await?.into_iter().map(|(asset, price)| (asset, price.timestamp)).collect())
    }

    async fn len(&self) -> Result<usize> {
        let mut connection = self.connection().await?;
        Ok(self.keys(&mut connection).await?.len())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use mesh_testkit::{REDIS_URL_VAR, RedisNamespace, backend_url};
    use proptest::prelude::*;

    use super::*;
    use crate::conformance;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn passes_the_conformance_suite() {
        let Some(url) = backend_url(REDIS_URL_VAR, "redis price store conformance") else { return };
        let namespace = RedisNamespace::create(&url);
        let store =
            RedisPriceStore::new(namespace.pool().clone(), namespace.prefix(), RedisPriceStore::DEFAULT_TTL);
        conformance::run_all(Arc::new(store)).await;
        namespace.cleanup().await;
    }

    #[test]
    fn behaves_like_the_reference_model() {
        let Some(url) = backend_url(REDIS_URL_VAR, "redis price store model test") else { return };
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let namespace = RedisNamespace::create(&url);
        let store =
            RedisPriceStore::new(namespace.pool().clone(), namespace.prefix(), RedisPriceStore::DEFAULT_TTL);
        proptest!(ProptestConfig::with_cases(24), |(ops in conformance::operations())| {
            runtime.block_on(conformance::check_against_model(&store, &ops));
        });
        runtime.block_on(namespace.cleanup());
    }

    #[tokio::test]
    async fn prices_expire_after_the_ttl() {
        let Some(url) = backend_url(REDIS_URL_VAR, "redis price store ttl") else { return };
        let namespace = RedisNamespace::create(&url);
        let store =
            RedisPriceStore::new(namespace.pool().clone(), namespace.prefix(), Duration::from_millis(200));
        let asset = conformance::Assets::fresh().nth(0);
        store
            .store(conformance::price(asset, 1, 0, 1, mesh_types::rust_decimal::Decimal::ONE))
            .await
            .unwrap();
        assert!(store.get(asset).await.unwrap().is_some());
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(store.get(asset).await.unwrap().is_none(), "the price expired with its key");
        namespace.cleanup().await;
    }

    #[tokio::test]
    async fn a_corrupt_value_is_reported_not_a_panic() {
        let Some(url) = backend_url(REDIS_URL_VAR, "redis price store corrupt value") else { return };
        let namespace = RedisNamespace::create(&url);
        let store =
            RedisPriceStore::new(namespace.pool().clone(), namespace.prefix(), RedisPriceStore::DEFAULT_TTL);
        let asset = conformance::Assets::fresh().nth(0);
        let mut connection = namespace.pool().get().await.unwrap();
        let _: () = connection.hset(store.key(asset), "data", "{not json").await.unwrap();
        let err = store.get(asset).await.unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        let good = conformance::price(
            conformance::Assets::fresh().nth(0),
            1,
            0,
            1,
            mesh_types::rust_decimal::Decimal::ONE,
        );
        store.store(good.clone()).await.unwrap();
        let all = store.get_all().await.unwrap();
        assert_eq!(all.get(&good.asset), Some(&good), "one corrupt entry does not hide the others");
        assert!(!all.contains_key(&asset));
        namespace.cleanup().await;
    }
}
