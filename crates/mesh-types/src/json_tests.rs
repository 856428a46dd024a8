//! Serialized shapes: every JSON example below (a document the API sends or accepts) parses into
//! our types and re-serializes to an equal document, every type round-trips through JSON, and
//! the data types round-trip through the binary format too.

use proptest::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::strategies;
use crate::*;

/// Parses `example` as `T`, re-serializes it, and compares the documents as JSON values (so key
/// order and whitespace do not matter, but every key and value does).
fn assert_round_trips<T: Serialize + DeserializeOwned>(example: &str) {
    let expected: Value = serde_json::from_str(example).expect("the example is JSON");
    let parsed: T = serde_json::from_str(example)
        .unwrap_or_else(|err| panic!("example does not parse as {}: {err}", std::any::type_name::<T>()));
    assert_eq!(serde_json::to_value(&parsed).unwrap(), expected);
}

#[test]
fn provider_enable_and_disable_responses() {
    assert_round_trips::<ApiResponse<ProviderState>>(
        r#"{"success": true, "data": {"enabled": true, "node_id": "550e8400-e29b-41d4-a716-446655440000"}}"#,
    );
    assert_round_trips::<ApiResponse<ProviderState>>(
        r#"{"success": true, "data": {"enabled": false, "node_id": "550e8400-e29b-41d4-a716-446655440000"}}"#,
    );
}

#[test]
fn error_responses() {
    assert_round_trips::<ApiResponse<ProviderState>>(
        r#"{"success": false, "data": null, "error": "Invalid API key: authentication failed with Birdeye API"}"#,
    );
    assert_round_trips::<ApiResponse<ProviderState>>(
        r#"{"success": false, "data": null, "error": "Failed to enable provider mode: internal error"}"#,
    );
    assert_round_trips::<ApiResponse<CachedPriceData>>(
        r#"{"success": false, "data": null, "error": "Asset 'XYZ' not found in cache"}"#,
    );
    let built = serde_json::to_value(ApiResponse::<CachedPriceData>::error("Asset 'XYZ' not found in cache"))
        .unwrap();
    assert_eq!(
        built,
        serde_json::json!({"success": false, "data": null, "error": "Asset 'XYZ' not found in cache"})
    );
}

#[test]
fn provider_status_response() {
    assert_round_trips::<ApiResponse<ProviderStatus>>(
        r#"{
          "success": true,
          "data": {
            "enabled": true,
            "node_id": "550e8400-e29b-41d4-a716-446655440000",
            "last_fetch_time": "2024-01-01T12:00:00Z",
            "fetch_count": 42
          }
        }"#,
    );
}

const ALL_PRICES: &str = r#"{
    "SOL": {
      "asset": "SOL",
      "price": "123.45",
      "timestamp": "2024-01-01T12:00:00Z",
      "source_node_id": "550e8400-e29b-41d4-a716-446655440000",
      "blockchain": "Solana",
      "change_24h": "5.2"
    },
    "ETH": {
      "asset": "ETH",
      "price": "2345.67",
      "timestamp": "2024-01-01T12:00:00Z",
      "source_node_id": "550e8400-e29b-41d4-a716-446655440001",
      "blockchain": "Ethereum",
      "change_24h": "-2.1"
    }
}"#;

#[test]
fn all_prices_and_one_price_responses() {
    assert_round_trips::<ApiResponse<PriceMap>>(&format!(r#"{{"success": true, "data": {ALL_PRICES}}}"#));
    assert_round_trips::<ApiResponse<CachedPriceData>>(
        r#"{
          "success": true,
          "data": {
            "asset": "SOL",
            "price": "123.45",
            "timestamp": "2024-01-01T12:00:00Z",
            "source_node_id": "550e8400-e29b-41d4-a716-446655440000",
            "blockchain": "Solana",
            "change_24h": "5.2"
          }
        }"#,
    );
}

#[test]
fn network_status_response() {
    assert_round_trips::<ApiResponse<NetworkStatus>>(
        r#"{
          "success": true,
          "data": {
            "active_providers": [
              {"node_id": "550e8400-e29b-41d4-a716-446655440000", "last_seen": "2024-01-01T12:00:00Z", "hop_count": 1},
              {"node_id": "550e8400-e29b-41d4-a716-446655440001", "last_seen": "2024-01-01T12:00:05Z", "hop_count": 2}
            ],
            "connected_peers": 5,
            "total_network_size": 10,
            "last_update_time": "2024-01-01T12:00:00Z",
            "data_freshness": "JustNow"
          }
        }"#,
    );
}

