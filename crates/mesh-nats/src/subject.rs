//! The NATS subjects the bridge publishes on: one per network and asset.

use mesh_types::{Asset, NetworkId};

/// The first token of every subject the bridge publishes on.
pub const SUBJECT_PREFIX: &str = "pricemesh";

/// The subject of `asset`'s prices on `network`: `pricemesh.<network>.<asset>`, e.g.
/// `pricemesh.mainnet.SOL`.
///
/// A symbol with a dot (`WBTC.E`) spans two subject tokens (`pricemesh.mainnet.WBTC.E`), so
/// subscribe with `pricemesh.<network>.>` rather than `pricemesh.<network>.*`.
pub fn subject(network: &NetworkId, asset: &Asset) -> String {
    format!("{SUBJECT_PREFIX}.{network}.{asset}")
}

/// The wildcard matching every asset's subject on `network`: `pricemesh.<network>.>`.
pub fn network_subjects(network: &NetworkId) -> String {
    format!("{SUBJECT_PREFIX}.{network}.>")
}

/// Whether NATS accepts `subject` for publishing: no empty token, which a symbol starting or
/// ending with a dot, or holding two in a row, would make.
pub(crate) fn is_publishable(subject: &str) -> bool {
    subject.split('.').all(|token| !token.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_name_the_network_and_the_asset() {
        let sol = Asset::new("sol").unwrap();
        assert_eq!(subject(&NetworkId::mainnet(), &sol), "pricemesh.mainnet.SOL");
        let custom = NetworkId::new("nats-test-1").unwrap();
        assert_eq!(subject(&custom, &Asset::new("WBTC.E").unwrap()), "pricemesh.nats-test-1.WBTC.E");
        assert_eq!(network_subjects(&NetworkId::devnet()), "pricemesh.devnet.>");
    }

    #[test]
    fn every_ordinary_symbol_makes_a_publishable_subject() {
        for symbol in ["SOL", "WBTC.E", "USDC_E", "BTC-PERP", "1INCH"] {
            let subject = subject(&NetworkId::mainnet(), &Asset::new(symbol).unwrap());
            assert!(is_publishable(&subject), "{subject}");
        }
        for symbol in [".X", "X.", "A..B"] {
            let subject = subject(&NetworkId::mainnet(), &Asset::new(symbol).unwrap());
            assert!(!is_publishable(&subject), "{subject} has an empty token");
        }
    }
}
