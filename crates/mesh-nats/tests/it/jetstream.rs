//! With a stream configured, a subscriber that arrives after the prices were published still
//! gets the newest price of each asset, and it verifies.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use futures::StreamExt;
use mesh_nats::{NatsBridge, NatsConfig, network_subjects, subject, verify_message, verify_stream_message};
use mesh_transport::MemoryNetwork;
use mesh_types::Asset;
use mesh_types::rust_decimal::Decimal;

use crate::support::{eventually, fast_config, nats_url, node, payload_price, unique_network, update};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_subscriber_gets_the_newest_price_of_each_asset() {
    let Some(url) = nats_url("a_late_subscriber_gets_the_newest_price_of_each_asset") else { return };
    let network = unique_network();
    let stream_name = format!("PRICEMESH_TEST_{}", uuid::Uuid::new_v4().simple());
    let _cleanup = DeleteStream { url: url.clone(), name: stream_name.clone() };
    let mesh = MemoryNetwork::new();
    let provider = node(&mesh, &network, 1, &[]).await;
    let config = NatsConfig { stream: Some(stream_name.clone()), ..fast_config(&url) };
    let bridge = NatsBridge::start(config, &provider).await.expect("the bridge starts");

    // The node's own updates are bridged too: five prices, SOL three times.
    let rounds: [&[(&str, i64)]; 4] =
        [&[("SOL", 10_000), ("BTC", 5_000_000)], &[("SOL", 10_100)], &[("ETH", 300_000)], &[("SOL", 10_200)]];
    for round in rounds {
        provider.publish(update(&provider, round)).await.unwrap();
    }
    assert!(
        eventually(Duration::from_secs(5), async || bridge.stats().published == 5).await,
        "the stream acknowledges every price: {:?}",
        bridge.stats()
    );
    bridge.shutdown().await;

    let client = async_nats::connect(&url).await.expect("the test connects to NATS");
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream(&stream_name).await.expect("the bridge created the stream");
    let info = stream.info().await.unwrap().clone();
    assert_eq!(info.config.subjects, [network_subjects(&network)]);
    assert_eq!(info.config.max_messages_per_subject, 1);
    assert_eq!(info.state.messages, 3, "one message per asset");

    let sol = stream
        .get_last_raw_message_by_subject(&subject(&network, &Asset::new("SOL").unwrap()))
        .await
        .expect("SOL's newest price is stored");
    assert!(verify_stream_message(&sol, &network).is_ok());
    assert_eq!(payload_price(&sol.payload).price, Decimal::new(10_200, 2));

    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            filter_subject: network_subjects(&network),
            deliver_policy: DeliverPolicy::LastPerSubject,
            ..pull::OrderedConfig::default()
        })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut newest = BTreeMap::new();
    while newest.len() < 3 {
        let message = tokio::time::timeout(Duration::from_secs(5), messages.next())
            .await
            .expect("the late subscriber is served in time")
            .expect("the consumer stays open")
            .expect("a message");
        verify_message(&message, &network).expect("a stored price verifies");
        let price = payload_price(&message.payload);
        newest.insert(price.asset.to_string(), price.price);
    }
    let expected: BTreeMap<String, Decimal> = [("BTC", 5_000_000), ("ETH", 300_000), ("SOL", 10_200)]
        .into_iter()
        .map(|(symbol, cents)| (symbol.to_owned(), Decimal::new(cents, 2)))
        .collect();
    assert_eq!(newest, expected, "the newest price of each asset");
}

/// Deletes the test's stream when the test ends, passed or failed, so reruns leave nothing
/// behind.
struct DeleteStream {
    url: String,
    name: String,
}

impl Drop for DeleteStream {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        // Its own runtime on its own thread: drop may run while the test's runtime unwinds.
        let deleted = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async {
                let client = async_nats::connect(&url).await?;
                async_nats::jetstream::new(client).delete_stream(&name).await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            })
        })
        .join();
        if !matches!(deleted, Ok(Ok(()))) {
            eprintln!("could not delete the test stream {}: {deleted:?}", self.name);
        }
    }
}
