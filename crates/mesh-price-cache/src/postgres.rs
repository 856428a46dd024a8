//! [`PostgresPriceStore`]: prices in the `mesh_price_cache` table (see `migrations/`).
//!
//! Every write is one statement, `UPSERT`, a conditional upsert: a row is replaced only when
//! the new price is newer by the `(timestamp, timestamp_nanos, source_node_id, tie breaker)`
//! order, the same order as [`CachedPriceData::newer_than`]; the tie breakers are computed in SQL
//! with the same digest. PostgreSQL's `TIMESTAMPTZ` keeps microseconds, so the sub-microsecond
//! remainder lives in `timestamp_nanos` and values come back exactly.
//!
//! `store` sends it for one row; `store_many` for many rows at once (`INSERT … SELECT FROM
//! UNNEST(arrays) ON CONFLICT DO UPDATE … WHERE held < new RETURNING …`), 96 rows per statement
//! and up to six statements in flight on separate connections.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use mesh_storage_core::{BackendError, Corrupt};
use mesh_types::chrono::{DateTime, Utc};
use mesh_types::rust_decimal::Decimal;
use mesh_types::{Asset, CachedPriceData, NodeId, PriceMap, Timestamp};
use sqlx::PgPool;
use tokio::task::JoinSet;

use crate::{Error, PriceStore, Result, StoreOutcome, price_under};

const BACKEND: &str = "postgres";

/// The one newest-wins write, of every price in the arrays `$1`–`$7`, returning the changed rows
/// with whether each was inserted (`xmax = 0`) rather than updated.
///
/// The new row's tie breaker is computed in SQL, from the same text as the held row's (EXCLUDED
/// holds only the table's columns), so both sides of the compare are digests of the stored
/// strings — [`CachedPriceData::tie_breaker`] of what was bound. The row comparison stops at
/// the first unequal column, so the digests are only computed on a tie.
const UPSERT: &str = "INSERT INTO mesh_price_cache \
        (asset, price, blockchain, timestamp, timestamp_nanos, source_node_id, change_24h, updated_at) \
     SELECT asset, price, blockchain, timestamp, timestamp_nanos, source_node_id, change_24h, now() \
     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::int4[], $6::uuid[], $7::text[]) \
        AS input (asset, price, blockchain, timestamp, timestamp_nanos, source_node_id, change_24h) \
     ON CONFLICT (asset) DO UPDATE SET \
        price = EXCLUDED.price, blockchain = EXCLUDED.blockchain, timestamp = EXCLUDED.timestamp, \
        timestamp_nanos = EXCLUDED.timestamp_nanos, source_node_id = EXCLUDED.source_node_id, \
        change_24h = EXCLUDED.change_24h, updated_at = now() \
     WHERE (mesh_price_cache.timestamp, mesh_price_cache.timestamp_nanos, mesh_price_cache.source_node_id, \
            encode(sha256(convert_to(mesh_price_cache.price || '|' || mesh_price_cache.blockchain || '|' \
        || coalesce(mesh_price_cache.change_24h, ''), 'UTF8')), 'hex') COLLATE \"C\") \
         < (EXCLUDED.timestamp, EXCLUDED.timestamp_nanos, EXCLUDED.source_node_id, \
            encode(sha256(convert_to(EXCLUDED.price || '|' || EXCLUDED.blockchain || '|' \
        || coalesce(EXCLUDED.change_24h, ''), 'UTF8')), 'hex') COLLATE \"C\") \
     RETURNING asset, (xmax = 0)";

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
        let entry = price_under(&self.asset);
        let asset = Asset::new(&self.asset)
            .map_err(|err| Corrupt::because(BACKEND, &entry, format!("asset {:?}", self.asset), err))?;
        let price = self
            .price
            .parse::<Decimal>()
            .map_err(|err| Corrupt::because(BACKEND, &entry, format!("price {:?}", self.price), err))?;
        let change_24h = match &self.change_24h {
            None => None,
            Some(text) => Some(
                text.parse::<Decimal>()
                    .map_err(|err| Corrupt::because(BACKEND, &entry, format!("change_24h {text:?}"), err))?,
            ),
        };
        let nanos =
            u32::try_from(self.timestamp_nanos).ok().filter(|nanos| *nanos < 1000).ok_or_else(|| {
                Corrupt::new(
                    BACKEND,
                    &entry,
                    format!("timestamp_nanos {} is outside 0-999", self.timestamp_nanos),
                )
            })?;
        let timestamp = self
            .timestamp
            .checked_add_signed(mesh_types::chrono::Duration::nanoseconds(i64::from(nanos)))
            .ok_or_else(|| {
                Corrupt::new(
                    BACKEND,
                    &entry,
                    format!("timestamp {} + {nanos} ns is out of range", self.timestamp),
                )
            })?;
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
    // Less than a microsecond off lands on a whole microsecond, within range: the fallback (keep
    // the value, no remainder) cannot happen.
    timestamp
        .checked_sub_signed(mesh_types::chrono::Duration::nanoseconds(i64::from(remainder)))
        .map_or((timestamp, 0), |whole| (whole, remainder as i32))
}

