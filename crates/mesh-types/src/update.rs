//! [`PriceUpdate`]: the signed message a provider publishes and every node relays.
//!
//! Relays change only `ttl` and `hop_count`; everything else, including the signature, travels
//! unchanged from the provider to every node, so any node can check the prices came from the
//! provider that signed them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::canonical::CanonicalWriter;
use crate::serde_util::timestamp;
use crate::signing::SignedMessage;
use crate::{
    Asset, CachedPriceData, MessageId, NetworkId, NodeId, NodeIdentity, PriceData, PublicKey, Signature,
    Timestamp,
};

/// A signed set of prices published by one provider at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceUpdate {
    /// Unique per update; duplicates of it are dropped by every node.
    pub message_id: MessageId,
    /// The provider; must be derived from `source_key`.
    pub source_node_id: NodeId,
    /// The provider's public key, which the signature verifies against.
    pub source_key: PublicKey,
    /// When the provider published the prices.
    #[serde(with = "timestamp")]
    pub timestamp: Timestamp,
    /// The prices, keyed by asset; each entry's `asset` equals its key.
    #[serde(with = "price_map")]
    pub prices: BTreeMap<Asset, PriceData>,
    /// Hops the update may still travel; not relayed at 0. Not signed.
    pub ttl: u8,
    /// Hops travelled so far. Not signed.
    pub hop_count: u8,
    /// The provider's signature over every field except `ttl` and `hop_count`.
    pub signature: Signature,
}

/// Domain tag of the signed bytes of a [`PriceUpdate`].
const PRICE_UPDATE_DOMAIN: &str = "pricemesh/price-update/v1";

impl PriceUpdate {
    /// Builds and signs an update with a fresh message id and `hop_count` 0. When `prices`
    /// holds the same asset twice, the later entry is kept.
    pub fn new_signed(
        identity: &NodeIdentity,
        network: &NetworkId,
        prices: impl IntoIterator<Item = PriceData>,
        ttl: u8,
        timestamp: Timestamp,
    ) -> Self {
        let mut update = Self {
            message_id: MessageId::new(),
            source_node_id: identity.node_id(),
            source_key: identity.public_key(),
            timestamp,
            prices: prices.into_iter().map(|price| (price.asset, price)).collect(),
            ttl,
            hop_count: 0,
            signature: Signature::EMPTY,
        };
        update.signature = identity.sign(&update.signing_bytes(network));
        update
    }

    /// The copy to send on to peers: `ttl - 1` and `hop_count + 1`, everything else unchanged.
    /// `None` when the TTL is spent.
    pub fn relayed(&self) -> Option<Self> {
        let ttl = self.ttl.checked_sub(1)?;
        Some(Self { ttl, hop_count: self.hop_count.saturating_add(1), ..self.clone() })
    }

    /// Whether `other` is a copy of this update: the signed fields and the signature are equal,
    /// whatever `ttl` and `hop_count` relays have set.
    pub fn same_signed_content(&self, other: &Self) -> bool {
        self.message_id == other.message_id
            && self.source_node_id == other.source_node_id
            && self.source_key == other.source_key
            && self.timestamp == other.timestamp
            && self.signature == other.signature
            && self.prices == other.prices
    }

    /// The cache entries this update carries.
    pub fn cached_prices(&self) -> impl Iterator<Item = CachedPriceData> + '_ {
        self.prices
            .values()
            .map(|price| CachedPriceData::from_update(price, self.timestamp, self.source_node_id))
    }
}

impl SignedMessage for PriceUpdate {
    fn signer(&self) -> (NodeId, &PublicKey) {
        (self.source_node_id, &self.source_key)
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn signing_bytes(&self, network: &NetworkId) -> Vec<u8> {
        let mut writer = CanonicalWriter::new(PRICE_UPDATE_DOMAIN, network);
        writer
            .message_id(&self.message_id)
            .node_id(&self.source_node_id)
            .public_key(&self.source_key)
            .timestamp(&self.timestamp)
            // The frame size limit keeps the count far below u32::MAX.
            .u32(self.prices.len() as u32);
        for (asset, price) in &self.prices {
            writer
                .asset(asset)
                .asset(&price.asset)
                .decimal(&price.price)
                .str(&price.blockchain)
                .opt_decimal(price.change_24h.as_ref());
        }
        writer.finish()
    }
}

/// The price map is a JSON object keyed by asset (as the API serves it) but a plain list
/// on the wire, where the key would only repeat each entry's `asset`. Both decoders refuse an
/// entry filed under another asset's key or a duplicate asset.
mod price_map {
    use std::collections::BTreeMap;

    use serde::de::Error;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::{Asset, PriceData};

