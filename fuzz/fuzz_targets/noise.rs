//! The Noise session from outside: whatever a stranger sends as handshake messages (to a node
//! that accepts, or one that dials), and as transport messages once a session stands. Nothing
//! may panic or allocate past the fixed limits; a sealed message must open to what was sealed.
//!
//! The first byte picks the case: handshake as responder, handshake as initiator, opening
//! arbitrary wire bytes, or sealing the rest and opening it on the other side.

#![no_main]

use std::net::SocketAddr;
use std::sync::{LazyLock, Mutex};

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use mesh_transport::noise::{self, LocalKeys, MAX_CHUNK, Opener, Role, Sealer};
use mesh_types::{NetworkId, NodeIdentity};
use tokio::runtime::Runtime;

static RUNTIME: LazyLock<Runtime> =
    LazyLock::new(|| tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime"));

static KEYS: LazyLock<LocalKeys> =
    LazyLock::new(|| LocalKeys::new(&NodeIdentity::generate(), &NetworkId::devnet()));

/// Two ends of one genuine session: A's sealer and B's opener, for the round trip; B's
/// sealer is unused, A's opener takes the arbitrary bytes.
struct Pair {
    sealer: Sealer,
    opener: Opener,
    stranger: Opener,
}

static PAIR: LazyLock<Mutex<Pair>> = LazyLock::new(|| {
    RUNTIME.block_on(async {
        let (mut a, mut b) = tokio::io::duplex(4096);
        let other = LocalKeys::new(&NodeIdentity::generate(), &NetworkId::devnet());
        let addr = fake_addr();
        let (ours, theirs) = tokio::join!(
            noise::handshake(&mut a, &KEYS, Role::Initiator, addr),
            noise::handshake(&mut b, &other, Role::Responder, addr)
        );
        let (stranger, sealer) = ours.expect("a genuine handshake").into_halves();
        let (opener, _) = theirs.expect("a genuine handshake").into_halves();
        Mutex::new(Pair { sealer, opener, stranger })
    })
});

fn fake_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9470))
}

fuzz_target!(|data: &[u8]| {
    let Some((&case, rest)) = data.split_first() else { return };
    match case % 4 {
        0 | 1 => {
            let role = if case % 4 == 0 { Role::Responder } else { Role::Initiator };
            RUNTIME.block_on(async {
                // The stranger's bytes come in; what the node writes goes nowhere.
                let mut stream = tokio::io::join(rest, tokio::io::sink());
                let _ = noise::handshake(&mut stream, &KEYS, role, fake_addr()).await;
            });
        }
        2 => {
            let mut pair = PAIR.lock().expect("one fuzz thread");
            let mut wire = BytesMut::from(rest);
            let mut plain = BytesMut::new();
            while let Ok(true) = pair.stranger.open(&mut wire, &mut plain) {}
            assert!(plain.is_empty(), "bytes nobody sealed never open");
        }
        _ => {
            let chunk = &rest[..rest.len().min(MAX_CHUNK)];
            let mut pair = PAIR.lock().expect("one fuzz thread");
            let mut wire = BytesMut::new();
            pair.sealer.seal(chunk, &mut wire).expect("a chunk within the limit seals");
            let mut plain = BytesMut::new();
            assert_eq!(pair.opener.open(&mut wire, &mut plain), Ok(true), "what was sealed opens");
            assert_eq!(&plain[..], chunk, "and opens to what was sealed");
        }
    }
});
