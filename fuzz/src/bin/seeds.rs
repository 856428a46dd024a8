//! Writes the seed corpus of every fuzz target (`cargo run --bin seeds` in `fuzz/`): valid
//! examples of each input, so the fuzzers start from the shapes that reach deep code.

use std::fs;
use std::path::Path;

use mesh_types::{
    Alert, Announce, Asset, Codec, Digest, DigestEntry, Goodbye, GoodbyeReason, MeshMessage, NodeIdentity,
    PriceData, PriceUpdate, Request, WarningKind,
};

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
    fs::create_dir_all(&dir).expect("create the corpus directory");
    fs::write(dir.join(name), bytes).expect("write a seed");
}

fn main() {
    let identity = NodeIdentity::from_secret_bytes(&[7; 32]);
    let now = mesh_types::chrono::Utc::now();
    let sol = Asset::new("SOL").expect("a valid symbol");
    let price = PriceData {
        asset: sol,
        price: mesh_types::rust_decimal::Decimal::new(15012, 2),
        blockchain: "Solana".into(),
        change_24h: Some(mesh_types::rust_decimal::Decimal::new(-21, 1)),
    };
    let update = PriceUpdate::new_signed(&identity, &mesh_types::NetworkId::mainnet(), [price], 10, now);
    let codec = Codec::default();
    let messages = [
        ("price_update", MeshMessage::from(update.clone())),
        (
            "announce",
            MeshMessage::Announce(Announce::new_signed(
                &identity,
                &mesh_types::NetworkId::mainnet(),
                true,
                None,
                10,
                now,
            )),
        ),
        (
            "alert",
            MeshMessage::Alert(Alert::new_signed(
                &identity,
                &mesh_types::NetworkId::mainnet(),
                WarningKind::PriceDiscrepancy { asset: sol, discrepancy_percent: 6.5 },
                10,
                now,
            )),
        ),
        (
            "digest",
            MeshMessage::Digest(Digest {
                entries: update.cached_prices().map(|price| DigestEntry::of(&price)).collect(),
            }),
        ),
        ("request", MeshMessage::Request(Request { assets: vec![sol] })),
        ("goodbye", MeshMessage::Goodbye(Goodbye { reason: GoodbyeReason::Shutdown })),
    ];
    for (name, message) in &messages {
        write("frame", name, &codec.encode(message).expect("a sample encodes"));
    }
    write("json", "price_update", &serde_json::to_vec(&update).expect("renders"));
    write(
        "json",
        "warning",
        br#"{"severity":"warning","message":"Price discrepancy detected for SOL","code":"PRICE_DISCREPANCY","asset":"SOL","discrepancy_percent":6.5}"#,
    );
    write("peer_file", "two_peers", br#"[]"#);
    write(
        "birdeye",
        "documented",
        br#"{"data":{"So11111111111111111111111111111111111111112":{"value":23.40138801321701,"updateUnixTime":1692181644,"updateHumanTime":"2023-08-16T10:27:24","priceChange24h":-6.1098865467031676}},"success":true}"#,
    );
    write(
        "birdeye",
        "tiny",
        br#"{"data":{"So11111111111111111111111111111111111111112":{"value":1e-28}},"success":true}"#,
    );
    // noise: case byte, then a first handshake message (a length and an ephemeral key) or
    // transport bytes.
    let mut first = vec![0u8, 0, 32];
    first.extend_from_slice(&[9; 32]);
    write("noise", "first_message", &first);
    write("noise", "transport", &[2, 0, 17, 1, 2, 3]);
    write("noise", "round_trip", b"\x03a frame of plaintext");
    // http: method byte, target, newline, body.
    write("http", "all_prices", b"\x00api/mesh/prices");
    write("http", "one_price", b"\x00api/mesh/prices/SOL");
    write("http", "status", b"\x00api/mesh/network/status?x=1");
    write("http", "enable", b"\x01api/mesh/provider/enable\n{\"api_key\":\"0123456789abcdef\"}");
    write("http", "ws", b"\x00ws?assets=SOL,ETH");
    write(
        "config",
        "typical",
        b"network = \"testnet\"\nmin_peers = 2\nmax_peers = 8\nprice_source = \"simulated\"\nassets = [\"SOL\", \"ETH\"]\nsync_interval_secs = 30\ntrusted_providers = []\n",
    );
}
