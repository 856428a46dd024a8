//! Storage backends under load: the memory backends' per-operation cost (criterion), and the
//! Redis and PostgreSQL backends' throughput with 64 operations in flight.
//!
//! Run: `cargo bench --bench storage` (`-- --quick` for a fast pass). The Redis and PostgreSQL
//! groups run when `MESH_TEST_REDIS_URL` / `MESH_TEST_DATABASE_URL` are set.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures::future::join_all;
use mesh_testkit::{DATABASE_URL_VAR, PgSchema, REDIS_URL_VAR, RedisNamespace};
use pricemesh::dedup::{MemoryTracker, MessageTracker, PostgresTracker, RedisTracker, TrackerConfig};
use pricemesh::price_cache::conformance::{Assets, price};
use pricemesh::price_cache::{MemoryPriceStore, PostgresPriceStore, PriceStore, RedisPriceStore};
use pricemesh::types::MessageId;
use pricemesh::types::rust_decimal::Decimal;
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

criterion_group!(benches, memory, servers);
criterion_main!(benches);
