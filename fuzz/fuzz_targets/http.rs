//! HTTP requests through the API's router, as a client or a web page would send them: any
//! method, path, query and JSON body. Nothing may panic, and every error answers with the JSON
//! envelope (`{"success": false, "error": …}`), never a bare status.
//!
//! The first byte picks the method; the rest is `path?query`, a newline, and the body.

#![no_main]

use std::sync::{Arc, LazyLock};

use axum::body::Body;
use axum::http::{Method, Request, header};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use mesh_api::{ApiState, SourceFactory};
use mesh_provider::{ApiKey, PriceSource, SourceError};
use mesh_service::{MeshPriceService, ServiceConfig};
use mesh_transport::ManagerConfig;
use mesh_types::{Asset, NetworkId, NodeIdentity, PriceData, ProviderConfig};
use tokio::runtime::Runtime;
use tower::ServiceExt;

static RUNTIME: LazyLock<Runtime> =
    LazyLock::new(|| tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime"));

/// A price source that refuses every key, so enabling the provider is tried but never fetches.
struct Refusing;

#[async_trait::async_trait]
impl PriceSource for Refusing {
    async fn fetch(&self, _assets: &[Asset]) -> Result<Vec<PriceData>, SourceError> {
        Err(SourceError::InvalidApiKey)
    }

    async fn validate(&self) -> Result<(), SourceError> {
        Err(SourceError::InvalidApiKey)
    }

    fn name(&self) -> &'static str {
        "refusing"
    }
}

static ROUTER: LazyLock<axum::Router> = LazyLock::new(|| {
    RUNTIME.block_on(async {
        let config = ServiceConfig::new(ManagerConfig::new(NetworkId::devnet()));
        let service = MeshPriceService::builder(Arc::new(NodeIdentity::generate()), config)
            .start()
            .await
            .expect("a node starts");
        service
            .start_provider(ProviderConfig::default(), vec![Asset::new("SOL").expect("a symbol")])
            .expect("a provider");
        let factory: SourceFactory = Arc::new(|_: ApiKey| Ok(Arc::new(Refusing) as Arc<dyn PriceSource>));
        mesh_api::router(ApiState::builder(service).source_factory(factory).build())
    })
});

const METHODS: [Method; 5] = [Method::GET, Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS];

fuzz_target!(|data: &[u8]| {
    let Some((&method, rest)) = data.split_first() else { return };
    let (target, body) = match rest.iter().position(|&byte| byte == b'\n') {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest, &[][..]),
    };
    let method = METHODS[usize::from(method) % METHODS.len()].clone();
    let mut uri = b"/".to_vec();
    uri.extend_from_slice(target);
    // A target hyper would refuse never reaches the router (the server answers it itself).
    let Ok(request) = Request::builder()
        .method(method)
        .uri(uri.as_slice())
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_vec()))
    else {
        return;
    };
    // Outside `block_on`: building the router the first time blocks on the runtime itself.
    let router = ROUTER.clone();
    RUNTIME.block_on(async {
        let response = router.oneshot(request).await.expect("the router is infallible");
        let status = response.status();
        let bytes = response.into_body().collect().await.expect("a body").to_bytes();
        if status.is_client_error() || status.is_server_error() {
            let envelope: serde_json::Value = serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| panic!("a bare {status} without the envelope"));
            assert_eq!(envelope["success"], false, "{status}: {envelope}");
            assert!(envelope["error"].is_object() || envelope["error"].is_string(), "{status}: {envelope}");
        }
    });
});
