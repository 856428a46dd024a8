//! A line of three nodes, the provider at one end and the bridge at the other: every price the
//! far end accepts reaches NATS, and each verifies without trusting the bridging node.

use std::collections::BTreeSet;
use std::time::Duration;

use mesh_nats::{NatsBridge, UPDATE_HEADER, VerifyError, network_subjects, verify, verify_message};
use mesh_transport::MemoryNetwork;
use mesh_types::NetworkId;
use mesh_types::rust_decimal::Decimal;

use crate::support::{
    eventually, fast_config, holds, nats_url, next_message, node, payload_price, unique_network, update,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_price_reaching_the_far_end_is_bridged_and_verifies() {
    let Some(url) = nats_url("every_price_reaching_the_far_end_is_bridged_and_verifies") else { return };
    let network = unique_network();
    let mesh = MemoryNetwork::new();
    let a = node(&mesh, &network, 1, &[]).await;
    let b = node(&mesh, &network, 2, &[1]).await;
    let c = node(&mesh, &network, 3, &[2]).await;
    assert!(eventually(Duration::from_secs(5), async || b.network().peer_count() == 2).await, "A-B-C is up");

    let subscriber = async_nats::connect(&url).await.expect("the test connects to NATS");
    let mut prices = subscriber.subscribe(network_subjects(&network)).await.unwrap();
    subscriber.flush().await.unwrap();
    let bridge = NatsBridge::start(fast_config(&url), &c).await.expect("the bridge starts");
    assert!(
        eventually(Duration::from_secs(5), async || bridge.stats().connected).await,
        "the bridge connects"
    );

    // A (two hops away) publishes three updates; C accepts each before the next.
    a.set_provider(true);
    let rounds: [&[(&str, i64)]; 3] =
        [&[("SOL", 12_345), ("BTC", 6_500_000)], &[("ETH", 300_000)], &[("SOL", 12_400)]];
    let mut expected = BTreeSet::new();
    for round in rounds {
        a.publish(update(&a, round)).await.unwrap();
        for (symbol, cents) in round {
            assert!(
                eventually(Duration::from_secs(5), async || holds(&c, symbol, *cents).await).await,
                "C accepts {symbol} at {cents}"
            );
            expected.insert((symbol.to_string(), Decimal::new(*cents, 2)));
        }
    }

    let mut received = Vec::new();
    let mut seen = BTreeSet::new();
    while seen.len() < expected.len() {
        let message = next_message(&mut prices, Duration::from_secs(5)).await;
        let signed = verify_message(&message, &network).expect("every bridged price verifies");
        assert_eq!(signed.source_node_id, a.node_id(), "signed by the provider, not by the bridging node");
        let price = payload_price(&message.payload);
        assert!(seen.insert((price.asset.to_string(), price.price)), "{price:?} bridged once");
        received.push(message);
    }
    assert_eq!(seen, expected, "exactly the prices C accepted");
    assert_eq!(bridge.stats().published, 4);
    assert_eq!(bridge.stats().publish_failures, 0);

    // A subscriber catches a node that alters a price, or lends one price another's signature.
    let sol = received.iter().find(|m| m.subject.ends_with(".SOL")).unwrap();
    let eth = received.iter().find(|m| m.subject.ends_with(".ETH")).unwrap();
    let mut json: serde_json::Value = serde_json::from_slice(&sol.payload).unwrap();
    json["price"] = serde_json::json!("1.00");
    let tampered = async_nats::Message { payload: serde_json::to_vec(&json).unwrap().into(), ..sol.clone() };
    assert!(
        matches!(verify_message(&tampered, &network), Err(VerifyError::PriceNotSigned { .. })),
        "a tampered payload fails"
    );
    let mut borrowed = sol.clone();
    let eth_header = eth.headers.as_ref().unwrap().get(UPDATE_HEADER).unwrap().clone();
    borrowed.headers.as_mut().unwrap().insert(UPDATE_HEADER, eth_header);
    assert!(
        matches!(verify_message(&borrowed, &network), Err(VerifyError::PriceNotSigned { .. })),
        "another update's signature does not cover SOL"
    );
    let headers = sol.headers.as_ref().unwrap();
    assert!(
        matches!(verify(headers, &sol.payload, &NetworkId::mainnet()), Err(VerifyError::BadSignature { .. })),
        "the signature holds on its own network only"
    );

    bridge.shutdown().await;
    assert!(
        c.supervisor().is_healthy(),
        "a bridge stopped on purpose is no failure: {:?}",
        c.supervisor().failures()
    );
    assert!(!c.supervisor().running().contains_key("nats_bridge"), "the bridge task ended");
}
