//! [`SymbolTable`]: how the mesh's asset symbols (`SOL`, `ETH`, `BTC`) map to what Birdeye
//! prices — a chain (`x-chain` header) and a token address — plus the blockchain name the
//! published price carries.
//!
//! The built-in table covers common assets with well-known mainnet addresses. Assets that are
//! native coins of chains Birdeye does not index are priced through their wrapped token:
//! `ETH` through WETH and `BTC` through WBTC, both on Ethereum (WBTC is the oldest and most
//! liquid wrapped bitcoin, and Birdeye's Ethereum index prices it against USD). Stablecoins
//! and Solana tokens are priced on Solana. Entries can be added or overridden with
//! [`SymbolTable::insert`] / [`SymbolTable::with`].

use std::collections::BTreeMap;

use mesh_types::Asset;

/// Where one asset is priced: Birdeye chain, token address, and the blockchain name published
/// with the price.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SymbolEntry {
    /// The Birdeye chain, sent as `x-chain` (e.g. `"solana"`, `"ethereum"`).
    pub chain: String,
    /// The token address on that chain (a mint for Solana, a contract for EVM chains).
    pub address: String,
    /// The blockchain name published in [`mesh_types::PriceData::blockchain`] (e.g.
    /// `"Solana"`); at most [`mesh_types::MAX_BLOCKCHAIN_LEN`] bytes.
    pub blockchain: String,
}

impl SymbolEntry {
    /// An entry from its three parts.
    pub fn new(chain: impl Into<String>, address: impl Into<String>, blockchain: impl Into<String>) -> Self {
        Self { chain: chain.into(), address: address.into(), blockchain: blockchain.into() }
    }
}

/// The Solana mint of wrapped SOL, which Birdeye prices as SOL; also the token of the key check.
pub(crate) const SOL_MINT: &str = "So11111111111111111111111111111111111111112";

/// The built-in entries: (symbol, chain, address, blockchain name).
const BUILTIN: &[(&str, &str, &str, &str)] = &[
    ("SOL", "solana", SOL_MINT, "Solana"),
    // Wrapped ether on Ethereum mainnet (WETH9).
    ("ETH", "ethereum", "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2", "Ethereum"),
    // Wrapped bitcoin on Ethereum mainnet (WBTC); the price is bitcoin's, so the name says so.
    ("BTC", "ethereum", "0x2260FAC5E5542a773Aa44fBCFeDf7C193bc2C599", "Bitcoin"),
    ("WETH", "ethereum", "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2", "Ethereum"),
    ("WBTC", "ethereum", "0x2260FAC5E5542a773Aa44fBCFeDf7C193bc2C599", "Ethereum"),
    ("USDC", "solana", "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v", "Solana"),
    ("USDT", "solana", "Es9vMFrzaCERmJfrF4H2FYD4KCoNkY11McCe8BenwNYB", "Solana"),
    ("BONK", "solana", "DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263", "Solana"),
    ("JUP", "solana", "JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN", "Solana"),
    ("WIF", "solana", "EKpQGSJtjMFqKZ9KQanSqYXRcF8fBopzLHYxdM65zcjm", "Solana"),
    ("RAY", "solana", "4k3Dyjzvzp8eMZWUXbBCjEvwSkkk59S5iCNLY3QrkX6R", "Solana"),
    ("ORCA", "solana", "orcaEKTdK7LKz57vaAYr9QeNsVEPfiu6QeMU1kektZE", "Solana"),
    ("MSOL", "solana", "mSoLzYCxHdYgdzU16g5QSh3i5K3z3KZK7ytfqcJm7So", "Solana"),
    ("JITOSOL", "solana", "J1toso1uCk3RLmjorhTtrVwY9HJ7X8V9yYac6Y7kGCPn", "Solana"),
    ("DAI", "ethereum", "0x6B175474E89094C44Da98b954EedeAC495271d0F", "Ethereum"),
    ("LINK", "ethereum", "0x514910771AF9Ca656af840dff83E8264EcF986CA", "Ethereum"),
    ("UNI", "ethereum", "0x1f9840a85d5aF5bf1D1762F925BDADdC4201F984", "Ethereum"),
];

