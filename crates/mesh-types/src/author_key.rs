//! Checking signatures fast without loosening them: an [`AuthorKey`] does the per-key work
//! once — the claimed node id derives from the key, the key is a valid point, not of small
//! order — so each later signature by that key costs one double scalar multiplication, and
//! [`verify_batch`] checks many signatures together for about half of that each.
//!
//! Both keep the rules of `ed25519_dalek`'s `verify_strict`: the signature's `s` must be
//! canonical, its `R` must not be of small order, the key must not be of small order, and
//! `R` must equal `[s]B - [k]A` in its canonical encoding (the cofactorless equation). The
//! key's order is checked once, in [`AuthorKey::new`]. `R` is not decompressed: since it must
//! equal a canonical encoding to verify at all, it is of small order exactly when its bytes
//! are one of the eight canonical encodings of the small-order points, which is a byte
//! comparison instead of a point decompression.
//!
//! Batch verification checks a random linear combination of the equations (random
//! coefficients derived from the batch itself). It accepts a batch only if every signature
//! in it is valid, up to a negligible probability, for keys of prime order. A key crafted with
//! a torsion component could make its owner's signature pass in a batch about half the time
//! and always fail alone, so nodes would disagree on what they accepted; such keys are refused
//! in [`AuthorKey::new`] (one multiplication by the group order, once per key), so batch and
//! single verification always agree. When a batch fails, each signature is checked alone to
//! find the bad ones.

use std::sync::LazyLock;

use curve25519_dalek::constants::EIGHT_TORSION;
use ed25519_dalek::VerifyingKey;

use crate::{NetworkId, NodeId, PublicKey, SignedMessage, ValidationError};

/// The canonical encodings of the eight points of small order.
static SMALL_ORDER_ENCODINGS: LazyLock<[[u8; 32]; 8]> =
    LazyLock::new(|| EIGHT_TORSION.map(|point| point.compress().to_bytes()));

/// A node's key, checked and decompressed once, ready to verify its signatures.
#[derive(Debug, Clone)]
pub struct AuthorKey {
    node_id: NodeId,
    public_key: PublicKey,
    key: VerifyingKey,
}

impl AuthorKey {
    /// Checks that `node_id` derives from `public_key` and that the key is a valid Ed25519
    /// point in the prime-order subgroup (neither of small order nor with a torsion part).
    ///
    /// # Errors
    /// [`ValidationError::SourceKeyMismatch`] or [`ValidationError::InvalidPublicKey`].
    pub fn new(node_id: NodeId, public_key: &PublicKey) -> Result<Self, ValidationError> {
        if !node_id.is_derived_from(public_key) {
            return Err(ValidationError::SourceKeyMismatch {
                claimed: node_id,
                derived: NodeId::from_public_key(public_key),
            });
        }
        let key =
            public_key.verifying_key().map_err(|_| ValidationError::InvalidPublicKey { node: node_id })?;
        if key.is_weak() || !key.to_edwards().is_torsion_free() {
            return Err(ValidationError::InvalidPublicKey { node: node_id });
        }
        Ok(Self { node_id, public_key: *public_key, key })
    }

    /// The node this key belongs to.
    pub const fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The key's bytes.
    pub const fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    /// Checks that `message` claims this key's node and key and that its signature verifies.
    ///
    /// # Errors
    /// [`ValidationError::SourceKeyMismatch`] when the message claims another node or carries
    /// another key; [`ValidationError::BadSignature`] when the signature does not verify.
    pub fn verify<M: SignedMessage + ?Sized>(
        &self,
        message: &M,
        network: &NetworkId,
    ) -> Result<(), ValidationError> {
        self.check_author(message)?;
        let signature = message.signature();
        if has_small_order_r(signature.as_bytes()) {
            return Err(ValidationError::BadSignature { node: self.node_id });
        }
        ed25519_dalek::Verifier::verify(&self.key, &message.signing_bytes(network), &signature.to_dalek())
            .map_err(|_| ValidationError::BadSignature { node: self.node_id })
    }

    fn check_author<M: SignedMessage + ?Sized>(&self, message: &M) -> Result<(), ValidationError> {
        let (claimed, key) = message.signer();
        if claimed == self.node_id && *key == self.public_key {
            Ok(())
        } else {
            Err(ValidationError::SourceKeyMismatch { claimed, derived: NodeId::from_public_key(key) })
        }
    }
}

/// Whether the `R` half of a signature is a canonical encoding of a small-order point.
fn has_small_order_r(signature: &[u8; 64]) -> bool {
    SMALL_ORDER_ENCODINGS.iter().any(|encoding| signature[..32] == encoding[..])
}

/// Checks the signatures of many messages at once, each against the key given with it.
/// `true` only if every one is valid (by the same rules as [`AuthorKey::verify`]); `false`
/// says at least one is not, and which ones is left to [`AuthorKey::verify`].
pub fn verify_batch<M: SignedMessage>(network: &NetworkId, items: &[(&AuthorKey, &M)]) -> bool {
    if items.iter().any(|(key, message)| {
        key.check_author(*message).is_err() || has_small_order_r(message.signature().as_bytes())
    }) {
        return false;
    }
    let messages: Vec<Vec<u8>> = items.iter().map(|(_, message)| message.signing_bytes(network)).collect();
    let message_slices: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    let signatures: Vec<ed25519_dalek::Signature> =
        items.iter().map(|(_, message)| message.signature().to_dalek()).collect();
    let keys: Vec<VerifyingKey> = items.iter().map(|(key, _)| key.key).collect();
    ed25519_dalek::verify_batch(&message_slices, &signatures, &keys).is_ok()
}

#[cfg(test)]
mod tests {
    use curve25519_dalek::edwards::CompressedEdwardsY;
    use proptest::prelude::*;