/// One multi-row conditional upsert of `prices[indexes]`, which must name distinct assets, in
/// the order given (rows are locked in that order). Returns the changed ones with their
/// outcome; the rest were ignored.
async fn upsert(
    pool: PgPool,
    prices: Arc<[CachedPriceData]>,
    indexes: Vec<usize>,
) -> Result<Vec<(usize, StoreOutcome)>> {
    let count = indexes.len();
    let mut assets = Vec::with_capacity(count);
    let mut values = Vec::with_capacity(count);
    let mut blockchains = Vec::with_capacity(count);
    let mut timestamps = Vec::with_capacity(count);
    let mut nanos = Vec::with_capacity(count);
    let mut sources = Vec::with_capacity(count);
    let mut changes = Vec::with_capacity(count);
    let mut by_asset = HashMap::with_capacity(count);
    for &index in &indexes {
        let price = &prices[index];
        let (timestamp, remainder) = split_timestamp(price.timestamp);
        assets.push(price.asset.as_str());
        values.push(price.price.to_string());
        blockchains.push(&*price.blockchain);
        timestamps.push(timestamp);
        nanos.push(remainder);
        sources.push(*price.source_node_id.as_uuid());
        changes.push(price.change_24h.map(|change| change.to_string()));
        by_asset.insert(price.asset.as_str(), index);
    }
    let changed: Vec<(String, bool)> = sqlx::query_as(UPSERT)
        .bind(assets)
        .bind(values)
        .bind(blockchains)
        .bind(timestamps)
        .bind(nanos)
        .bind(sources)
        .bind(changes)
        .fetch_all(&pool)
        .await
        .map_err(BackendError::postgres)?;
    changed
        .into_iter()
        .map(|(asset, inserted)| {
            let index = by_asset.get(asset.as_str()).copied().ok_or_else(|| {
                Corrupt::new(BACKEND, price_under(&asset), "the upsert returned an asset it was not given")
            })?;
            Ok((index, if inserted { StoreOutcome::Inserted } else { StoreOutcome::Replaced }))
        })
        .collect()
}

impl PostgresPriceStore {
    /// Most rows one statement of [`PriceStore::store_many`] upserts; a larger batch is
    /// several statements, up to [`Self::STATEMENTS_IN_FLIGHT`] at once on separate
    /// connections.
    ///
    /// Small on purpose. sqlx does not set `TCP_NODELAY`, and a statement larger than the
    /// socket's 16 KB send buffer (about 200 rows of ~80 bytes) waits ~40 ms for a delayed ACK
    /// before its last bytes leave — longer than the server needs for 4,096 rows (~40 ms, three
    /// indexes to update per row). Measured on the 2-core development machine (PostgreSQL 15
    /// sharing the cores), 4,096-price batches: one 4,096-row statement 40 k prices/s; 1,024
    /// rows x 4 in flight 44 k/s; 128 x 4 63 k/s; 160 x 8 73 k/s; 96 x 6 76 k/s; 64 x 6 71 k/s.
    /// 96 rows stay under the send buffer even with long symbols and chain names.
    const ROWS_PER_STATEMENT: usize = 96;
    /// Statements of one [`PriceStore::store_many`] running at once; each holds a connection
    /// of the pool while it runs (a few milliseconds), so size the pool above this.
    const STATEMENTS_IN_FLIGHT: usize = 6;

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
        .map_err(|err| BackendError::postgres(err).into())
    }
}

#[async_trait]
impl PriceStore for PostgresPriceStore {
    async fn store(&self, price: CachedPriceData) -> Result<StoreOutcome> {
        // No row back: the held price was as new or newer.
        let changed = upsert(self.pool.clone(), Arc::new([price]), vec![0]).await?;
        Ok(changed.first().map_or(StoreOutcome::Ignored, |&(_, outcome)| outcome))
    }

