//! `mesh-client` against real nodes: one provider, two consumers, a client following both;
//! one consumer is killed mid-stream and the client keeps every price the survivor delivered,
//! with no gap reported, since the survivor covered the outage.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt as _;
use mesh_client::{ClientConfig, ClientEvent, MeshClient};
use mesh_types::{Asset, FeedFrame, FeedMessage, Timestamp};
use support::start_with;
use tokio_tungstenite::tungstenite::Message;

type Seen = BTreeSet<(Asset, Timestamp)>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_of_two_nodes_misses_nothing_when_one_is_killed() {
    let provider = start_with(None, &[("MESH_PRICE_SOURCE", "simulated"), ("MESH_ASSETS", "SOL,ETH")]);
    let doomed = start_with(Some(provider.peers), &[]);
    let survivor = start_with(Some(provider.peers), &[]);

    // What the survivor sends a plain feed reader, frame by frame.
    let (mut raw, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", survivor.api)).await.unwrap();
    let observer = tokio::spawn(async move {
        let mut seen = Seen::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(7);
        while let Ok(Some(Ok(message))) = tokio::time::timeout_at(deadline, raw.next()).await {
            let Message::Text(text) = message else { continue };
            if let Ok(FeedFrame { message: FeedMessage::PriceMeshUpdate(prices), .. }) =
                serde_json::from_str(&text)
            {
                seen.extend(prices.values().map(|price| (price.price.asset, price.price.timestamp)));
            }
        }
        seen
    });

    let config =
        ClientConfig::new([format!("http://{}", doomed.api), format!("http://{}", survivor.api)]).unwrap();
    let mut client = MeshClient::connect(config);
    let mut delivered = Seen::new();
    let mut events = Vec::new();
    let collect = |event: &ClientEvent, delivered: &mut Seen| match event {
        ClientEvent::Initial { prices, .. } => {
            delivered.extend(prices.values().map(|price| (price.price.asset, price.price.timestamp)));
        }
        ClientEvent::Update(price) => {
            delivered.insert((price.price.asset, price.price.timestamp));
        }
        _ => {}
    };
    // Both connections up and prices flowing.
    let mut connected = 0;
    while connected < 2 || delivered.len() < 4 {
        let event = tokio::time::timeout(Duration::from_secs(20), client.next()).await.unwrap().unwrap();
        connected += usize::from(matches!(event, ClientEvent::Connected { .. }));
        collect(&event, &mut delivered);
        events.push(event);
    }

    drop(doomed);
    // Keep receiving from the survivor while the observer watches it too, and a little longer,
    // so whatever the observer saw last has reached the client.
    let until = tokio::time::Instant::now() + Duration::from_secs(8);
    while let Ok(Some(event)) = tokio::time::timeout_at(until, client.next()).await {
        collect(&event, &mut delivered);
        events.push(event);
    }
    let seen_by_observer = observer.await.unwrap();

    assert!(
        events.iter().any(|event| matches!(event, ClientEvent::Disconnected { .. })),
        "the killed node's connection dropped"
    );
    assert!(
        !events.iter().any(|event| matches!(event, ClientEvent::Gap { .. })),
        "no gap: the survivor was connected throughout"
    );
    assert!(seen_by_observer.len() >= 6, "the survivor kept delivering: {seen_by_observer:?}");
    // Every price the survivor delivered since the client's first snapshot is in the client's
    // stream: from the survivor, or first from the other node while it lived.
    let first_delivered =
        |asset: &Asset| delivered.iter().filter(|(a, _)| a == asset).map(|(_, at)| *at).min();
    let missed: Vec<_> = seen_by_observer
        .iter()
        .filter(|(asset, at)| first_delivered(asset).is_some_and(|first| *at > first))
        .filter(|price| !delivered.contains(price))
        .collect();
    assert!(missed.is_empty(), "the client missed {missed:?}");
    for asset in ["SOL", "ETH"] {
        assert!(client.latest(&Asset::new(asset).unwrap()).is_some(), "{asset} is in the latest view");
    }
    client.close().await;
}
