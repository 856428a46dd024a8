//! Storage backends under load: the memory backends' per-operation cost (criterion), the
//! Redis and PostgreSQL backends' throughput with 64 operations in flight, and their write-behind
//! throughput (`write_behind`): batches written directly (`store_many`, `mark_seen_many`), and
//! 10,000 assets stored through a `LayeredPriceStore` until flushed. With
//! `MESH_BENCH_SUSTAINED_SECS=N` a continuous open-loop load (`MESH_BENCH_SUSTAINED_RATE`
//! prices/s, default 50,000) then runs through the layered store for N seconds per server and
//! prints the durable write rate and the write lag (p50, p99, max).
//!
//! Run: `cargo bench --bench storage` (`-- --quick` for a fast pass; `-- write_behind` for the
//! write-behind groups only). The Redis and PostgreSQL groups run when `MESH_TEST_REDIS_URL` /
//! `MESH_TEST_DATABASE_URL` are set.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures::future::join_all;
use mesh_testkit::{DATABASE_URL_VAR, PgSchema, REDIS_URL_VAR, RedisNamespace};
use pricemesh::dedup::{MemoryTracker, MessageTracker, PostgresTracker, RedisTracker, TrackerConfig};
use pricemesh::price_cache::conformance::{Assets, price};
use pricemesh::price_cache::{
    LayeredPriceStore, MemoryPriceStore, PostgresPriceStore, PriceStore, RedisPriceStore,
};
use pricemesh::types::rust_decimal::Decimal;
use pricemesh::types::{Asset, CachedPriceData, MessageId};
use tokio::runtime::Runtime;

const IN_FLIGHT: usize = 64;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

fn memory(c: &mut Criterion) {
    let runtime = runtime();
    let mut group = c.benchmark_group("memory");
    group.throughput(Throughput::Elements(1));

    let tracker = MemoryTracker::new(TrackerConfig::default());
    let ids: Vec<MessageId> = (0..100_000).map(|_| MessageId::new()).collect();
    let mut next = 0;
    group.bench_function("check_and_mark_new_id", |b| {
        b.to_async(&runtime).iter(|| {
            next = (next + 1) % ids.len();
            tracker.check_and_mark(black_box(ids[next]))
        });
    });
    let seen = MessageId::new();
    runtime.block_on(tracker.mark_seen(seen)).expect("mark");
    group.bench_function("check_and_mark_duplicate", |b| {
        b.to_async(&runtime).iter(|| tracker.check_and_mark(black_box(seen)));
    });

    let store = MemoryPriceStore::new();
    let assets = Assets::fresh();
    for i in 0..10_000 {
        runtime.block_on(store.store(price(assets.nth(i), 1, 0, 1, Decimal::ONE))).expect("store");
    }
    let probe = assets.nth(4_242);
    group.bench_function("get_of_10k_assets", |b| b.to_async(&runtime).iter(|| store.get(black_box(probe))));
    let reader = store.reader();
    group.bench_function("reader_get_of_10k_assets", |b| b.iter(|| reader.get(black_box(probe))));
    let mut second = 1;
    group.bench_function("store_newer_price", |b| {
        b.to_async(&runtime).iter(|| {
            second += 1;
            store.store(price(probe, second, 0, 1, Decimal::ONE))
        });
    });
    group.finish();
}

/// Runs `IN_FLIGHT` operations concurrently per iteration.
fn concurrent<F, Fut>(c: &mut Criterion, group_name: &str, name: &str, runtime: &Runtime, operation: F)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut group = c.benchmark_group(group_name);
    group.throughput(Throughput::Elements(IN_FLIGHT as u64)).sample_size(20);
    let mut round = 0;
    group.bench_function(BenchmarkId::new(name, IN_FLIGHT), |b| {
        b.to_async(runtime).iter(|| {
            round += 1;
            join_all((0..IN_FLIGHT).map(|i| operation(round * IN_FLIGHT + i)))
        });
    });
    group.finish();
}

fn servers(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    if let Ok(url) = std::env::var(REDIS_URL_VAR) {
        let namespace = RedisNamespace::create(&url);
        let tracker = Arc::new(RedisTracker::new(
            namespace.pool().clone(),
            namespace.prefix(),
            TrackerConfig::DEFAULT_EXPIRATION,
        ));
        concurrent(c, "redis", "check_and_mark", &runtime, |_| {
            let tracker = tracker.clone();
            async move {
                tracker.check_and_mark(MessageId::new()).await.expect("redis");
            }
        });
        let store = Arc::new(RedisPriceStore::new(
            namespace.pool().clone(),
            namespace.prefix(),
            RedisPriceStore::DEFAULT_TTL,
        ));
        let assets = Assets::fresh();
        concurrent(c, "redis", "store", &runtime, |n| {
            let store = store.clone();
            let p = price(assets.nth(n % 1000), n as i64, 0, 1, Decimal::ONE);
            async move {
                store.store(p).await.expect("redis");
            }
        });
        redis_get(c, &runtime, &namespace);
        runtime.block_on(namespace.cleanup());
    } else {
        eprintln!("skipping the redis benches: set {REDIS_URL_VAR}");
    }
    if let Ok(url) = std::env::var(DATABASE_URL_VAR) {
        let schema = runtime.block_on(PgSchema::create(&url));
        let tracker =
            Arc::new(PostgresTracker::new(schema.pool().clone(), TrackerConfig::DEFAULT_EXPIRATION));
        concurrent(c, "postgres", "check_and_mark", &runtime, |_| {
            let tracker = tracker.clone();
            async move {
                tracker.check_and_mark(MessageId::new()).await.expect("postgres");
            }
        });
        let store = Arc::new(PostgresPriceStore::new(schema.pool().clone()));
        let assets = Assets::fresh();
        concurrent(c, "postgres", "store", &runtime, |n| {
            let store = store.clone();
            let p = price(assets.nth(n % 1000), n as i64, 0, 1, Decimal::ONE);
            async move {
                store.store(p).await.expect("postgres");
            }
        });
        runtime.block_on(schema.cleanup());
    } else {
        eprintln!("skipping the postgres benches: set {DATABASE_URL_VAR}");
    }
}

