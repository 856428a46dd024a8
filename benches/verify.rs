//! Signature verification, the dominant cost of every hop: one signature checked from scratch,
//! with the provider's key already checked and decompressed ([`AuthorKey`]), and in batches;
//! then the whole gossip engine per update — rate limit, seen-check, validation, trust,
//! signature, mark, store, relay copy — one update at a time and in batches of 64, on one core.
//!
//! Run: `cargo bench --bench verify` (`-- --quick` for a fast pass).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use pricemesh::dedup::{MemoryTracker, TrackerConfig};
use pricemesh::gossip::{GossipConfig, GossipEngine, Outcome, Received};
use pricemesh::price_cache::MemoryPriceStore;
use pricemesh::types::rust_decimal::Decimal;
use pricemesh::types::{
    Asset, AuthorKey, NodeId, NodeIdentity, PriceData, PriceUpdate, SignedMessage, chrono, verify_batch,
};

/// Signed one-price updates from `providers` providers, taking turns, each newer than the last.
fn signed_updates(providers: &[NodeIdentity], count: usize) -> Vec<PriceUpdate> {
    let start = chrono::Utc::now();
    (0..count)
        .map(|i| {
            let price = PriceData {
                asset: Asset::new("SOL").expect("valid symbol"),
                price: Decimal::new(12_345 + i64::try_from(i).expect("small"), 2),
                blockchain: "Solana".into(),
                change_24h: Some(Decimal::new(52, 1)),
            };
            let at = start + chrono::Duration::microseconds(i64::try_from(i).expect("small"));
            PriceUpdate::new_signed(
                &providers[i % providers.len()],
                &mesh_types::NetworkId::mainnet(),
                [price],
                10,
                at,
            )
        })
        .collect()
}

fn signatures(c: &mut Criterion) {
    let provider = NodeIdentity::from_secret_bytes(&[1; 32]);
    let updates = signed_updates(std::slice::from_ref(&provider), 64);
    let key = AuthorKey::new(provider.node_id(), &provider.public_key()).expect("valid key");

    let mut group = c.benchmark_group("signature");
    group.throughput(Throughput::Elements(1));
    group.bench_function("verify_from_scratch", |b| {
        b.iter(|| {
            black_box(&updates[0]).verify_signature(&mesh_types::NetworkId::mainnet()).expect("verifies")
        });
    });
    group.bench_function("verify_with_cached_key", |b| {
        b.iter(|| key.verify(black_box(&updates[0]), &mesh_types::NetworkId::mainnet()).expect("verifies"));
    });
    for size in [8, 64] {
        let items: Vec<(&AuthorKey, &PriceUpdate)> = updates[..size].iter().map(|u| (&key, u)).collect();
        group.throughput(Throughput::Elements(size as u64));
        group.bench_with_input(BenchmarkId::new("verify_batch", size), &items, |b, items| {
            b.iter(|| assert!(verify_batch(&mesh_types::NetworkId::mainnet(), black_box(items))));
        });
    }
    group.finish();
}

/// A fresh engine with in-memory stores, as a node without Redis or PostgreSQL has.
fn engine() -> GossipEngine {
    let tracker = Arc::new(MemoryTracker::new(TrackerConfig::default()));
    GossipEngine::new(tracker, Arc::new(MemoryPriceStore::new()), GossipConfig::default())
}

fn engine_throughput(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let providers: Vec<NodeIdentity> = (0..3).map(|_| NodeIdentity::generate()).collect();
    // Each update comes from a different peer, so no peer's rate limit is what is measured.
    let peers: Vec<NodeId> =
        (0..=255u8).map(|n| NodeIdentity::from_secret_bytes(&[n; 32]).node_id()).collect();
    let pool = signed_updates(&providers, 12_800);
    // Validation judges timestamps against this instant, not the wall clock, so the pool
    // stays valid however long the benchmark runs.
    let now = pool.last().expect("a pool").timestamp;

    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(1)).sample_size(10).measurement_time(Duration::from_secs(5));
    for batch_size in [1usize, 64] {
        group.bench_function(BenchmarkId::new("verified_updates", batch_size), |b| {
            b.iter_custom(|iters| {
                // A fresh engine per sample, so every update of the pool is new to it; a
                // sample larger than the pool is scaled from the part timed.
                let engine = engine();
                let count = usize::try_from(iters).unwrap_or(usize::MAX).clamp(1, pool.len());
                let mut elapsed = Duration::ZERO;
                for (n, chunk) in pool[..count].chunks(batch_size).enumerate() {
                    let batch: Vec<Received> = chunk
                        .iter()
                        .enumerate()
                        .map(|(i, update)| Received {
                            from: peers[(n * batch_size + i) % peers.len()],
                            update: Arc::new(update.clone()),
                            synced: false,
                        })
                        .collect();
                    let began = Instant::now();
                    let outcomes = runtime.block_on(engine.process_batch(batch, now)).expect("memory");
                    elapsed += began.elapsed();
                    for outcome in outcomes {
                        assert!(matches!(outcome, Outcome::Accepted(_)), "{outcome:?}");
                    }
                }
                elapsed.mul_f64(iters as f64 / count as f64)
            });
        });
    }
    group.finish();
}

criterion_group!(benches, signatures, engine_throughput);
criterion_main!(benches);
