//! The wire codec: one [`MeshMessage`] ⇄ one frame payload of a version byte followed by the
//! message in postcard.
//!
//! Framing (the big-endian u32 length prefix) belongs to the transport; this codec turns one
//! payload into one message. Every failure is a [`CodecError`], never a panic: a payload can be
//! empty, truncated, oversized, of an unknown version, or garbage.
//!
//! Why postcard: bincode 3.0.0 is an empty release and bincode 2 carries RustSec advisory
//! RUSTSEC-2025-0141 (unmaintained). postcard is maintained and documents a stable wire format;
//! the version byte lets a later format coexist with this one.

use thiserror::Error;

use crate::{ErrorCode, MeshMessage};

/// The version byte every payload starts with.
pub const WIRE_FORMAT_VERSION: u8 = 1;

/// The default largest payload accepted or produced: 1 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 1 << 20;

/// Encodes and decodes [`MeshMessage`]s within a size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Codec {
    max_message_size: usize,
}

/// Why a payload could not be decoded, or a message encoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The payload had no bytes at all.
    #[error("empty payload: expected a version byte and a message")]
    Empty,
    /// The payload (or an encoded message) is larger than allowed.
    #[error("message of {size} bytes exceeds the {max}-byte limit")]
    Oversized {
        /// Size in bytes.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The version byte is not one this node speaks.
    #[error("unknown wire format version {version}; this node speaks version {WIRE_FORMAT_VERSION}")]
    UnknownVersion {
        /// The version byte received.
        version: u8,
    },
    /// The payload ended in the middle of a message.
    #[error("truncated message: the payload ended before the message did")]
    Truncated,
    /// The payload is not a valid message.
    #[error("malformed message: {detail}")]
    Malformed {
        /// What the decoder reported.
        detail: String,
    },
    /// A valid message was followed by extra bytes.
    #[error("{count} unexpected bytes after the message")]
    TrailingBytes {
        /// How many.
        count: usize,
    },
    /// The message could not be encoded.
    #[error("cannot encode message: {detail}")]
    Encode {
        /// What the encoder reported.
        detail: String,
    },
}

impl CodecError {
    /// The API's error code for a message that failed to decode.
    pub const fn code(&self) -> ErrorCode {
        ErrorCode::MissingRequiredField
    }
}

impl Codec {
    /// A codec accepting payloads of at most `max_message_size` bytes.
    pub const fn new(max_message_size: usize) -> Self {
        Self { max_message_size }
    }

    /// The largest payload accepted or produced.
    pub const fn max_message_size(&self) -> usize {
        self.max_message_size
    }

    /// Encodes `message` into a new payload.
    ///
    /// # Errors
    /// [`CodecError::Oversized`] when the result would exceed the limit, so a node never sends
    /// what its peers must refuse.
    pub fn encode(&self, message: &MeshMessage) -> Result<Vec<u8>, CodecError> {
        let mut payload = Vec::with_capacity(256);
        self.encode_into(message, &mut payload)?;
        Ok(payload)
    }

    /// Appends the payload of `message` to `buffer`, which is left as it was on error.
    ///
    /// # Errors
    /// As [`Codec::encode`].
    pub fn encode_into(&self, message: &MeshMessage, buffer: &mut Vec<u8>) -> Result<(), CodecError> {
        let start = buffer.len();
        buffer.push(WIRE_FORMAT_VERSION);
        if let Err(err) = postcard::to_extend(message, Append(buffer)) {
            buffer.truncate(start);
            return Err(CodecError::Encode { detail: err.to_string() });
        }
        let size = buffer.len().saturating_sub(start);
        if size > self.max_message_size {
            buffer.truncate(start);
            return Err(CodecError::Oversized { size, max: self.max_message_size });
        }
        Ok(())
    }

    /// Decodes one payload.
    ///
    /// # Errors
    /// Every way the payload can be wrong; see [`CodecError`].
    pub fn decode(&self, payload: &[u8]) -> Result<MeshMessage, CodecError> {
        if payload.len() > self.max_message_size {
            return Err(CodecError::Oversized { size: payload.len(), max: self.max_message_size });
        }
        let (&version, body) = payload.split_first().ok_or(CodecError::Empty)?;
        if version != WIRE_FORMAT_VERSION {
            return Err(CodecError::UnknownVersion { version });
        }
        let (message, rest) = postcard::take_from_bytes::<MeshMessage>(body).map_err(|err| match err {
            postcard::Error::DeserializeUnexpectedEnd => CodecError::Truncated,
            other => CodecError::Malformed { detail: other.to_string() },
        })?;
        if !rest.is_empty() {
            return Err(CodecError::TrailingBytes { count: rest.len() });
        }
        Ok(message)
    }
}

/// Lets postcard append to a borrowed buffer, so a failed encode can be undone in place.
struct Append<'a>(&'a mut Vec<u8>);

impl Extend<u8> for Append<'_> {
    fn extend<I: IntoIterator<Item = u8>>(&mut self, bytes: I) {
        self.0.extend(bytes);
    }
}

