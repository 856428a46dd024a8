//! Validation of incoming price updates: the [`ValidationPolicy`] limits, the typed
//! [`ValidationError`]s, and the error codes the HTTP API answers with ([`ErrorCode`]) they map
//! to (the contract `mesh-api` serves at `/api/openapi.json`).
//!
//! A symbol outside `A-Z 0-9 . _ -` cannot be represented by [`crate::Asset`] at all, so such
//! an update already fails to decode; everything that decodes is checked here.

use std::fmt;
use std::time::Duration;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::price::MAX_BLOCKCHAIN_LEN;
use crate::signing::SignedMessage;
use crate::{Asset, NetworkId, NodeId, PriceUpdate, Timestamp};

/// Limits an update must respect to be accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationPolicy {
    /// The network whose signatures count: a message signed for another network (a devnet
    /// update replayed on mainnet) fails to verify.
    pub network: NetworkId,
    /// How far in the future a timestamp may be, to allow for clock differences. Kept tight:
    /// a future-dated price wins newest-wins against every real one until its time comes.
    pub max_clock_skew: Duration,
    /// How old a gossiped update may be. Older ones are refused, so a replay after its id has
    /// left the seen cache is not accepted and relayed again; the seen cache must remember ids
    /// at least this long plus the clock skew. Anti-entropy answers, which carry the newest
    /// price held however old it is, are exempt ([`PriceUpdate::validate_archived`]).
    pub max_age: Duration,
    /// The largest TTL a provider may give an update (`ttl + hop_count` may not exceed it).
    pub max_ttl: u8,
    /// The most prices one update may carry.
    pub max_prices: usize,
    /// The largest plausible price; anything above is refused as absurd.
    pub max_price: Decimal,
}

impl ValidationPolicy {
    /// Default allowed clock skew: 5 s, what unsynchronised clocks drift in days; NTP keeps
    /// them within milliseconds.
    pub const DEFAULT_MAX_CLOCK_SKEW: Duration = Duration::from_secs(5);
    /// Default oldest gossiped update: 120 s, far beyond any propagation delay and well
    /// inside the seen cache's default 300 s.
    pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(120);
    /// The earliest timestamp any update may carry: 2020-01-01, before this network existed.
    pub const EARLIEST_TIMESTAMP_SECS: i64 = 1_577_836_800;
    /// The latest timestamp any update may carry: the end of 9999, within what every backend
    /// (PostgreSQL's `TIMESTAMPTZ` included) stores.
    pub const LATEST_TIMESTAMP_SECS: i64 = 253_402_300_799;
    /// Default largest TTL: 16, room for the 10–15 hops a large mesh's updates may need to reach
    /// every node.
    pub const DEFAULT_MAX_TTL: u8 = 16;
    /// Default most prices per update: 1,024.
    pub const DEFAULT_MAX_PRICES: usize = 1024;
    /// Default largest price: one trillion dollars per unit.
    pub const DEFAULT_MAX_PRICE: Decimal = Decimal::from_parts(3_567_587_328, 232, 0, false, 0);
}

impl ValidationPolicy {
    /// Checks a message's `timestamp` against the local clock `now`: not ahead by more than
    /// the skew, inside the years storage holds, and — when `check_age` — not older than the
    /// maximum age.
    ///
    /// # Errors
    /// [`ValidationError::FutureTimestamp`], [`ValidationError::TimestampOutOfRange`] or
    /// [`ValidationError::TooOld`].
    pub fn check_timestamp(
        &self,
        timestamp: Timestamp,
        now: Timestamp,
        check_age: bool,
    ) -> Result<(), ValidationError> {
        let skew = chrono::Duration::from_std(self.max_clock_skew).unwrap_or(chrono::Duration::MAX);
        if now.checked_add_signed(skew).is_some_and(|limit| timestamp > limit) {
            return Err(ValidationError::FutureTimestamp { timestamp, now, max_skew: self.max_clock_skew });
        }
        if !(Self::EARLIEST_TIMESTAMP_SECS..=Self::LATEST_TIMESTAMP_SECS).contains(&timestamp.timestamp()) {
            return Err(ValidationError::TimestampOutOfRange { timestamp });
        }
        let age = chrono::Duration::from_std(self.max_age).unwrap_or(chrono::Duration::MAX);
        if check_age && now.checked_sub_signed(age).is_some_and(|limit| timestamp < limit) {
            return Err(ValidationError::TooOld { timestamp, now, max_age: self.max_age });
        }
        Ok(())
    }
}