    pub(super) fn serialize<S: Serializer>(
        prices: &BTreeMap<Asset, PriceData>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            prices.serialize(serializer)
        } else {
            serializer.collect_seq(prices.values())
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<BTreeMap<Asset, PriceData>, D::Error> {
        if deserializer.is_human_readable() {
            let prices = BTreeMap::<Asset, PriceData>::deserialize(deserializer)?;
            if let Some((key, price)) = prices.iter().find(|(key, price)| **key != price.asset) {
                return Err(D::Error::custom(format_args!(
                    "price filed under {key} is for {}; each key must equal its entry's asset",
                    price.asset
                )));
            }
            Ok(prices)
        } else {
            let list = Vec::<PriceData>::deserialize(deserializer)?;
            let mut prices = BTreeMap::new();
            for price in list {
                let asset = price.asset;
                if prices.insert(asset, price).is_some() {
                    return Err(D::Error::custom(format_args!("asset {asset} appears twice")));
                }
            }
            Ok(prices)
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use rust_decimal::Decimal;

    use super::*;
    use crate::strategies;
    use crate::{Codec, MeshMessage, ValidationError};

    /// One way of changing a signed field of an update.
    #[derive(Debug, Clone)]
    enum Tamper {
        MessageId,
        SourceKey,
        Timestamp,
        Price,
        Blockchain,
        Change,
        DropPrice,
        AddPrice(PriceData),
    }

    fn tamper() -> impl Strategy<Value = Tamper> {
        prop_oneof![
            Just(Tamper::MessageId),
            Just(Tamper::SourceKey),
            Just(Tamper::Timestamp),
            Just(Tamper::Price),
            Just(Tamper::Blockchain),
            Just(Tamper::Change),
            Just(Tamper::DropPrice),
            strategies::valid_price_data().prop_map(Tamper::AddPrice),
        ]
    }

    fn apply(update: &mut PriceUpdate, tamper: &Tamper) -> bool {
        let first = *update.prices.keys().next().expect("valid updates carry prices");
        let entry = update.prices.get_mut(&first).expect("key exists");
        match tamper {
            Tamper::MessageId => update.message_id = MessageId::new(),
            Tamper::SourceKey => {
                // A different signer: the id is re-derived so only the signature can catch it.
                let other = NodeIdentity::generate();
                update.source_key = other.public_key();
                update.source_node_id = other.node_id();
            }
            Tamper::Timestamp => update.timestamp += chrono::Duration::nanoseconds(1),
            Tamper::Price => entry.price += Decimal::new(1, 12),
            Tamper::Blockchain => entry.blockchain = format!("{}x", entry.blockchain).into(),
            Tamper::Change => {
                entry.change_24h = match entry.change_24h {
                    None => Some(Decimal::ONE),
                    Some(_) => None,
                }
            }
            Tamper::DropPrice => {
                if update.prices.len() < 2 {
                    return false;
                }
                update.prices.remove(&first);
            }
            Tamper::AddPrice(price) => {
                if update.prices.contains_key(&price.asset) {
                    return false;
                }
                update.prices.insert(price.asset, price.clone());
            }
        }
        true
    }

    #[test]
    fn relaying_changes_only_ttl_and_hop_count_and_stops_at_zero() {
        let identity = NodeIdentity::from_secret_bytes(&[3; 32]);
        let price = PriceData {
            asset: Asset::new("SOL").unwrap(),
            price: Decimal::new(12345, 2),
            blockchain: "Solana".into(),
            change_24h: None,
        };
        let update =
            PriceUpdate::new_signed(&identity, &crate::NetworkId::mainnet(), [price], 1, chrono::Utc::now());
        let relayed = update.relayed().unwrap();
        assert_eq!((relayed.ttl, relayed.hop_count), (0, 1));
        assert_eq!(PriceUpdate { ttl: 1, hop_count: 0, ..relayed.clone() }, update);
        assert!(relayed.verify_signature(&crate::NetworkId::mainnet()).is_ok());
        assert!(relayed.relayed().is_none());
    }

    #[test]
    fn an_update_signed_for_another_network_does_not_verify() {
        let identity = NodeIdentity::from_secret_bytes(&[4; 32]);
        let price = PriceData {
            asset: Asset::new("SOL").unwrap(),
            price: Decimal::ONE,
            blockchain: "Solana".into(),
            change_24h: None,
        };
        let devnet =
            PriceUpdate::new_signed(&identity, &NetworkId::devnet(), [price], 10, chrono::Utc::now());
        assert!(devnet.verify_signature(&NetworkId::devnet()).is_ok());
        assert!(
            matches!(
                devnet.verify_signature(&NetworkId::mainnet()),
                Err(crate::ValidationError::BadSignature { .. })
            ),
            "a devnet update replayed on mainnet fails"
        );
    }

    #[test]
    fn a_forged_source_id_is_refused_before_the_signature() {
        let identity = NodeIdentity::from_secret_bytes(&[4; 32]);
        let price = PriceData {
            asset: Asset::new("ETH").unwrap(),
            price: Decimal::ONE,
            blockchain: "Ethereum".into(),
            change_24h: None,
        };
        let mut update =
            PriceUpdate::new_signed(&identity, &crate::NetworkId::mainnet(), [price], 5, chrono::Utc::now());
        update.source_node_id = NodeIdentity::from_secret_bytes(&[5; 32]).node_id();
        assert!(matches!(
            update.verify_signature(&crate::NetworkId::mainnet()),
            Err(ValidationError::SourceKeyMismatch { .. })
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn signed_updates_verify_after_a_wire_round_trip(update in strategies::valid_update()) {
            let codec = Codec::default();
            let payload = codec.encode(&MeshMessage::from(update.clone())).unwrap();
            let MeshMessage::PriceUpdate(received) = codec.decode(&payload).unwrap() else {
                panic!("decoded another message kind");
            };
            prop_assert!(received.verify_signature(&crate::NetworkId::mainnet()).is_ok());
            prop_assert_eq!(&*received, &update);
        }

        #[test]
        fn changing_a_signed_field_breaks_the_signature(mut update in strategies::valid_update(), how in tamper()) {
            prop_assume!(apply(&mut update, &how));
            prop_assert!(update.verify_signature(&crate::NetworkId::mainnet()).is_err(), "tampering {:?} went unnoticed", how);
        }

        #[test]
        fn changing_ttl_or_hop_count_keeps_the_signature(mut update in strategies::valid_update(), ttl in any::<u8>(), hops in any::<u8>()) {
            update.ttl = ttl;
            update.hop_count = hops;
            prop_assert!(update.verify_signature(&crate::NetworkId::mainnet()).is_ok());
        }
    }
}
