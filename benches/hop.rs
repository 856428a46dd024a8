//! The per-hop work on one relayed price update, signature aside: wire decode, the seen-check
//! and mark, the newest-wins store with the anti-entropy log entry, turning the update into
//! its relay copy in place, and encoding that copy once for all peers — done as the gossip
//! engine and the transport do it, through the same `Arc<dyn …>` stores. (Validation, the
//! signature and metrics are measured in `benches/codec.rs` and `benches/verify.rs`.)
//!
//! Run: `cargo bench --bench hop` (`-- --quick` for a fast pass).

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pricemesh::dedup::{MemoryTracker, MessageTracker, TrackerConfig};
use pricemesh::price_cache::{MemoryPriceStore, PriceStore};
use pricemesh::transport::Outbound;
use pricemesh::types::rust_decimal::Decimal;
use pricemesh::types::{
    Asset, Codec, MeshMessage, MessageId, NodeIdentity, PriceData, PriceUpdate, Signature, chrono,
};

/// Frames with distinct ids and ever newer timestamps, so every hop does the full work: the
/// seen-check misses, the store replaces.
fn frames(codec: &Codec, count: usize, start: chrono::DateTime<chrono::Utc>) -> Vec<Vec<u8>> {
    let provider = NodeIdentity::from_secret_bytes(&[1; 32]);
    let signed = PriceUpdate::new_signed(
        &provider,
        &mesh_types::NetworkId::mainnet(),
        [PriceData {
            asset: Asset::new("SOL").expect("valid symbol"),
            price: Decimal::new(12345, 2),
            blockchain: "Solana".into(),
            change_24h: Some(Decimal::new(52, 1)),
        }],
        10,
        start,
    );
    (0..count)
        .map(|i| {
            let update = PriceUpdate {
                message_id: MessageId::new(),
                timestamp: start + chrono::Duration::microseconds(i64::try_from(i).expect("small")),
                signature: Signature::EMPTY,
                ..signed.clone()
            };
            codec.encode(&MeshMessage::from(update)).expect("encodes")
        })
        .collect()
}

fn hop(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let codec = Codec::default();
    let tracker: Arc<dyn MessageTracker> = Arc::new(MemoryTracker::new(TrackerConfig::default()));
    let prices: Arc<dyn PriceStore> = Arc::new(MemoryPriceStore::new());
    let mut start = chrono::Utc::now();
    let mut batch = frames(&codec, 100_000, start);
    let mut next = 0;
    let log: Mutex<HashMap<Asset, Arc<PriceUpdate>>> = Mutex::new(HashMap::new());

    let mut group = c.benchmark_group("hop");
    group.throughput(Throughput::Elements(1));
    group.bench_function("decode_dedup_store_relay_encode", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            let mut done = 0;
            while done < iters {
                if next == batch.len() {
                    // A fresh batch, newer than everything stored, built outside the timing.
                    start += chrono::Duration::seconds(1);
                    batch = frames(&codec, batch.len(), start);
                    next = 0;
                }
                let run = (iters - done).min((batch.len() - next) as u64) as usize;
                let began = Instant::now();
                runtime.block_on(async {
                    for frame in &batch[next..next + run] {
                        let Ok(MeshMessage::PriceUpdate(mut update)) = codec.decode(black_box(frame)) else {
                            panic!("a price update")
                        };
                        assert!(!tracker.has_seen(update.message_id).await.expect("memory"));
                        assert!(tracker.check_and_mark(update.message_id).await.expect("memory"));
                        let mut changed = Vec::new();
                        for price in update.cached_prices() {
                            if prices.store(price.clone()).await.expect("memory").changed() {
                                changed.push(price);
                            }
                        }
                        let relay = Arc::make_mut(&mut update);
                        relay.hop_count += 1;
                        relay.ttl -= 1;
                        for price in &changed {
                            log.lock().expect("not poisoned").insert(price.asset, update.clone());
                        }
                        // What every peer's connection sends: one encoding, shared.
                        let outbound = Outbound::new(MeshMessage::PriceUpdate(update));
                        black_box(outbound.payload(codec.max_message_size()).expect("encodes"));
                    }
                });
                elapsed += began.elapsed();
                next += run;
                done += run as u64;
            }
            elapsed
        });
    });
    group.finish();
}

criterion_group!(benches, hop);
criterion_main!(benches);
