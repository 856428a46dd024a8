//! The OpenAPI contract against the code: the document served at `/api/openapi.json` lists
//! every route, and what the real server answers (success and error alike) matches the schema
//! it documents for that status. A handler that changes its answer without its annotation, or
//! an annotation that promises what the handler does not send, fails here.

use mesh_api::{ApiState, OPENAPI_PATH};
use reqwest::Method;
use serde_json::Value;

use crate::support::{Server, get, metrics_handle, node, price, publish, send, with_provider};

/// The schema documented for `method path` answering `status`.
fn documented(contract: &Value, method: &str, path: &str, status: u16) -> Value {
    let operation = &contract["paths"][path][method];
    assert!(operation.is_object(), "{method} {path} is not in the contract");
    let response = &operation["responses"][status.to_string()];
    assert!(response.is_object(), "{method} {path} answered {status}, which the contract does not list");
    let schema = response["content"]
        .as_object()
        .and_then(|content| content.values().next())
        .map(|media| media["schema"].clone())
        .unwrap_or(Value::Bool(true));
    // The document's components beside the schema, so that its references resolve (and a
    // dangling one fails).
    let mut rooted = serde_json::json!({"allOf": [schema]});
    rooted["components"] = contract["components"].clone();
    rooted
}

fn assert_matches(contract: &Value, method: &str, path: &str, status: u16, body: &Value) {
    let schema = documented(contract, method, path, status);
    let validator = jsonschema::draft202012::new(&schema)
        .unwrap_or_else(|error| panic!("the schema of {method} {path} {status} is invalid: {error}"));
    let errors: Vec<String> = validator.iter_errors(body).map(|error| error.to_string()).collect();
    assert!(errors.is_empty(), "{method} {path} answered {status} with {body}, not its schema: {errors:?}");
}

#[tokio::test]
async fn the_contract_is_openapi_3_1_and_lists_every_route() {
    let server = Server::start(ApiState::builder(node().await).build()).await;
    let (status, contract) = get(&server.url(OPENAPI_PATH)).await;
    assert_eq!(status, 200);
    assert!(contract["openapi"].as_str().is_some_and(|version| version.starts_with("3.1")), "{contract}");
    let mut paths: Vec<&str> = contract["paths"].as_object().unwrap().keys().map(String::as_str).collect();
    paths.sort_unstable();
    assert_eq!(
        paths,
        [
            "/",
            "/api/mesh/network/status",
            "/api/mesh/prices",
            "/api/mesh/prices/{asset}",
            "/api/mesh/provider/disable",
            "/api/mesh/provider/enable",
            "/api/mesh/provider/status",
            OPENAPI_PATH,
            "/health",
            "/metrics",
            "/ready",
            "/ws",
        ]
    );
    assert_eq!(contract, serde_json::to_value(mesh_api::openapi()).unwrap(), "served as generated");
    let scheme = &contract["components"]["securitySchemes"]["admin_token"];
    assert_eq!((scheme["type"].as_str(), scheme["scheme"].as_str()), (Some("http"), Some("bearer")));
}

#[tokio::test]
async fn every_answer_matches_the_schema_documented_for_its_status() {
    let service = node().await;
    publish(&service, vec![price("SOL", 12_345), price("ETH", 234_567)]).await;
    let state = with_provider(&service).metrics(metrics_handle()).build();
    state.set_ready(true);
    let server = Server::start(state).await;
    let contract = serde_json::to_value(mesh_api::openapi()).unwrap();
    let client = reqwest::Client::new();

    let reads: [(&str, &str, u16); 10] = [
        ("/api/mesh/prices", "/api/mesh/prices", 200),
        ("/api/mesh/prices/sol", "/api/mesh/prices/{asset}", 200),
        ("/api/mesh/prices/SOL?quotes=true", "/api/mesh/prices/{asset}", 200),
        ("/api/mesh/prices/NOPE", "/api/mesh/prices/{asset}", 404),
        ("/api/mesh/prices/SOL?quotes=maybe", "/api/mesh/prices/{asset}", 400),
        ("/api/mesh/network/status", "/api/mesh/network/status", 200),
        ("/api/mesh/provider/status", "/api/mesh/provider/status", 200),
        ("/health", "/health", 200),
        ("/ready", "/ready", 200),
        ("/ws?since=oops", "/ws", 400),
    ];
    for (url, path, expected) in reads {
        let (status, body) = get(&server.url(url)).await;
        assert_eq!(status, expected, "GET {url}: {body}");
        assert_matches(&contract, "get", path, status, &body);
    }

    let enable = "/api/mesh/provider/enable";
    let writes: [(reqwest::RequestBuilder, &str, u16); 4] = [
        (client.post(server.url(enable)).json(&serde_json::json!({"api_key": "wrong"})), enable, 401),
        (client.post(server.url(enable)).json(&serde_json::json!({"key": 1})), enable, 400),
        (client.post(server.url(enable)).body("{}"), enable, 415),
        (
            client.request(Method::POST, server.url("/api/mesh/provider/disable")),
            "/api/mesh/provider/disable",
            200,
        ),
    ];
    for (request, path, expected) in writes {
        let (status, body) = send(request).await;
        assert_eq!(status, expected, "POST {path}: {body}");
        assert_matches(&contract, "post", path, status, &body);
    }

    let metrics = client.get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    let documented_type = contract["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
        .as_object()
        .and_then(|content| content.keys().next().cloned());
    let served_type = metrics.headers()["content-type"].to_str().unwrap().to_owned();
    assert_eq!(documented_type.as_deref(), Some(served_type.as_str()));
}
