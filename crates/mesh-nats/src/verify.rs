//! [`verify`]: what a subscriber runs on a bridged price so it need not trust the node that
//! bridged it — the provider's signature, and that the price is one the provider signed.

use std::sync::Arc;

use async_nats::HeaderMap;
use mesh_types::{
    Asset, CachedPriceData, Codec, CodecError, MeshMessage, NetworkId, PriceUpdate, SignedMessage,
    ValidationError,
};
use thiserror::Error;

use crate::subject;

/// The header carrying the provider's signed update: lowercase hex of its wire payload
/// (`Codec::default().encode(&MeshMessage::PriceUpdate(update))`), which `meshctl decode HEX`
/// also reads.
pub const UPDATE_HEADER: &str = "Pricemesh-Update";

/// Why a bridged price is not to be trusted.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// No signed update came with the price.
    #[error(
        "the message has no {UPDATE_HEADER} header: it was not published by a pricemesh bridge, or its headers were stripped"
    )]
    MissingHeader,
    /// The header is not hex.
    #[error("the {UPDATE_HEADER} header is not hex ({0}); it must be the hex of a pricemesh wire payload")]
    HeaderNotHex(#[source] hex::FromHexError),
    /// The header's bytes are not a pricemesh message.
    #[error("the {UPDATE_HEADER} header is not a pricemesh message: {0}")]
    Undecodable(#[source] CodecError),
    /// The header holds another kind of message.
    #[error("the {UPDATE_HEADER} header holds a {kind} message, not a price update")]
    NotAPriceUpdate {
        /// The kind found, e.g. `announce`.
        kind: &'static str,
    },
    /// The provider's signature does not verify on this network.
    #[error(
        "the signed update does not verify on network {network}: {source}; it was altered, or signed for another network (check which network you verify for)"
    )]
    BadSignature {
        /// The network checked against.
        network: NetworkId,
        /// What failed.
        #[source]
        source: ValidationError,
    },
    /// The payload is not the JSON price object.
    #[error("the payload is not a pricemesh JSON price object: {0}")]
    InvalidPayload(#[source] serde_json::Error),
    /// The payload's price is not one of the signed update's prices.
    #[error(
        "the price of {asset} in the payload is not one the signed update carries: the payload was altered, or the signature belongs to another price"
    )]
    PriceNotSigned {
        /// The payload's asset.
        asset: Asset,
    },
    /// The price arrived on another asset's subject.
    #[error("the price of {asset} arrived on subject {subject:?}; it belongs on {expected:?}")]
    WrongSubject {
        /// The payload's asset.
        asset: Asset,
        /// The subject it came on.
        subject: String,
        /// The subject it belongs on.
        expected: String,
    },
}

/// Checks a bridged price: decodes the [`UPDATE_HEADER`] header, checks it is a price update
/// whose provider signature verifies on `network`, and that the JSON `payload` is one of the
/// update's prices (asset, price, timestamp, source, blockchain and 24 h change alike), so a
/// node cannot attach someone else's signature to a price it made up. Returns the update.
///
/// The subject is not signed: check it is [`crate::subject`] of the payload's asset, or use
/// [`verify_message`] (a message received from NATS) or [`verify_stream_message`] (one read
/// from a stream), which do.
///
/// # Errors
/// A [`VerifyError`] saying which check failed.
pub fn verify(headers: &HeaderMap, payload: &[u8], network: &NetworkId) -> Result<PriceUpdate, VerifyError> {
    verify_price(headers, payload, network).map(|(update, _)| update)
}

/// [`verify`] for a message received from NATS, which also checks that the price came on its
/// asset's subject.
///
/// # Errors
/// A [`VerifyError`] saying which check failed.
pub fn verify_message(
    message: &async_nats::Message,
    network: &NetworkId,
) -> Result<PriceUpdate, VerifyError> {
    let headers = message.headers.as_ref().ok_or(VerifyError::MissingHeader)?;
    let (update, price) = verify_price(headers, &message.payload, network)?;
    check_subject(message.subject.as_str(), &price.asset, network)?;
    Ok(update)
}

/// [`verify`] for a message read from a JetStream stream (`Stream::get_last_raw_message_by_subject`
/// and friends), which also checks that the price is stored under its asset's subject.
///
/// # Errors
/// A [`VerifyError`] saying which check failed.
pub fn verify_stream_message(
    message: &async_nats::jetstream::message::StreamMessage,
    network: &NetworkId,
) -> Result<PriceUpdate, VerifyError> {
    let (update, price) = verify_price(&message.headers, &message.payload, network)?;
    check_subject(message.subject.as_str(), &price.asset, network)?;
    Ok(update)
}

