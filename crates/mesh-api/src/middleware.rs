//! The layers around every route: counts requests (`mesh_api_requests_total{route,status}`),
//! turns a panicking handler into a 500 envelope instead of a dropped connection, makes sure
//! every error leaves as the `{success, data, error}` envelope, whatever produced it — and
//! refuses requests that name another host or come from a foreign web page ([`guard_origin`]).

use std::panic::AssertUnwindSafe;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, ORIGIN};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::FutureExt;

use crate::ApiState;
use crate::error::{ApiError, status_error};

/// The `route` label of requests that matched no route, so unknown paths cannot grow the
/// label set.
const UNMATCHED: &str = "unmatched";

pub(crate) async fn observe(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let started = std::time::Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| UNMATCHED.to_owned(), |path| path.as_str().to_owned());
    let response = match AssertUnwindSafe(next.run(request)).catch_unwind().await {
        Ok(response) => response,
        Err(_) => {
            tracing::error!(%route, "a request handler panicked");
            status_error(StatusCode::INTERNAL_SERVER_ERROR).into_response()
        }
    };
    let response = ensure_envelope(response);
    let status = response.status().as_u16();
    tracing::debug!(%method, %route, status, elapsed_ms = started.elapsed().as_millis(), "HTTP request");
    metrics::counter!("mesh_api_requests_total", "route" => route, "status" => status.to_string())
        .increment(1);
    response
}

/// An error response that is not JSON (axum's own rejections, a default 404 or 405) gets the
/// envelope for its status; its other headers (`Allow`, `WWW-Authenticate`) stay.
fn ensure_envelope(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, _) = response.into_parts();
    let (_, body) = status_error(status).into_response().into_parts();
    parts.headers.remove(CONTENT_LENGTH);
    parts.headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Response::from_parts(parts, body)
}

/// The fallback for paths no route matches.
pub(crate) async fn not_found() -> Response {
    status_error(StatusCode::NOT_FOUND).into_response()
}

/// The fallback for a known path with a method it does not take.
pub(crate) async fn method_not_allowed() -> Response {
    status_error(StatusCode::METHOD_NOT_ALLOWED).into_response()
}

/// DNS rebinding and cross-site use: a request whose `Host` is not one of the node's names, or
/// whose `Origin` (sent by browsers, on WebSocket upgrades too) is a page from elsewhere, gets
/// 403. Programs (curl, meshctl) send no `Origin` and pass; so do the node's own pages, whose
/// origin is the host they were loaded from.
pub(crate) async fn guard_origin(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let config = state.config();
    // Browsers always send `Host`; a request without one (HTTP/1.0, an in-process call)
    // cannot be a rebound page.
    let host = request.headers().get(HOST).map(|value| value.to_str().unwrap_or("\u{fffd}"));
    let name = host.map(host_name);
    if let (Some(allowed), Some(name)) = (&config.allowed_hosts, name)
        && !allowed.iter().any(|allowed| allowed.eq_ignore_ascii_case(name))
    {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "Forbidden: this node does not answer to host '{name}'; add it to MESH_API_ALLOWED_HOSTS"
            ),
        )
        .into_response();
    }
    if let Some(origin) = request.headers().get(ORIGIN) {
        let origin = origin.to_str().unwrap_or_default();
        let own = ["http://", "https://"].iter().any(|scheme| {
            origin
                .strip_prefix(scheme)
                .is_some_and(|rest| host.is_some_and(|host| rest.eq_ignore_ascii_case(host)))
        });
        let listed = config.allowed_origins.iter().any(|allowed| allowed.eq_ignore_ascii_case(origin));
        if !(own || listed) {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                format!("Forbidden: pages from '{origin}' may not use this node; add the origin to MESH_API_ALLOWED_ORIGINS"),
            )
            .into_response();
        }
    }
    next.run(request).await
}

/// The name part of a `Host` header: without the port, brackets kept for IPv6.
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').and_then(|end| host.get(..=end)).unwrap_or(host);
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::http::Request;
    use axum::routing::get;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    async fn call(router: Router, path: &str) -> (StatusCode, serde_json::Value) {
        let response =
            router.oneshot(Request::builder().uri(path).body(Body::empty()).unwrap()).await.unwrap();
        let status = response.status();
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).expect("an envelope"))
    }

    async fn boom() -> &'static str {
        panic!("a handler bug")
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_a_500_envelope() {
        let router = Router::new().route("/boom", get(boom)).layer(axum::middleware::from_fn(observe));
        let (status, body) = call(router, "/boom").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            body,
            serde_json::json!({"success": false, "data": null, "error": "Internal server error"})
        );
    }

    #[tokio::test]
    async fn plain_error_responses_are_wrapped_and_keep_their_headers() {
        let router = Router::new()
            .route(
                "/teapot",
                get(|| async { (StatusCode::IM_A_TEAPOT, [("x-kept", "yes")], "short and stout") }),
            )
            .route("/fine", get(|| async { "plain text is fine on success" }))
            .layer(axum::middleware::from_fn(observe));
        let response = router
            .clone()
            .oneshot(Request::builder().uri("/teapot").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.headers()["x-kept"], "yes");
        let (status, body) = call(router.clone(), "/teapot").await;
        assert_eq!(status, StatusCode::IM_A_TEAPOT);
        assert_eq!(body["success"], false);
        assert_eq!(body["error"], "I'm a teapot");
        // Without a fallback of our own, axum's plain 404 is wrapped too.
        let (status, body) = call(router.clone(), "/missing").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["error"], "Not found: no such endpoint");
        let response =
            router.oneshot(Request::builder().uri("/fine").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }

    #[test]
    fn host_names_lose_their_port() {
        assert_eq!(host_name("localhost:8080"), "localhost");
        assert_eq!(host_name("127.0.0.1"), "127.0.0.1");
        assert_eq!(host_name("[::1]:8080"), "[::1]");
        assert_eq!(host_name("evil.example:80"), "evil.example");
    }
}
