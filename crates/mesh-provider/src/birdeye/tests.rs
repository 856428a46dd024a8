//! The Birdeye client against a local stand-in server (wiremock): the documented success body,
//! headers and query, every error class Birdeye documents (see `src/birdeye.rs`), retries, and key hygiene.

use std::str::FromStr;

use serde_json::json;
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::*;

const KEY: &str = "test-key-5ecr3t-0123456789";
const USDC_MINT: &str = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v";
const BONK_MINT: &str = "DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263";
const WETH: &str = "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2";

fn asset(symbol: &str) -> Asset {
    Asset::new(symbol).unwrap()
}

fn dec(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap()
}

fn config(base_url: String) -> BirdeyeConfig {
    BirdeyeConfig {
        base_url,
        timeout: Duration::from_millis(500),
        retry_delays: vec![Duration::from_millis(1), Duration::from_millis(2), Duration::from_millis(4)],
        symbols: SymbolTable::default(),
    }
}

fn source(server: &MockServer) -> BirdeyeSource {
    BirdeyeSource::new(ApiKey::new(KEY.into()).unwrap(), config(server.uri())).unwrap()
}

/// A success body as Birdeye documents it.
fn documented_body() -> serde_json::Value {
    json!({
        "data": {
            SOL_MINT: {
                "value": 23.40138801321701,
                "updateUnixTime": 1692181644,
                "updateHumanTime": "2023-08-16T10:27:24",
                "priceChange24h": -6.1098865467031676
            }
        },
        "success": true
    })
}

fn multi_price() -> wiremock::MockBuilder {
    Mock::given(method("GET")).and(path("/defi/multi_price"))
}

async fn requests(server: &MockServer) -> usize {
    server.received_requests().await.map_or(0, |requests| requests.len())
}

fn assert_secret_free(error: &SourceError) {
    assert!(!error.to_string().contains(KEY), "{error}");
    assert!(!format!("{error:?}").contains(KEY), "{error:?}");
}

#[tokio::test]
async fn the_documented_success_body_gives_exact_decimals_and_the_request_is_well_formed() {
    let server = MockServer::start().await;
    multi_price()
        .and(query_param("list_address", SOL_MINT))
        .and(header("accept", "application/json"))
        .and(header("x-chain", "solana"))
        .and(header("X-API-KEY", KEY))
        .respond_with(ResponseTemplate::new(200).set_body_json(documented_body()))
        .expect(1)
        .mount(&server)
        .await;

    let prices = source(&server).fetch(&[asset("SOL")]).await.unwrap();

    assert_eq!(
        prices,
        vec![PriceData {
            asset: asset("SOL"),
            price: dec("23.40138801321701"),
            blockchain: "Solana".into(),
            // The 17-digit literal is more than an f64 holds; the conversion keeps the digits
            // the float carries and drops the binary noise (no "…5535736" tail).
            change_24h: Some(dec("-6.10988654670317")),
        }]
    );
    assert_eq!(prices[0].price.to_string().parse::<f64>().unwrap(), 23.40138801321701);
    let change = prices[0].change_24h.unwrap();
    assert!((change - dec("-6.1098865467031676")).abs() < dec("0.00000000000001"));
}

#[tokio::test]
async fn one_request_per_chain_with_comma_separated_addresses() {
    let server = MockServer::start().await;
    multi_price()
        .and(header("x-chain", "solana"))
        .and(query_param("list_address", format!("{SOL_MINT},{USDC_MINT}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": {
                SOL_MINT: { "value": 150.25, "updateUnixTime": 1, "priceChange24h": 1.5 },
                USDC_MINT: { "value": 0.9999, "updateUnixTime": 1 }
            },
            "success": true
        })))
        .expect(1)
        .mount(&server)
        .await;
    // Birdeye may answer EVM addresses in lower case.
    multi_price()
        .and(header("x-chain", "ethereum"))
        .and(query_param("list_address", WETH))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": { WETH.to_ascii_lowercase(): { "value": 3012.5, "updateUnixTime": 1, "priceChange24h": -0.25 } },
            "success": true
        })))
        .expect(1)
        .mount(&server)
        .await;

    let mut prices =
        source(&server).fetch(&[asset("SOL"), asset("ETH"), asset("USDC"), asset("SOL")]).await.unwrap();
    prices.sort_by_key(|price| price.asset);

    let summary: Vec<_> = prices
        .iter()
        .map(|price| (price.asset.as_str(), price.price, &*price.blockchain, price.change_24h))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("ETH", dec("3012.5"), "Ethereum", Some(dec("-0.25"))),
            ("SOL", dec("150.25"), "Solana", Some(dec("1.5"))),
            ("USDC", dec("0.9999"), "Solana", None),
        ]
    );
    let query = server.received_requests().await.unwrap()[0].url.query().unwrap_or_default().to_owned();
    assert!(query.contains("list_address="), "{query}");
}

