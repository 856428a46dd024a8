//! Every error is the envelope with the right status: malformed JSON, a missing field, the
//! wrong content type, an oversized body, an unknown route, a wrong method, a request to `/ws`
//! that is no upgrade, and the admin token check. Driven through the router with `oneshot`.

use axum::body::Body;
use axum::http::{Method, Request, header};
use http_body_util::BodyExt;
use mesh_api::{ApiConfig, ApiState};
use serde_json::Value;
use tower::ServiceExt;

use crate::support::{GOOD_KEY, error_message, node, with_provider};

/// Sends `request` to a fresh router over `state`; the status, headers and parsed body.
async fn call(state: &ApiState, request: Request<Body>) -> (u16, axum::http::HeaderMap, Value) {
    let response = mesh_api::router(state.clone()).oneshot(request).await.expect("infallible");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.expect("body").to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|error| panic!("JSON body ({error}): {}", String::from_utf8_lossy(&bytes)));
    (status, headers, body)
}

fn post(path: &str, content_type: Option<&str>, body: impl Into<Body>) -> Request<Body> {
    let mut request = Request::builder().method(Method::POST).uri(path);
    if let Some(content_type) = content_type {
        request = request.header(header::CONTENT_TYPE, content_type);
    }
    request.body(body.into()).unwrap()
}

fn get(path: &str) -> Request<Body> {
    Request::builder().uri(path).body(Body::empty()).unwrap()
}

const ENABLE: &str = "/api/mesh/provider/enable";
const JSON: Option<&str> = Some("application/json");

#[tokio::test]
async fn bad_request_bodies_get_envelopes_with_the_right_status() {
    let service = node().await;
    let state = with_provider(&service).build();

    let (status, _, body) = call(&state, post(ENABLE, JSON, "{\"api_key\": ")).await;
    assert_eq!(status, 400);
    assert!(error_message(&body).starts_with("Invalid request body"), "{body}");

    let (status, _, body) = call(&state, post(ENABLE, JSON, "{}")).await;
    assert_eq!((status, error_message(&body)), (400, "Invalid request body: missing field `api_key`"));

    // A key sent as a bare JSON string is refused without being repeated.
    let (status, _, body) = call(&state, post(ENABLE, JSON, "\"sneaky-key-1234\"")).await;
    assert_eq!(status, 400);
    assert!(!body.to_string().contains("sneaky-key-1234"), "{body}");

    let (status, _, body) = call(&state, post(ENABLE, Some("text/plain"), "{\"api_key\": \"k\"}")).await;
    assert_eq!(status, 415);
    assert!(error_message(&body).contains("application/json"), "{body}");

    let (status, _, body) = call(&state, post(ENABLE, None, "{\"api_key\": \"k\"}")).await;
    assert_eq!(status, 415, "{body}");
    error_message(&body);

    let oversized = format!("{{\"api_key\": \"{}\"}}", "k".repeat(ApiConfig::DEFAULT_MAX_BODY_BYTES));
    let (status, _, body) = call(&state, post(ENABLE, JSON, oversized)).await;
    assert_eq!(status, 413);
    assert!(error_message(&body).contains("16384 bytes"), "{body}");
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_get_envelopes() {
    let state = ApiState::builder(node().await).build();

    let (status, _, body) = call(&state, get("/no/such/thing")).await;
    assert_eq!(status, 404);
    error_message(&body);
    let (status, _, body) = call(&state, get("/api/mesh/prices/SOL/extra")).await;
    assert_eq!(status, 404);
    error_message(&body);

    let (status, headers, body) = call(&state, get(ENABLE)).await;
    assert_eq!(status, 405);
    assert!(error_message(&body).contains("Method not allowed"), "{body}");
    assert_eq!(headers.get(header::ALLOW).map(|v| v.to_str().unwrap()), Some("POST"));
    let (status, _, body) = call(&state, post("/api/mesh/prices", JSON, "{}")).await;
    assert_eq!(status, 405);
    error_message(&body);

    // `/ws` without the upgrade handshake.
    let (status, _, body) = call(&state, get("/ws")).await;
    assert!((400..500).contains(&status), "{status}");
    error_message(&body);
    let (status, _, body) = call(&state, get("/ws?assets=S%20OL")).await;
    assert_eq!(status, 400);
    assert!(error_message(&body).starts_with("Invalid asset filter"), "{body}");
}

#[tokio::test]
async fn provider_control_requires_the_admin_token_when_one_is_set() {
    let service = node().await;
    let config = ApiConfig { admin_token: Some("admin-s3cret".into()), ..ApiConfig::default() };
    let state = with_provider(&service).config(config).build();
    let disable = |authorization: Option<&str>| {
        let mut request = Request::builder().method(Method::POST).uri("/api/mesh/provider/disable");
        if let Some(value) = authorization {
            request = request.header(header::AUTHORIZATION, value);
        }
        request.body(Body::empty()).unwrap()
    };

    for authorization in
        [None, Some("Bearer wrong"), Some("Bearer "), Some("Basic admin-s3cret"), Some("admin-s3cret")]
    {
        let (status, headers, body) = call(&state, disable(authorization)).await;
        assert_eq!(status, 401, "{authorization:?}");
        assert!(error_message(&body).contains("admin token"), "{body}");
        assert_eq!(headers.get(header::WWW_AUTHENTICATE).unwrap(), "Bearer");
        assert!(!body.to_string().contains("admin-s3cret"));
    }
    let (status, _, body) = call(&state, disable(Some("Bearer admin-s3cret"))).await;
    assert_eq!(status, 200, "{body}");

    // The token is checked before the body: no key is looked at without it.
    let request = post(ENABLE, JSON, format!("{{\"api_key\": \"{GOOD_KEY}\"}}"));
    let (status, _, _) = call(&state, request).await;
    assert_eq!(status, 401);
    assert!(!state.service().provider_status().enabled);
    let mut request = post(ENABLE, JSON, format!("{{\"api_key\": \"{GOOD_KEY}\"}}"));
    request.headers_mut().insert(header::AUTHORIZATION, "bearer admin-s3cret".parse().unwrap());
    let (status, _, body) = call(&state, request).await;
    assert_eq!(status, 200, "{body}");
    assert!(state.service().provider_status().enabled);

    // Reading needs no token.
    let (status, _, _) = call(&state, get("/api/mesh/provider/status")).await;
    assert_eq!(status, 200);
}
