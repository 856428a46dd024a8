//! Prices: [`PriceData`] as a provider publishes it inside a [`crate::PriceUpdate`], and
//! [`CachedPriceData`] as a node stores and serves it (the price plus where and when it came
//! from).
//!
//! JSON, as the REST API serves it: decimals are strings (`"123.45"`, scale preserved), times are
//! RFC 3339, and a missing `change_24h` is left out. On the wire the same structs encode
//! compactly (see `serde_util`).

use std::collections::BTreeMap;
use std::sync::Arc;

use rust_decimal::Decimal;
use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};

use crate::serde_util::{DecimalSer, TimestampSer, decimal, opt_decimal, timestamp};
use crate::{Asset, NodeId, Timestamp};

/// The longest blockchain name accepted, in bytes (the `mesh_price_cache.blockchain` column).
pub const MAX_BLOCKCHAIN_LEN: usize = 50;

/// One asset's price as published by a provider.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
pub struct PriceData {
    /// The asset priced.
    pub asset: Asset,
    /// Price in US dollars; always positive in a valid update.
    #[serde(deserialize_with = "decimal::deserialize")]
    pub price: Decimal,
    /// The chain the asset trades on, e.g. `"Solana"`. Shared, so copying a price into the
    /// cache and out to readers never copies the name.
    pub blockchain: Arc<str>,
    /// Change over the last 24 hours in percent, when the source reports it.
    #[serde(default, deserialize_with = "opt_decimal::deserialize")]
    pub change_24h: Option<Decimal>,
}

/// A price held in a node's cache: the published price plus the signed update's timestamp and
/// source, which decide newest-wins replacement.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
pub struct CachedPriceData {
    /// The asset priced.
    pub asset: Asset,
    /// Price in US dollars.
    #[serde(deserialize_with = "decimal::deserialize")]
    pub price: Decimal,
    /// When the source published the price.
    #[serde(deserialize_with = "timestamp::deserialize")]
    pub timestamp: Timestamp,
    /// The provider that published it.
    pub source_node_id: NodeId,
    /// The chain the asset trades on.
    pub blockchain: Arc<str>,
    /// Change over the last 24 hours in percent, when known.
    #[serde(default, deserialize_with = "opt_decimal::deserialize")]
    pub change_24h: Option<Decimal>,
}

/// All cached prices keyed by asset, as `GET /api/mesh/prices` and the WebSocket feed send them.
pub type PriceMap = BTreeMap<Asset, CachedPriceData>;

impl CachedPriceData {
    /// The cache entry for `price` from an update published by `source` at `timestamp`.
    pub fn from_update(price: &PriceData, timestamp: Timestamp, source: NodeId) -> Self {
        Self {
            asset: price.asset,
            price: price.price,
            timestamp,
            source_node_id: source,
            blockchain: price.blockchain.clone(),
            change_24h: price.change_24h,
        }
    }

    /// The newest-wins order used by every store: a later timestamp wins; equal timestamps are
    /// decided by the larger source node id; and should one source publish two different prices
    /// at the same instant, by the larger [`CachedPriceData::tie_breaker`]. The order is total
    /// over the content, so every node converges on the same value whatever order updates
    /// arrive in. An identical price is never newer than itself.
    pub fn newer_than(&self, other: &Self) -> bool {
        match (self.timestamp, self.source_node_id).cmp(&(other.timestamp, other.source_node_id)) {
            std::cmp::Ordering::Greater => true,
            std::cmp::Ordering::Less => false,
            std::cmp::Ordering::Equal => self.tie_breaker() > other.tie_breaker(),
        }
    }

    /// The last key of the newest-wins order: [`CachedPriceData::content_digest`] as lowercase
    /// hex, whose string order is the digest's byte order. The Redis backend stores it beside
    /// the price and compares it in its script; the PostgreSQL backend computes both sides'
    /// digests in SQL, from the stored strings of the held row and of the new one.
    pub fn tie_breaker(&self) -> String {
        hex::encode(self.content_digest())
    }

    /// SHA-256 of `"{price}|{blockchain}|{change_24h or empty}"`, with decimals as their exact
    /// strings: what distinguishes two prices with the same timestamp and source.
    pub fn content_digest(&self) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let change = self.change_24h.map(|change| change.to_string()).unwrap_or_default();
        let content = format!("{}|{}|{change}", self.price, self.blockchain);
        Sha256::digest(content.as_bytes()).into()
    }
}