#[tokio::test]
async fn unauthorized_and_forbidden_are_an_invalid_key_without_retry() {
    for status in [401, 403] {
        let server = MockServer::start().await;
        multi_price()
            .respond_with(
                ResponseTemplate::new(status)
                    .set_body_json(json!({"success": false, "message": "Unauthorized"})),
            )
            .mount(&server)
            .await;
        let error = source(&server).fetch(&[asset("SOL")]).await.unwrap_err();
        assert_eq!(error, SourceError::InvalidApiKey, "HTTP {status}");
        assert_eq!(error.to_string(), "Invalid API key: authentication failed with Birdeye API");
        assert_eq!(requests(&server).await, 1, "HTTP {status} is not retried");
        assert_secret_free(&error);
    }
}

#[tokio::test]
async fn too_many_requests_is_rate_limited_with_retry_after_and_not_retried() {
    let server = MockServer::start().await;
    multi_price()
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "30"))
        .mount(&server)
        .await;
    let error = source(&server).fetch(&[asset("SOL")]).await.unwrap_err();
    assert_eq!(error, SourceError::RateLimited { retry_after: Some(Duration::from_secs(30)) });
    assert!(error.is_retryable());
    assert_eq!(requests(&server).await, 1);

    let server = MockServer::start().await;
    multi_price().respond_with(ResponseTemplate::new(429)).mount(&server).await;
    let error = source(&server).fetch(&[asset("SOL")]).await.unwrap_err();
    assert_eq!(error, SourceError::RateLimited { retry_after: None });
}

#[tokio::test]
async fn a_huge_retry_after_is_capped() {
    let server = MockServer::start().await;
    multi_price()
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "18446744073709551615"))
        .mount(&server)
        .await;
    let error = source(&server).fetch(&[asset("SOL")]).await.unwrap_err();
    assert_eq!(error, SourceError::RateLimited { retry_after: Some(crate::MAX_RETRY_AFTER) });
}

#[tokio::test]
async fn the_key_never_follows_a_redirect_to_another_host() {
    let elsewhere = MockServer::start().await;
    Mock::given(method("GET")).respond_with(ResponseTemplate::new(200)).mount(&elsewhere).await;
    let server = MockServer::start().await;
    multi_price()
        .respond_with(
            ResponseTemplate::new(302)
                .insert_header("Location", format!("{}/defi/multi_price", elsewhere.uri())),
        )
        .mount(&server)
        .await;
    let error = source(&server).fetch(&[asset("SOL")]).await.unwrap_err();
    assert!(matches!(error, SourceError::Malformed { .. }), "{error}");
    assert_eq!(requests(&elsewhere).await, 0, "the other host never saw the request or the key");
}

#[test]
fn plain_http_is_refused_unless_it_stays_on_this_machine() {
    for base in ["http://public-api.birdeye.so", "http://10.0.0.1:8080"] {
        let error = BirdeyeSource::new(ApiKey::new(KEY.into()).unwrap(), config(base.into())).unwrap_err();
        assert!(error.to_string().contains("in the clear"), "{base}: {error}");
    }
    for base in ["http://127.0.0.1:1", "http://localhost:1", "http://[::1]:1", "https://example.org"] {
        BirdeyeSource::new(ApiKey::new(KEY.into()).unwrap(), config(base.into())).unwrap();
    }
}

#[tokio::test]
async fn a_server_error_then_success_succeeds_after_one_retry() {
    let server = MockServer::start().await;
    multi_price()
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    multi_price()
        .respond_with(ResponseTemplate::new(200).set_body_json(documented_body()))
        .mount(&server)
        .await;

    let prices = source(&server).fetch(&[asset("SOL")]).await.unwrap();

    assert_eq!(prices.len(), 1);
    assert_eq!(prices[0].price, dec("23.40138801321701"));
    assert_eq!(requests(&server).await, 2);
}

