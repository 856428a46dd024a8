//! OpenAPI schemas of the API's shapes (feature `openapi`), for the node's contract at
//! `/api/openapi.json`.
//!
//! The types serialize by hand (decimals as strings, optional fields left out in JSON, the
//! warning flattened), so their schemas are written here, beside nothing else, and proven
//! against what serde writes: the tests below validate serialized values of every type (from
//! the proptest strategies) against these schemas. A field added to a type without its schema
//! fails them.

use std::borrow::Cow;

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, KnownFormat, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, Type,
};
use utoipa::{PartialSchema, ToSchema};

use crate::{
    ApiResponse, Asset, CachedPriceData, DataFreshness, MAX_ASSET_LEN, MeshWarning, NetworkStatus, NodeId,
    ProviderInfo, ProviderState, ProviderStatus, Quote, ServedPrice,
};

/// A decimal written as a string, as every price and ratio of the API is.
const DECIMAL_PATTERN: &str = r"^-?[0-9]+(\.[0-9]+)?$";

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

fn decimal(description: &str, example: &str) -> Schema {
    string().pattern(Some(DECIMAL_PATTERN)).description(Some(description)).examples([example]).into()
}

fn date_time(description: &str) -> Schema {
    string()
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
        .description(Some(description))
        .examples(["2026-12-02T14:00:01Z"])
        .into()
}

fn integer(format: KnownFormat, minimum: Option<i64>, description: &str) -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(format)))
        .minimum(minimum.map(|at_least| at_least as f64))
        .description(Some(description))
        .into()
}

fn unsigned(description: &str) -> Schema {
    integer(KnownFormat::Int64, Some(0), description)
}

fn boolean(description: &str) -> Schema {
    ObjectBuilder::new().schema_type(Type::Boolean).description(Some(description)).into()
}

/// `schema` or `null`.
fn nullable(schema: impl Into<RefOr<Schema>>) -> Schema {
    OneOfBuilder::new().item(schema).item(ObjectBuilder::new().schema_type(Type::Null)).into()
}

/// An object that has exactly `properties` (the `required` ones always) and no others.
fn closed(properties: Vec<(&str, Schema)>, required: &[&str]) -> ObjectBuilder {
    let mut object = ObjectBuilder::new()
        .schema_type(Type::Object)
        .additional_properties(Some(AdditionalProperties::FreeForm(false)));
    for (name, schema) in properties {
        object = object.property(name, schema);
    }
    for name in required {
        object = object.required(*name);
    }
    object
}

macro_rules! named {
    ($type:ty, $name:literal) => {
        impl ToSchema for $type {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }
        }
    };
}

impl PartialSchema for Asset {
    fn schema() -> RefOr<Schema> {
        string()
            .pattern(Some(r"^[A-Z0-9._-]+$"))
            .min_length(Some(1))
            .max_length(Some(MAX_ASSET_LEN))
            .description(Some("A price symbol, upper case"))
            .examples(["SOL"])
            .into()
    }
}
named!(Asset, "Asset");

impl PartialSchema for NodeId {
    fn schema() -> RefOr<Schema> {
        string()
            .format(Some(SchemaFormat::Custom("uuid".to_owned())))
            .description(Some("A node's id, derived from its Ed25519 public key"))
            .into()
    }
}
named!(NodeId, "NodeId");

/// The properties of the plain price object ([`CachedPriceData`]), for it and the served price.
fn price_properties() -> Vec<(&'static str, Schema)> {
    vec![
        ("asset", Asset::schema().into_schema()),
        ("price", decimal("Price in US dollars", "150.12")),
        ("timestamp", date_time("When the provider fetched it")),
        ("source_node_id", NodeId::schema().into_schema()),
        ("blockchain", string().description(Some("The asset's chain")).examples(["Solana"]).into()),
        ("change_24h", decimal("Change over 24 hours, in percent; left out when unknown", "5.2")),
    ]
}

const PRICE_REQUIRED: [&str; 5] = ["asset", "price", "timestamp", "source_node_id", "blockchain"];

impl PartialSchema for CachedPriceData {
    fn schema() -> RefOr<Schema> {
        closed(price_properties(), &PRICE_REQUIRED).description(Some("A price a provider signed")).into()
    }
}
named!(CachedPriceData, "PriceData");

impl PartialSchema for Quote {
    fn schema() -> RefOr<Schema> {
        closed(
            vec![
                ("source_node_id", NodeId::schema().into_schema()),
                ("price", decimal("The provider's price in US dollars", "150.10")),
                ("timestamp", date_time("When the provider published it")),
            ],
            &["source_node_id", "price", "timestamp"],
        )
        .description(Some("One provider's fresh quote"))
        .into()
    }
}
named!(Quote, "Quote");

