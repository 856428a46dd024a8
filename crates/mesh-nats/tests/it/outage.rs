//! NATS goes away behind a proxy: the mesh keeps gossiping, the bridge shows the outage in its
//! counts, and publishing resumes when NATS is back.

use std::time::Duration;

use async_nats::ServerAddr;
use mesh_nats::{NatsBridge, NatsConfig, network_subjects, verify_message};
use mesh_service::MeshPriceService;
use mesh_testkit::TcpProxy;
use mesh_transport::MemoryNetwork;
use mesh_types::NetworkId;
use mesh_types::rust_decimal::Decimal;

use crate::support::{
    eventually, fast_config, holds, nats_url, next_message, node, payload_price, unique_network, update,
};

/// Nodes A and C on one memory mesh, a subscriber on their subjects, and a proxy to NATS
/// for the test to cut or freeze.
struct Setup {
    proxy: TcpProxy,
    network: NetworkId,
    a: MeshPriceService,
    c: MeshPriceService,
    prices: async_nats::Subscriber,
    _subscriber: async_nats::Client,
}

impl Setup {
    async fn start(test: &str) -> Option<Self> {
        let url = nats_url(test)?;
        let server: ServerAddr = url.parse().expect("a NATS URL");
        let proxy = TcpProxy::start(&format!("{}:{}", server.host(), server.port())).await;
        let network = unique_network();
        let mesh = MemoryNetwork::new();
        let a = node(&mesh, &network, 1, &[]).await;
        let c = node(&mesh, &network, 2, &[1]).await;
        assert!(
            eventually(Duration::from_secs(5), async || c.network().peer_count() == 1).await,
            "A-C is up"
        );
        let subscriber = async_nats::connect(&url).await.expect("the test connects to NATS");
        let prices = subscriber.subscribe(network_subjects(&network)).await.unwrap();
        subscriber.flush().await.unwrap();
        Some(Self { proxy, network, a, c, prices, _subscriber: subscriber })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_never_holds_up_gossip_and_publishing_resumes() {
    let Some(Setup { proxy, network, a, c, mut prices, _subscriber }) =
        Setup::start("an_outage_never_holds_up_gossip_and_publishing_resumes").await
    else {
        return;
    };
    // A small client buffer, so the outage outlasts it within a few prices.
    let config = NatsConfig {
        client_capacity: 4,
        publish_timeout: Duration::from_millis(300),
        ..fast_config(&format!("nats://{}", proxy.addr()))
    };
    let bridge = NatsBridge::start(config, &c).await.expect("the bridge starts");
    assert!(
        eventually(Duration::from_secs(5), async || bridge.stats().connected).await,
        "the bridge connects"
    );
    a.publish(update(&a, &[("SOL", 10_000)])).await.unwrap();
    let first = next_message(&mut prices, Duration::from_secs(5)).await;
    assert!(verify_message(&first, &network).is_ok());

    proxy.cut();
    assert!(
        eventually(Duration::from_secs(5), async || !bridge.stats().connected).await,
        "the connected gauge shows the outage"
    );
    for cents in 10_001..=10_012 {
        a.publish(update(&a, &[("SOL", cents)])).await.unwrap();
        assert!(
            eventually(Duration::from_secs(2), async || holds(&c, "SOL", cents).await).await,
            "C keeps receiving A's prices during the outage ({cents})"
        );
    }
    assert!(
        eventually(Duration::from_secs(5), async || bridge.stats().publish_failures > 0).await,
        "prices beyond the client's buffer are dropped and counted: {:?}",
        bridge.stats()
    );
    assert_eq!(bridge.stats().dropped, 0, "the bridge kept up with the node: it never waited on NATS");

    proxy.restore().await;
    assert!(
        eventually(Duration::from_secs(5), async || bridge.stats().connected).await,
        "the bridge reconnects"
    );
    let published = bridge.stats().published;
    a.publish(update(&a, &[("SOL", 20_000)])).await.unwrap();
    let resumed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let message = next_message(&mut prices, Duration::from_secs(5)).await;
            if payload_price(&message.payload).price == Decimal::new(20_000, 2) {
                return message;
            }
        }
    })
    .await
    .expect("the price published after the outage reaches NATS");
    assert!(verify_message(&resumed, &network).is_ok());
    assert!(bridge.stats().published > published, "publishing counts again");
    bridge.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_server_is_noticed_and_never_holds_up_gossip() {
    let Some(Setup { proxy, network, a, c, mut prices, _subscriber }) =
        Setup::start("a_silent_server_is_noticed_and_never_holds_up_gossip").await
    else {
        return;
    };
    let config = NatsConfig {
        client_capacity: 2,
        publish_timeout: Duration::from_millis(300),
        ping_interval: Duration::from_millis(200),
        ..fast_config(&format!("nats://{}", proxy.addr()))
    };
    let bridge = NatsBridge::start(config, &c).await.expect("the bridge starts");
    assert!(
        eventually(Duration::from_secs(5), async || bridge.stats().connected).await,
        "the bridge connects"
    );

    // The connection stays open but nothing crosses it, as when the server's machine loses
    // power: the client notices from its unanswered pings, and meanwhile the bridge must not
    // wait on it.
    proxy.freeze();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut cents = 30_000;
    while bridge.stats().publish_failures == 0 || bridge.stats().connected {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the silence shows in the counts: {:?}",
            bridge.stats()
        );
        cents += 1;
        a.publish(update(&a, &[("SOL", cents)])).await.unwrap();
        assert!(
            eventually(Duration::from_secs(2), async || holds(&c, "SOL", cents).await).await,
            "C keeps receiving A's prices while NATS is silent ({cents})"
        );
    }
    assert_eq!(bridge.stats().dropped, 0, "the bridge kept up with the node: {:?}", bridge.stats());

    proxy.thaw();
    assert!(
        eventually(Duration::from_secs(5), async || bridge.stats().connected).await,
        "the bridge reconnects"
    );
    a.publish(update(&a, &[("SOL", 40_000)])).await.unwrap();
    let resumed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let message = next_message(&mut prices, Duration::from_secs(5)).await;
            if payload_price(&message.payload).price == Decimal::new(40_000, 2) {
                return message;
            }
        }
    })
    .await
    .expect("the price published after the silence reaches NATS");
    assert!(verify_message(&resumed, &network).is_ok());
    bridge.shutdown().await;
}
