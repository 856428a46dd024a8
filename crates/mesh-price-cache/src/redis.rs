//! [`RedisPriceStore`]: one Redis hash per asset, `{prefix}price:{asset}`, with fields `secs`,
//! `nanos`, `source`, `tie` (the ordering key) and `data` (the price as JSON), expiring after a TTL
//! (default 1 hour) so prices no provider refreshes disappear.
//!
//! The newest-wins compare runs on the server as a Lua script, so two processes storing the
//! same asset at once cannot overwrite a newer price with an older one. The script decides a
//! list of keys in order: `store` sends one, `store_many` 128 per call, every call of a batch
//! pipelined into one round trip.

use async_trait::async_trait;
use deadpool_redis::redis::{self, AsyncCommands, Script};
use deadpool_redis::{Connection, Pool};
use mesh_storage_core::{BackendError, Corrupt};
use mesh_types::{Asset, CachedPriceData, PriceMap};
use tokio::time::Duration;

use crate::{Error, PriceStore, Result, StoreOutcome, price_under};

const BACKEND: &str = "redis";

/// KEYS: the assets' hashes. ARGV[1]: ttl in ms; then five per key: data, secs, nanos,
/// source, tie breaker. Answers one status per key, in order: 0 ignored, 1 inserted, 2 replaced.
/// The keys are decided one after another, so a batch holding several prices of one asset
/// behaves exactly like that many single stores.
///
/// Source ids compare as hyphenated lowercase UUIDs and tie breakers as lowercase hex, whose
/// string orders are their byte orders: the same order as `CachedPriceData::newer_than`.
const STORE_IF_NEWER: &str = r"
local ttl = ARGV[1]
local outcomes = {}
for i, key in ipairs(KEYS) do
  local at = 1 + (i - 1) * 5
  local data, new_secs, new_nanos, source, tie = ARGV[at + 1], ARGV[at + 2], ARGV[at + 3], ARGV[at + 4], ARGV[at + 5]
  local held = redis.call('HMGET', key, 'secs', 'nanos', 'source', 'tie')
  local outcome = 1
  if held[1] then
    local secs, nanos = tonumber(held[1]), tonumber(held[2])
    local s, n = tonumber(new_secs), tonumber(new_nanos)
    local older = s < secs or (s == secs and (n < nanos or (n == nanos and
      (source < held[3] or (source == held[3] and tie <= (held[4] or ''))))))
    if older then
      outcome = 0
    else
      outcome = 2
    end
  end
  if outcome ~= 0 then
    redis.call('HSET', key, 'secs', new_secs, 'nanos', new_nanos, 'source', source, 'tie', tie, 'data', data)
    redis.call('PEXPIRE', key, ttl)
  end
  outcomes[i] = outcome
