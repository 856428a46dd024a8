//! The REST handlers: provider control, prices, network status, health, readiness, metrics and
//! the dashboard page. Each answers the reference's envelope with the reference's status codes.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{Html, IntoResponse, Response};
use mesh_provider::{ApiKey, SourceError};
use mesh_types::{
    ApiResponse, Asset, NetworkStatus, ProviderState, ProviderStatus, ServedPrice, ServedPriceMap,
};
use serde::{Deserialize, Serialize};

use crate::ApiState;
use crate::error::{AdminAuth, ApiError, ApiJson};

/// The dashboard, embedded in the binary.
const DASHBOARD: &str = include_str!("dashboard.html");

/// The longest part of a refused asset symbol repeated in the 404 message.
const MAX_ECHOED_SYMBOL: usize = 64;

type ApiResult<T> = Result<Json<ApiResponse<T>>, ApiError>;

fn ok<T>(data: T) -> ApiResult<T> {
    Ok(Json(ApiResponse::ok(data)))
}

/// Body of `POST /api/mesh/provider/enable`. No `Debug`: it holds the key.
#[derive(Deserialize)]
pub(crate) struct EnableRequest {
    api_key: String,
}

/// `POST /api/mesh/provider/enable`: validates the key with the price source and turns
/// provider mode on.
pub(crate) async fn enable_provider(
    State(state): State<ApiState>,
    _admin: AdminAuth,
    ApiJson(request): ApiJson<EnableRequest>,
) -> ApiResult<ProviderState> {
    let Some(provider) = state.provider() else {
        return Err(enable_failed("this node has no provider loop"));
    };
    let Some(factory) = state.source_factory() else {
        return Err(enable_failed("no price source is configured on this node"));
    };
    let result = match ApiKey::new(request.api_key) {
        Ok(key) => match factory(key) {
            Ok(source) => provider.enable(source).await,
            Err(error) => Err(error),
        },
        Err(error) => Err(error),
    };
    match result {
        Ok(()) => {
            state.service().set_provider(true);
            tracing::info!(node_id = %state.service().node_id(), "provider mode enabled through the API");
            ok(provider.state())
        }
        Err(SourceError::InvalidApiKey) => {
            tracing::warn!("provider mode not enabled: the price API refused the key");
            Err(ApiError::new(StatusCode::UNAUTHORIZED, SourceError::InvalidApiKey.to_string()))
        }
        Err(error) => {
            tracing::warn!(%error, "provider mode not enabled");
            Err(enable_failed(&error.to_string()))
        }
    }
}

fn enable_failed(reason: &str) -> ApiError {
    ApiError::internal(format!("Failed to enable provider mode: {reason}"))
}

/// `POST /api/mesh/provider/disable`: stops fetching; the node keeps relaying.
pub(crate) async fn disable_provider(
    State(state): State<ApiState>,
    _admin: AdminAuth,
) -> ApiResult<ProviderState> {
    let node_id = state.service().node_id();
    if let Some(provider) = state.provider() {
        provider.disable().await;
    }
    state.service().set_provider(false);
    tracing::info!(%node_id, "provider mode disabled through the API");
    ok(ProviderState { enabled: false, node_id })
}

/// `GET /api/mesh/provider/status`.
pub(crate) async fn provider_status(State(state): State<ApiState>) -> ApiResult<ProviderStatus> {
    ok(state.provider().map_or_else(
        || ProviderStatus {
            enabled: false,
            node_id: state.service().node_id(),
            last_fetch_time: None,
            fetch_count: 0,
        },
        mesh_provider::ProviderNode::status,
    ))
}

/// `GET /api/mesh/prices`: every asset at quorum, as the median of its providers' fresh quotes.
pub(crate) async fn all_prices(State(state): State<ApiState>) -> ApiResult<ServedPriceMap> {
    ok(state.service().served_prices())
}

/// Query of `GET /api/mesh/prices/{asset}`.
#[derive(Debug, Deserialize)]
pub(crate) struct PriceQuery {
    /// Attach the quotes the aggregate was made of, and show an asset below quorum (flagged)
    /// instead of refusing it.
    #[serde(default)]
    quotes: bool,
}

