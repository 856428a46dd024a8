//! The HTTP face of a pricemesh node: the REST endpoints and WebSocket feed of the API
//! reference (shapes in [`mesh_types::ApiResponse`] and [`mesh_types::FeedMessage`]), plus
//! `/health`, `/ready`, `/metrics` and a dashboard page, on axum.
//!
//! | method | path | answer |
//! | --- | --- | --- |
//! | POST | `/api/mesh/provider/enable` | `{enabled, node_id}`; 400 bad body, 401 bad key or admin token, 415, 413, 500 |
//! | POST | `/api/mesh/provider/disable` | `{enabled: false, node_id}`; 401 without the admin token |
//! | GET | `/api/mesh/provider/status` | `{enabled, node_id, last_fetch_time, fetch_count}` |
//! | GET | `/api/mesh/prices` | every cached price, keyed by asset |
//! | GET | `/api/mesh/prices/{asset}` | one price; 404 `Asset 'XYZ' not found in cache` |
//! | GET | `/api/mesh/network/status` | providers with hop counts, peers, network size, freshness |
//! | GET | `/ws` | the live feed (see below); `?assets=SOL,ETH` to filter |
//! | GET | `/health` | 200 while the process runs |
//! | GET | `/ready` | 503 until [`ApiState::set_ready`], then 200 |
//! | GET | `/metrics` | Prometheus text; 404 without a [`PrometheusHandle`] |
//! | GET | `/` | the dashboard |
//!
//! Every error, including an unknown route (404), a wrong method (405), an oversized body
//! (413), a wrong content type (415) and a panicking handler (500), is the envelope
//! `{"success": false, "data": null, "error": "…"}`. A symbol that cannot be an asset
//! (`/api/mesh/prices/B%20TC`) is treated like an unknown one: 404 with the same message.
//! The API key of an enable request is never logged or repeated in an answer.
//!
//! When [`ApiConfig::admin_token`] is set, provider enable and disable require
//! `Authorization: Bearer <token>`.
//!
//! The WebSocket feed and its slow-client policy are described in the `feed` module: a bounded
//! per-client queue conflated per asset, slow clients disconnected after
//! [`ApiConfig::ws_max_lag`], a full resend when a client missed node events.
//!
//! Metrics: `mesh_api_requests_total{route,status}`, `mesh_api_ws_clients`,
//! `mesh_api_ws_slow_disconnects_total{reason}`, `mesh_api_ws_resyncs_total`; `/metrics` also
//! renders everything else the process records through the `metrics` facade.
//!
//! ```no_run
//! # async fn run(service: mesh_service::MeshPriceService) -> std::io::Result<()> {
//! use mesh_api::{ApiConfig, ApiState, birdeye_factory};
//! use mesh_provider::BirdeyeConfig;
//!
//! let state = ApiState::builder(service)
//!     .source_factory(birdeye_factory(BirdeyeConfig::default()))
//!     .config(ApiConfig::default())
//!     .build();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! state.set_ready(true);
//! mesh_api::serve(listener, state, async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use tokio::net::TcpListener;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

mod error;
mod feed;
mod middleware;
mod openapi;
mod routes;
mod server;
mod state;

pub use metrics_exporter_prometheus::PrometheusHandle;
pub use openapi::OPENAPI_PATH;
pub use server::{MAX_HEAD_BYTES, SEND_BUFFER_BYTES};
pub use state::{ApiConfig, ApiState, ApiStateBuilder, FeedStats, SourceFactory, birdeye_factory};

/// How long [`serve`] waits for WebSocket clients to close at shutdown.
const FEED_CLOSE_WAIT: Duration = Duration::from_secs(2);

