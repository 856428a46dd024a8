//! [`Asset`]: a validated, upper-cased price symbol such as `SOL` or `WBTC.E`.
//!
//! Symbols are stored inline (no heap allocation) so an `Asset` is `Copy` and cheap to hash,
//! compare and use as a map key on the gossip hot path.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

/// The longest symbol accepted, in bytes.
pub const MAX_ASSET_LEN: usize = 32;

/// A price symbol: 1–32 characters of `A-Z 0-9 . _ -`. Lower-case input is upper-cased, so
/// `"sol"` and `"SOL"` are the same asset.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Asset {
    // Zero padding after `len` keeps the derived `Ord` equal to the order of the strings,
    // because every allowed character sorts after 0.
    bytes: [u8; MAX_ASSET_LEN],
    len: u8,
}

/// Why a symbol was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AssetError {
    /// The symbol was empty.
    #[error("asset symbol is empty; use a symbol such as \"SOL\"")]
    Empty,
    /// The symbol was longer than [`MAX_ASSET_LEN`].
    #[error("asset symbol is {len} bytes long; at most {MAX_ASSET_LEN} are allowed")]
    TooLong {
        /// Length of the refused symbol in bytes.
        len: usize,
    },
    /// The symbol contained a character outside `A-Z 0-9 . _ -`.
    #[error("asset symbol {symbol:?} contains {found:?}; only A-Z, 0-9, '.', '_' and '-' are allowed")]
    InvalidCharacter {
        /// The refused symbol.
        symbol: String,
        /// The first character that is not allowed.
        found: char,
    },
}

impl Asset {
    /// Validates and upper-cases `symbol`.
    ///
    /// # Errors
    /// When the symbol is empty, too long, or has a character outside `A-Z 0-9 . _ -`.
    pub fn new(symbol: &str) -> Result<Self, AssetError> {
        if symbol.is_empty() {
            return Err(AssetError::Empty);
        }
        if symbol.len() > MAX_ASSET_LEN {
            return Err(AssetError::TooLong { len: symbol.len() });
        }
        let mut bytes = [0u8; MAX_ASSET_LEN];
        for (slot, ch) in bytes.iter_mut().zip(symbol.chars()) {
            let upper = ch.to_ascii_uppercase();
            if !(upper.is_ascii_uppercase() || upper.is_ascii_digit() || matches!(upper, '.' | '_' | '-')) {
                return Err(AssetError::InvalidCharacter { symbol: symbol.to_owned(), found: ch });
            }
            // The check above admits ASCII only, so the character is exactly one byte.
            *slot = upper as u8;
        }
        // `symbol.len() <= MAX_ASSET_LEN` was checked above, and 32 fits in a u8.
        let len = symbol.len() as u8;
        Ok(Self { bytes, len })
    }

    /// The symbol.
    pub fn as_str(&self) -> &str {
        // Construction admits ASCII only, so this never falls back.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl fmt::Display for Asset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Asset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Asset({})", self.as_str())
    }
}

impl FromStr for Asset {
    type Err = AssetError;

    fn from_str(symbol: &str) -> Result<Self, Self::Err> {
        Self::new(symbol)
    }
}

impl TryFrom<&str> for Asset {
    type Error = AssetError;

    fn try_from(symbol: &str) -> Result<Self, Self::Error> {
        Self::new(symbol)
    }
}

impl AsRef<str> for Asset {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Serialize for Asset {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Asset {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(AssetVisitor)
    }
}

struct AssetVisitor;

impl Visitor<'_> for AssetVisitor {
    type Value = Asset;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an asset symbol of 1-32 characters A-Z 0-9 . _ -")
    }

    fn visit_str<E: de::Error>(self, symbol: &str) -> Result<Asset, E> {
        Asset::new(symbol).map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn accepts_and_upper_cases_valid_symbols() {
        assert_eq!(Asset::new("sol").unwrap().as_str(), "SOL");
        assert_eq!(Asset::new("WBTC.e").unwrap().as_str(), "WBTC.E");
        assert_eq!(Asset::new("a_b-1").unwrap().as_str(), "A_B-1");
        assert_eq!(Asset::new(&"X".repeat(32)).unwrap().as_str().len(), 32);
    }

    #[test]
    fn refuses_bad_symbols_with_a_reason() {
        assert_eq!(Asset::new(""), Err(AssetError::Empty));
        assert_eq!(Asset::new(&"X".repeat(33)), Err(AssetError::TooLong { len: 33 }));
        assert!(matches!(Asset::new("SO L"), Err(AssetError::InvalidCharacter { found: ' ', .. })));
        assert!(matches!(Asset::new("SÖL"), Err(AssetError::InvalidCharacter { found: 'Ö', .. })));
        assert!(matches!(Asset::new("S\u{0}L"), Err(AssetError::InvalidCharacter { .. })));
    }

    proptest! {
        #[test]
        fn order_matches_string_order(a in "[A-Z0-9._-]{1,32}", b in "[A-Z0-9._-]{1,32}") {
            let (x, y) = (Asset::new(&a).unwrap(), Asset::new(&b).unwrap());
            prop_assert_eq!(x.cmp(&y), a.cmp(&b));
            prop_assert_eq!(x == y, a == b);
        }

        #[test]
        fn any_text_is_either_refused_or_round_trips(text in "\\PC{0,40}") {
            if let Ok(asset) = Asset::new(&text) {
                prop_assert_eq!(asset.as_str(), text.to_ascii_uppercase());
                prop_assert_eq!(Asset::new(asset.as_str()).unwrap(), asset);
            }
        }
    }
}