impl Default for ValidationPolicy {
    fn default() -> Self {
        Self {
            network: NetworkId::mainnet(),
            max_clock_skew: Self::DEFAULT_MAX_CLOCK_SKEW,
            max_age: Self::DEFAULT_MAX_AGE,
            max_ttl: Self::DEFAULT_MAX_TTL,
            max_prices: Self::DEFAULT_MAX_PRICES,
            max_price: Self::DEFAULT_MAX_PRICE,
        }
    }
}

/// The application error codes the HTTP API answers rejected updates with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// A price or timestamp is out of bounds, or the update is otherwise invalid.
    InvalidPriceUpdate,
    /// The message is malformed or lacks a field.
    MissingRequiredField,
    /// The source node id is missing, malformed, not derived from the key, or its signature
    /// fails — a security concern.
    InvalidSourceNode,
}

impl ErrorCode {
    /// The code as the HTTP API spells it, e.g. `"INVALID_PRICE_UPDATE"`.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Self::InvalidPriceUpdate => "INVALID_PRICE_UPDATE",
            Self::MissingRequiredField => "MISSING_REQUIRED_FIELD",
            Self::InvalidSourceNode => "INVALID_SOURCE_NODE",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an update was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// The message id is the nil UUID.
    #[error("message id is missing (nil UUID)")]
    MissingMessageId,
    /// The update carries no prices.
    #[error("update carries no prices")]
    EmptyPrices,
    /// The update carries more prices than allowed.
    #[error("update carries {count} prices; at most {max} are allowed")]
    TooManyPrices {
        /// Prices carried.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A price is filed under another asset's key.
    #[error("price filed under {key} is for {asset}")]
    AssetKeyMismatch {
        /// The map key.
        key: Asset,
        /// The asset inside the entry.
        asset: Asset,
    },
    /// A price is zero or negative.
    #[error("price of {asset} is {price}; prices must be positive")]
    NonPositivePrice {
        /// The asset.
        asset: Asset,
        /// The refused price.
        price: Decimal,
    },
    /// A price is implausibly large.
    #[error("price of {asset} is {price}, above the plausible maximum {max}")]
    AbsurdPrice {
        /// The asset.
        asset: Asset,
        /// The refused price.
        price: Decimal,
        /// The limit.
        max: Decimal,
    },
    /// A 24 h change below -100 %, which no price can fall by.
    #[error("24h change of {asset} is {change}%; a price cannot fall by more than 100%")]
    InvalidChange {
        /// The asset.
        asset: Asset,
        /// The refused change.
        change: Decimal,
    },
    /// A price has no blockchain name.
    #[error("price of {asset} has no blockchain name")]
    MissingBlockchain {
        /// The asset.
        asset: Asset,
    },
    /// A blockchain name is too long or contains control characters.
    #[error("blockchain name of {asset} is invalid: at most {MAX_BLOCKCHAIN_LEN} bytes of printable text")]
    InvalidBlockchain {
        /// The asset.
        asset: Asset,
    },
    /// The timestamp is further in the future than the allowed clock skew.
    #[error("timestamp {timestamp} is more than {}s ahead of local time {now}", max_skew.as_secs())]
    FutureTimestamp {
        /// The refused timestamp.
        timestamp: Timestamp,
        /// Local time at the check.
        now: Timestamp,
        /// The allowed skew.
        max_skew: Duration,
    },
    /// The timestamp is older than the oldest a gossiped update may be.
    #[error("timestamp {timestamp} is more than {}s older than local time {now}", max_age.as_secs())]
    TooOld {
        /// The refused timestamp.
        timestamp: Timestamp,
        /// Local time at the check.
        now: Timestamp,
        /// The allowed age.
        max_age: Duration,
    },
    /// The timestamp lies outside the years any update may carry (2020 to 9999).
    #[error("timestamp {timestamp} lies outside 2020-01-01 to 9999-12-31")]
    TimestampOutOfRange {
        /// The refused timestamp.
        timestamp: Timestamp,
    },
    /// An alert whose content cannot be shown (a discrepancy that is not a finite percentage).
    #[error("alert is invalid: {detail}")]
    InvalidAlert {
        /// What is wrong.
        detail: String,
    },
    /// `ttl + hop_count` exceeds the largest TTL a provider may set.
    #[error("ttl {ttl} after {hop_count} hops exceeds the maximum ttl {max}")]
    TtlTooHigh {
        /// The carried TTL.
        ttl: u8,
        /// The carried hop count.
        hop_count: u8,
        /// The limit.
        max: u8,
    },
    /// The claimed source node id is not the one derived from the carried key.
    #[error("source node id {claimed} does not belong to the carried key (which derives {derived})")]
    SourceKeyMismatch {
        /// The claimed id.
        claimed: NodeId,
        /// The id the key derives.
        derived: NodeId,
    },
    /// The carried public key is not a valid Ed25519 point.
    #[error("public key carried for {node} is not a valid Ed25519 key")]
    InvalidPublicKey {
        /// The claimed source.
        node: NodeId,
    },
    /// The signature does not verify.
    #[error("signature of {node} does not verify")]
    BadSignature {
        /// The claimed source.
        node: NodeId,
    },
}

impl ValidationError {
    /// The HTTP API's error code for this rejection.
    pub const fn code(&self) -> ErrorCode {
        match self {
            Self::MissingMessageId | Self::EmptyPrices | Self::MissingBlockchain { .. } => {
                ErrorCode::MissingRequiredField
            }
            Self::SourceKeyMismatch { .. } | Self::InvalidPublicKey { .. } | Self::BadSignature { .. } => {
                ErrorCode::InvalidSourceNode
            }
            Self::TooManyPrices { .. }
            | Self::AssetKeyMismatch { .. }
            | Self::NonPositivePrice { .. }
            | Self::AbsurdPrice { .. }
            | Self::InvalidChange { .. }
            | Self::InvalidBlockchain { .. }
            | Self::FutureTimestamp { .. }
            | Self::TooOld { .. }
            | Self::TimestampOutOfRange { .. }
            | Self::InvalidAlert { .. }
            | Self::TtlTooHigh { .. } => ErrorCode::InvalidPriceUpdate,
        }
    }

