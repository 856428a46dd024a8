//! `MESH_NATS_URL` on a real `mesh-node` process: a simulated provider's prices arrive on the
//! real NATS server under `pricemesh.<network>.<asset>`, each verifiable from its header.

mod support;

use std::time::Duration;

use futures::StreamExt;
use mesh_nats::async_nats;
use mesh_types::NetworkId;
use support::start_with;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_publishes_its_accepted_prices_to_nats_with_their_signature() {
    let Some(url) = mesh_testkit::backend_url("MESH_TEST_NATS_URL", "mesh-node NATS bridge") else { return };
    // A network of its own, so no other test's prices share its subjects.
    let name = format!("nats-e2e-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let network = NetworkId::new(&name).unwrap();
    let client = async_nats::connect(url.as_str()).await.expect("NATS answers");
    let mut prices = client.subscribe(mesh_nats::network_subjects(&network)).await.unwrap();
    client.flush().await.unwrap();

    let _provider = start_with(
        None,
        &[
            ("MESH_NETWORK", name.as_str()),
            ("MESH_OPEN_PROVIDERS", "true"),
            ("MESH_PRICE_SOURCE", "simulated"),
            ("MESH_ASSETS", "SOL,ETH"),
            ("MESH_MIN_PEER_CONNECTIONS", "0"),
            ("MESH_NATS_URL", url.as_str()),
        ],
    );
    let mut assets = std::collections::BTreeSet::new();
    while assets.len() < 2 {
        let message = tokio::time::timeout(Duration::from_secs(20), prices.next())
            .await
            .expect("a price within 20 s")
            .expect("the subscription stays open");
        let update = mesh_nats::verify_message(&message, &network).expect("each message verifies");
        assert!(!update.prices.is_empty());
        assets.insert(message.subject.to_string());
    }
    assert_eq!(
        assets.into_iter().collect::<Vec<_>>(),
        [format!("pricemesh.{name}.ETH"), format!("pricemesh.{name}.SOL")]
    );
}