/// How often histogram upkeep runs on the metrics handle while [`serve`] runs.
const METRICS_UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The API's routes with their OpenAPI entries: each handler is registered with its
/// `#[utoipa::path]`, so the routes and the contract are one list.
fn documented_routes() -> (Router<ApiState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::new()
        .routes(routes!(routes::dashboard))
        .routes(routes!(routes::health))
        .routes(routes!(routes::ready))
        .routes(routes!(routes::metrics))
        .routes(routes!(feed::websocket))
        .routes(routes!(routes::enable_provider))
        .routes(routes!(routes::disable_provider))
        .routes(routes!(routes::provider_status))
        .routes(routes!(routes::all_prices))
        .routes(routes!(routes::one_price))
        .routes(routes!(routes::network_status))
        .split_for_parts()
}

/// The API's OpenAPI 3.1 contract, as served at [`OPENAPI_PATH`].
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, api) = documented_routes();
    openapi::finish(with_contract_path(api))
}

/// Adds the contract's own path to it.
fn with_contract_path(mut api: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    let (_, contract) = OpenApiRouter::<ApiState>::new().routes(routes!(routes::contract)).split_for_parts();
    api.merge(contract);
    api
}

/// The API's routes over `state`.
pub fn router(state: ApiState) -> Router {
    let max_body = state.config().max_body_bytes;
    let (routes, _) = documented_routes();
    routes
        .route(OPENAPI_PATH, get(routes::contract))
        // After the routes: it applies to the routes registered so far.
        .method_not_allowed_fallback(middleware::method_not_allowed)
        .fallback(middleware::not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(state.clone(), middleware::guard_origin))
        .layer(axum::middleware::from_fn(middleware::observe))
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` completes, then stops accepting, waits for
/// requests in progress and closes the WebSocket feeds (close code 1001; up to 2 s).
///
/// While it runs, the metrics handle (if any) gets its periodic upkeep.
///
/// # Errors
/// When the listener fails.
pub async fn serve(
    listener: TcpListener,
    state: ApiState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "HTTP API listening");
    }
    let upkeep = state.metrics_handle().cloned().map(|handle| {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(METRICS_UPKEEP_INTERVAL);
            loop {
                tick.tick().await;
                handle.run_upkeep();
            }
        })
    });
    let app = router(state.clone());
    let closing = state.clone();
    let result = server::run(listener, app, state.config(), async move {
        shutdown.await;
        tracing::info!("HTTP API shutting down");
        closing.close_feeds();
    })
    .await;
    // Upgraded connections are not the HTTP server's any more: give the feeds the time to
    // send their close frames.
    state.feeds_closed(FEED_CLOSE_WAIT).await;
    if let Some(upkeep) = upkeep {
        upkeep.abort();
    }
    result
}

/// Describes the API's metrics to the installed recorder (HELP lines in `/metrics`).
fn describe_metrics() {
    metrics::describe_counter!("mesh_cache_hits_total", "Price lookups of one asset that found it");
    metrics::describe_counter!("mesh_cache_misses_total", "Price lookups of one asset that did not find it");
    metrics::describe_counter!("mesh_api_requests_total", "HTTP requests answered, by route and status");
    metrics::describe_gauge!("mesh_api_ws_clients", "WebSocket feed clients connected");
    metrics::describe_counter!(
        "mesh_api_ws_slow_disconnects_total",
        "WebSocket clients disconnected for falling behind, by reason (lag, overflow)"
    );
    metrics::describe_counter!(
        "mesh_api_connections_refused_total",
        "API connections refused because the connection cap was reached (answered 503)"
    );
    metrics::describe_counter!(
        "mesh_api_header_timeouts_total",
        "API connections closed because the request head did not arrive in time (answered 408)"
    );
    // Registered at zero: dashboards and alert rules see them before the first event.
    metrics::gauge!("mesh_api_ws_clients").increment(0.0);
    for reason in feed::SLOW_REASONS {
        metrics::counter!("mesh_api_ws_slow_disconnects_total", "reason" => reason).increment(0);
    }
    metrics::counter!("mesh_api_ws_resyncs_total").increment(0);
    metrics::describe_counter!(
        "mesh_api_ws_resyncs_total",
        "Times a WebSocket client missed node events and was sent the current state again"
    );
}