fn check_subject(actual: &str, asset: &Asset, network: &NetworkId) -> Result<(), VerifyError> {
    let expected = subject(network, asset);
    if actual == expected {
        Ok(())
    } else {
        Err(VerifyError::WrongSubject { asset: *asset, subject: actual.to_owned(), expected })
    }
}

fn verify_price(
    headers: &HeaderMap,
    payload: &[u8],
    network: &NetworkId,
) -> Result<(PriceUpdate, CachedPriceData), VerifyError> {
    let header = headers.get(UPDATE_HEADER).ok_or(VerifyError::MissingHeader)?;
    let bytes = hex::decode(header.as_str().trim()).map_err(VerifyError::HeaderNotHex)?;
    let update = match Codec::default().decode(&bytes).map_err(VerifyError::Undecodable)? {
        MeshMessage::PriceUpdate(update) => update,
        other => return Err(VerifyError::NotAPriceUpdate { kind: other.kind() }),
    };
    // The cheap checks first: a made-up payload fails before any curve arithmetic.
    let price: CachedPriceData = serde_json::from_slice(payload).map_err(VerifyError::InvalidPayload)?;
    if !update.cached_prices().any(|signed| signed == price) {
        return Err(VerifyError::PriceNotSigned { asset: price.asset });
    }
    update
        .verify_signature(network)
        .map_err(|source| VerifyError::BadSignature { network: network.clone(), source })?;
    Ok((Arc::unwrap_or_clone(update), price))
}

/// The header value for `update`: hex of its wire payload.
pub(crate) fn update_header(codec: &Codec, update: &Arc<PriceUpdate>) -> Result<String, CodecError> {
    codec.encode(&MeshMessage::PriceUpdate(Arc::clone(update))).map(hex::encode)
}

#[cfg(test)]
mod tests {
    use mesh_types::rust_decimal::Decimal;
    use mesh_types::{Announce, NodeIdentity, PriceData};

    use super::*;

    fn signed(network: &NetworkId) -> Arc<PriceUpdate> {
        let price = |symbol: &str, cents| PriceData {
            asset: Asset::new(symbol).unwrap(),
            price: Decimal::new(cents, 2),
            blockchain: "Solana".into(),
            change_24h: Some(Decimal::new(-125, 2)),
        };
        let update = PriceUpdate::new_signed(
            &NodeIdentity::generate(),
            network,
            [price("SOL", 12_345), price("BTC", 6_500_000)],
            10,
            mesh_types::chrono::Utc::now(),
        );
        Arc::new(update)
    }

    fn bridged(update: &Arc<PriceUpdate>, asset: &str) -> (HeaderMap, Vec<u8>) {
        let mut headers = HeaderMap::new();
        headers.insert(UPDATE_HEADER, update_header(&Codec::default(), update).unwrap().as_str());
        let price = update.cached_prices().find(|p| p.asset.as_str() == asset).unwrap();
        (headers, serde_json::to_vec(&price).unwrap())
    }

    fn message(subject: &str, headers: HeaderMap, payload: Vec<u8>) -> async_nats::Message {
        async_nats::Message {
            subject: subject.into(),
            reply: None,
            length: payload.len(),
            payload: payload.into(),
            headers: Some(headers),
            status: None,
            description: None,
        }
    }

    #[test]
    fn a_bridged_price_verifies_and_yields_its_update() {
        let network = NetworkId::mainnet();
        let update = signed(&network);
        for asset in ["SOL", "BTC"] {
            let (headers, payload) = bridged(&update, asset);
            assert_eq!(verify(&headers, &payload, &network).unwrap(), *update);
            let message = message(&format!("pricemesh.mainnet.{asset}"), headers, payload);
            assert_eq!(verify_message(&message, &network).unwrap(), *update);
        }
    }

