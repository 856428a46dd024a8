//! The REST handlers: provider control, prices, network status, health, readiness, metrics and
//! the dashboard page. Each answers the `{"success", "data", "error"}` envelope with the status
//! codes its operation lists in the OpenAPI contract (`/api/openapi.json`, see `openapi.rs`).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{Html, IntoResponse, Response};
use mesh_provider::{ApiKey, SourceError};
use mesh_service::EnableError;
use mesh_types::{
    ApiResponse, Asset, NetworkStatus, ProviderState, ProviderStatus, ServedPrice, ServedPriceMap,
};
use serde::{Deserialize, Serialize};

use crate::ApiState;
use crate::error::{AdminAuth, ApiError, ApiJson};
use crate::openapi::{
    ErrorEnvelope, HealthResponse, NetworkStatusResponse, PriceResponse, PricesResponse,
    ProviderStateResponse, ProviderStatusResponse, ReadyResponse,
};

/// The dashboard, embedded in the binary.
const DASHBOARD: &str = include_str!("dashboard.html");

/// The longest part of a refused asset symbol repeated in the 404 message.
const MAX_ECHOED_SYMBOL: usize = 64;

type ApiResult<T> = Result<Json<ApiResponse<T>>, ApiError>;

fn ok<T>(data: T) -> ApiResult<T> {
    Ok(Json(ApiResponse::ok(data)))
}

/// Body of `POST /api/mesh/provider/enable`. No `Debug`: it holds the key.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"api_key": "your-birdeye-key"}))]
pub(crate) struct EnableRequest {
    /// The price API's key; never logged or repeated in an answer.
    api_key: String,
}

/// `POST /api/mesh/provider/enable`: validates the key with the price source and turns
/// provider mode on.
#[utoipa::path(
    post,
    path = "/api/mesh/provider/enable",
    tag = "provider",
    request_body = EnableRequest,
    security((), ("admin_token" = [])),
    responses(
        (status = 200, description = "Provider mode is on", body = ProviderStateResponse),
        (status = 400, description = "Malformed JSON or a missing field", body = ErrorEnvelope,
            example = json!({"success": false, "data": null, "error": "Invalid request body: missing field 'api_key'"})),
        (status = 401, description = "The price API refused the key, or the admin token is missing or wrong",
            body = ErrorEnvelope,
            example = json!({"success": false, "data": null, "error": "Invalid API key: authentication failed with Birdeye API"})),
        (status = 403, description = "A web page of an origin the node does not allow", body = ErrorEnvelope),
        (status = 413, description = "Body larger than the limit", body = ErrorEnvelope),
        (status = 415, description = "Content-Type is not application/json", body = ErrorEnvelope),
        (status = 500, description = "The key could not be checked (the price API is unreachable)",
            body = ErrorEnvelope),
    ),
)]
pub(crate) async fn enable_provider(
    State(state): State<ApiState>,
    _admin: AdminAuth,
    ApiJson(request): ApiJson<EnableRequest>,
) -> ApiResult<ProviderState> {
    let Some(factory) = state.source_factory() else {
        return Err(enable_failed("no price source is configured on this node"));
    };
    let result = match ApiKey::new(request.api_key).and_then(|key| factory(key)) {
        Ok(source) => state.service().enable_provider(source).await,
        Err(error) => Err(EnableError::Source(error)),
    };
    match result {
        Ok(provider_state) => {
            tracing::info!(node_id = %state.service().node_id(), "provider mode enabled through the API");
            ok(provider_state)
        }
        Err(EnableError::Source(SourceError::InvalidApiKey)) => {
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
#[utoipa::path(
    post,
    path = "/api/mesh/provider/disable",
    tag = "provider",
    security((), ("admin_token" = [])),
    responses(
        (status = 200, description = "Provider mode is off", body = ProviderStateResponse),
        (status = 401, description = "The admin token is missing or wrong", body = ErrorEnvelope),
        (status = 403, description = "A web page of an origin the node does not allow", body = ErrorEnvelope),
    ),
)]
pub(crate) async fn disable_provider(
    State(state): State<ApiState>,
    _admin: AdminAuth,
) -> ApiResult<ProviderState> {
    let provider_state = state.service().disable_provider().await;
    tracing::info!(node_id = %provider_state.node_id, "provider mode disabled through the API");
    ok(provider_state)
}

/// `GET /api/mesh/provider/status`.
#[utoipa::path(
    get,
    path = "/api/mesh/provider/status",
    tag = "provider",
    responses((status = 200, description = "This node's provider mode", body = ProviderStatusResponse)),
)]
pub(crate) async fn provider_status(State(state): State<ApiState>) -> ApiResult<ProviderStatus> {
    ok(state.service().provider_status())
}

