//! [`NetworkId`]: the name of the mesh a node belongs to (`mainnet`, `testnet`, `devnet` or a
//! custom name). It plays the role of a network magic: peers on different networks refuse each
//! other during the handshake.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};
use thiserror::Error;

/// The longest network name accepted, in bytes.
pub const MAX_NETWORK_ID_LEN: usize = 32;

/// A network name: 1–32 characters of `a-z 0-9 -`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct NetworkId(String);

/// Why a network name was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "network id {name:?} is invalid: use 1-{MAX_NETWORK_ID_LEN} characters of a-z, 0-9 and '-', \
     e.g. mainnet, testnet or devnet"
)]
pub struct NetworkIdError {
    /// The refused name.
    pub name: String,
}

impl NetworkId {
    /// Validates `name`.
    ///
    /// # Errors
    /// When the name is empty, too long, or has characters outside `a-z 0-9 -`.
    pub fn new(name: &str) -> Result<Self, NetworkIdError> {
        let valid = !name.is_empty()
            && name.len() <= MAX_NETWORK_ID_LEN
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if valid { Ok(Self(name.to_owned())) } else { Err(NetworkIdError { name: name.to_owned() }) }
    }

    /// The production network.
    pub fn mainnet() -> Self {
        Self("mainnet".to_owned())
    }

    /// The public test network.
    pub fn testnet() -> Self {
        Self("testnet".to_owned())
    }

    /// A local development network.
    pub fn devnet() -> Self {
        Self("devnet".to_owned())
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NetworkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for NetworkId {
    type Err = NetworkIdError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::new(name)
    }
}

impl<'de> Deserialize<'de> for NetworkId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Self::new(&name).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_standard_and_custom_names_and_refuses_bad_ones() {
        assert_eq!(NetworkId::new("mainnet").unwrap(), NetworkId::mainnet());
        assert!(NetworkId::new("my-lab-2").is_ok());
        for bad in ["", "MainNet", "main net", &"x".repeat(33)] {
            assert!(NetworkId::new(bad).is_err(), "{bad:?}");
        }
    }
}