/// One Redis `GET` of a price-sized value at a time, the round trip a node would pay per
/// lookup if it kept prices only in Redis: the comparison for `reader_get_of_10k_assets`.
fn redis_get(c: &mut Criterion, runtime: &Runtime, namespace: &RedisNamespace) {
    use deadpool_redis::redis::AsyncCommands;
    let key = format!("{}bench:price", namespace.prefix());
    let value = serde_json::to_string(&price(Assets::fresh().nth(0), 1, 0, 1, Decimal::ONE)).expect("json");
    runtime.block_on(async {
        let mut connection = namespace.pool().get().await.expect("redis");
        let () = connection.set(&key, value).await.expect("redis SET");
    });
    let mut group = c.benchmark_group("redis");
    group.throughput(Throughput::Elements(1));
    group.bench_function("get_one_at_a_time", |b| {
        b.to_async(runtime).iter(|| async {
            let mut connection = namespace.pool().get().await.expect("redis");
            let found: Option<String> = connection.get(black_box(&key)).await.expect("redis GET");
            found
        });
    });
    group.finish();
}

/// Prices per direct `store_many` / ids per `mark_seen_many`: the layered stores' batch size.
const BATCH: usize = 4096;
/// Assets a layered store is fed round after round, each round newer than the last.
const ASSETS: usize = 10_000;
/// The sustained load's default offered rate and how many assets it cycles through: enough that
/// an asset comes round again only after many flushes, so every store is one durable write.
const SUSTAINED_RATE: u64 = 50_000;
const SUSTAINED_ASSETS: usize = 100_000;

/// A price per asset of `assets` at `second`.
fn round(assets: &[Asset], second: i64) -> Vec<CachedPriceData> {
    assets.iter().map(|asset| price(*asset, second, 0, 1, Decimal::ONE)).collect()
}

fn asset_table(count: usize) -> Vec<Asset> {
    let assets = Assets::fresh();
    (0..count).map(|n| assets.nth(n)).collect()
}

/// The write-behind path against one server: `durable` (a fresh namespace or schema) and the
/// tracker `seen` on the same server.
fn write_behind(
    c: &mut Criterion,
    backend: &str,
    runtime: &Runtime,
    durable: &Arc<dyn PriceStore>,
    seen: &Arc<dyn MessageTracker>,
) {
    let mut group = c.benchmark_group("write_behind");
    group.sample_size(20);

    // One batch straight to the backend: every price replaces the held one.
    let batch_assets = asset_table(BATCH);
    let second = AtomicI64::new(0);
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function(BenchmarkId::new(format!("{backend}/store_many"), BATCH), |b| {
        b.to_async(runtime).iter_batched(
            || round(&batch_assets, second.fetch_add(1, Ordering::Relaxed)),
            |prices| async { durable.store_many(prices).await.expect("store_many") },
            BatchSize::SmallInput,
        );
    });
    group.bench_function(BenchmarkId::new(format!("{backend}/mark_seen_many"), BATCH), |b| {
        b.to_async(runtime).iter_batched(
            || (0..BATCH).map(|_| MessageId::new()).collect::<Vec<_>>(),
            |ids| async move { seen.mark_seen_many(&ids).await.expect("mark_seen_many") },
            BatchSize::SmallInput,
        );
    });

    // 10,000 assets stored through the layered store (memory decides, the flusher starts
    // writing at 4,096 dirty), timed until `flush` returns: prices durably written per second.
    let layered = runtime.block_on(async { LayeredPriceStore::new(durable.clone()) });
    let assets = asset_table(ASSETS);
    group.throughput(Throughput::Elements(ASSETS as u64));
    group.bench_function(BenchmarkId::new(format!("{backend}/layered_until_flushed"), ASSETS), |b| {
        b.to_async(runtime).iter_batched(
            || round(&assets, second.fetch_add(1, Ordering::Relaxed)),
            |prices| async {
                for p in prices {
                    layered.store(p).await.expect("memory store");
                }
                layered.flush().await.expect("flush")
            },
            BatchSize::SmallInput,
        );
    });

    group.finish();
}