#[tokio::test]
async fn persistent_server_errors_are_unavailable_after_three_retries() {
    let server = MockServer::start().await;
    multi_price().respond_with(ResponseTemplate::new(503)).mount(&server).await;

    let error = source(&server).fetch(&[asset("SOL")]).await.unwrap_err();

    assert!(matches!(&error, SourceError::Unavailable { detail } if detail.contains("503")), "{error}");
    assert!(error.is_retryable());
    assert_eq!(requests(&server).await, 4, "one request and three retries");
    assert_secret_free(&error);
}

#[tokio::test]
async fn timeouts_are_retried_then_unavailable() {
    let server = MockServer::start().await;
    multi_price()
        .respond_with(
            ResponseTemplate::new(200).set_body_json(documented_body()).set_delay(Duration::from_secs(2)),
        )
        .mount(&server)
        .await;
    let mut config = config(server.uri());
    config.timeout = Duration::from_millis(50);
    let source = BirdeyeSource::new(ApiKey::new(KEY.into()).unwrap(), config).unwrap();

    let error = source.fetch(&[asset("SOL")]).await.unwrap_err();

    assert!(matches!(&error, SourceError::Unavailable { detail } if detail.contains("timed out")), "{error}");
    assert_eq!(requests(&server).await, 4);
}

#[tokio::test]
async fn connection_errors_are_unavailable() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let source =
        BirdeyeSource::new(ApiKey::new(KEY.into()).unwrap(), config(format!("http://127.0.0.1:{port}")))
            .unwrap();
    let error = source.fetch(&[asset("SOL")]).await.unwrap_err();
    assert!(matches!(error, SourceError::Unavailable { .. }), "{error}");
    assert_secret_free(&error);
}

#[tokio::test]
async fn malformed_json_and_unsuccessful_answers_are_malformed_and_not_retried() {
    let bodies = [
        ResponseTemplate::new(200).set_body_string("{\"data\": {"),
        ResponseTemplate::new(200).set_body_string("<html>gateway</html>"),
        ResponseTemplate::new(200)
            .set_body_json(json!({"success": false, "message": "list_address is invalid"})),
        ResponseTemplate::new(200).set_body_json(json!({"success": true, "data": null})),
        ResponseTemplate::new(200).set_body_json(json!({"success": true, "data": [1, 2]})),
        ResponseTemplate::new(400).set_body_json(json!({"success": false})),
    ];
    for (case, body) in bodies.into_iter().enumerate() {
        let server = MockServer::start().await;
        multi_price().respond_with(body).mount(&server).await;
        let error = source(&server).fetch(&[asset("SOL")]).await.unwrap_err();
        assert!(matches!(error, SourceError::Malformed { .. }), "case {case}: {error}");
        assert!(!error.is_retryable());
        assert_eq!(requests(&server).await, 1, "case {case}");
        assert_secret_free(&error);
    }
}

#[tokio::test]
async fn null_missing_wrongly_shaped_and_non_positive_prices_are_skipped() {
    let server = MockServer::start().await;
    multi_price()
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": {
                SOL_MINT: { "value": 151.5, "updateUnixTime": 1 },
                USDC_MINT: null,
                // BONK is missing altogether.
                "JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN": { "value": 0 },
                "EKpQGSJtjMFqKZ9KQanSqYXRcF8fBopzLHYxdM65zcjm": { "value": -2.5 },
                "4k3Dyjzvzp8eMZWUXbBCjEvwSkkk59S5iCNLY3QrkX6R": { "value": "2.1" },
                "orcaEKTdK7LKz57vaAYr9QeNsVEPfiu6QeMU1kektZE": { "updateUnixTime": 1 }
            },
            "success": true
        })))
        .mount(&server)
        .await;
    let wanted: Vec<_> =
        ["SOL", "USDC", "BONK", "JUP", "WIF", "RAY", "ORCA"].into_iter().map(asset).collect();

    let prices = source(&server).fetch(&wanted).await.unwrap();

    assert_eq!(prices.len(), 1, "{prices:?}");
    assert_eq!((prices[0].asset, prices[0].price), (asset("SOL"), dec("151.5")));
    let received = server.received_requests().await.unwrap();
    let query: Vec<_> = received[0].url.query_pairs().collect();
    assert!(query.iter().any(|(key, value)| key == "list_address" && value.contains(BONK_MINT)));
}

