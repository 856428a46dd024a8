//! Embed a pricemesh node in your own tokio service: two nodes on loopback, one a provider
//! with simulated prices, the other a consumer whose changes your code reacts to.
//!
//! `cargo run --example embed_node` — prints the first few served prices and stops (at most
//! 20 s).

#![allow(clippy::print_stdout, reason = "an example shows what it does on standard output")]

use std::sync::Arc;
use std::time::Duration;

use mesh_provider::SimulatedSource;
use mesh_service::{MeshPriceService, ServiceConfig, ServiceEvent};
use mesh_transport::ManagerConfig;
use mesh_types::{Asset, NetworkId, NodeIdentity, ProviderConfig};

/// A node on devnet listening on a port the system picks, dialling `bootstrap` if given.
async fn node(bootstrap: Option<String>) -> Result<MeshPriceService, Box<dyn std::error::Error>> {
    let mut network = ManagerConfig::new(NetworkId::devnet());
    network.listen_addr = Some("127.0.0.1:0".parse()?);
    network.bootstrap = bootstrap.into_iter().collect();
    network.min_peers = 1;
    Ok(MeshPriceService::builder(Arc::new(NodeIdentity::generate()), ServiceConfig::new(network))
        .start()
        .await?)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let provider = node(None).await?;
    let listen = provider.local_addr().ok_or("the provider listens")?;
    let consumer = node(Some(listen.to_string())).await?;
    let mut changes = consumer.subscribe();

    let config = ProviderConfig {
        enabled: true,
        fetch_interval_secs: 1,
        coordination_window_secs: 1,
        ..ProviderConfig::default()
    };
    provider.start_provider(config, vec![Asset::new("SOL")?, Asset::new("ETH")?])?;
    provider.enable_provider(Arc::new(SimulatedSource::new(7))).await?;

    let mut shown = 0;
    let run = tokio::time::timeout(Duration::from_secs(20), async {
        while shown < 4 {
            let Ok(change) = changes.recv().await else { break };
            if let ServiceEvent::Prices(prices) = change.event {
                for served in prices {
                    println!(
                        "#{} {} = {} (from {} provider(s))",
                        change.seq, served.price.asset, served.price.price, served.providers
                    );
                    shown += 1;
                }
            }
        }
    })
    .await;
    consumer.shutdown().await;
    provider.shutdown().await;
    run.map_err(|_| "no prices arrived within 20 s")?;
    Ok(())
}
