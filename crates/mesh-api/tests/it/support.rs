//! Shared test fixtures: a single in-process node, the API served on `127.0.0.1:0`, signed
//! prices, a stand-in price source, a process-wide Prometheus recorder, and a log buffer.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use mesh_api::{ApiConfig, ApiState, ApiStateBuilder, PrometheusHandle, SourceFactory};
use mesh_provider::{ApiKey, PriceSource, SourceError};
use mesh_service::{MeshPriceService, ServiceConfig};
use mesh_transport::ManagerConfig;
use mesh_types::chrono::{DateTime, Utc};
use mesh_types::rust_decimal::Decimal;
use mesh_types::{Asset, NetworkId, NodeIdentity, PriceData, PriceUpdate, ProviderConfig};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The key the stand-in source accepts.
pub(crate) const GOOD_KEY: &str = "good-key-0123456789";
/// A key the stand-in source refuses; it must never appear in an answer or a log line.
pub(crate) const BAD_KEY: &str = "leaky-secret-key-9f8e7d6c5b4a";

/// A node with no peers; its service events are kept for `event_capacity` subscribers' lag.
pub(crate) async fn node_with(configure: impl FnOnce(&mut ServiceConfig)) -> MeshPriceService {
    let mut config = ServiceConfig::new(ManagerConfig::new(NetworkId::devnet()));
    config.status_interval = Duration::from_millis(100);
    configure(&mut config);
    MeshPriceService::builder(Arc::new(NodeIdentity::generate()), config).start().await.expect("node starts")
}

pub(crate) async fn node() -> MeshPriceService {
    node_with(|_| {}).await
}

/// `symbol` at `cents / 100` dollars.
pub(crate) fn price(symbol: &str, cents: i64) -> PriceData {
    let blockchain = if symbol == "ETH" { "Ethereum" } else { "Solana" };
    PriceData {
        asset: Asset::new(symbol).unwrap(),
        price: Decimal::new(cents, 2),
        blockchain: blockchain.into(),
        change_24h: (symbol == "SOL").then(|| Decimal::new(52, 1)),
    }
}

/// A hundred assets (`A000` … `A099`), each at `10 + round / 100` dollars: enough traffic to
/// fill a slow client's buffers.
pub(crate) fn bulk(round: i64) -> Vec<PriceData> {
    (0..100)
        .map(|i| PriceData {
            asset: Asset::new(&format!("A{i:03}")).unwrap(),
            price: Decimal::new(1_000 + round, 2),
            blockchain: "Solana".into(),
            change_24h: None,
        })
        .collect()
}

/// Publishes `prices` on `service`, signed by it, at `at`.
pub(crate) async fn publish_at(service: &MeshPriceService, prices: Vec<PriceData>, at: DateTime<Utc>) {
    let update = PriceUpdate::new_signed(&service.identity(), service.network_id(), prices, 10, at);
    let outcome = service.publish(update).await.expect("publish");
    assert!(matches!(outcome, mesh_gossip::Outcome::Accepted(_)), "the update was accepted: {outcome:?}");
}

/// Publishes `prices` on `service`, signed by it, now.
pub(crate) async fn publish(service: &MeshPriceService, prices: Vec<PriceData>) {
    publish_at(service, prices, Utc::now()).await;
}

/// A stand-in for Birdeye: accepts [`GOOD_KEY`], refuses everything else.
pub(crate) struct StandInSource {
    valid: bool,
}

#[async_trait]
impl PriceSource for StandInSource {
    async fn fetch(&self, _assets: &[Asset]) -> Result<Vec<PriceData>, SourceError> {
        if self.valid { Ok(vec![price("SOL", 15_000)]) } else { Err(SourceError::InvalidApiKey) }
    }

    async fn validate(&self) -> Result<(), SourceError> {
        if self.valid { Ok(()) } else { Err(SourceError::InvalidApiKey) }
    }

    fn name(&self) -> &'static str {
        "stand-in"
    }
}

pub(crate) fn stand_in_factory() -> SourceFactory {
    Arc::new(|key: ApiKey| {
        Ok(Arc::new(StandInSource { valid: key.expose() == GOOD_KEY }) as Arc<dyn PriceSource>)
    })
}

/// The state for `service` with a provider loop (fetching SOL) and the stand-in source.
pub(crate) fn with_provider(service: &MeshPriceService) -> ApiStateBuilder {
    service
        .start_provider(ProviderConfig::default(), vec![Asset::new("SOL").unwrap()])
        .expect("provider config is valid");
    ApiState::builder(service.clone()).source_factory(stand_in_factory())
}

/// The process-wide Prometheus recorder: the global recorder can be set once per process, so
/// every test that reads `/metrics` shares this one.
pub(crate) fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            metrics_exporter_prometheus::PrometheusBuilder::new()
                .install_recorder()
                .expect("no other test installs a global recorder")
        })
        .clone()
}

/// The API served on a free loopback port until dropped or [`Server::stop`]ped.
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Server {
    pub(crate) async fn start(state: ApiState) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::on(listener, state)
    }

    pub(crate) fn on(listener: TcpListener, state: ApiState) -> Self {
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(mesh_api::serve(listener, state, async move {
            let _ = stopped.await;
        }));
        Self { addr, stop: Some(stop), task: Some(task) }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub(crate) fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// Shuts the server down gracefully and returns what `serve` returned.
    pub(crate) async fn stop(mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = self.task.take().expect("stopped once");
        tokio::time::timeout(Duration::from_secs(5), task).await.expect("serve ends").expect("serve task")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// A JSON request's status and body.
pub(crate) async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.expect("request sent");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body read");
    let body = serde_json::from_str(&text).unwrap_or_else(|error| panic!("body is JSON ({error}): {text}"));
    (status, body)
}

pub(crate) async fn get(url: &str) -> (u16, Value) {
    send(reqwest::Client::new().get(url)).await
}

/// Asserts `body` is exactly the error envelope with a message, and returns the message.
pub(crate) fn error_message(body: &Value) -> &str {
    let object = body.as_object().unwrap_or_else(|| panic!("an object: {body}"));
    assert_eq!(object.len(), 3, "success, data and error only: {body}");
    assert_eq!(body["success"], Value::Bool(false), "{body}");
    assert_eq!(body["data"], Value::Null, "{body}");
    body["error"].as_str().unwrap_or_else(|| panic!("error is a string: {body}"))
}

/// Asserts `body` is the success envelope and returns its data.
pub(crate) fn data(body: &Value) -> &Value {
    assert_eq!(body["success"], Value::Bool(true), "{body}");
    assert!(body.get("error").is_none(), "no error on success: {body}");
    &body["data"]
}

/// The sorted keys of a JSON object.
pub(crate) fn keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value
        .as_object()
        .unwrap_or_else(|| panic!("an object: {value}"))
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

/// Log output captured in memory.
#[derive(Clone, Default)]
pub(crate) struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl LogBuffer {
    pub(crate) fn contents(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = Self;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// A default config with a short lag limit for slow-client tests.
pub(crate) fn quick_config() -> ApiConfig {
    ApiConfig { ws_max_lag: Duration::from_millis(300), ..ApiConfig::default() }
}