#[tokio::test]
async fn unknown_assets_are_skipped_and_only_unknown_assets_are_an_error() {
    let server = MockServer::start().await;
    multi_price()
        .respond_with(ResponseTemplate::new(200).set_body_json(documented_body()))
        .mount(&server)
        .await;
    let source = source(&server);

    let prices = source.fetch(&[asset("NOSUCHCOIN"), asset("SOL")]).await.unwrap();
    assert_eq!(prices.len(), 1);

    let error = source.fetch(&[asset("NOSUCHCOIN")]).await.unwrap_err();
    assert_eq!(error, SourceError::UnknownAsset { asset: asset("NOSUCHCOIN") });
    assert!(source.fetch(&[]).await.unwrap().is_empty());
    assert_eq!(requests(&server).await, 1, "unknown assets cost no request");
}

#[tokio::test]
async fn a_failing_chain_does_not_hide_the_others_but_a_bad_key_does() {
    let server = MockServer::start().await;
    multi_price()
        .and(header("x-chain", "solana"))
        .respond_with(ResponseTemplate::new(200).set_body_json(documented_body()))
        .mount(&server)
        .await;
    multi_price()
        .and(header("x-chain", "ethereum"))
        .respond_with(ResponseTemplate::new(502))
        .mount(&server)
        .await;
    let prices = source(&server).fetch(&[asset("ETH"), asset("SOL")]).await.unwrap();
    assert_eq!(prices.iter().map(|price| price.asset).collect::<Vec<_>>(), [asset("SOL")]);

    let server = MockServer::start().await;
    multi_price()
        .and(header("x-chain", "ethereum"))
        .respond_with(ResponseTemplate::new(401))
        .mount(&server)
        .await;
    multi_price()
        .and(header("x-chain", "solana"))
        .respond_with(ResponseTemplate::new(200).set_body_json(documented_body()))
        .mount(&server)
        .await;
    let error = source(&server).fetch(&[asset("ETH"), asset("SOL")]).await.unwrap_err();
    assert_eq!(error, SourceError::InvalidApiKey);
    assert_eq!(requests(&server).await, 1, "no further chain is asked with a refused key");
}

#[tokio::test]
async fn validate_makes_one_cheap_price_request() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/defi/price"))
        .and(query_param("address", SOL_MINT))
        .and(header("x-chain", "solana"))
        .and(header("X-API-KEY", KEY))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": { "value": 150.1, "updateUnixTime": 1692181644, "updateHumanTime": "2023-08-16T10:27:24" },
            "success": true
        })))
        .expect(1)
        .mount(&server)
        .await;
    assert_eq!(source(&server).validate().await, Ok(()));

    let server = MockServer::start().await;
    Mock::given(path("/defi/price")).respond_with(ResponseTemplate::new(401)).mount(&server).await;
    assert_eq!(source(&server).validate().await, Err(SourceError::InvalidApiKey));
    assert_eq!(requests(&server).await, 1);
}

#[tokio::test]
async fn the_key_is_sent_only_in_its_header_and_never_shown() {
    let server = MockServer::start().await;
    multi_price().respond_with(ResponseTemplate::new(500)).mount(&server).await;
    let source = source(&server);

    let shown = format!("{source:?}");
    assert!(!shown.contains(KEY), "{shown}");
    assert!(shown.contains("ApiKey(***)"), "{shown}");
    assert!(!format!("{:?}", source.config()).contains(KEY));

    let error = source.fetch(&[asset("SOL")]).await.unwrap_err();
    assert_secret_free(&error);
    for request in server.received_requests().await.unwrap() {
        assert!(!request.url.as_str().contains(KEY), "the key never goes in the URL");
        assert_eq!(request.headers.get("x-api-key").and_then(|value| value.to_str().ok()), Some(KEY));
    }
}

#[test]
fn bad_base_urls_are_refused() {
    for base in ["not a url", "ftp://example.com", ""] {
        let error = BirdeyeSource::new(ApiKey::new(KEY.into()).unwrap(), config(base.into())).unwrap_err();
        assert!(matches!(error, SourceError::InvalidConfig { .. }), "{base:?}: {error}");
    }
    let source =
        BirdeyeSource::new(ApiKey::new(KEY.into()).unwrap(), config("http://127.0.0.1:1/".into())).unwrap();
    assert_eq!(source.base_url, "http://127.0.0.1:1");
    assert_eq!(source.name(), "birdeye");
    assert_eq!(BirdeyeConfig::default().base_url, "https://public-api.birdeye.so");
    assert_eq!(BirdeyeConfig::default().retry_delays.len(), 3);
}