#[test]
fn data_freshness_values() {
    for example in [r#""JustNow""#, r#"{"MinutesAgo": 5}"#, r#"{"HoursAgo": 2}"#, r#""Stale""#] {
        assert_round_trips::<DataFreshness>(example);
    }
}

/// A plain price document as a node serves it: the same fields, plus `providers` and
/// `spread`, which a plain price document lacks and which read as one provider, no spread.
fn served(mut prices: Value) -> Value {
    for price in prices.as_object_mut().expect("a price map").values_mut() {
        let price = price.as_object_mut().expect("a price");
        price.insert("providers".into(), Value::from(1));
        price.insert("spread".into(), Value::from("0"));
    }
    prices
}

#[test]
fn websocket_price_messages() {
    let sol_update = r#"{
          "SOL": {
            "asset": "SOL",
            "price": "124.50",
            "timestamp": "2024-01-01T12:00:30Z",
            "source_node_id": "550e8400-e29b-41d4-a716-446655440000",
            "blockchain": "Solana",
            "change_24h": "6.1"
          }
        }"#;
    for (kind, prices) in [("PriceMeshInitial", ALL_PRICES), ("PriceMeshUpdate", sol_update)] {
        let example = format!(r#"{{"type": "{kind}", "data": {prices}}}"#);
        let parsed: FeedMessage =
            serde_json::from_str(&example).expect("a feed message of plain prices parses");
        let expected =
            serde_json::json!({"type": kind, "data": served(serde_json::from_str(prices).unwrap())});
        assert_eq!(serde_json::to_value(&parsed).unwrap(), expected);
        assert_round_trips::<FeedMessage>(&expected.to_string());
    }
}

#[test]
fn feed_frames_carry_their_sequence_number_beside_the_message() {
    let frame = r#"{"type": "MeshWarning", "data": {"severity": "warning", "message": "No live data sources available", "code": "NO_PROVIDERS"}, "seq": 1733150000000123}"#;
    assert_round_trips::<FeedFrame>(frame);
    let parsed: FeedFrame = serde_json::from_str(frame).unwrap();
    assert_eq!((parsed.seq, parsed.gap), (1_733_150_000_000_123, false));
    let gap = format!(
        r#"{{"type": "PriceMeshInitial", "data": {}, "seq": 7, "gap": true}}"#,
        served(serde_json::from_str(ALL_PRICES).unwrap())
    );
    assert_round_trips::<FeedFrame>(&gap);
    // A client that knows only the message reads it and ignores the rest.
    assert!(serde_json::from_str::<FeedMessage>(frame).is_ok());
}

#[test]
fn websocket_network_status_message() {
    assert_round_trips::<FeedMessage>(
        r#"{
          "type": "NetworkStatusUpdate",
          "data": {
            "active_providers": 2,
            "connected_peers": 5,
            "total_network_size": 10,
            "last_update_time": "2024-01-01T12:00:30Z",
            "data_freshness": "JustNow"
          }
        }"#,
    );
}

#[test]
fn websocket_warning_messages() {
    let no_providers = r#"{"type": "MeshWarning", "data": {"severity": "warning", "message": "No live data sources available", "code": "NO_PROVIDERS"}}"#;
    let stale = r#"{"type": "MeshWarning", "data": {"severity": "warning", "message": "Price data is older than 1 hour", "code": "STALE_DATA", "age_seconds": 3720}}"#;
    let discrepancy = r#"{"type": "MeshWarning", "data": {"severity": "warning", "message": "Price discrepancy detected for SOL", "code": "PRICE_DISCREPANCY", "asset": "SOL", "discrepancy_percent": 6.5}}"#;
    for example in [no_providers, stale, discrepancy] {
        assert_round_trips::<FeedMessage>(example);
    }
    // The constructors produce exactly the documents above.
    let hour = std::time::Duration::from_secs(3600);
    let built = [
        MeshWarning::no_providers(),
        MeshWarning::stale_data(std::time::Duration::from_secs(3720), hour),
        MeshWarning::price_discrepancy(Asset::new("SOL").unwrap(), 6.5),
    ];
    for (warning, example) in built.into_iter().zip([no_providers, stale, discrepancy]) {
        let expected: Value = serde_json::from_str(example).unwrap();
        assert_eq!(serde_json::to_value(FeedMessage::MeshWarning(warning)).unwrap(), expected);
    }
}

