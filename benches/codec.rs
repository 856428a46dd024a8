//! Micro-benchmarks of the per-hop work on one price update: wire encode and decode (with JSON
//! measured in the same run for comparison) and validation. Signatures: `benches/verify.rs`.
//!
//! Run: `cargo bench --bench codec`; `-- --quick` for a fast pass.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use pricemesh::types::rust_decimal::Decimal;
use pricemesh::types::{
    Asset, Codec, MeshMessage, NodeIdentity, PriceData, PriceUpdate, ValidationPolicy, chrono,
};

fn one_price_update() -> PriceUpdate {
    let price = PriceData {
        asset: Asset::new("SOL").expect("valid symbol"),
        price: Decimal::new(12345, 2),
        blockchain: "Solana".into(),
        change_24h: Some(Decimal::new(52, 1)),
    };
    PriceUpdate::new_signed(
        &NodeIdentity::from_secret_bytes(&[1; 32]),
        &mesh_types::NetworkId::mainnet(),
        [price],
        10,
        chrono::Utc::now(),
    )
}

fn codec(c: &mut Criterion) {
    let codec = Codec::default();
    let message = MeshMessage::from(one_price_update());
    let payload = codec.encode(&message).expect("encodes");
    let json = serde_json::to_vec(&message).expect("encodes");

    let mut group = c.benchmark_group("one_price_update");
    group.bench_function("wire_encode", |b| {
        let mut buffer = Vec::with_capacity(256);
        b.iter(|| {
            buffer.clear();
            codec.encode_into(black_box(&message), &mut buffer).expect("encodes");
        });
    });
    group.bench_function("wire_decode", |b| b.iter(|| codec.decode(black_box(&payload)).expect("decodes")));
    group.bench_function("json_encode", |b| {
        b.iter(|| serde_json::to_vec(black_box(&message)).expect("encodes"))
    });
    group.bench_function("json_decode", |b| {
        b.iter(|| serde_json::from_slice::<MeshMessage>(black_box(&json)).expect("decodes"));
    });
    group.finish();
}

fn trust(c: &mut Criterion) {
    let update = one_price_update();
    let policy = ValidationPolicy::default();
    let now = chrono::Utc::now();
    let mut group = c.benchmark_group("one_price_update");
    group
        .bench_function("validate", |b| b.iter(|| black_box(&update).validate(&policy, now).expect("valid")));
    group.finish();
}

criterion_group!(benches, codec, trust);
criterion_main!(benches);
