//! Serving the HTTP API of a node: the metrics recorder, and the API state built from the
//! node's service, provider and settings.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use mesh_api::{ApiConfig, ApiState, birdeye_factory};
use mesh_node::NodeSettings;
use mesh_service::MeshPriceService;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Installs the process-wide Prometheus recorder that `/metrics` renders.
pub(crate) fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    PrometheusBuilder::new().install_recorder().context("cannot install the metrics recorder")
}

/// The API's configuration from the node's settings. On loopback the API answers to the
/// loopback names and the listed hosts (DNS rebinding is the threat there); beyond loopback to
/// the listed hosts, or any host when none are listed.
pub(crate) fn api_config(settings: &NodeSettings, on_loopback: bool) -> ApiConfig {
    let listed = &settings.api_allowed_hosts;
    let allowed_hosts = if on_loopback {
        let loopback = ApiConfig::LOOPBACK_HOSTS.iter().map(|host| (*host).to_owned());
        Some(loopback.chain(listed.iter().cloned()).collect())
    } else {
        (!listed.is_empty()).then(|| listed.clone())
    };
    ApiConfig {
        admin_token: settings.admin_token.clone(),
        allowed_hosts,
        allowed_origins: settings.api_allowed_origins.clone(),
        ..ApiConfig::default()
    }
}

/// Serves the API of `service` on `listener` until `shutdown` resolves.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    service: MeshPriceService,
    settings: &NodeSettings,
    metrics: PrometheusHandle,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // Provider enable over the API builds a Birdeye source with the key it was given.
    let sources = birdeye_factory(settings.birdeye_config());
    let ready = Arc::new(AtomicBool::new(false));
    let config = api_config(settings, listener.local_addr().map_or(true, |addr| addr.ip().is_loopback()));
    let state = ApiState::new(service, sources, Some(metrics), ready.clone(), config);
    ready.store(true, Ordering::Release);
    mesh_api::serve(listener, state, shutdown).await.context("the API server failed")
}