/// Symbol → [`SymbolEntry`]. [`Default`] is the built-in table; [`SymbolTable::empty`] starts
/// from nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymbolTable {
    entries: BTreeMap<Asset, SymbolEntry>,
}

impl SymbolTable {
    /// A table with no entries.
    pub const fn empty() -> Self {
        Self { entries: BTreeMap::new() }
    }

    /// The built-in table (the same as [`Default`]).
    pub fn builtin() -> Self {
        let entries = BUILTIN
            .iter()
            .filter_map(|&(symbol, chain, address, blockchain)| {
                // Every built-in symbol is a valid asset (checked by a test).
                Asset::new(symbol).ok().map(|asset| (asset, SymbolEntry::new(chain, address, blockchain)))
            })
            .collect();
        Self { entries }
    }

    /// Adds or replaces the entry for `asset`; returns the replaced entry.
    pub fn insert(&mut self, asset: Asset, entry: SymbolEntry) -> Option<SymbolEntry> {
        self.entries.insert(asset, entry)
    }

    /// The table with `asset` added or replaced (builder style).
    #[must_use]
    pub fn with(mut self, asset: Asset, entry: SymbolEntry) -> Self {
        self.insert(asset, entry);
        self
    }

    /// Removes the entry for `asset`; returns it.
    pub fn remove(&mut self, asset: &Asset) -> Option<SymbolEntry> {
        self.entries.remove(asset)
    }

    /// Where `asset` is priced, if known.
    pub fn get(&self, asset: &Asset) -> Option<&SymbolEntry> {
        self.entries.get(asset)
    }

    /// Every entry, in symbol order.
    pub fn iter(&self) -> impl Iterator<Item = (&Asset, &SymbolEntry)> {
        self.entries.iter()
    }

    /// How many symbols are known.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no symbol is known.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl Default for SymbolTable {
    fn default() -> Self {
        Self::builtin()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asset(symbol: &str) -> Asset {
        Asset::new(symbol).unwrap()
    }

    #[test]
    fn builtin_covers_common_assets_with_well_formed_entries() {
        let table = SymbolTable::default();
        assert_eq!(table.len(), BUILTIN.len(), "every built-in symbol is a valid asset");
        let sol = table.get(&asset("sol")).unwrap();
        assert_eq!(sol, &SymbolEntry::new("solana", SOL_MINT, "Solana"));
        for symbol in ["ETH", "BTC", "USDC", "USDT", "BONK", "JUP"] {
            assert!(table.get(&asset(symbol)).is_some(), "{symbol}");
        }
        for (asset, entry) in table.iter() {
            assert!(entry.blockchain.len() <= mesh_types::MAX_BLOCKCHAIN_LEN, "{asset}");
            match entry.chain.as_str() {
                "solana" => assert!((32..=44).contains(&entry.address.len()), "{asset}"),
                "ethereum" => {
                    assert!(entry.address.starts_with("0x") && entry.address.len() == 42, "{asset}");
                }
                other => panic!("unexpected chain {other} for {asset}"),
            }
        }
    }

    #[test]
    fn entries_can_be_added_overridden_and_removed() {
        let custom = SymbolEntry::new("bsc", "0xabc", "BNB Chain");
        let mut table = SymbolTable::default().with(asset("CAKE"), custom.clone());
        assert_eq!(table.get(&asset("CAKE")), Some(&custom));
        let replaced = table.insert(asset("SOL"), custom.clone()).unwrap();
        assert_eq!(replaced.address, SOL_MINT);
        assert_eq!(table.get(&asset("SOL")), Some(&custom));
        assert_eq!(table.remove(&asset("SOL")), Some(custom));
        assert!(table.get(&asset("SOL")).is_none());
        assert!(SymbolTable::empty().is_empty());
    }
}
