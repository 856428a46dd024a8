//! Strangers against a real `mesh-node` process: a [`HostilePeer`] completes a genuine Noise
//! session and `Hello` under a throwaway key, then sends what an attacker would. After each
//! attack the node still serves, and what it serves is only what it should.
//!
//! SECURITY.md maps each attack class to the test that covers it; the unit and engine tests
//! cover the same classes one layer down.

use std::sync::Arc;
use std::time::Duration;

use mesh_testkit::HostilePeer;
use mesh_types::chrono::{TimeDelta, Utc};
use mesh_types::rust_decimal::Decimal;
use mesh_types::{
    Asset, Goodbye, GoodbyeReason, LazyIds, MAX_LAZY_IDS, MeshMessage, MessageId, NetworkId, NodeIdentity,
    PriceData, Request,
};
use serde_json::Value;

mod support;

use support::{Node, get, start_with, until};

/// Long enough for a node to act on what it was sent, short enough to keep the suite quick.
const SETTLE: Duration = Duration::from_secs(3);

/// A devnet node with no price source and no peers but the test's.
fn target() -> Node {
    start_with(None, &[("MESH_MIN_PEER_CONNECTIONS", "0")])
}

/// `symbol` at `price` (a decimal string).
fn quote(symbol: &str, price: &str) -> PriceData {
    PriceData {
        asset: Asset::new(symbol).unwrap(),
        price: price.parse::<Decimal>().unwrap(),
        blockchain: "Solana".into(),
        change_24h: None,
    }
}

async fn join(node: &Node) -> HostilePeer {
    HostilePeer::join(node.peers, Arc::new(NodeIdentity::generate()), NetworkId::devnet())
        .await
        .expect("the stranger joins")
}

/// Whether `node` serves a price for `symbol`.
async fn serves(client: &reqwest::Client, node: &Node, symbol: &str) -> bool {
    get(client, node, &format!("/api/mesh/prices/{symbol}")).await.is_some_and(|body| body["success"] == true)
}

/// Waits until `node` serves `symbol`, which a genuine update sent after an attack proves the
/// node has read everything the attacker sent before it.
async fn until_served(client: &reqwest::Client, node: &Node, symbol: &str) -> Value {
    until(client, node, &format!("/api/mesh/prices/{symbol}"), |body| body["success"] == true).await
}

