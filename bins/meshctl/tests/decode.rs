//! `meshctl decode` end to end: a real payload prints as JSON, garbage gets a clear error.

use std::process::Command;

use mesh_types::{Codec, Heartbeat, MeshMessage};

fn decode(arg: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_meshctl")).args(["decode", arg]).output().expect("run meshctl")
}

#[test]
fn decodes_a_payload_to_json() {
    let sent_at = mesh_types::chrono::DateTime::parse_from_rfc3339("2026-12-02T12:00:00Z").unwrap().to_utc();
    let ping = MeshMessage::Ping(Heartbeat {
        nonce: 42,
        is_provider: true,
        peer_count: 3,
        sent_at,
        provider_hops: Some(0),
    });
    let payload = hex::encode(Codec::default().encode(&ping).unwrap());
    let output = decode(&payload);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"Ping": {
            "nonce": 42,
            "is_provider": true,
            "peer_count": 3,
            "sent_at": "2026-12-02T12:00:00Z",
            "provider_hops": 0
        }})
    );
}

#[test]
fn refuses_garbage_with_a_reason() {
    let not_hex = decode("zz");
    assert!(!not_hex.status.success());
    assert!(String::from_utf8_lossy(&not_hex.stderr).contains("not valid hex"));

    let wrong_version = decode("07");
    assert!(!wrong_version.status.success());
    assert!(String::from_utf8_lossy(&wrong_version.stderr).contains("unknown wire format version 7"));
}