impl Default for Codec {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_MESSAGE_SIZE)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::strategies;
    use crate::{Goodbye, GoodbyeReason, Heartbeat};

    fn ping() -> MeshMessage {
        MeshMessage::Ping(Heartbeat {
            nonce: 7,
            is_provider: true,
            peer_count: 3,
            sent_at: chrono::Utc::now(),
            provider_hops: Some(2),
        })
    }

    #[test]
    fn empty_unknown_version_and_trailing_bytes_are_errors() {
        let codec = Codec::default();
        assert_eq!(codec.decode(&[]), Err(CodecError::Empty));
        let mut payload = codec.encode(&ping()).unwrap();
        assert_eq!(payload[0], WIRE_FORMAT_VERSION);

        let mut future = payload.clone();
        future[0] = 2;
        assert_eq!(codec.decode(&future), Err(CodecError::UnknownVersion { version: 2 }));

        payload.push(0);
        assert_eq!(codec.decode(&payload), Err(CodecError::TrailingBytes { count: 1 }));
        assert_eq!(codec.decode(&[WIRE_FORMAT_VERSION]), Err(CodecError::Truncated));
        assert!(matches!(codec.decode(&[WIRE_FORMAT_VERSION, 100]), Err(CodecError::Malformed { .. })));
    }

    #[test]
    fn size_limit_applies_to_both_directions() {
        let small = Codec::new(16);
        let big = MeshMessage::Goodbye(Goodbye { reason: GoodbyeReason::Other("x".repeat(100)) });
        let err = small.encode(&big).unwrap_err();
        assert!(matches!(err, CodecError::Oversized { max: 16, .. }), "{err}");

        let mut buffer = vec![9, 9];
        assert!(small.encode_into(&big, &mut buffer).is_err());
        assert_eq!(buffer, [9, 9], "a failed encode leaves the buffer as it was");

        let payload = Codec::default().encode(&big).unwrap();
        assert_eq!(small.decode(&payload), Err(CodecError::Oversized { size: payload.len(), max: 16 }));
        assert_eq!(DEFAULT_MAX_MESSAGE_SIZE, 1024 * 1024);
    }

    #[test]
    fn huge_length_prefixes_do_not_allocate_or_panic() {
        // A Request claiming u64::MAX assets in a few bytes.
        let mut payload = vec![WIRE_FORMAT_VERSION, 6];
        payload.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        assert!(Codec::default().decode(&payload).is_err());
    }

    #[test]
    fn a_bad_symbol_or_duplicate_asset_on_the_wire_is_refused() {
        let codec = Codec::default();
        let request =
            MeshMessage::Request(crate::Request { assets: vec![crate::Asset::new("SOL").unwrap()] });
        let mut payload = codec.encode(&request).unwrap();
        let position = payload.iter().position(|&b| b == b'S').unwrap();
        payload[position] = b' ';
        assert!(matches!(codec.decode(&payload), Err(CodecError::Malformed { .. })));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn every_message_round_trips(message in strategies::mesh_message()) {
            let codec = Codec::default();
            let payload = codec.encode(&message).unwrap();
            prop_assert_eq!(codec.decode(&payload).unwrap(), message);
        }

        #[test]
        fn every_strict_prefix_is_refused(message in strategies::mesh_message(), cut in any::<prop::sample::Index>()) {
            let codec = Codec::default();
            let payload = codec.encode(&message).unwrap();
            let cut = cut.index(payload.len());
            prop_assert!(codec.decode(&payload[..cut]).is_err());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = Codec::default().decode(&bytes);
            let mut versioned = vec![WIRE_FORMAT_VERSION];
            versioned.extend_from_slice(&bytes);
            let _ = Codec::default().decode(&versioned);
        }

        #[test]
        fn corrupted_messages_never_panic(
            message in strategies::mesh_message(),
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        ) {
            let mut payload = Codec::default().encode(&message).unwrap();
            for (index, byte) in flips {
                let at = index.index(payload.len());
                payload[at] = byte;
            }
            // Either an error or some valid message: never a panic, never a hang.
            let _ = Codec::default().decode(&payload);
        }
    }
}

#[cfg(test)]
mod size_tests {
    use rust_decimal::Decimal;

    use crate::{Asset, Codec, MeshMessage, NodeIdentity, PriceData, PriceUpdate};

    /// Guards the compact encoding: a one-price update must stay small on the wire (the
    /// 64-byte signature and 32-byte key are most of it).
    #[test]
    fn a_one_price_update_is_compact() {
        let price = PriceData {
            asset: Asset::new("SOL").unwrap(),
            price: Decimal::new(12345, 2),
            blockchain: "Solana".into(),
            change_24h: Some(Decimal::new(52, 1)),
        };
        let update = PriceUpdate::new_signed(
            &NodeIdentity::from_secret_bytes(&[1; 32]),
            &crate::NetworkId::mainnet(),
            [price],
            10,
            chrono::Utc::now(),
        );
        let size = Codec::default().encode(&MeshMessage::from(update)).unwrap().len();
        eprintln!("one-price update: {size} bytes");
        assert!(size <= 170, "a one-price update takes {size} bytes");
    }
}
