//! What a Noise session adds to each frame on a link: sealing it into a transport message
//! (ChaCha20-Poly1305 with the session's key, a length prefix) on the sender and opening it on
//! the receiver, beside the plaintext copy that the frame would cost without a session. The
//! sizes are one relayed price update (the hop path of `benches/hop.rs`), a 4 KiB digest page,
//! and a full 64 KiB chunk.
//!
//! Run: `cargo bench --bench session` (`-- --quick` for a fast pass).

use std::hint::black_box;
use std::net::SocketAddr;

use bytes::{BufMut, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pricemesh::transport::noise::{self, LocalKeys, MAX_CHUNK, Opener, Role, Sealer};
use pricemesh::types::{NetworkId, NodeIdentity};

/// A sealer and the opener of the other end of one genuine session.
fn session() -> (Sealer, Opener) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    runtime.block_on(async {
        let (mut a, mut b) = tokio::io::duplex(4096);
        let network = NetworkId::mainnet();
        let (alice, bob) = (
            LocalKeys::new(&NodeIdentity::generate(), &network),
            LocalKeys::new(&NodeIdentity::generate(), &network),
        );
        let addr = SocketAddr::from(([127, 0, 0, 1], 9470));
        let (ours, theirs) = tokio::join!(
            noise::handshake(&mut a, &alice, Role::Initiator, addr),
            noise::handshake(&mut b, &bob, Role::Responder, addr)
        );
        let (_, sealer) = ours.expect("handshake").into_halves();
        let (opener, _) = theirs.expect("handshake").into_halves();
        (sealer, opener)
    })
}

fn seal_and_open(c: &mut Criterion) {
    let mut group = c.benchmark_group("session");
    for (name, size) in [("update_164B", 164), ("digest_4KiB", 4096), ("chunk_64KiB", MAX_CHUNK)] {
        let frame = vec![0x5a_u8; size];
        group.throughput(Throughput::Bytes(u64::try_from(size).expect("small")));
        let (mut sealer, mut opener) = session();
        let (mut wire, mut plain) = (BytesMut::with_capacity(size + 64), BytesMut::with_capacity(size + 64));
        group.bench_function(format!("{name}/sealed_and_opened"), |b| {
            b.iter(|| {
                wire.clear();
                plain.clear();
                sealer.seal(black_box(&frame), &mut wire).expect("seals");
                assert!(opener.open(&mut wire, &mut plain).expect("opens"));
                black_box(plain.len())
            });
        });
        group.bench_function(format!("{name}/plaintext_copy"), |b| {
            b.iter(|| {
                wire.clear();
                plain.clear();
                // Without a session the frame is written and read once each: two copies.
                wire.put_slice(black_box(&frame));
                plain.put_slice(&wire);
                black_box(plain.len())
            });
        });
    }
    group.finish();
}

criterion_group!(benches, seal_and_open);
criterion_main!(benches);
