//! [`PostgresPriceStore`]: prices in the `mesh_price_cache` table (see `migrations/`).
//!
//! `store` is one conditional upsert: a row is replaced only when the new price is newer by the
//! `(timestamp, timestamp_nanos, source_node_id, tie breaker)` order, the same order as
//! [`CachedPriceData::newer_than`]; the tie breaker of the held row is computed in SQL with the
//! same digest. PostgreSQL's `TIMESTAMPTZ` keeps microseconds, so the
//! sub-microsecond remainder lives in `timestamp_nanos` and values come back exactly.

use std::collections::BTreeMap;

use async_trait::async_trait;
use mesh_types::chrono::{DateTime, Utc};
use mesh_types::rust_decimal::Decimal;
use mesh_types::{Asset, CachedPriceData, NodeId, PriceMap, Timestamp};
use sqlx::PgPool;

use crate::{Error, PriceStore, Result, StoreOutcome};

const BACKEND: &str = "postgres";

/// Prices in PostgreSQL, shared by every process using the same database.
#[derive(Debug, Clone)]
pub struct PostgresPriceStore {
    pool: PgPool,
}

/// One `mesh_price_cache` row as read.
#[derive(sqlx::FromRow)]
struct Row {
    asset: String,
    price: String,
    blockchain: String,
    timestamp: DateTime<Utc>,
    timestamp_nanos: i32,
    source_node_id: uuid::Uuid,
    change_24h: Option<String>,
}

impl Row {
    fn into_price(self) -> Result<CachedPriceData> {
        let corrupt = |detail: String| Error::Corrupt { backend: BACKEND, key: self.asset.clone(), detail };
        let asset = Asset::new(&self.asset).map_err(|err| corrupt(err.to_string()))?;
        let price =
            self.price.parse::<Decimal>().map_err(|err| corrupt(format!("price {:?}: {err}", self.price)))?;
        let change_24h = match &self.change_24h {
            None => None,
            Some(text) => {
                Some(text.parse::<Decimal>().map_err(|err| corrupt(format!("change_24h {text:?}: {err}")))?)
            }
        };
        let nanos = u32::try_from(self.timestamp_nanos)
            .ok()
            .filter(|nanos| *nanos < 1000)
            .ok_or_else(|| corrupt(format!("timestamp_nanos {} is outside 0-999", self.timestamp_nanos)))?;
        let timestamp = self.timestamp + mesh_types::chrono::Duration::nanoseconds(i64::from(nanos));
        Ok(CachedPriceData {
            asset,
            price,
            timestamp,
            source_node_id: NodeId::from_uuid(self.source_node_id),
            blockchain: self.blockchain.as_str().into(),
            change_24h,
        })
    }
}

/// The timestamp split into what `TIMESTAMPTZ` keeps (whole microseconds) and the remainder.
fn split_timestamp(timestamp: Timestamp) -> (Timestamp, i32) {
    let remainder = timestamp.timestamp_subsec_nanos() % 1000;
    (timestamp - mesh_types::chrono::Duration::nanoseconds(i64::from(remainder)), remainder as i32)
}

impl PostgresPriceStore {
    /// A store on `pool`, migrated with the workspace's `migrations/`.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    async fn rows(&self) -> Result<Vec<Row>> {
        sqlx::query_as(
            "SELECT asset, price, blockchain, timestamp, timestamp_nanos, source_node_id, change_24h \
             FROM mesh_price_cache",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(sql_error)
    }
}

/// Connection-level failures are worth retrying; anything else is a backend error.
fn sql_error(err: sqlx::Error) -> Error {
    match err {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Tls(_) => {
            Error::Unavailable { backend: BACKEND, detail: err.to_string() }
        }
        // Connection exceptions (class 08) and a server shutting down (57P01-57P03).
        sqlx::Error::Database(ref db)
            if db.code().is_some_and(|code| code.starts_with("08") || code.starts_with("57P")) =>
        {
            Error::Unavailable { backend: BACKEND, detail: err.to_string() }
        }
        other => Error::Backend { backend: BACKEND, source: Box::new(other) },
    }
}

