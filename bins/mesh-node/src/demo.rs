//! `mesh-node demo`: a small mesh on loopback to watch prices flow — one provider with the
//! simulated source, relays and consumers, all in this process over real TCP — serving the API
//! and dashboard of the farthest consumer.

#![allow(clippy::print_stdout, reason = "the demo tells the user where to look")]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use mesh_node::{NodeSettings, PriceSourceKind};
use mesh_provider::SimulatedSource;
use mesh_service::MeshPriceService;
use mesh_types::{NetworkId, NodeIdentity};

/// Settings of `demo`.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Nodes in the local mesh (at least 2).
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    /// Where to serve the API and dashboard of the farthest consumer.
    #[arg(long, env = "MESH_API_ADDR", default_value = "127.0.0.1:8080")]
    api_addr: SocketAddr,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    duration: Option<u64>,
}

/// The settings of demo node `index` joining through `bootstrap`.
fn demo_settings(index: usize, bootstrap: Vec<String>) -> NodeSettings {
    NodeSettings {
        network: NetworkId::devnet(),
        listen_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        bootstrap_peers: bootstrap,
        min_peers: 2,
        price_source: if index == 0 { PriceSourceKind::Simulated } else { PriceSourceKind::None },
        // Lively prices for people watching.
        fetch_interval: Duration::from_secs(2),
        coordination_window: Duration::from_secs(1),
        sync_interval: Duration::from_secs(10),
        ..NodeSettings::default()
    }
}

pub(crate) async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.nodes >= 2, "a demo needs at least 2 nodes");
    let metrics = crate::api::install_metrics()?;
    let mut nodes: Vec<MeshPriceService> = Vec::with_capacity(args.nodes);
    for index in 0..args.nodes {
        // Each node joins through the two before it: a chain with shortcuts.
        let bootstrap = nodes
            .iter()
            .rev()
            .take(2)
            .filter_map(|node: &MeshPriceService| node.local_addr().map(|addr| addr.to_string()))
            .collect();
        let settings = demo_settings(index, bootstrap);
        let node = MeshPriceService::builder(Arc::new(NodeIdentity::generate()), settings.service_config()?)
            .start()
            .await
            .with_context(|| format!("cannot start demo node {index}"))?;
        if index == 0 {
            node.start_provider(settings.provider_config(), settings.assets.clone())?;
            node.enable_provider(Arc::new(SimulatedSource::with_random_seed())).await?;
        }
        nodes.push(node);
    }
    let consumer = nodes.last().cloned().context("no demo nodes")?;
    let listener = tokio::net::TcpListener::bind(args.api_addr)
        .await
        .with_context(|| format!("cannot bind the demo API to {} (use --api-addr)", args.api_addr))?;
    let addr = listener.local_addr()?;
    println!("pricemesh demo: {} nodes on loopback, a simulated provider at one end", args.nodes);
    if let Some(provider) = nodes.first() {
        println!("  provider node      {}", provider.node_id());
    }
    println!("  watching node      {}", consumer.node_id());
    println!("  dashboard          http://{addr}/");
    println!("  prices (REST)      http://{addr}/api/mesh/prices");
    println!("  network status     http://{addr}/api/mesh/network/status");
    println!("  live feed          ws://{addr}/ws");
    println!("Press Ctrl-C to stop.");

    let duration = args.duration.map(Duration::from_secs);
    let stop = async move {
        match duration {
            Some(duration) => tokio::select! {
                () = tokio::time::sleep(duration) => {}
                () = crate::shutdown_signal() => {}
            },
            None => crate::shutdown_signal().await,
        }
    };
    let settings = NodeSettings { api_addr: addr, ..NodeSettings::default() };
    let served = crate::api::serve(listener, consumer, &settings, metrics, stop).await;
    for node in &nodes {
        node.shutdown().await;
    }
    served
}
