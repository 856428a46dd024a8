//! Write your own `PriceStore` backend and prove it with the public conformance suite, the
//! same checks the memory, Redis and PostgreSQL backends pass.
//!
//! `cargo run --example custom_store` — runs the suite against a `BTreeMap` store and says so.

#![allow(clippy::print_stdout, reason = "an example shows what it does on standard output")]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use mesh_price_cache::{PriceStore, Result, StoreOutcome};
use mesh_types::{Asset, CachedPriceData, PriceMap};

/// Prices in an ordered map behind a lock: the simplest correct store.
#[derive(Default)]
struct BTreeStore {
    prices: Mutex<BTreeMap<Asset, CachedPriceData>>,
}

impl BTreeStore {
    fn prices(&self) -> std::sync::MutexGuard<'_, BTreeMap<Asset, CachedPriceData>> {
        self.prices.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl PriceStore for BTreeStore {
    async fn store(&self, price: CachedPriceData) -> Result<StoreOutcome> {
        let mut prices = self.prices();
        // Newest wins, in the order every node uses, so all stores converge.
        let outcome = match prices.get(&price.asset) {
            None => StoreOutcome::Inserted,
            Some(held) if price.newer_than(held) => StoreOutcome::Replaced,
            Some(_) => return Ok(StoreOutcome::Ignored),
        };
        prices.insert(price.asset, price);
        Ok(outcome)
    }

    async fn get(&self, asset: Asset) -> Result<Option<CachedPriceData>> {
        Ok(self.prices().get(&asset).cloned())
    }

    async fn get_all(&self) -> Result<PriceMap> {
        Ok(self.prices().clone())
    }

    async fn len(&self) -> Result<usize> {
        Ok(self.prices().len())
    }
}

#[tokio::main]
async fn main() {
    // Panics, naming the check, if the store breaks a rule.
    mesh_price_cache::conformance::run_all(Arc::new(BTreeStore::default())).await;
    println!("BTreeStore passes the PriceStore conformance suite");
}