#[async_trait]
impl PriceStore for PostgresPriceStore {
    async fn store(&self, price: CachedPriceData) -> Result<StoreOutcome> {
        let (timestamp, nanos) = split_timestamp(price.timestamp);
        let inserted: Option<bool> = sqlx::query_scalar(
            "INSERT INTO mesh_price_cache \
                (asset, price, blockchain, timestamp, timestamp_nanos, source_node_id, change_24h, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, now()) \
             ON CONFLICT (asset) DO UPDATE SET \
                price = EXCLUDED.price, blockchain = EXCLUDED.blockchain, timestamp = EXCLUDED.timestamp, \
                timestamp_nanos = EXCLUDED.timestamp_nanos, source_node_id = EXCLUDED.source_node_id, \
                change_24h = EXCLUDED.change_24h, updated_at = now() \
             WHERE (mesh_price_cache.timestamp, mesh_price_cache.timestamp_nanos, mesh_price_cache.source_node_id, \
                    encode(sha256(convert_to(mesh_price_cache.price || '|' || mesh_price_cache.blockchain || '|' \
                        || coalesce(mesh_price_cache.change_24h, ''), 'UTF8')), 'hex') COLLATE \"C\") \
                 < (EXCLUDED.timestamp, EXCLUDED.timestamp_nanos, EXCLUDED.source_node_id, $8 COLLATE \"C\") \
             RETURNING (xmax = 0)",
        )
        .bind(price.asset.as_str())
        .bind(price.price.to_string())
        .bind(&price.blockchain)
        .bind(timestamp)
        .bind(nanos)
        .bind(price.source_node_id.as_uuid())
        .bind(price.change_24h.map(|change| change.to_string()))
        .bind(price.tie_breaker())
        .fetch_optional(&self.pool)
        .await
        .map_err(sql_error)?;
        // No row back: the held price was as new or newer. `xmax = 0` tells an insert from an
        // update.
        Ok(match inserted {
            None => StoreOutcome::Ignored,
            Some(true) => StoreOutcome::Inserted,
            Some(false) => StoreOutcome::Replaced,
        })
    }

    async fn get(&self, asset: Asset) -> Result<Option<CachedPriceData>> {
        let row: Option<Row> = sqlx::query_as(
            "SELECT asset, price, blockchain, timestamp, timestamp_nanos, source_node_id, change_24h \
             FROM mesh_price_cache WHERE asset = $1",
        )
        .bind(asset.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(sql_error)?;
        row.map(Row::into_price).transpose()
    }

    async fn get_all(&self) -> Result<PriceMap> {
        let mut prices = PriceMap::new();
        for row in self.rows().await? {
            // One corrupt row must not hide every other price; it is reported loudly.
            match row.into_price() {
                Ok(price) => {
                    prices.insert(price.asset, price);
                }
                Err(err) => tracing::warn!(error = %err, "skipping a corrupt price row"),
            }
        }
        Ok(prices)
    }

    async fn digest(&self) -> Result<BTreeMap<Asset, Timestamp>> {
        Ok(self.get_all().await?.into_iter().map(|(asset, price)| (asset, price.timestamp)).collect())
    }

    async fn len(&self) -> Result<usize> {
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM mesh_price_cache")
            .fetch_one(&self.pool)
            .await
            .map_err(sql_error)?;
        Ok(usize::try_from(count).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use mesh_testkit::{DATABASE_URL_VAR, PgSchema, backend_url};
    use proptest::prelude::*;

    use super::*;
    use crate::conformance;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn passes_the_conformance_suite() {
        let Some(url) = backend_url(DATABASE_URL_VAR, "postgres price store conformance") else { return };
        let schema = PgSchema::create(&url).await;
        conformance::run_all(Arc::new(PostgresPriceStore::new(schema.pool().clone()))).await;
        // Two pools, as two processes would have, still keep the newest price.
        let second = PostgresPriceStore::new(schema.second_pool().await);
        conformance::concurrent_stores_keep_the_newest(Arc::new(second)).await;
        schema.cleanup().await;
    }

    #[test]
    fn behaves_like_the_reference_model() {
        let Some(url) = backend_url(DATABASE_URL_VAR, "postgres price store model test") else { return };
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let schema = runtime.block_on(PgSchema::create(&url));
        let store = PostgresPriceStore::new(schema.pool().clone());
        proptest!(ProptestConfig::with_cases(24), |(ops in conformance::operations())| {
            runtime.block_on(conformance::check_against_model(&store, &ops));
        });
        runtime.block_on(schema.cleanup());
    }

    #[tokio::test]
    async fn a_corrupt_row_is_reported_not_a_panic() {
        let Some(url) = backend_url(DATABASE_URL_VAR, "postgres price store corrupt row") else { return };
        let schema = PgSchema::create(&url).await;
        let store = PostgresPriceStore::new(schema.pool().clone());
        sqlx::query(
            "INSERT INTO mesh_price_cache (asset, price, blockchain, timestamp, source_node_id) \
             VALUES ('BAD', 'twelve', 'Solana', now(), gen_random_uuid())",
        )
        .execute(schema.pool())
        .await
        .unwrap();
        let err = store.get(Asset::new("BAD").unwrap()).await.unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("twelve"), "{err}");
        assert!(store.get_all().await.unwrap().is_empty(), "the corrupt row is skipped in listings");
        schema.cleanup().await;
    }
}
