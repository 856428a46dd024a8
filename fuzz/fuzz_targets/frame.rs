//! A frame payload from a peer: the version byte and a `MeshMessage` in postcard, every
//! variant. Decoding must never panic; whatever decodes must survive every check a node runs
//! on it, and encode back to a payload that decodes to the same message (compared as bytes).

#![no_main]

use libfuzzer_sys::fuzz_target;
use mesh_types::{Codec, Gossiped, MeshMessage, SignedMessage, ValidationPolicy};

fuzz_target!(|data: &[u8]| {
    let codec = Codec::default();
    let Ok(message) = codec.decode(data) else { return };
    let policy = ValidationPolicy::default();
    let now = mesh_types::chrono::Utc::now();
    match &message {
        MeshMessage::PriceUpdate(update) => {
            let _ = update.validate(&policy, now);
            let _ = update.validate_archived(&policy, now);
            let _ = update.verify_signature(&mesh_types::NetworkId::mainnet());
            let _ = update.seen_key();
            let _ = update.cached_prices().count();
        }
        MeshMessage::Announce(announce) => {
            let _ = announce.validate_gossiped(&policy, now);
            let _ = announce.verify_signature(&mesh_types::NetworkId::mainnet());
        }
        MeshMessage::Alert(alert) => {
            let _ = alert.validate_gossiped(&policy, now);
            let _ = alert.verify_signature(&mesh_types::NetworkId::mainnet());
        }
        _ => {}
    }
    // Compared as bytes: a float that is NaN (a discrepancy percentage) is not equal to itself.
    let encoded = codec.encode(&message).expect("a decoded message encodes");
    let again = codec.decode(&encoded).expect("an encoded message decodes");
    assert_eq!(codec.encode(&again).expect("encodes again"), encoded, "the codec round-trips");
});
