//! Serde helpers that render one value two ways: as text for people (JSON, where the API
//! reference wants decimals as strings, times as RFC 3339 and keys as hex) and as compact binary
//! for the wire (postcard). The choice follows `Serializer::is_human_readable`, so every type has
//! exactly one definition and both encodings stay in step.

use std::fmt;

use rust_decimal::Decimal;
use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::ser::{Serialize, Serializer};

use crate::Timestamp;

/// `Decimal` as a string in JSON ("123.45", scale preserved) and as `(mantissa, scale)` on the
/// wire, which is exact and small (a varint of the mantissa plus one byte of scale).
pub(crate) mod decimal {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(value: &Decimal, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(value)
        } else {
            (value.mantissa(), value.scale()).serialize(serializer)
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Decimal, D::Error> {
        if deserializer.is_human_readable() {
            deserializer.deserialize_str(DecimalStrVisitor)
        } else {
            let (mantissa, scale) = <(i128, u32)>::deserialize(deserializer)?;
            Decimal::try_from_i128_with_scale(mantissa, scale).map_err(|err| {
                de::Error::custom(format_args!("invalid decimal (mantissa {mantissa}, scale {scale}): {err}"))
            })
        }
    }

    struct DecimalStrVisitor;

    impl Visitor<'_> for DecimalStrVisitor {
        type Value = Decimal;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a decimal number as a string, e.g. \"123.45\"")
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<Decimal, E> {
            text.parse::<Decimal>().map_err(|err| E::custom(format_args!("invalid decimal {text:?}: {err}")))
        }
    }
}

/// Reads an `Option<Decimal>` rendered like [`decimal`]; `null` is `None` (and with
/// `#[serde(default)]`, so is a missing field). Writing goes through [`DecimalSer`].
pub(crate) mod opt_decimal {
    use super::*;

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Decimal>, D::Error> {
        Ok(Option::<DecimalDe>::deserialize(deserializer)?.map(|value| value.0))
    }
}

/// A `Decimal` that serializes through [`decimal`], for use inside hand-written `Serialize`s.
#[derive(Clone, Copy)]
pub(crate) struct DecimalSer(pub(crate) Decimal);

impl Serialize for DecimalSer {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        decimal::serialize(&self.0, serializer)
    }
}

struct DecimalDe(Decimal);

impl<'de> Deserialize<'de> for DecimalDe {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        decimal::deserialize(deserializer).map(DecimalDe)
    }
}

/// A timestamp that serializes through [`timestamp`], for use inside hand-written `Serialize`s.
#[derive(Clone, Copy)]
pub(crate) struct TimestampSer(pub(crate) Timestamp);

impl Serialize for TimestampSer {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        timestamp::serialize(&self.0, serializer)
    }
}

/// A timestamp as RFC 3339 in JSON ("2024-01-01T12:00:00Z") and as `(seconds, nanoseconds)`
/// since the Unix epoch on the wire: exact for every representable instant.
pub(crate) mod timestamp {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(value: &Timestamp, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            value.serialize(serializer)
        } else {
            (value.timestamp(), value.timestamp_subsec_nanos()).serialize(serializer)
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Timestamp, D::Error> {
        if deserializer.is_human_readable() {
            Timestamp::deserialize(deserializer)
        } else {
            let (seconds, nanos) = <(i64, u32)>::deserialize(deserializer)?;
            Timestamp::from_timestamp(seconds, nanos).ok_or_else(|| {
                de::Error::custom(format_args!("timestamp out of range: {seconds} s + {nanos} ns"))
            })
        }
    }
}

/// Fixed-size byte arrays (keys, signatures, nonces): lowercase hex in JSON, raw bytes on the
/// wire. Decoding checks the exact length.
pub(crate) mod fixed_bytes {
    use super::*;

    pub(crate) fn serialize<S: Serializer, const N: usize>(
        bytes: &[u8; N],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&hex::encode(bytes))
        } else {
            serializer.serialize_bytes(bytes)
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        deserializer: D,
    ) -> Result<[u8; N], D::Error> {
        if deserializer.is_human_readable() {
            deserializer.deserialize_str(FixedBytesVisitor::<N>)
        } else {
            deserializer.deserialize_bytes(FixedBytesVisitor::<N>)
        }
    }

    struct FixedBytesVisitor<const N: usize>;

    impl<const N: usize> Visitor<'_> for FixedBytesVisitor<N> {
        type Value = [u8; N];

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{N} bytes (as {} hex digits in text formats)", N.saturating_mul(2))
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<[u8; N], E> {
            let mut out = [0u8; N];
            hex::decode_to_slice(text, &mut out).map_err(|err| {
                E::custom(format_args!("expected {} hex digits, got {:?}: {err}", N.saturating_mul(2), text))
            })?;
            Ok(out)
        }

        fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<[u8; N], E> {
            <[u8; N]>::try_from(bytes).map_err(|_| E::invalid_length(bytes.len(), &self))
        }
    }
}
