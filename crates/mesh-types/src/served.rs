//! What a node serves for an asset: [`ServedPrice`], the aggregate of its providers' latest
//! quotes (the median, with how many quotes made it and how far they spread), and the
//! [`Quote`]s themselves on request.
//!
//! JSON keeps the plain price object's shape — every field of [`CachedPriceData`] at the top
//! level — and adds `providers` and `spread` beside them, so a client that reads a
//! [`CachedPriceData`] reads a served price unchanged.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::serde_util::{decimal, timestamp};
use crate::{Asset, CachedPriceData, NodeId, Timestamp};

/// One provider's latest quote for an asset, as `?quotes=true` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quote {
    /// The provider that signed it.
    pub source_node_id: NodeId,
    /// Its price in US dollars.
    #[serde(serialize_with = "decimal::serialize", deserialize_with = "decimal::deserialize")]
    pub price: Decimal,
    /// When the provider published it.
    #[serde(serialize_with = "timestamp::serialize", deserialize_with = "timestamp::deserialize")]
    pub timestamp: Timestamp,
}

impl From<&CachedPriceData> for Quote {
    fn from(price: &CachedPriceData) -> Self {
        Self { source_node_id: price.source_node_id, price: price.price, timestamp: price.timestamp }
    }
}

/// The price a node serves for one asset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServedPrice {
    /// The median of the fresh quotes (for an even count, the mean of the middle two).
    /// `timestamp` is the newest quote's, which only moves forward, so aggregates order
    /// newest-wins like single prices; `source_node_id` is the median quote's provider (the
    /// lower middle one's for an even count), whose `blockchain` and `change_24h` are shown.
    #[serde(flatten)]
    pub price: CachedPriceData,
    /// How many distinct providers' fresh quotes made the aggregate (1 when a document
    /// without it is read).
    #[serde(default = "one")]
    pub providers: u32,
    /// How far those quotes spread: `(highest - lowest) / lowest`, so `"0.012"` is 1.2 %;
    /// `"0"` for a single quote.
    #[serde(default, serialize_with = "decimal::serialize", deserialize_with = "decimal::deserialize")]
    pub spread: Decimal,
    /// Fewer fresh quotes than the node's quorum: only shown when quotes are asked for, as a
    /// price below quorum is otherwise not served.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub below_quorum: bool,
    /// The quotes that made the aggregate, lowest price first, when asked for
    /// (`GET /api/mesh/prices/{asset}?quotes=true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quotes: Option<Vec<Quote>>,
}

impl ServedPrice {
    /// A price served on one provider's word: one quote, no spread.
    pub fn single(price: CachedPriceData) -> Self {
        Self { price, providers: 1, spread: Decimal::ZERO, below_quorum: false, quotes: None }
    }

    /// The asset priced.
    pub const fn asset(&self) -> Asset {
        self.price.asset
    }
}

const fn one() -> u32 {
    1
}

/// Served prices keyed by asset, as `GET /api/mesh/prices` and the WebSocket feed send them.
pub type ServedPriceMap = BTreeMap<Asset, ServedPrice>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PublicKey;

    fn served() -> ServedPrice {
        ServedPrice {
            price: CachedPriceData {
                asset: Asset::new("SOL").unwrap(),
                price: Decimal::new(15_012, 2),
                timestamp: Timestamp::from_timestamp(1_704_067_200, 0).unwrap(),
                source_node_id: NodeId::from_public_key(&PublicKey::from_bytes([7; 32])),
                blockchain: "Solana".into(),
                change_24h: None,
            },
            providers: 3,
            spread: Decimal::new(12, 4),
            below_quorum: false,
            quotes: None,
        }
    }

    #[test]
    fn a_served_price_is_the_cached_price_shape_with_two_fields_beside_it() {
        let json = serde_json::to_value(served()).unwrap();
        let object = json.as_object().unwrap();
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["asset", "blockchain", "price", "providers", "source_node_id", "spread", "timestamp"]
        );
        assert_eq!(json["price"], "150.12");
        assert_eq!(json["spread"], "0.0012");
        assert_eq!(json["providers"], 3);
        assert_eq!(serde_json::from_value::<ServedPrice>(json).unwrap(), served());
    }

    #[test]
    fn quotes_and_the_quorum_flag_appear_only_when_set() {
        let quote = Quote::from(&served().price);
        let detailed = ServedPrice { below_quorum: true, quotes: Some(vec![quote]), ..served() };
        let json = serde_json::to_value(&detailed).unwrap();
        assert_eq!(json["below_quorum"], true);
        assert_eq!(json["quotes"][0]["price"], "150.12");
        assert_eq!(json["quotes"][0]["timestamp"], "2024-01-01T00:00:00Z");
        assert_eq!(serde_json::from_value::<ServedPrice>(json).unwrap(), detailed);
    }

    #[test]
    fn a_served_price_reads_as_a_cached_price() {
        let json = serde_json::to_value(served()).unwrap();
        assert_eq!(serde_json::from_value::<CachedPriceData>(json).unwrap(), served().price);
    }
}