    use super::*;
    use crate::{Asset, NodeIdentity, PriceData, PriceUpdate, Signature, chrono};

    fn update(identity: &NodeIdentity, cents: i64) -> PriceUpdate {
        let price = PriceData {
            asset: Asset::new("SOL").unwrap(),
            price: rust_decimal::Decimal::new(cents, 2),
            blockchain: "Solana".into(),
            change_24h: None,
        };
        PriceUpdate::new_signed(identity, &NetworkId::mainnet(), [price], 10, chrono::Utc::now())
    }

    fn author(identity: &NodeIdentity) -> AuthorKey {
        AuthorKey::new(identity.node_id(), &identity.public_key()).unwrap()
    }

    #[test]
    fn the_small_order_encodings_are_those_of_small_order_points() {
        for encoding in SMALL_ORDER_ENCODINGS.iter() {
            let point = CompressedEdwardsY(*encoding).decompress().expect("a point");
            assert!(point.is_small_order());
        }
        let distinct: std::collections::HashSet<_> = SMALL_ORDER_ENCODINGS.iter().collect();
        assert_eq!(distinct.len(), 8);
    }

    #[test]
    fn a_key_that_does_not_derive_the_claimed_id_or_is_weak_is_refused() {
        let (alice, bob) = (NodeIdentity::generate(), NodeIdentity::generate());
        assert!(matches!(
            AuthorKey::new(alice.node_id(), &bob.public_key()),
            Err(ValidationError::SourceKeyMismatch { .. })
        ));
        // The identity point: valid encoding, small order.
        let weak = PublicKey::from_bytes(SMALL_ORDER_ENCODINGS[0]);
        assert!(matches!(
            AuthorKey::new(NodeId::from_public_key(&weak), &weak),
            Err(ValidationError::InvalidPublicKey { .. })
        ));
    }

    #[test]
    fn a_key_with_a_torsion_component_is_refused() {
        // A real key plus a point of order 8: a valid encoding, not of small order, but outside
        // the prime-order subgroup — the kind whose signatures pass a batch half the time.
        let honest = NodeIdentity::generate();
        let point = honest.public_key().verifying_key().unwrap().to_edwards() + EIGHT_TORSION[1];
        let crafted = PublicKey::from_bytes(point.compress().to_bytes());
        assert!(!crafted.verifying_key().unwrap().is_weak(), "passes the small-order check alone");
        assert!(matches!(
            AuthorKey::new(NodeId::from_public_key(&crafted), &crafted),
            Err(ValidationError::InvalidPublicKey { .. })
        ));
        author(&honest);
    }

    #[test]
    fn a_message_by_someone_else_is_refused_before_any_curve_work() {
        let (alice, bob) = (NodeIdentity::generate(), NodeIdentity::generate());
        assert!(matches!(
            author(&alice).verify(&update(&bob, 1), &NetworkId::mainnet()),
            Err(ValidationError::SourceKeyMismatch { .. })
        ));
        assert!(!verify_batch(&NetworkId::mainnet(), &[(&author(&alice), &update(&bob, 1))]));
    }

    #[test]
    fn a_signature_with_a_small_order_r_is_refused() {
        let alice = NodeIdentity::generate();
        let mut forged = update(&alice, 1);
        let mut bytes = *forged.signature.as_bytes();
        bytes[..32].copy_from_slice(&SMALL_ORDER_ENCODINGS[1]);
        forged.signature = Signature::from_bytes(bytes);
        assert!(matches!(
            author(&alice).verify(&forged, &NetworkId::mainnet()),
            Err(ValidationError::BadSignature { .. })
        ));
        assert!(!verify_batch(&NetworkId::mainnet(), &[(&author(&alice), &forged)]));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The fast checks agree with `verify_strict` on valid signatures and on every
        /// single-byte corruption of one.
        #[test]
        fn agrees_with_verify_strict(byte in 0usize..64, flip in 1u8..=255, corrupt in any::<bool>()) {
            let alice = NodeIdentity::generate();
            let mut message = update(&alice, 12_345);
            if corrupt {
                let mut bytes = *message.signature.as_bytes();
                bytes[byte] ^= flip;
                message.signature = Signature::from_bytes(bytes);
            }
            let strict = alice
                .public_key()
                .verifying_key()
                .unwrap()
                .verify_strict(&message.signing_bytes(&crate::NetworkId::mainnet()), &message.signature.to_dalek())
                .is_ok();
            let key = author(&alice);
            prop_assert_eq!(key.verify(&message, &NetworkId::mainnet()).is_ok(), strict);
            prop_assert_eq!(verify_batch(&NetworkId::mainnet(), &[(&key, &message)]), strict);
        }

        /// A batch passes exactly when every member is valid.
        #[test]
        fn a_batch_passes_only_when_all_pass(size in 1usize..12, bad in proptest::option::of(0usize..12)) {
            let signers: Vec<NodeIdentity> = (0..3).map(|_| NodeIdentity::generate()).collect();
            let keys: Vec<AuthorKey> = signers.iter().map(author).collect();
            let mut messages: Vec<PriceUpdate> =
                (0..size).map(|i| update(&signers[i % 3], i64::try_from(i).unwrap() + 1)).collect();
            let bad = bad.filter(|index| *index < size);
            if let Some(index) = bad {
                messages[index].prices.values_mut().for_each(|price| price.price += rust_decimal::Decimal::ONE);
            }
            let items: Vec<(&AuthorKey, &PriceUpdate)> =
                messages.iter().enumerate().map(|(i, message)| (&keys[i % 3], message)).collect();
            prop_assert_eq!(verify_batch(&NetworkId::mainnet(), &items), bad.is_none());
        }
    }
}
