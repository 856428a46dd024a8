//! [`Gossiped`]: what every message that floods the mesh has in common — [`PriceUpdate`],
//! [`Announce`], [`Alert`] — so that one engine can judge them all the same way: the seen
//! key, the relay fields, and the checks that need no signature work.
//!
//! The **seen key** is what the seen cache remembers. It is derived from the message's kind,
//! its author's key and its id, never the bare id: an announcement that copies a price
//! update's id, or an update under someone else's key that copies it, then has another key,
//! and cannot make a node drop the genuine message as a duplicate.

use sha2::{Digest as _, Sha256};

use crate::validation::ValidationPolicy;
use crate::{
    Alert, Announce, MessageId, PriceUpdate, SignedMessage, Timestamp, ValidationError, WarningKind,
};

/// A signed message gossiped with a TTL.
pub trait Gossiped: SignedMessage + Clone {
    /// The kind, for the seen key and logs (`price_update`, `announce`, `alert`).
    const KIND: &'static str;

    /// Its id, unique per message.
    fn message_id(&self) -> MessageId;

    /// When its author made it.
    fn timestamp(&self) -> Timestamp;

    /// Hops it may still travel.
    fn ttl(&self) -> u8;

    /// Hops it travelled.
    fn hop_count(&self) -> u8;

    /// The copy a relay passes on: one hop further, one hop less to go; everything signed is
    /// unchanged.
    #[must_use]
    fn relayed(&self) -> Self;

    /// Checks of its content beyond what every gossiped message shares.
    ///
    /// # Errors
    /// The first rule the content breaks.
    fn check_content(&self) -> Result<(), ValidationError> {
        Ok(())
    }

    /// The key the seen cache remembers it by: SHA-256 over the kind, the author's key and the
    /// id, as a UUID.
    fn seen_key(&self) -> MessageId {
        let (_, key) = self.signer();
        let mut hash = Sha256::new();
        hash.update(b"pricemesh/seen/v1");
        hash.update(Self::KIND.as_bytes());
        hash.update(key.as_bytes());
        hash.update(self.message_id().as_uuid().as_bytes());
        let digest = hash.finalize();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        MessageId::from_uuid(uuid::Builder::from_custom_bytes(bytes).into_uuid())
    }

    /// Everything but the signature, for a gossiped copy: a real id, an author id derived from
    /// its key, `ttl + hop_count` within the maximum, a timestamp neither ahead of `now` by
    /// more than the skew nor older than the maximum age nor outside what storage holds, and
    /// [`Gossiped::check_content`].
    ///
    /// # Errors
    /// The first rule it breaks.
    fn validate_gossiped(&self, policy: &ValidationPolicy, now: Timestamp) -> Result<(), ValidationError> {
        if self.message_id().is_nil() {
            return Err(ValidationError::MissingMessageId);
        }
        let (claimed, key) = self.signer();
        if !claimed.is_derived_from(key) {
            return Err(ValidationError::SourceKeyMismatch {
                claimed,
                derived: crate::NodeId::from_public_key(key),
            });
        }
        let (ttl, hop_count) = (self.ttl(), self.hop_count());
        if u16::from(ttl).saturating_add(u16::from(hop_count)) > u16::from(policy.max_ttl) {
            return Err(ValidationError::TtlTooHigh { ttl, hop_count, max: policy.max_ttl });
        }
        policy.check_timestamp(self.timestamp(), now, true)?;
        self.check_content()
    }
}

/// The accessors every gossiped message shares: its id, timestamp and relay fields have the
/// same names in each.
macro_rules! relay_fields {
    () => {
        fn message_id(&self) -> MessageId {
            self.message_id
        }

        fn timestamp(&self) -> Timestamp {
            self.timestamp
        }

        fn ttl(&self) -> u8 {
            self.ttl
        }

        fn hop_count(&self) -> u8 {
            self.hop_count
        }

        fn relayed(&self) -> Self {
            Self {
                ttl: self.ttl.saturating_sub(1),
                hop_count: self.hop_count.saturating_add(1),
                ..self.clone()
            }
        }
    };
}

impl Gossiped for PriceUpdate {
    const KIND: &'static str = "price_update";

    relay_fields!();
}

impl Gossiped for Announce {
    const KIND: &'static str = "announce";

    relay_fields!();
}

impl Gossiped for Alert {
    const KIND: &'static str = "alert";

    relay_fields!();

    /// A discrepancy must be a finite, non-negative percentage: it is shown to users as a
    /// number.
    fn check_content(&self) -> Result<(), ValidationError> {
        match self.kind {
            WarningKind::PriceDiscrepancy { discrepancy_percent, .. }
                if !(discrepancy_percent.is_finite() && discrepancy_percent >= 0.0) =>
            {
                Err(ValidationError::InvalidAlert {
                    detail: format!("discrepancy of {discrepancy_percent}%"),
                })
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Asset, NodeIdentity, PriceData};

    fn now() -> Timestamp {
        chrono::Utc::now()
    }

    #[test]
    fn another_kind_or_author_with_the_same_id_has_another_seen_key() {
        let provider = NodeIdentity::generate();
        let price = PriceData {
            asset: Asset::new("SOL").unwrap(),
            price: rust_decimal::Decimal::ONE,
            blockchain: "Solana".into(),
            change_24h: None,
        };
        let update = PriceUpdate::new_signed(&provider, &crate::NetworkId::mainnet(), [price], 10, now());
        let attacker = NodeIdentity::generate();
        let mut announce =
            Announce::new_signed(&attacker, &crate::NetworkId::mainnet(), false, None, 10, now());
        announce.message_id = update.message_id;
        assert_ne!(announce.seen_key(), update.seen_key(), "another kind");
        let mut copied = PriceUpdate::new_signed(
            &attacker,
            &crate::NetworkId::mainnet(),
            update.prices.values().cloned(),
            10,
            now(),
        );
        copied.message_id = update.message_id;
        assert_ne!(copied.seen_key(), update.seen_key(), "another author");
        assert_eq!(Gossiped::relayed(&update).seen_key(), update.seen_key(), "relaying keeps the key");
    }

    #[test]
    fn gossiped_checks_cover_ttl_time_and_content() {
        let node = NodeIdentity::generate();
        let policy = ValidationPolicy::default();
        let at = now();
        let announce = Announce::new_signed(&node, &crate::NetworkId::mainnet(), false, None, 10, at);
        assert_eq!(announce.validate_gossiped(&policy, at), Ok(()));
        let far = Announce { ttl: 16, hop_count: 3, ..announce.clone() };
        assert!(matches!(far.validate_gossiped(&policy, at), Err(ValidationError::TtlTooHigh { .. })));
        let old = Announce::new_signed(
            &node,
            &crate::NetworkId::mainnet(),
            false,
            None,
            10,
            at - chrono::Duration::hours(1),
        );
        assert!(matches!(old.validate_gossiped(&policy, at), Err(ValidationError::TooOld { .. })));
        let alert = Alert::new_signed(
            &node,
            &crate::NetworkId::mainnet(),
            WarningKind::PriceDiscrepancy {
                asset: Asset::new("SOL").unwrap(),
                discrepancy_percent: f64::NAN,
            },
            10,
            at,
        );
        assert!(matches!(alert.validate_gossiped(&policy, at), Err(ValidationError::InvalidAlert { .. })));
    }
}
