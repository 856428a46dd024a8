//! An answer of the price API (or of anything posing as it) to `/defi/multi_price`: parsing
//! must never panic, and every price it yields must be positive.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mesh_provider::{SymbolTable, parse_multi_price};
use mesh_types::Asset;

fuzz_target!(|data: &[u8]| {
    let symbols = SymbolTable::default();
    let wanted: Vec<_> = ["SOL", "USDC", "BONK", "JUP"]
        .iter()
        .filter_map(|symbol| Asset::new(symbol).ok())
        .filter_map(|asset| symbols.get(&asset).map(|entry| (asset, entry)))
        .collect();
    if let Ok(prices) = parse_multi_price(data, "solana", &wanted) {
        for price in prices {
            assert!(price.price > mesh_types::rust_decimal::Decimal::ZERO, "{price:?}");
        }
    }
});