// `change_24h` is left out of JSON when unknown (an optional string field, `change_24h?: string`)
// but always written in binary formats, whose readers expect every field in order.
fn serialize_change<S: SerializeStruct>(
    state: &mut S,
    human_readable: bool,
    change_24h: Option<Decimal>,
) -> Result<(), S::Error> {
    match change_24h {
        None if human_readable => state.skip_field("change_24h"),
        change => state.serialize_field("change_24h", &change.map(DecimalSer)),
    }
}

fn field_count(base: usize, human_readable: bool, change_24h: Option<Decimal>) -> usize {
    base.saturating_add(usize::from(!human_readable || change_24h.is_some()))
}

impl Serialize for PriceData {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let readable = serializer.is_human_readable();
        let fields = field_count(3, readable, self.change_24h);
        let mut state = serializer.serialize_struct("PriceData", fields)?;
        state.serialize_field("asset", &self.asset)?;
        state.serialize_field("price", &DecimalSer(self.price))?;
        state.serialize_field("blockchain", &self.blockchain)?;
        serialize_change(&mut state, readable, self.change_24h)?;
        state.end()
    }
}

impl Serialize for CachedPriceData {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let readable = serializer.is_human_readable();
        let fields = field_count(5, readable, self.change_24h);
        let mut state = serializer.serialize_struct("CachedPriceData", fields)?;
        state.serialize_field("asset", &self.asset)?;
        state.serialize_field("price", &DecimalSer(self.price))?;
        state.serialize_field("timestamp", &TimestampSer(self.timestamp))?;
        state.serialize_field("source_node_id", &self.source_node_id)?;
        state.serialize_field("blockchain", &self.blockchain)?;
        serialize_change(&mut state, readable, self.change_24h)?;
        state.end()
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::PublicKey;

    fn cached(second: u32, source: u8) -> CachedPriceData {
        CachedPriceData {
            asset: Asset::new("SOL").unwrap(),
            price: Decimal::ONE,
            timestamp: chrono::Utc.with_ymd_and_hms(2024, 1, 1, 12, 0, second).unwrap(),
            source_node_id: NodeId::from_public_key(&PublicKey::from_bytes([source; 32])),
            blockchain: "Solana".into(),
            change_24h: None,
        }
    }

    #[test]
    fn equivocation_by_one_source_is_decided_by_content() {
        let (a, b) = (cached(0, 1), CachedPriceData { price: Decimal::TWO, ..cached(0, 1) });
        assert_ne!(a.newer_than(&b), b.newer_than(&a), "exactly one of two different prices wins");
        assert!(!a.newer_than(&a.clone()), "an identical price is not newer");
        let scaled = CachedPriceData { price: "1.0".parse().unwrap(), ..cached(0, 1) };
        assert_ne!(a.newer_than(&scaled), scaled.newer_than(&a), "1 and 1.0 are different content");
    }

    #[test]
    fn later_timestamp_wins_and_ties_are_decided_by_source() {
        assert!(cached(1, 0).newer_than(&cached(0, 0)));
        assert!(!cached(0, 0).newer_than(&cached(1, 0)));
        let (a, b) = (cached(0, 1), cached(0, 2));
        assert_ne!(a.newer_than(&b), b.newer_than(&a));
        assert!(!a.newer_than(&a));
    }

    #[test]
    fn missing_change_is_omitted_in_json_and_accepted_as_null_or_absent() {
        let price = PriceData {
            asset: Asset::new("ETH").unwrap(),
            price: Decimal::new(2_345_670, 3),
            blockchain: "Ethereum".into(),
            change_24h: None,
        };
        let json = serde_json::to_value(&price).unwrap();
        assert_eq!(json, serde_json::json!({"asset": "ETH", "price": "2345.670", "blockchain": "Ethereum"}));
        let with_null = serde_json::json!({"asset": "ETH", "price": "2345.670", "blockchain": "Ethereum", "change_24h": null});
        assert_eq!(serde_json::from_value::<PriceData>(with_null).unwrap(), price);
        assert_eq!(serde_json::from_value::<PriceData>(json).unwrap(), price);
    }

    #[test]
    fn prices_must_be_decimal_strings() {
        let number = serde_json::json!({"asset": "ETH", "price": 1.5, "blockchain": "Ethereum"});
        assert!(serde_json::from_value::<PriceData>(number).is_err());
        let garbage = serde_json::json!({"asset": "ETH", "price": "1.5.5", "blockchain": "Ethereum"});
        let err = serde_json::from_value::<PriceData>(garbage).unwrap_err().to_string();
        assert!(err.contains("invalid decimal"), "{err}");
    }
}
