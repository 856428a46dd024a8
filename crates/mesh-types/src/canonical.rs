//! The canonical byte encoding that signatures cover.
//!
//! It is written by hand, field by field in a fixed order with fixed-width big-endian integers
//! and length-prefixed strings, so it never changes when a serde implementation or the wire
//! format does. Every signed message starts with its own domain tag and the network id, so a
//! signature made for one kind of message can never be replayed as another, nor one made on
//! one network (a devnet update) on another (mainnet).

use rust_decimal::Decimal;

use crate::{Asset, MessageId, NetworkId, NodeId, PublicKey, Timestamp};

/// Appends the fields of a signed message to a buffer.
pub(crate) struct CanonicalWriter {
    bytes: Vec<u8>,
}

impl CanonicalWriter {
    pub(crate) fn new(domain: &str, network: &NetworkId) -> Self {
        let mut writer = Self { bytes: Vec::with_capacity(256) };
        writer.str(domain).str(network.as_str());
        writer
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.bytes
    }

    pub(crate) fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.bytes.extend_from_slice(bytes);
        self
    }

    pub(crate) fn u8(&mut self, value: u8) -> &mut Self {
        self.bytes.push(value);
        self
    }

    pub(crate) fn bool(&mut self, value: bool) -> &mut Self {
        self.u8(u8::from(value))
    }

    pub(crate) fn u32(&mut self, value: u32) -> &mut Self {
        self.raw(&value.to_be_bytes())
    }

    pub(crate) fn u64(&mut self, value: u64) -> &mut Self {
        self.raw(&value.to_be_bytes())
    }

    /// A length-prefixed string (u32 length, then UTF-8 bytes).
    /// A signed integer, as the big-endian bytes of its two's complement.
    pub(crate) fn i64(&mut self, value: i64) -> &mut Self {
        self.raw(&value.to_be_bytes())
    }

    pub(crate) fn str(&mut self, value: &str) -> &mut Self {
        // Strings in signed messages are bounded far below 4 GiB by the frame size limit.
        self.u32(value.len() as u32).raw(value.as_bytes())
    }

    pub(crate) fn asset(&mut self, asset: &Asset) -> &mut Self {
        self.str(asset.as_str())
    }

    pub(crate) fn message_id(&mut self, id: &MessageId) -> &mut Self {
        self.raw(id.as_uuid().as_bytes())
    }

    pub(crate) fn node_id(&mut self, id: &NodeId) -> &mut Self {
        self.raw(id.as_uuid().as_bytes())
    }

    pub(crate) fn public_key(&mut self, key: &PublicKey) -> &mut Self {
        self.raw(key.as_bytes())
    }

    pub(crate) fn timestamp(&mut self, at: &Timestamp) -> &mut Self {
        self.raw(&at.timestamp().to_be_bytes()).u32(at.timestamp_subsec_nanos())
    }

    /// The exact representation (mantissa and scale), so `1.50` and `1.5` sign differently and
    /// a verified value is byte-for-byte what the provider published.
    pub(crate) fn decimal(&mut self, value: &Decimal) -> &mut Self {
        self.raw(&value.mantissa().to_be_bytes()).u32(value.scale())
    }

    pub(crate) fn opt_decimal(&mut self, value: Option<&Decimal>) -> &mut Self {
        match value {
            None => self.u8(0),
            Some(value) => self.u8(1).decimal(value),
        }
    }
}