    /// Whether the update may be honest and only this node's view differs — its clock runs
    /// ahead or behind ours. A peer relaying such an update did nothing provably wrong, so it
    /// is dropped without a penalty.
    pub const fn is_policy_difference(&self) -> bool {
        matches!(self, Self::FutureTimestamp { .. } | Self::TooOld { .. })
    }
}

impl PriceUpdate {
    /// Checks everything but the signature: cheap, so it runs before deduplication and
    /// signature work. `now` is the local clock.
    ///
    /// # Errors
    /// The first rule the update breaks.
    pub fn validate(&self, policy: &ValidationPolicy, now: Timestamp) -> Result<(), ValidationError> {
        self.validate_archived(policy, now)?;
        policy.check_timestamp(self.timestamp, now, true)
    }

    /// [`PriceUpdate::validate`] without the age limit, for anti-entropy answers: the newest
    /// signed price a peer holds may be old, and newest-wins storage keeps an old one from
    /// replacing anything newer.
    ///
    /// # Errors
    /// The first rule the update breaks.
    pub fn validate_archived(
        &self,
        policy: &ValidationPolicy,
        now: Timestamp,
    ) -> Result<(), ValidationError> {
        if self.message_id.is_nil() {
            return Err(ValidationError::MissingMessageId);
        }
        if !self.source_node_id.is_derived_from(&self.source_key) {
            return Err(ValidationError::SourceKeyMismatch {
                claimed: self.source_node_id,
                derived: NodeId::from_public_key(&self.source_key),
            });
        }
        if u16::from(self.ttl).saturating_add(u16::from(self.hop_count)) > u16::from(policy.max_ttl) {
            return Err(ValidationError::TtlTooHigh {
                ttl: self.ttl,
                hop_count: self.hop_count,
                max: policy.max_ttl,
            });
        }
        policy.check_timestamp(self.timestamp, now, false)?;
        if self.prices.is_empty() {
            return Err(ValidationError::EmptyPrices);
        }
        if self.prices.len() > policy.max_prices {
            return Err(ValidationError::TooManyPrices { count: self.prices.len(), max: policy.max_prices });
        }
        for (key, price) in &self.prices {
            let asset = price.asset;
            if *key != asset {
                return Err(ValidationError::AssetKeyMismatch { key: *key, asset });
            }
            if price.price <= Decimal::ZERO {
                return Err(ValidationError::NonPositivePrice { asset, price: price.price });
            }
            if price.price > policy.max_price {
                return Err(ValidationError::AbsurdPrice {
                    asset,
                    price: price.price,
                    max: policy.max_price,
                });
            }
            if let Some(change) = price.change_24h.filter(|change| *change < -Decimal::ONE_HUNDRED) {
                return Err(ValidationError::InvalidChange { asset, change });
            }
            if price.blockchain.is_empty() {
                return Err(ValidationError::MissingBlockchain { asset });
            }
            if price.blockchain.len() > MAX_BLOCKCHAIN_LEN || price.blockchain.chars().any(char::is_control) {
                return Err(ValidationError::InvalidBlockchain { asset });
            }
        }
        Ok(())
    }

