//! Write your own `PriceSource`: where a provider node gets its prices. This one quotes from a
//! fixed table; yours might read an exchange's API. The node signs what it returns and serves
//! it like any other provider's prices.
//!
//! `cargo run --example custom_source` — serves the table's prices and stops (at most 20 s).

#![allow(clippy::print_stdout, reason = "an example shows what it does on standard output")]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mesh_provider::{PriceSource, SourceError};
use mesh_service::{MeshPriceService, ServiceConfig};
use mesh_transport::ManagerConfig;
use mesh_types::rust_decimal::Decimal;
use mesh_types::{Asset, NetworkId, NodeIdentity, PriceData, ProviderConfig};

/// Quotes every asset it knows at a fixed price.
struct Table(Vec<(&'static str, Decimal)>);

#[async_trait]
impl PriceSource for Table {
    async fn fetch(&self, assets: &[Asset]) -> Result<Vec<PriceData>, SourceError> {
        Ok(self
            .0
            .iter()
            .filter_map(|(symbol, price)| Some((Asset::new(symbol).ok()?, *price)))
            .filter(|(asset, _)| assets.contains(asset))
            .map(|(asset, price)| PriceData { asset, price, blockchain: "Solana".into(), change_24h: None })
            .collect())
    }

    async fn validate(&self) -> Result<(), SourceError> {
        Ok(())
    }

    fn name(&self) -> &'static str {
        "table"
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut network = ManagerConfig::new(NetworkId::devnet());
    network.listen_addr = Some("127.0.0.1:0".parse()?);
    let node = MeshPriceService::builder(Arc::new(NodeIdentity::generate()), ServiceConfig::new(network))
        .start()
        .await?;
    let config = ProviderConfig {
        enabled: true,
        fetch_interval_secs: 1,
        coordination_window_secs: 1,
        ..ProviderConfig::default()
    };
    node.start_provider(config, vec![Asset::new("SOL")?, Asset::new("JUP")?])?;
    let table = Table(vec![("SOL", Decimal::new(15_012, 2)), ("JUP", Decimal::new(8_421, 4))]);
    node.enable_provider(Arc::new(table)).await?;

    let served = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let prices = node.served_prices();
            if prices.len() == 2 {
                return prices;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    node.shutdown().await;
    for (asset, price) in served.map_err(|_| "the source's prices were not served within 20 s")? {
        println!("{asset} = {} (signed by {})", price.price.price, price.price.source_node_id);
    }
    Ok(())
}
