//! Serving the HTTP API of a node: the metrics recorder, and the API state built from the
//! node's service, provider and settings.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use mesh_api::{ApiConfig, ApiState, birdeye_factory};
use mesh_provider::ProviderNode;
use mesh_service::{MeshPriceService, NodeSettings};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Installs the process-wide Prometheus recorder that `/metrics` renders.
pub(crate) fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    PrometheusBuilder::new().install_recorder().context("cannot install the metrics recorder")
}

/// Serves the API of `service` on `listener` until `shutdown` resolves.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    service: MeshPriceService,
    provider: Option<ProviderNode>,
    settings: &NodeSettings,
    metrics: PrometheusHandle,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // Provider enable over the API builds a Birdeye source with the key it was given.
    let sources = birdeye_factory(crate::run::birdeye_config(settings));
    let ready = Arc::new(AtomicBool::new(false));
    let config = ApiConfig { admin_token: settings.admin_token.clone(), ..ApiConfig::default() };
    let state = ApiState::new(service, provider, sources, Some(metrics), ready.clone(), config);
    ready.store(true, Ordering::Release);
    mesh_api::serve(listener, state, shutdown).await.context("the API server failed")
}