/// `GET /api/mesh/prices/{asset}[?quotes=true]`. The symbol is case-insensitive; a symbol that
/// cannot be an asset (bad characters, too long) is simply not in the cache: 404 with the same
/// message. An asset below quorum is refused with 404 saying so, unless the quotes are asked
/// for: a program that does not read the new fields must never trade on one provider's word
/// when the operator asked for several.
pub(crate) async fn one_price(
    State(state): State<ApiState>,
    Path(symbol): Path<String>,
    query: Result<Query<PriceQuery>, QueryRejection>,
) -> ApiResult<ServedPrice> {
    let Ok(Query(query)) = query else {
        return Err(ApiError::bad_request("Invalid query string: expected ?quotes=true or ?quotes=false"));
    };
    let Ok(asset) = Asset::new(&symbol) else {
        let shown: String = symbol.to_ascii_uppercase().chars().take(MAX_ECHOED_SYMBOL).collect();
        return Err(not_in_cache(&shown));
    };
    match state.service().served_price(&asset, query.quotes) {
        Some(served) if query.quotes || !served.below_quorum => {
            metrics::counter!("mesh_cache_hits_total").increment(1);
            ok(served)
        }
        Some(served) => {
            metrics::counter!("mesh_cache_misses_total").increment(1);
            Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!(
                    "Asset '{asset}' is below quorum: {} fresh provider quote(s) of {} required; \
                     add ?quotes=true to see them",
                    served.providers,
                    state.service().quorum()
                ),
            ))
        }
        None => {
            metrics::counter!("mesh_cache_misses_total").increment(1);
            Err(not_in_cache(asset.as_str()))
        }
    }
}

fn not_in_cache(symbol: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("Asset '{symbol}' not found in cache"))
}

/// `GET /api/mesh/network/status`.
pub(crate) async fn network_status(State(state): State<ApiState>) -> ApiResult<NetworkStatus> {
    ok(state.service().network_status())
}

/// Body of `GET /health`.
#[derive(Serialize)]
pub(crate) struct Health {
    status: &'static str,
    node_id: mesh_types::NodeId,
}

/// `GET /health`: 200 while every supervised task of the node runs (liveness); 503 naming the
/// tasks that died, so a process manager restarts a node whose event loop is gone.
pub(crate) async fn health(State(state): State<ApiState>) -> ApiResult<Health> {
    check_tasks(&state)?;
    ok(Health { status: "ok", node_id: state.service().node_id() })
}

/// A 503 naming every failed task, if any failed.
fn check_tasks(state: &ApiState) -> Result<(), ApiError> {
    let failures = state.service().supervisor().failures();
    if failures.is_empty() {
        return Ok(());
    }
    let mut names: Vec<String> =
        failures.iter().map(|failure| format!("{} ({})", failure.task, failure.reason)).collect();
    names.dedup();
    Err(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("Service unhealthy: supervised tasks failed: {}; restart the node", names.join(", ")),
    ))
}

/// Body of `GET /ready`.
#[derive(Serialize)]
pub(crate) struct Ready {
    ready: bool,
}

/// `GET /ready`: 503 until the node has loaded its stores and bound its ports, and once a
/// supervised task has failed.
pub(crate) async fn ready(State(state): State<ApiState>) -> ApiResult<Ready> {
    check_tasks(&state)?;
    if state.is_ready() {
        ok(Ready { ready: true })
    } else {
        Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "Service unavailable: the node is starting up"))
    }
}

/// `GET /metrics`: the Prometheus text format.
pub(crate) async fn metrics(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let Some(handle) = state.metrics_handle() else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "Not found: metrics are not enabled on this node"));
    };
    let headers = [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")];
    Ok((headers, handle.render()).into_response())
}

/// `GET /`: the dashboard.
pub(crate) async fn dashboard() -> Response {
    ([(CACHE_CONTROL, "no-cache")], Html(DASHBOARD)).into_response()
}
