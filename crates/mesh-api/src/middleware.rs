//! The layer around every route: counts requests (`mesh_api_requests_total{route,status}`),
//! turns a panicking handler into a 500 envelope instead of a dropped connection, and makes
//! sure every error leaves as the `{success, data, error}` envelope, whatever produced it.

use std::panic::AssertUnwindSafe;

use axum::extract::{MatchedPath, Request};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::FutureExt;

use crate::error::status_error;

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
}
