//! `mesh-node run`: one node with the settings of the flags, the environment and the file.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use mesh_nats::{NatsBridge, NatsConfig};
use mesh_node::PriceSourceKind;
use mesh_provider::{ApiKey, BirdeyeSource, SimulatedSource};
use mesh_service::MeshPriceService;
use mesh_types::{KEY_FILE_NAME, NodeIdentity};

use crate::backends::Backends;
use mesh_node::SettingArgs;

/// Settings of `run`.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// A TOML file of settings (keys as the long flags, with `_` for `-`).
    #[arg(long, short, env = "MESH_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    settings: SettingArgs,
}

pub(crate) async fn run(args: RunArgs) -> anyhow::Result<()> {
    let file = match &args.config {
        Some(path) => SettingArgs::from_file(path)?,
        None => SettingArgs::default(),
    };
    let settings = args.settings.resolve(file)?;
    if settings.test_clock_offset_ms != 0 {
        tracing::warn!(
            offset_ms = settings.test_clock_offset_ms,
            "MESH_TEST_CLOCK_OFFSET_MS is set: this node's clock is deliberately wrong (for tests only)"
        );
        mesh_types::clock::set_offset_for_tests(mesh_types::chrono::Duration::milliseconds(
            settings.test_clock_offset_ms,
        ));
    }
    let metrics = crate::api::install_metrics()?;
    let identity = Arc::new(
        NodeIdentity::load_or_generate(&settings.data_dir.join(KEY_FILE_NAME))
            .context("cannot load the node key")?
            .0,
    );
    tracing::info!(node_id = %identity.node_id(), network = %settings.network, "starting node");
    let backends = Backends::open(&settings).await?;
    tracing::info!(backends = %backends.summary, "storage");
    let service = backends
        .apply(MeshPriceService::builder(identity, settings.service_config()?))
        .start()
        .await
        .context("cannot start the node")?;
    let bridge = match &settings.nats_url {
        Some(url) => Some(start_bridge(url, settings.nats_stream.clone(), &service).await?),
        None => None,
    };
    service.start_provider(settings.provider_config(), settings.assets.clone())?;
    match settings.price_source {
        PriceSourceKind::None => {}
        PriceSourceKind::Simulated => {
            service.enable_provider(Arc::new(SimulatedSource::with_random_seed())).await?;
        }
        PriceSourceKind::Birdeye => {
            let key = ApiKey::new(settings.birdeye_api_key.clone().unwrap_or_default())
                .map_err(|err| anyhow::anyhow!("invalid setting BIRDEYE_API_KEY: {err}"))?;
            let source = BirdeyeSource::new(key, settings.birdeye_config())?;
            service
                .enable_provider(Arc::new(source))
                .await
                .context("cannot enable provider mode with Birdeye")?;
        }
    }
    let listener = tokio::net::TcpListener::bind(settings.api_addr)
        .await
        .with_context(|| format!("cannot bind the API to {} (MESH_API_ADDR)", settings.api_addr))?;
    // The bound addresses, so a node started on port 0 says where it really listens.
    let api_addr = listener.local_addr().unwrap_or(settings.api_addr);
    let peers_addr = service.network().local_addr().unwrap_or(settings.listen_addr);
    tracing::info!(api = %api_addr, listen = %peers_addr, "node ready");
    let served =
        crate::api::serve(listener, service.clone(), &settings, metrics, crate::shutdown_signal()).await;
    if let Some(bridge) = bridge {
        bridge.shutdown().await;
    }
    service.shutdown().await;
    served
}

/// The NATS bridge of `MESH_NATS_URL`: it starts at once even with NATS down, and publishes
/// once the server answers.
async fn start_bridge(
    url: &str,
    stream: Option<String>,
    service: &MeshPriceService,
) -> anyhow::Result<NatsBridge> {
    let config = NatsConfig { stream: stream.clone(), ..NatsConfig::new(url) };
    let bridge = NatsBridge::start(config, service)
        .await
        .context("invalid setting MESH_NATS_URL or MESH_NATS_STREAM")?;
    let subjects = mesh_nats::network_subjects(service.network_id());
    tracing::info!(%subjects, ?stream, "publishing accepted prices to NATS");
    Ok(bridge)
}
