//! JSON from outside: the API's shapes as a client or another node would send them. Parsing
//! must never panic, and what parses must render again.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mesh_types::{ApiResponse, FeedMessage, MeshWarning, NetworkStatus, PriceUpdate, ProviderStatus};

fn check<T: serde::de::DeserializeOwned + serde::Serialize>(data: &[u8]) {
    if let Ok(value) = serde_json::from_slice::<T>(data) {
        serde_json::to_vec(&value).expect("what parses renders");
    }
}

fuzz_target!(|data: &[u8]| {
    check::<PriceUpdate>(data);
    check::<FeedMessage>(data);
    check::<MeshWarning>(data);
    check::<NetworkStatus>(data);
    check::<ApiResponse<ProviderStatus>>(data);
});