async fn assert_healthy(client: &reqwest::Client, node: &Node) {
    let response = client.get(format!("http://{}/health", node.api)).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200, "{}", response.text().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_signatures_get_the_stranger_banned_by_key_while_others_are_served() {
    let node = target();
    let client = reqwest::Client::new();
    let mut attacker = join(&node).await;
    let identity = Arc::clone(attacker.identity());
    // 50 points each against a threshold of 100, less a point a second of decay: the third
    // one bans.
    for _ in 0..3 {
        attacker.send(attacker.forged(vec![quote("SOL", "150")], Utc::now())).await.unwrap();
    }
    let (_, closed) = attacker.drain(SETTLE).await;
    assert!(closed, "bad signatures past the ban threshold: the node hangs up");
    assert!(!serves(&client, &node, "SOL").await, "a forged price is never served");

    // The key is proven in the handshake; the node then says why it hangs up.
    if let Ok(mut again) = HostilePeer::join(node.peers, identity, NetworkId::devnet()).await {
        let (said, closed) = again.drain(SETTLE).await;
        assert!(closed, "the banned key cannot come back on a new connection");
        let banned = MeshMessage::Goodbye(Goodbye { reason: GoodbyeReason::Banned });
        assert!(said.contains(&banned), "the node names the ban: {said:?}");
    }

    let honest = join(&node).await;
    honest.send(honest.signed(vec![quote("ETH", "3000")], Utc::now())).await.unwrap();
    until_served(&client, &node, "ETH").await;
    assert_healthy(&client, &node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_signed_for_another_network_or_misdated_are_not_served() {
    let node = target();
    let client = reqwest::Client::new();
    let attacker = join(&node).await;
    let now = Utc::now();
    let testnet = NetworkId::new("testnet").unwrap();
    // A genuine testnet update replayed on devnet.
    attacker.send(attacker.signed_for(&testnet, vec![quote("XNET", "1")], now)).await.unwrap();
    // A minute ahead: it would pin the price until the clock caught up.
    attacker.send(attacker.signed(vec![quote("FUTURE", "1")], now + TimeDelta::seconds(60))).await.unwrap();
    // Ten minutes old: past the maximum age, a replay after the seen cache forgot it.
    attacker.send(attacker.signed(vec![quote("OLD", "1")], now - TimeDelta::seconds(600))).await.unwrap();
    // Before PostgreSQL's range.
    let ancient = now - TimeDelta::days(365 * 60);
    attacker.send(attacker.signed(vec![quote("ANCIENT", "1")], ancient)).await.unwrap();
    attacker.send(attacker.signed(vec![quote("GOOD", "1")], now)).await.unwrap();

    until_served(&client, &node, "GOOD").await;
    for symbol in ["XNET", "FUTURE", "OLD", "ANCIENT"] {
        assert!(!serves(&client, &node, symbol).await, "{symbol} was served");
    }
    assert_healthy(&client, &node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_quoting_1e_28_beside_150_leaves_the_node_serving() {
    let node = target();
    let client = reqwest::Client::new();
    let honest = join(&node).await;
    honest.send(honest.signed(vec![quote("SOL", "150")], Utc::now())).await.unwrap();
    until_served(&client, &node, "SOL").await;

    let poisoner = join(&node).await;
    let tiny = "0.0000000000000000000000000001";
    poisoner.send(poisoner.signed(vec![quote("SOL", tiny)], Utc::now())).await.unwrap();
    // Both quotes count (an open devnet, quorum 1): the median of two, and a spread beyond
    // any discrepancy threshold, computed without overflow.
    let both = until(&client, &node, "/api/mesh/prices/SOL", |body| body["data"]["providers"] == 2).await;
    assert_eq!(both["data"]["price"], "75", "{both}");
    assert_eq!(both["data"]["spread"], "1000000000", "the largest spread reported: {both}");

    // The event loop survived the discrepancy check: it still takes updates.
    honest.send(honest.signed(vec![quote("SOL", "151")], Utc::now())).await.unwrap();
    until(&client, &node, "/api/mesh/prices/SOL", |body| body["data"]["price"] == "75.5").await;
    assert_healthy(&client, &node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_requests_gets_a_bounded_number_of_answers_then_a_ban() {
    let node = target();
    let client = reqwest::Client::new();
    let mut attacker = join(&node).await;
    attacker.send(attacker.signed(vec![quote("SOL", "150")], Utc::now())).await.unwrap();
    until_served(&client, &node, "SOL").await;

    let request = Request { assets: vec![Asset::new("SOL").unwrap()] };
    let mut sent = 0;
    for _ in 0..300 {
        if attacker.send(MeshMessage::Request(request.clone())).await.is_err() {
            break;
        }
        sent += 1;
    }
    let (received, closed) = attacker.drain(SETTLE).await;
    let answers = received.iter().filter(|message| matches!(message, MeshMessage::PriceUpdate(_))).count();
    // A burst of 16 control messages, one more a second; the rest cost a point each.
    assert!(answers <= 16 + 5, "{answers} answers to {sent} requests");
    assert!(answers >= 1, "requests within the budget are answered");
    assert!(closed, "a peer far past its control budget is banned");
    assert_healthy(&client, &node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announcing_made_up_ids_gets_bounded_grafts_then_a_ban() {
    let node = target();
    let client = reqwest::Client::new();
    let mut attacker = join(&node).await;
    let mut sent = 0;
    for _ in 0..400 {
        let ids: Vec<MessageId> = (0..MAX_LAZY_IDS).map(|_| MessageId::new()).collect();
        if attacker.send(MeshMessage::IHave(LazyIds { ids })).await.is_err() {
            break;
        }
        sent += 1;
        // Spread over a few seconds, so the node's waits expire and free the attacker's share.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (received, closed) = attacker.drain(SETTLE).await;
    let asked: usize = received
        .iter()
        .filter_map(|message| match message {
            MeshMessage::Graft(graft) => Some(graft.ids.len()),
            _ => None,
        })
        .sum();
    // Each id the node waits for costs the announcer an update's worth of rate: a burst of
    // 400, then 200 a second; past it every notice costs a point.
    assert!(asked <= 400 + 200 * 8, "the node asked for {asked} made-up ids after {sent} notices");
    assert!(closed, "a peer far past its rate is banned");
    assert_healthy(&client, &node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_grafts_gets_a_bounded_number_of_payloads_then_a_ban() {
    let node = target();
    let client = reqwest::Client::new();
    let mut attacker = join(&node).await;
    let update = attacker.signed(vec![quote("SOL", "150")], Utc::now());
    let id = mesh_types::Gossiped::seen_key(&update);
    attacker.send(update).await.unwrap();
    until_served(&client, &node, "SOL").await;

    // The node keeps what it accepted lately to answer grafts.
    let mut sent = 0;
    for _ in 0..1000 {
        if attacker.send(MeshMessage::Graft(LazyIds { ids: vec![id; 8] })).await.is_err() {
            break;
        }
        sent += 1;
    }
    let (received, closed) = attacker.drain(SETTLE).await;
    let payloads = received.iter().filter(|message| matches!(message, MeshMessage::PriceUpdate(_))).count();
    // Each payload asked for costs an update's worth of rate: a burst of 400, then 200 a second.
    assert!(payloads <= 400 + 200 * 4, "{payloads} payloads for {sent} grafts");
    assert!(payloads >= 1, "grafts within the rate are answered");
    assert!(closed, "a peer far past its rate is banned");
    assert_healthy(&client, &node).await;
}
