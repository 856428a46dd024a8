//! The peer file (`DATA_DIR/peers.json`), which anyone with write access to the data directory
//! — or a torn write — can make malformed: parsing must never panic.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = mesh_peer_store::parse_peer_file(data);
});