    #[test]
    fn the_payload_is_the_api_price_object() {
        let update = signed(&NetworkId::mainnet());
        let (_, payload) = bridged(&update, "SOL");
        let json: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        let keys: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 6, "{json}");
        for key in ["asset", "price", "timestamp", "source_node_id", "blockchain", "change_24h"] {
            assert!(keys.contains(&key), "{key} missing from {json}");
        }
        assert_eq!(json["price"], "123.45");
    }

    #[test]
    fn a_tampered_payload_fails() {
        let network = NetworkId::mainnet();
        let update = signed(&network);
        let (headers, payload) = bridged(&update, "SOL");
        let mut json: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        for (field, value) in [
            ("price", serde_json::json!("999.99")),
            ("timestamp", serde_json::json!("2020-01-01T00:00:00Z")),
            ("source_node_id", serde_json::json!(NodeIdentity::generate().node_id())),
            ("blockchain", serde_json::json!("Ethereum")),
            ("asset", serde_json::json!("ETH")),
        ] {
            let mut tampered = json.clone();
            tampered[field] = value;
            let result = verify(&headers, &serde_json::to_vec(&tampered).unwrap(), &network);
            assert!(matches!(result, Err(VerifyError::PriceNotSigned { .. })), "{field}: {result:?}");
        }
        json.as_object_mut().unwrap().remove("change_24h");
        let result = verify(&headers, &serde_json::to_vec(&json).unwrap(), &network);
        assert!(matches!(result, Err(VerifyError::PriceNotSigned { .. })), "{result:?}");
    }

    #[test]
    fn a_tampered_update_fails_its_signature() {
        let network = NetworkId::mainnet();
        let mut update = (*signed(&network)).clone();
        let sol = Asset::new("SOL").unwrap();
        update.prices.get_mut(&sol).unwrap().price = Decimal::new(1, 0);
        let update = Arc::new(update);
        // The payload matches the altered update, but the provider never signed it.
        let (headers, payload) = bridged(&update, "SOL");
        let result = verify(&headers, &payload, &network);
        assert!(matches!(result, Err(VerifyError::BadSignature { .. })), "{result:?}");
    }

    #[test]
    fn an_update_for_another_network_fails() {
        let update = signed(&NetworkId::testnet());
        let (headers, payload) = bridged(&update, "SOL");
        let result = verify(&headers, &payload, &NetworkId::mainnet());
        let err = result.unwrap_err();
        assert!(matches!(err, VerifyError::BadSignature { .. }), "{err:?}");
        assert!(err.to_string().contains("mainnet"), "{err}");
        assert!(verify(&headers, &payload, &NetworkId::testnet()).is_ok());
    }

    #[test]
    fn garbage_is_refused_with_the_reason() {
        let network = NetworkId::mainnet();
        let update = signed(&network);
        let (good, payload) = bridged(&update, "SOL");

        let result = verify(&HeaderMap::new(), &payload, &network);
        assert!(matches!(result, Err(VerifyError::MissingHeader)), "{result:?}");
        let mut no_headers = message("pricemesh.mainnet.SOL", good.clone(), payload.clone());
        no_headers.headers = None;
        assert!(matches!(verify_message(&no_headers, &network), Err(VerifyError::MissingHeader)));

        let header = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(UPDATE_HEADER, value);
            headers
        };
        let result = verify(&header("not hex!"), &payload, &network);
        assert!(matches!(result, Err(VerifyError::HeaderNotHex(_))), "{result:?}");
        let result = verify(&header("ff00ff"), &payload, &network);
        assert!(matches!(result, Err(VerifyError::Undecodable(_))), "{result:?}");

        let identity = NodeIdentity::generate();
        let announce =
            Announce::new_signed(&identity, &network, false, None, 1, mesh_types::chrono::Utc::now());
        let bytes = Codec::default().encode(&MeshMessage::Announce(announce)).unwrap();
        let result = verify(&header(&hex::encode(bytes)), &payload, &network);
        assert!(matches!(result, Err(VerifyError::NotAPriceUpdate { kind: "announce" })), "{result:?}");

        for payload in [&b"{}"[..], b"", b"[1,2]", b"\xff"] {
            let result = verify(&good, payload, &network);
            assert!(matches!(result, Err(VerifyError::InvalidPayload(_))), "{result:?}");
        }
    }

    #[test]
    fn a_price_on_another_assets_subject_fails() {
        let network = NetworkId::mainnet();
        let update = signed(&network);
        let (headers, payload) = bridged(&update, "SOL");
        let result = verify_message(&message("pricemesh.mainnet.BTC", headers, payload), &network);
        assert!(matches!(result, Err(VerifyError::WrongSubject { .. })), "{result:?}");
    }
}