#[test]
fn price_update_data_model() {
    // A PriceUpdate's fields (timestamp, ttl, message_id, source_node_id, prices), plus the
    // signing fields (source_key, signature).
    let identity = NodeIdentity::from_secret_bytes(&[1; 32]);
    let sol = PriceData {
        asset: Asset::new("SOL").unwrap(),
        price: "123.45".parse().unwrap(),
        blockchain: "Solana".into(),
        change_24h: Some("5.2".parse().unwrap()),
    };
    let timestamp = "2024-01-01T12:00:00Z".parse().unwrap();
    let update = PriceUpdate::new_signed(&identity, &crate::NetworkId::mainnet(), [sol], 10, timestamp);
    let json = serde_json::to_value(&update).unwrap();
    assert_eq!(json["timestamp"], "2024-01-01T12:00:00Z");
    assert_eq!(json["ttl"], 10);
    assert_eq!(json["message_id"], update.message_id.to_string());
    assert_eq!(json["source_node_id"], identity.node_id().to_string());
    assert_eq!(
        json["prices"]["SOL"],
        serde_json::json!({"asset": "SOL", "price": "123.45", "blockchain": "Solana", "change_24h": "5.2"})
    );
    assert_eq!(json["source_key"].as_str().unwrap().len(), 64);
    assert_eq!(json["signature"].as_str().unwrap().len(), 128);
    let back: PriceUpdate = serde_json::from_value(json).unwrap();
    assert_eq!(back, update);
    assert!(back.verify_signature(&crate::NetworkId::mainnet()).is_ok());
}

#[test]
fn a_price_filed_under_another_key_is_refused() {
    let mut json = serde_json::to_value(PriceUpdate::new_signed(
        &NodeIdentity::from_secret_bytes(&[1; 32]),
        &crate::NetworkId::mainnet(),
        [PriceData {
            asset: Asset::new("SOL").unwrap(),
            price: 1.into(),
            blockchain: "Solana".into(),
            change_24h: None,
        }],
        10,
        chrono::Utc::now(),
    ))
    .unwrap();
    let entry = json["prices"]["SOL"].take();
    json["prices"] = serde_json::json!({ "ETH": entry });
    let err = serde_json::from_value::<PriceUpdate>(json).unwrap_err().to_string();
    assert!(err.contains("each key must equal its entry's asset"), "{err}");
}

fn json_round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(
    value: &T,
) -> Result<(), TestCaseError> {
    let text = serde_json::to_string(value).unwrap();
    let back: T = serde_json::from_str(&text).map_err(|err| TestCaseError::fail(format!("{err}: {text}")))?;
    prop_assert_eq!(&back, value);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn price_types_round_trip_through_json(price in strategies::price_data(), cached in strategies::cached_price_data()) {
        json_round_trip(&price)?;
        json_round_trip(&cached)?;
    }

    #[test]
    fn updates_round_trip_through_json(update in strategies::update()) {
        json_round_trip(&update)?;
    }

    #[test]
    fn status_types_round_trip_through_json(status in strategies::network_status(), freshness in strategies::freshness()) {
        json_round_trip(&status)?;
        json_round_trip(&NetworkStatusSummary::from(&status))?;
        json_round_trip(&freshness)?;
    }

    #[test]
    fn api_shapes_round_trip_through_json(response in strategies::api_response(), feed in strategies::feed_message()) {
        json_round_trip(&response)?;
        json_round_trip(&feed)?;
    }

    #[test]
    fn wire_messages_round_trip_through_json(message in strategies::mesh_message()) {
        json_round_trip(&message)?;
    }
}

fn binary_round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(
    value: &T,
) -> Result<(), TestCaseError> {
    let bytes = postcard::to_allocvec(value).unwrap();
    let back: T = postcard::from_bytes(&bytes).map_err(|err| TestCaseError::fail(err.to_string()))?;
    prop_assert_eq!(&back, value);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// The data types also round-trip through the binary format, so a backend may store them
    /// compactly. (`ApiResponse`, `FeedMessage` and `MeshWarning` are JSON shapes only.)
    #[test]
    fn data_types_round_trip_through_postcard(
        price in strategies::price_data(),
        cached in strategies::cached_price_data(),
        status in strategies::network_status(),
        provider in strategies::provider_status(),
        kind in strategies::warning_kind(),
    ) {
        binary_round_trip(&price)?;
        binary_round_trip(&cached)?;
        binary_round_trip(&status)?;
        binary_round_trip(&NetworkStatusSummary::from(&status))?;
        binary_round_trip(&provider)?;
        binary_round_trip(&kind)?;
    }
}