impl PartialSchema for ServedPrice {
    fn schema() -> RefOr<Schema> {
        let mut properties = price_properties();
        properties.extend([
            (
                "providers",
                integer(KnownFormat::Int32, Some(1), "Distinct providers whose fresh quotes made it"),
            ),
            ("spread", decimal("(highest - lowest) / lowest of those quotes; \"0\" for one quote", "0.0012")),
            ("below_quorum", boolean("Present (true) only when fewer providers than the quorum quoted it")),
            (
                "quotes",
                ArrayBuilder::new().items(Quote::schema()).description(Some("With ?quotes=true")).into(),
            ),
        ]);
        let mut required = PRICE_REQUIRED.to_vec();
        required.extend(["providers", "spread"]);
        closed(properties, &required)
            .description(Some("The price a node serves: the median of its providers' fresh quotes"))
            .examples([serde_json::json!({
                "asset": "SOL", "price": "150.12", "timestamp": "2026-12-02T14:00:01Z",
                "source_node_id": "550e8400-e29b-41d4-a716-446655440000", "blockchain": "Solana",
                "change_24h": "5.2", "providers": 3, "spread": "0.0012"
            })])
            .into()
    }
}
named!(ServedPrice, "ServedPrice");

impl PartialSchema for ProviderInfo {
    fn schema() -> RefOr<Schema> {
        closed(
            vec![
                ("node_id", NodeId::schema().into_schema()),
                ("last_seen", date_time("When this node last heard from it")),
                (
                    "hop_count",
                    integer(KnownFormat::Int32, Some(0), "The fewest hops its messages needed lately"),
                ),
                (
                    "last_fetch_time",
                    date_time("Its newest update's arrival; left out for a provider on standby"),
                ),
                (
                    "clock_offset_ms",
                    integer(
                        KnownFormat::Int64,
                        None,
                        "How far its clock is ahead (ms); left out when unknown",
                    ),
                ),
            ],
            &["node_id", "last_seen", "hop_count"],
        )
        .into()
    }
}
named!(ProviderInfo, "ProviderInfo");

impl PartialSchema for DataFreshness {
    fn schema() -> RefOr<Schema> {
        let counted = |name: &str| -> Schema {
            closed(vec![(name, integer(KnownFormat::Int64, Some(1), "Whole units"))], &[name]).into()
        };
        OneOfBuilder::new()
            .item(string().enum_values(Some(["JustNow", "Stale"])))
            .item(counted("MinutesAgo"))
            .item(counted("HoursAgo"))
            .description(Some(
                "How old the newest price is: \"JustNow\", {\"MinutesAgo\": n}, {\"HoursAgo\": n}, \"Stale\"",
            ))
            .into()
    }
}
named!(DataFreshness, "DataFreshness");

impl PartialSchema for NetworkStatus {
    fn schema() -> RefOr<Schema> {
        closed(
            vec![
                ("active_providers", ArrayBuilder::new().items(ProviderInfo::schema()).into()),
                ("connected_peers", unsigned("Peers connected now")),
                ("total_network_size", unsigned("Distinct live nodes known, this one included")),
                ("last_update_time", nullable(date_time("When the newest price arrived"))),
                ("data_freshness", DataFreshness::schema().into_schema()),
            ],
            &[
                "active_providers",
                "connected_peers",
                "total_network_size",
                "last_update_time",
                "data_freshness",
            ],
        )
        .into()
    }
}
named!(NetworkStatus, "NetworkStatus");

impl PartialSchema for ProviderState {
    fn schema() -> RefOr<Schema> {
        closed(
            vec![
                ("enabled", boolean("Whether provider mode is on")),
                ("node_id", NodeId::schema().into_schema()),
            ],
            &["enabled", "node_id"],
        )
        .into()
    }
}
named!(ProviderState, "ProviderState");

impl PartialSchema for ProviderStatus {
    fn schema() -> RefOr<Schema> {
        closed(
            vec![
                ("enabled", boolean("Whether provider mode is on")),
                ("node_id", NodeId::schema().into_schema()),
                ("last_fetch_time", nullable(date_time("This node's last fetch"))),
                ("fetch_count", unsigned("Fetches that succeeded since start")),
            ],
            &["enabled", "node_id", "last_fetch_time", "fetch_count"],
        )
        .into()
    }
}
named!(ProviderStatus, "ProviderStatus");