end
return outcomes
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
    /// Most keys one script call of [`PriceStore::store_many`] decides; a larger batch is
    /// several calls pipelined in one round trip. Measured on a 2-core machine with batches
    /// of 1,024-4,096 prices: one call per key pipelined ran 60-75 k prices/s, 16-4,096 keys
    /// per call 90-105 k/s (the server no longer parses and dispatches a command per key). A
    /// script blocks the server while it runs, so a call is kept to about a millisecond.
    const KEYS_PER_SCRIPT: usize = 128;

    /// A store on `pool` whose keys start with `prefix` and expire `ttl` after their last write.
    pub fn new(pool: Pool, prefix: impl Into<String>, ttl: Duration) -> Self {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        Self { pool, prefix: prefix.into(), ttl_ms, script: Script::new(STORE_IF_NEWER) }
    }

    fn key(&self, asset: Asset) -> String {
        format!("{}price:{asset}", self.prefix)
    }

    async fn connection(&self) -> Result<Connection> {
        self.pool.get().await.map_err(|err| BackendError::redis_pool(err).into())
    }

    /// Every price key of this store, by `SCAN`.
    async fn keys(&self, connection: &mut Connection) -> Result<Vec<String>> {
        let pattern = format!("{}price:*", self.prefix);
        let mut iter = connection.scan_match::<_, String>(&pattern).await.map_err(BackendError::redis)?;
        let mut keys = Vec::new();
        while let Some(key) = iter.next_item().await {
            keys.push(key.map_err(BackendError::redis)?);
        }
        Ok(keys)
    }

    /// Stores `prices` in order, `per_call` keys per script call, every call pipelined into one
    /// round trip.
    async fn store_chunks(&self, prices: &[CachedPriceData], per_call: usize) -> Result<Vec<StoreOutcome>> {
        if prices.is_empty() {
            // Redis refuses an empty pipeline.
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for chunk in prices.chunks(per_call.max(1)) {
            pipe.add_command(self.script_call(chunk)?);
        }
        let mut connection = self.connection().await?;
        let answer: redis::RedisResult<Vec<Vec<i64>>> = match pipe.query_async(&mut connection).await {
            // The server lost its script cache (a restart, `SCRIPT FLUSH`): nothing ran, because
            // every call names the script by its hash. Load it and send the batch again.
            Err(err) if err.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                self.script.load_async(&mut connection).await.map_err(BackendError::redis)?;
                pipe.query_async(&mut connection).await
            }
            answer => answer,
        };
        let codes: Vec<i64> = answer.map_err(BackendError::redis)?.into_iter().flatten().collect();
        if codes.len() != prices.len() {
            let detail =
                format!("store script answered {} outcomes for {} prices", codes.len(), prices.len());
            return Err(Corrupt::new(BACKEND, price_under(&self.key(prices[0].asset)), detail).into());
        }
        prices
            .iter()
            .zip(codes)
            .map(|(price, code)| match code {
                0 => Ok(StoreOutcome::Ignored),
                1 => Ok(StoreOutcome::Inserted),
                2 => Ok(StoreOutcome::Replaced),
                other => Err(Corrupt::new(
                    BACKEND,
                    price_under(&self.key(price.asset)),
                    format!("store script answered {other}"),
                )
                .into()),
            })
            .collect()
    }

    /// One `EVALSHA` of the store script over `prices`.
    fn script_call(&self, prices: &[CachedPriceData]) -> Result<redis::Cmd> {
        let mut call = redis::cmd("EVALSHA");
        call.arg(self.script.get_hash()).arg(prices.len());
        for price in prices {
            call.arg(self.key(price.asset));
        }
        call.arg(self.ttl_ms);
        for price in prices {
            let data = serde_json::to_string(price)
                .map_err(|err| Error::from(BackendError::failed(BACKEND, err)))?;
            call.arg(data)
                .arg(price.timestamp.timestamp())
                .arg(price.timestamp.timestamp_subsec_nanos())
                .arg(price.source_node_id.to_string())
                .arg(price.tie_breaker());
        }
        Ok(call)
    }

    fn parse(key: &str, data: &str) -> Result<CachedPriceData> {
        serde_json::from_str(data)
            .map_err(|err| Corrupt::because(BACKEND, price_under(key), format!("data {data:?}"), err).into())
    }
}

#[async_trait]
impl PriceStore for RedisPriceStore {
    async fn store(&self, price: CachedPriceData) -> Result<StoreOutcome> {
        let outcomes = self.store_chunks(std::slice::from_ref(&price), 1).await?;
        Ok(outcomes[0])
    }

    async fn store_many(&self, prices: Vec<CachedPriceData>) -> Result<Vec<StoreOutcome>> {
        self.store_chunks(&prices, Self::KEYS_PER_SCRIPT).await
    }

    async fn get(&self, asset: Asset) -> Result<Option<CachedPriceData>> {
        let key = self.key(asset);
        let mut connection = self.connection().await?;
        let data: Option<String> = connection.hget(&key, "data").await.map_err(BackendError::redis)?;
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
        let values: Vec<Option<String>> =
            pipe.query_async(&mut connection).await.map_err(BackendError::redis)?;
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

    async fn len(&self) -> Result<usize> {
        let mut connection = self.connection().await?;
        Ok(self.keys(&mut connection).await?.len())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use mesh_testkit::{REDIS_URL_VAR, RedisNamespace, backend_url};

    use super::*;
    use crate::conformance::{self, Fixture};

    crate::price_store_conformance!(suite, async {
        let url = backend_url(REDIS_URL_VAR, "redis price store conformance")?;
        let namespace = RedisNamespace::create(&url);
        let store =
            RedisPriceStore::new(namespace.pool().clone(), namespace.prefix(), RedisPriceStore::DEFAULT_TTL);
        Some(Fixture::new(Arc::new(store)).then(namespace.cleanup()))
    });

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
