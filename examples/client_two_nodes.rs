//! Consume prices with `mesh-client` from two nodes at once: each node's WebSocket feed, merged
//! and deduplicated, so either node can go away without your application noticing.
//!
//! `cargo run --example client_two_nodes` — starts a provider and two consumer nodes with their
//! HTTP APIs on loopback, follows both with one client, stops one node midway, and stops (at
//! most 30 s).

#![allow(clippy::print_stdout, reason = "an example shows what it does on standard output")]

use std::sync::Arc;
use std::time::Duration;

use mesh_api::ApiState;
use mesh_client::{ClientConfig, ClientEvent, MeshClient};
use mesh_provider::SimulatedSource;
use mesh_service::{MeshPriceService, ServiceConfig};
use mesh_transport::ManagerConfig;
use mesh_types::{Asset, NetworkId, NodeIdentity, ProviderConfig};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

type Error = Box<dyn std::error::Error>;

async fn node(bootstrap: Option<String>) -> Result<MeshPriceService, Error> {
    let mut network = ManagerConfig::new(NetworkId::devnet());
    network.listen_addr = Some("127.0.0.1:0".parse()?);
    network.bootstrap = bootstrap.into_iter().collect();
    network.min_peers = 1;
    Ok(MeshPriceService::builder(Arc::new(NodeIdentity::generate()), ServiceConfig::new(network))
        .start()
        .await?)
}

/// Serves `node`'s API on a loopback port; returns its address and a switch that stops it.
async fn serve(node: &MeshPriceService) -> Result<(String, oneshot::Sender<()>), Error> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = oneshot::channel::<()>();
    let state = ApiState::builder(node.clone()).build();
    tokio::spawn(mesh_api::serve(listener, state, async move {
        let _ = stopped.await;
    }));
    Ok((address, stop))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let provider = node(None).await?;
    let seed = provider.local_addr().ok_or("the provider listens")?.to_string();
    let (first, second) = (node(Some(seed.clone())).await?, node(Some(seed)).await?);
    let (first_api, stop_first) = serve(&first).await?;
    let (second_api, _keep_second) = serve(&second).await?;

    let config = ProviderConfig {
        enabled: true,
        fetch_interval_secs: 1,
        coordination_window_secs: 1,
        ..ProviderConfig::default()
    };
    provider.start_provider(config, vec![Asset::new("SOL")?])?;
    provider.enable_provider(Arc::new(SimulatedSource::new(3))).await?;

    let mut client = MeshClient::connect(ClientConfig::new([&first_api, &second_api])?);
    let mut updates = 0;
    let mut stop_first = Some(stop_first);
    let run = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(event) = client.next().await {
            match event {
                ClientEvent::Update(price) => {
                    updates += 1;
                    println!("SOL = {}", price.price.price);
                    if updates == 3 {
                        println!("stopping the first node's API; the client goes on with the second");
                        if let Some(stop) = stop_first.take() {
                            let _ = stop.send(());
                        }
                    }
                    if updates == 6 {
                        break;
                    }
                }
                ClientEvent::Disconnected { node, reason, .. } => println!("{node}: {reason}"),
                ClientEvent::Gap { node, since } => println!("{node}: gap after {since}"),
                _ => {}
            }
        }
    })
    .await;
    client.close().await;
    for node in [&first, &second, &provider] {
        node.shutdown().await;
    }
    run.map_err(|_| "the client did not see six updates within 30 s")?;
    Ok(())
}