    /// [`PriceUpdate::validate`], then the signature.
    ///
    /// # Errors
    /// The first rule the update breaks.
    pub fn validate_and_verify(
        &self,
        policy: &ValidationPolicy,
        now: Timestamp,
    ) -> Result<(), ValidationError> {
        self.validate(policy, now)?;
        self.verify_signature(&policy.network)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use rust_decimal::Decimal;

    use super::*;
    use crate::strategies;
    use crate::{MessageId, NodeIdentity, PriceData};

    fn now() -> Timestamp {
        chrono::Utc::now()
    }

    fn price(symbol: &str, value: Decimal) -> PriceData {
        PriceData {
            asset: Asset::new(symbol).unwrap(),
            price: value,
            blockchain: "Solana".into(),
            change_24h: None,
        }
    }

    fn signed(prices: Vec<PriceData>) -> PriceUpdate {
        PriceUpdate::new_signed(
            &NodeIdentity::from_secret_bytes(&[9; 32]),
            &crate::NetworkId::mainnet(),
            prices,
            10,
            now(),
        )
    }

    /// Validates `update` after re-signing it, so only the rule under test can fail.
    fn check(update: PriceUpdate) -> Result<(), ValidationError> {
        update.validate_and_verify(&ValidationPolicy::default(), now())
    }

    #[test]
    fn a_good_update_passes() {
        assert_eq!(check(signed(vec![price("SOL", Decimal::new(12345, 2))])), Ok(()));
    }

    #[test]
    fn default_max_price_is_one_trillion() {
        assert_eq!(ValidationPolicy::DEFAULT_MAX_PRICE, Decimal::from(1_000_000_000_000u64));
    }

    #[test]
    fn each_rule_rejects_with_its_code() {
        let cases: Vec<(PriceUpdate, ErrorCode)> = vec![
            (signed(vec![price("SOL", Decimal::ZERO)]), ErrorCode::InvalidPriceUpdate),
            (signed(vec![price("SOL", Decimal::NEGATIVE_ONE)]), ErrorCode::InvalidPriceUpdate),
            (signed(vec![price("SOL", Decimal::from(2_000_000_000_000u64))]), ErrorCode::InvalidPriceUpdate),
            (signed(vec![]), ErrorCode::MissingRequiredField),
            (
                signed(vec![PriceData { blockchain: "".into(), ..price("SOL", Decimal::ONE) }]),
                ErrorCode::MissingRequiredField,
            ),
            (
                signed(vec![PriceData { blockchain: "x".repeat(51).into(), ..price("SOL", Decimal::ONE) }]),
                ErrorCode::InvalidPriceUpdate,
            ),
            (
                signed(vec![PriceData { blockchain: "Sol\nana".into(), ..price("SOL", Decimal::ONE) }]),
                ErrorCode::InvalidPriceUpdate,
            ),
            (
                signed(vec![PriceData {
                    change_24h: Some(Decimal::from(-101)),
                    ..price("SOL", Decimal::ONE)
                }]),
                ErrorCode::InvalidPriceUpdate,
            ),
            (
                signed((0..1025).map(|i| price(&format!("A{i}"), Decimal::ONE)).collect()),
                ErrorCode::InvalidPriceUpdate,
            ),
        ];
        for (update, code) in cases {
            let err = check(update.clone()).expect_err(&format!("{update:?} should be refused"));
            assert_eq!(err.code(), code, "{err}");
        }
    }

    #[test]
    fn future_timestamps_beyond_the_skew_are_refused() {
        let mut update = signed(vec![price("SOL", Decimal::ONE)]);
        let policy = ValidationPolicy::default();
        let at = now();
        update.timestamp = at + chrono::Duration::seconds(4);
        assert_eq!(update.validate(&policy, at), Ok(()), "within the 5 s skew");
        update.timestamp = at + chrono::Duration::seconds(6);
        let err = update.validate(&policy, at).unwrap_err();
        assert!(matches!(err, ValidationError::FutureTimestamp { .. }), "{err}");
        assert_eq!(err.code(), ErrorCode::InvalidPriceUpdate);
        assert!(err.is_policy_difference(), "a clock ahead of ours is no proof of misbehaviour");
    }

    #[test]
    fn gossiped_updates_older_than_the_maximum_age_are_refused_but_archived_ones_pass() {
        let mut update = signed(vec![price("SOL", Decimal::ONE)]);
        let policy = ValidationPolicy::default();
        let at = now();
        update.timestamp = at - chrono::Duration::seconds(119);
        assert_eq!(update.validate(&policy, at), Ok(()));
        update.timestamp = at - chrono::Duration::seconds(121);
        let err = update.validate(&policy, at).unwrap_err();
        assert!(matches!(err, ValidationError::TooOld { .. }), "{err}");
        assert!(err.is_policy_difference());
        assert_eq!(update.validate_archived(&policy, at), Ok(()), "an anti-entropy answer may be old");
    }

    #[test]
    fn timestamps_no_backend_can_store_are_refused_even_in_archived_answers() {
        let policy = ValidationPolicy::default();
        for timestamp in [
            Timestamp::from_timestamp(-8_000_000_000_000, 0).unwrap(),
            Timestamp::from_timestamp(0, 0).unwrap(),
            Timestamp::from_timestamp(ValidationPolicy::LATEST_TIMESTAMP_SECS + 1, 0).unwrap(),
        ] {
            let mut update = signed(vec![price("SOL", Decimal::ONE)]);
            update.timestamp = timestamp;
            let err = update.validate_archived(&policy, timestamp).unwrap_err();
            assert!(matches!(err, ValidationError::TimestampOutOfRange { .. }), "{timestamp}: {err}");
            assert!(!err.is_policy_difference());
        }
    }

    #[test]
    fn ttl_plus_hops_above_the_maximum_is_refused() {
        let mut update = signed(vec![price("SOL", Decimal::ONE)]);
        update.ttl = 10;
        update.hop_count = 7;
        let err = check(update).unwrap_err();
        assert_eq!(err, ValidationError::TtlTooHigh { ttl: 10, hop_count: 7, max: 16 });
    }

    #[test]
    fn nil_ids_mismatched_keys_and_bad_signatures_are_refused() {
        let mut update = signed(vec![price("SOL", Decimal::ONE)]);
        update.message_id = MessageId::from_uuid(uuid::Uuid::nil());
        assert_eq!(check(update).unwrap_err().code(), ErrorCode::MissingRequiredField);

        let mut update = signed(vec![price("SOL", Decimal::ONE)]);
        update.source_node_id = NodeIdentity::from_secret_bytes(&[1; 32]).node_id();
        assert_eq!(check(update).unwrap_err().code(), ErrorCode::InvalidSourceNode);

        let mut update = signed(vec![price("SOL", Decimal::ONE)]);
        update.signature = crate::Signature::from_bytes([1; 64]);
        assert!(matches!(check(update).unwrap_err(), ValidationError::BadSignature { .. }));
    }

    #[test]
    fn an_entry_under_the_wrong_key_is_refused() {
        let mut update = signed(vec![price("SOL", Decimal::ONE)]);
        let eth = Asset::new("ETH").unwrap();
        let entry = update.prices.remove(&Asset::new("SOL").unwrap()).unwrap();
        update.prices.insert(eth, entry);
        let err = update.validate(&ValidationPolicy::default(), now()).unwrap_err();
        assert!(matches!(err, ValidationError::AssetKeyMismatch { .. }), "{err}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn generated_valid_updates_pass(update in strategies::valid_update()) {
            let later = update.timestamp + chrono::Duration::seconds(1);
            prop_assert_eq!(update.validate_and_verify(&ValidationPolicy::default(), later), Ok(()));
        }

        #[test]
        fn arbitrary_updates_never_panic_and_rejections_have_codes(update in strategies::update()) {
            if let Err(err) = update.validate_and_verify(&ValidationPolicy::default(), now()) {
                prop_assert!(!err.to_string().is_empty());
                prop_assert!(!err.code().as_str().is_empty());
            }
        }

        #[test]
        fn non_positive_prices_are_always_refused(mut update in strategies::valid_update(), cents in -1_000_000i64..=0) {
            let later = update.timestamp + chrono::Duration::seconds(1);
            if let Some(entry) = update.prices.values_mut().next() {
                entry.price = Decimal::new(cents, 2);
            }
            let err = update.validate(&ValidationPolicy::default(), later).unwrap_err();
            let is_non_positive = matches!(err, ValidationError::NonPositivePrice { .. });
            prop_assert!(is_non_positive, "{}", err);
        }
    }
}