/// A continuous open-loop load through a `LayeredPriceStore` with the default write-behind
/// settings: `rate` prices a second over `SUSTAINED_ASSETS` assets for `seconds`, each price
/// newer than the asset's last, so every store changes memory. Prints what the durable store
/// acknowledged per second while the load ran and the write lag sampled every 10 ms.
fn sustained(backend: &str, runtime: &Runtime, durable: &Arc<dyn PriceStore>, seconds: u64, rate: u64) {
    let assets = asset_table(SUSTAINED_ASSETS);
    let layered = runtime.block_on(async { LayeredPriceStore::new(durable.clone()) });
    let (mut lags, load, drain) = runtime.block_on(async {
        let total = seconds * rate;
        let mut lags = Vec::new();
        let start = tokio::time::Instant::now();
        let mut sent = 0u64;
        let mut ticks = tokio::time::interval(Duration::from_millis(1));
        let mut next_sample = start;
        while sent < total {
            ticks.tick().await;
            let due = ((start.elapsed().as_secs_f64() * rate as f64) as u64).min(total);
            while sent < due {
                let asset = assets[(sent % SUSTAINED_ASSETS as u64) as usize];
                let second = (sent / SUSTAINED_ASSETS as u64) as i64;
                layered.store(price(asset, second, 0, 1, Decimal::ONE)).await.expect("memory store");
                sent += 1;
            }
            if tokio::time::Instant::now() >= next_sample {
                lags.push(layered.write_lag());
                next_sample += Duration::from_millis(10);
            }
        }
        let load = start.elapsed();
        let written_during_load = layered.write_stats().written;
        let drain_start = tokio::time::Instant::now();
        layered.flush().await.expect("flush");
        (lags, (load, written_during_load), drain_start.elapsed())
    });
    let (load, written_during_load) = load;
    lags.sort_unstable();
    let at = |q: f64| lags[((lags.len() - 1) as f64 * q) as usize].as_secs_f64() * 1000.0;
    eprintln!(
        "write_behind/{backend}/sustained: {rate} prices/s offered for {:.1} s over {SUSTAINED_ASSETS} \
         assets: {:.0} prices/s acknowledged by {backend} during the load ({written_during_load} of \
         {}), write lag p50 {:.0} ms / p99 {:.0} ms / max {:.0} ms, final flush {:.0} ms",
        load.as_secs_f64(),
        written_during_load as f64 / load.as_secs_f64(),
        seconds * rate,
        at(0.5),
        at(0.99),
        at(1.0),
        drain.as_secs_f64() * 1000.0,
    );
}

/// `MESH_BENCH_SUSTAINED_SECS` (0, the default, skips the sustained run) and
/// `MESH_BENCH_SUSTAINED_RATE` (default 50,000 prices/s).
fn sustained_settings() -> Option<(u64, u64)> {
    let number = |name: &str| std::env::var(name).ok().and_then(|value| value.parse::<u64>().ok());
    let seconds = number("MESH_BENCH_SUSTAINED_SECS").filter(|seconds| *seconds > 0)?;
    Some((seconds, number("MESH_BENCH_SUSTAINED_RATE").unwrap_or(SUSTAINED_RATE)))
}

fn write_behind_servers(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    if let Ok(url) = std::env::var(REDIS_URL_VAR) {
        let namespace = RedisNamespace::create(&url);
        let prices: Arc<dyn PriceStore> = Arc::new(RedisPriceStore::new(
            namespace.pool().clone(),
            namespace.prefix(),
            RedisPriceStore::DEFAULT_TTL,
        ));
        let seen: Arc<dyn MessageTracker> = Arc::new(RedisTracker::new(
            namespace.pool().clone(),
            namespace.prefix(),
            TrackerConfig::DEFAULT_EXPIRATION,
        ));
        write_behind(c, "redis", &runtime, &prices, &seen);
        if let Some((seconds, rate)) = sustained_settings() {
            sustained("redis", &runtime, &prices, seconds, rate);
        }
        runtime.block_on(namespace.cleanup());
    } else {
        eprintln!("skipping the redis write-behind benches: set {REDIS_URL_VAR}");
    }
    if let Ok(url) = std::env::var(DATABASE_URL_VAR) {
        let schema = runtime.block_on(PgSchema::create(&url));
        let prices: Arc<dyn PriceStore> = Arc::new(PostgresPriceStore::new(schema.pool().clone()));
        let seen: Arc<dyn MessageTracker> =
            Arc::new(PostgresTracker::new(schema.pool().clone(), TrackerConfig::DEFAULT_EXPIRATION));
        write_behind(c, "postgres", &runtime, &prices, &seen);
        if let Some((seconds, rate)) = sustained_settings() {
            sustained("postgres", &runtime, &prices, seconds, rate);
        }
        runtime.block_on(schema.cleanup());
    } else {
        eprintln!("skipping the postgres write-behind benches: set {DATABASE_URL_VAR}");
    }
}

criterion_group!(benches, memory, servers, write_behind_servers);
criterion_main!(benches);
