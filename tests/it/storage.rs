//! The storage backends side by side: the same workload gives the same state in every one.

use std::sync::Arc;

use mesh_testkit::{DATABASE_URL_VAR, PgSchema, REDIS_URL_VAR, RedisNamespace, backend_url};
use pricemesh::price_cache::conformance::{Assets, converges_whatever_the_order};
use pricemesh::price_cache::{
    LayeredPriceStore, MemoryPriceStore, PostgresPriceStore, PriceStore, RedisPriceStore,
};

/// 10,000 updates (plus 10 % duplicates) in a shuffled order reach every backend; each keeps
/// exactly the newest price per asset, and all of them hold the identical set of prices.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_price_backend_converges_on_the_same_prices() {
    let redis_url = backend_url(REDIS_URL_VAR, "price backends converge");
    let database_url = backend_url(DATABASE_URL_VAR, "price backends converge");
    let (Some(redis_url), Some(database_url)) = (redis_url, database_url) else { return };
    let namespace = RedisNamespace::create(&redis_url);
    let schema = PgSchema::create(&database_url).await;

    let redis: Arc<dyn PriceStore> = Arc::new(RedisPriceStore::new(
        namespace.pool().clone(),
        namespace.prefix(),
        RedisPriceStore::DEFAULT_TTL,
    ));
    let postgres: Arc<dyn PriceStore> = Arc::new(PostgresPriceStore::new(schema.pool().clone()));
    let backends: Vec<(&str, Arc<dyn PriceStore>)> = vec![
        ("memory", Arc::new(MemoryPriceStore::new())),
        ("layered", Arc::new(LayeredPriceStore::new(Arc::new(MemoryPriceStore::new())))),
        ("redis", redis),
        ("postgres", postgres),
    ];

    let assets = Assets::fresh();
    let mut results = Vec::new();
    for (order, (name, store)) in (1u64..).zip(&backends) {
        // The same prices, in a different arrival order per backend.
        results.push((
            *name,
            converges_whatever_the_order(store.as_ref(), &assets, 10_000, 0xfeed, order).await,
        ));
    }
    let (first_name, first) = &results[0];
    for (name, held) in &results[1..] {
        assert_eq!(held, first, "{name} holds other prices than {first_name}");
    }
    assert_eq!(first.len(), 100);

    namespace.cleanup().await;
    schema.cleanup().await;
}