impl PartialSchema for MeshWarning {
    fn schema() -> RefOr<Schema> {
        closed(
            vec![
                ("severity", string().enum_values(Some(["info", "warning", "critical"])).into()),
                ("message", string().description(Some("For people")).into()),
                (
                    "code",
                    string()
                        .enum_values(Some(["NO_PROVIDERS", "STALE_DATA", "PRICE_DISCREPANCY", "CLOCK_SKEW"]))
                        .into(),
                ),
                ("age_seconds", unsigned("STALE_DATA: age of the newest price")),
                ("asset", Asset::schema().into_schema()),
                (
                    "discrepancy_percent",
                    ObjectBuilder::new()
                        .schema_type(Type::Number)
                        .description(Some("PRICE_DISCREPANCY"))
                        .into(),
                ),
                ("node_id", NodeId::schema().into_schema()),
                ("offset_ms", integer(KnownFormat::Int64, None, "CLOCK_SKEW: the provider's clock offset")),
            ],
            &["severity", "message", "code"],
        )
        .into()
    }
}
named!(MeshWarning, "MeshWarning");

/// The envelope `{success, data, error}` around `data`.
pub fn envelope(data: impl Into<RefOr<Schema>>) -> Schema {
    closed(
        vec![
            ("success", boolean("true when `data` holds the answer")),
            ("data", nullable(data)),
            ("error", string().description(Some("What went wrong; left out on success")).into()),
        ],
        &["success", "data"],
    )
    .into()
}

/// Served prices keyed by their asset, as `GET /api/mesh/prices` answers.
pub fn served_price_map() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property_names(Some(Asset::schema().into_schema()))
        .additional_properties(Some(ServedPrice::schema()))
        .description(Some("Served prices keyed by asset"))
        .into()
}

impl<T: ToSchema> PartialSchema for ApiResponse<T> {
    fn schema() -> RefOr<Schema> {
        envelope(T::schema()).into()
    }
}

impl<T: ToSchema> ToSchema for ApiResponse<T> {
    fn name() -> Cow<'static, str> {
        Cow::Owned(format!("ApiResponse_{}", T::name()))
    }
}

/// A schema as a plain [`Schema`] (every schema here is inline, never a reference).
trait IntoSchema {
    fn into_schema(self) -> Schema;
}

impl IntoSchema for RefOr<Schema> {
    fn into_schema(self) -> Schema {
        match self {
            Self::T(schema) => schema,
            // Nothing here is written as a reference; an empty schema would accept anything,
            // which the tests would notice.
            Self::Ref(_) => Schema::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::strategies;

    fn validator<T: PartialSchema>() -> jsonschema::Validator {
        let schema = serde_json::to_value(T::schema()).unwrap();
        jsonschema::draft202012::new(&schema).unwrap()
    }

    fn assert_valid<T: PartialSchema + serde::Serialize>(validator: &jsonschema::Validator, value: &T) {
        let json = serde_json::to_value(value).unwrap();
        let errors: Vec<String> = validator.iter_errors(&json).map(|error| error.to_string()).collect();
        assert!(errors.is_empty(), "{json} does not match its schema: {errors:?}");
    }

    proptest! {
        #[test]
        fn every_price_matches_its_schema(price in strategies::cached_price_data()) {
            assert_valid(&validator::<CachedPriceData>(), &price);
            assert_valid(&validator::<ServedPrice>(), &ServedPrice::single(price.clone()));
            let mut with_quotes = ServedPrice::single(price.clone());
            with_quotes.quotes = Some(vec![Quote::from(&price)]);
            with_quotes.below_quorum = true;
            assert_valid(&validator::<ServedPrice>(), &with_quotes);
            assert_valid(&validator::<ApiResponse<ServedPrice>>(), &ApiResponse::ok(with_quotes));
        }

        #[test]
        fn every_served_price_matches_its_schema(served in strategies::served_price_map()) {
            let validator = validator::<ServedPrice>();
            for price in served.values() {
                assert_valid(&validator, price);
            }
            let schema = serde_json::to_value(envelope(served_price_map())).unwrap();
            let map = jsonschema::draft202012::new(&schema).unwrap();
            let json = serde_json::to_value(ApiResponse::ok(served)).unwrap();
            prop_assert!(map.is_valid(&json), "{json}");
        }

        #[test]
        fn every_status_matches_its_schema(
            status in strategies::network_status(),
            provider in strategies::api_response(),
            freshness in strategies::freshness(),
        ) {
            assert_valid(&validator::<NetworkStatus>(), &status);
            assert_valid(&validator::<ApiResponse<ProviderStatus>>(), &provider);
            assert_valid(&validator::<DataFreshness>(), &freshness);
        }

        #[test]
        fn every_warning_matches_its_schema(warning in strategies::mesh_warning()) {
            assert_valid(&validator::<MeshWarning>(), &warning);
        }
    }

    #[test]
    fn the_envelope_of_an_error_matches_and_a_stray_field_does_not() {
        let validator = validator::<ApiResponse<ProviderState>>();
        assert_valid(&validator, &ApiResponse::<ProviderState>::error("Asset 'XYZ' not found in cache"));
        let stray = serde_json::json!({"success": true, "data": null, "extra": 1});
        assert!(!validator.is_valid(&stray), "closed objects refuse fields the code does not write");
    }
}