/// `GET /api/mesh/prices`: every asset at quorum, as the median of its providers' fresh quotes.
#[utoipa::path(
    get,
    path = "/api/mesh/prices",
    tag = "prices",
    responses((status = 200, description = "Every served price, keyed by asset", body = PricesResponse)),
)]
pub(crate) async fn all_prices(State(state): State<ApiState>) -> ApiResult<ServedPriceMap> {
    ok(state.service().served_prices())
}

/// Query of `GET /api/mesh/prices/{asset}`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
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
#[utoipa::path(
    get,
    path = "/api/mesh/prices/{asset}",
    tag = "prices",
    params(("asset" = String, Path, description = "The symbol, any case", example = "SOL"), PriceQuery),
    responses(
        (status = 200, description = "The served price", body = PriceResponse),
        (status = 400, description = "A query string other than ?quotes=true or false", body = ErrorEnvelope),
        (status = 404, description = "Not in the cache, or below quorum without ?quotes=true", body = ErrorEnvelope,
            example = json!({"success": false, "data": null, "error": "Asset 'XYZ' not found in cache"})),
    ),
)]
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
#[utoipa::path(
    get,
    path = "/api/mesh/network/status",
    tag = "network",
    responses((status = 200, description = "The network as this node sees it", body = NetworkStatusResponse)),
)]
pub(crate) async fn network_status(State(state): State<ApiState>) -> ApiResult<NetworkStatus> {
    ok(state.service().network_status())
}

/// Body of `GET /health`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Health {
    /// Always `"ok"`.
    status: &'static str,
    #[schema(inline)]
    node_id: mesh_types::NodeId,
}

/// `GET /health`: 200 while every supervised task of the node runs (liveness); 503 naming the
/// tasks that died, so a process manager restarts a node whose event loop is gone.
#[utoipa::path(
    get,
    path = "/health",
    tag = "operations",
    responses(
        (status = 200, description = "Every supervised task runs", body = HealthResponse),
        (status = 503, description = "A supervised task died; restart the node", body = ErrorEnvelope),
    ),
)]
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
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Ready {
    ready: bool,
    /// The backends failing now (`prices`, `dedup`, `coordination`); the node still serves,
    /// from memory, so it stays ready.
    degraded: Vec<&'static str>,
}

/// `GET /ready`: 503 until the node has loaded its stores and bound its ports, and once a
/// supervised task has failed. A failing Redis or PostgreSQL is listed in `degraded` but keeps
/// the node ready: it serves from memory, and taking every node out of a load balancer
/// because their shared Redis died would turn a degraded service into none.
#[utoipa::path(
    get,
    path = "/ready",
    tag = "operations",
    responses(
        (status = 200, description = "Stores loaded and ports bound", body = ReadyResponse),
        (status = 503, description = "Starting up, or a supervised task died", body = ErrorEnvelope),
    ),
)]
pub(crate) async fn ready(State(state): State<ApiState>) -> ApiResult<Ready> {
    check_tasks(&state)?;
    if state.is_ready() {
        ok(Ready { ready: true, degraded: state.service().degraded_backends() })
    } else {
        Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "Service unavailable: the node is starting up"))
    }
}

/// `GET /metrics`: the Prometheus text format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses(
        (status = 200, description = "Prometheus text exposition format", body = String,
            content_type = "text/plain; version=0.0.4; charset=utf-8"),
        (status = 404, description = "Metrics are not enabled on this node", body = ErrorEnvelope),
    ),
)]
pub(crate) async fn metrics(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let Some(handle) = state.metrics_handle() else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "Not found: metrics are not enabled on this node"));
    };
    let headers = [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")];
    Ok((headers, handle.render()).into_response())
}

/// `GET /api/openapi.json`: this contract.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", body = Object)),
)]
pub(crate) async fn contract() -> Response {
    static CONTRACT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let json = CONTRACT.get_or_init(|| crate::openapi().to_json().unwrap_or_else(|_| "{}".to_owned()));
    ([(CONTENT_TYPE, "application/json")], json.clone()).into_response()
}

/// `GET /`: the dashboard.
#[utoipa::path(
    get,
    path = "/",
    tag = "operations",
    responses((status = 200, description = "The dashboard page", body = String, content_type = "text/html; charset=utf-8")),
)]
pub(crate) async fn dashboard() -> Response {
    ([(CACHE_CONTROL, "no-cache")], Html(DASHBOARD)).into_response()
}