    async fn store_many(&self, prices: Vec<CachedPriceData>) -> Result<Vec<StoreOutcome>> {
        let mut outcomes = vec![StoreOutcome::Ignored; prices.len()];
        // Per asset, the indexes of the prices newer than every earlier price of that asset in
        // the batch. Any other price is ignored without asking the server: by its turn the
        // store holds an earlier price of the batch or something newer.
        let mut chains: HashMap<Asset, Vec<usize>> = HashMap::new();
        for (index, price) in prices.iter().enumerate() {
            let chain = chains.entry(price.asset).or_default();
            if chain.last().is_none_or(|&last| price.newer_than(&prices[last])) {
                chain.push(index);
            }
        }
        let prices: Arc<[CachedPriceData]> = prices.into();
        // Round `n` stores the `n`th price of every chain. An upsert cannot touch a row twice,
        // and round by round each asset's prices arrive in their batch order, so the outcomes
        // are exactly those of one store after another. Without repeated assets (what a
        // write-behind flusher sends) a batch is one round.
        let rounds = chains.values().map(Vec::len).max().unwrap_or(0);
        for round in 0..rounds {
            let mut indexes: Vec<usize> =
                chains.values().filter_map(|chain| chain.get(round).copied()).collect();
            // Every statement locks its rows in asset order. Whatever statements of several
            // processes run at once then, a statement only ever waits for a row above all it
            // holds, so no cycle of waits (deadlock) can form. The statements of one round
            // touch disjoint rows and may run in parallel.
            indexes.sort_unstable_by_key(|&index| prices[index].asset);
            let mut chunks = indexes.chunks(Self::ROWS_PER_STATEMENT).map(<[usize]>::to_vec);
            // Dropping the set (an error, or the caller giving up) aborts the statements still
            // running; what they stored stays, which newest-wins makes harmless.
            let mut running = JoinSet::new();
            loop {
                while running.len() < Self::STATEMENTS_IN_FLIGHT {
                    let Some(chunk) = chunks.next() else { break };
                    running.spawn(upsert(self.pool.clone(), prices.clone(), chunk));
                }
                let Some(done) = running.join_next().await else { break };
                let changed = done.map_err(|err| Error::from(BackendError::failed(BACKEND, err)))??;
                for (index, outcome) in changed {
                    outcomes[index] = outcome;
                }
            }
        }
        Ok(outcomes)
    }

    async fn get(&self, asset: Asset) -> Result<Option<CachedPriceData>> {
        let row: Option<Row> = sqlx::query_as(
            "SELECT asset, price, blockchain, timestamp, timestamp_nanos, source_node_id, change_24h \
             FROM mesh_price_cache WHERE asset = $1",
        )
        .bind(asset.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(BackendError::postgres)?;
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

    async fn len(&self) -> Result<usize> {
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM mesh_price_cache")
            .fetch_one(&self.pool)
            .await
            .map_err(BackendError::postgres)?;
        Ok(usize::try_from(count).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use mesh_testkit::{DATABASE_URL_VAR, PgSchema, backend_url};

    use super::*;
    use crate::conformance::{self, Fixture};

    crate::price_store_conformance!(suite, async {
        let url = backend_url(DATABASE_URL_VAR, "postgres price store conformance")?;
        let schema = PgSchema::create(&url).await;
        let store = PostgresPriceStore::new(schema.pool().clone());
        Some(Fixture::new(Arc::new(store)).then(schema.cleanup()))
    });

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_second_pool_keeps_the_newest() {
        let Some(url) = backend_url(DATABASE_URL_VAR, "postgres price store across pools") else { return };
        let schema = PgSchema::create(&url).await;
        // Two pools, as two processes would have, still keep the newest price.
        let second = PostgresPriceStore::new(schema.second_pool().await);
        conformance::concurrent_stores_keep_the_newest(Arc::new(second)).await;
        schema.cleanup().await;
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
        let source = std::error::Error::source(&err).expect("the parser's error is kept");
        assert!(source.is::<mesh_types::rust_decimal::Error>(), "{source}");
        assert!(store.get_all().await.unwrap().is_empty(), "the corrupt row is skipped in listings");
        schema.cleanup().await;
    }
}
