//! Signed messages: the [`SignedMessage`] trait shared by every message that carries its
//! author's key and signature ([`crate::PriceUpdate`], [`crate::Announce`], [`crate::Alert`]).
//!
//! Verification is strict Ed25519 (the rules of `verify_strict`: no small-order keys or
//! `R`, canonical signatures only; see [`AuthorKey`]) and first checks that the claimed node id is the one derived from the
//! carried key, so a valid signature by some other key cannot pass as the claimed node.

use crate::{AuthorKey, NetworkId, NodeId, PublicKey, Signature, ValidationError};

/// A message signed by the node that wrote it.
pub trait SignedMessage {
    /// The node that claims authorship, and the key it carries.
    fn signer(&self) -> (NodeId, &PublicKey);

    /// The carried signature.
    fn signature(&self) -> &Signature;

    /// The canonical bytes the signature covers on `network`: the kind's domain tag, the
    /// network id, then the fields. Relay-mutable fields (`ttl`, `hop_count`) are not part of
    /// them.
    fn signing_bytes(&self, network: &NetworkId) -> Vec<u8>;

    /// Checks authorship on `network`: the claimed id derives from the key, and the signature,
    /// made for this network, verifies.
    ///
    /// # Errors
    /// [`ValidationError::SourceKeyMismatch`], [`ValidationError::InvalidPublicKey`] or
    /// [`ValidationError::BadSignature`] (a message signed for another network included).
    fn verify_signature(&self, network: &NetworkId) -> Result<(), ValidationError> {
        let (claimed, key) = self.signer();
        AuthorKey::new(claimed, key)?.verify(self, network)
    }
}
