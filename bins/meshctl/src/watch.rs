//! `meshctl watch`: the live prices of one or more nodes (`--node`, and each `--also`), one
//! line per event, until Ctrl-C.
//!
//! Plain `http://` nodes are followed through `mesh-client`: each connection reconnects with
//! backoff when it drops and resumes where it left off, prices are deduplicated across the
//! nodes, and a `gap` line appears only when changes may really have been missed. An
//! `https://` node is watched alone over one connection (`mesh-client` has no TLS), which
//! ends when the node closes it. When no node can be reached at first, watch fails with one
//! line.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt as _;
use mesh_client::{ClientConfig, ClientEvent, MeshClient};
use mesh_types::{Asset, FeedMessage, ServedPriceMap};
use tokio_tungstenite::tungstenite::{self, Message};

use crate::client::{Feed, Node};
use crate::{emit, render};

/// How long a goodbye (our close frame, or the answer to the node's) may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Streams the prices of `node` and `also`, filtered to `assets` when any are given.
pub(crate) async fn run(node: &Node, also: &[String], assets: &[Asset], json: bool) -> anyhow::Result<()> {
    if node.base().starts_with("https://") {
        anyhow::ensure!(
            also.is_empty(),
            "an https:// node can only be watched alone (--also needs http:// nodes)"
        );
        return watch_one(node, assets, json).await;
    }
    let mut addresses = vec![node.base().to_owned()];
    addresses.extend(also.iter().map(|address| address.trim_end_matches('/').to_owned()));
    let config =
        ClientConfig::new(&addresses).map_err(|err| anyhow::anyhow!("{err}"))?.assets(assets.iter().copied());
    // Events name a node by its feed address; the user knows it by the one given.
    let given: HashMap<Arc<str>, String> = config.nodes().iter().cloned().zip(addresses).collect();
    let name = |node: &Arc<str>| given.get(node).cloned().unwrap_or_else(|| node.to_string());
    let total = config.nodes().len();
    let mut client = MeshClient::connect(config);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut ever_up = false;
    let mut unreachable = HashSet::new();
    loop {
        let event = tokio::select! {
            event = client.next() => event,
            signal = &mut ctrl_c => {
                signal.context("cannot listen for Ctrl-C")?;
                client.close().await;
                return Ok(());
            }
        };
        let Some(event) = event else { return Ok(()) };
        match event {
            ClientEvent::Connected { node } => {
                ever_up = true;
                if !json {
                    eprintln!("meshctl: watching {node}/ws (Ctrl-C to stop)");
                }
            }
            ClientEvent::Disconnected { node, reason, was_up } => {
                if !ever_up && !was_up {
                    unreachable.insert(node.clone());
                    if unreachable.len() == total {
                        client.close().await;
                        anyhow::bail!("cannot reach the node at {}: {reason}", name(&node));
                    }
                } else if !json {
                    eprintln!("meshctl: lost {}: {reason}; reconnecting", name(&node));
                }
            }
            ClientEvent::Gap { node, since } => {
                if json {
                    emit(serde_json::json!({"type": "Gap", "node": name(&node), "since": since}))?;
                } else {
                    emit(format!(
                        "gap: {} could not replay what changed after {since}; its prices follow",
                        name(&node)
                    ))?;
                }
            }
            other => {
                if let Some(message) = as_feed_message(other) {
                    show(&message, json)?;
                }
            }
        }
    }
}

/// The feed message an event stands for, in the shapes the node's `/ws` feed sends.
fn as_feed_message(event: ClientEvent) -> Option<FeedMessage> {
    Some(match event {
        ClientEvent::Initial { prices, .. } => FeedMessage::PriceMeshInitial(prices),
        ClientEvent::Update(price) => {
            FeedMessage::PriceMeshUpdate(ServedPriceMap::from([(price.price.asset, price)]))
        }
        ClientEvent::Status { status, .. } => FeedMessage::NetworkStatusUpdate(status),
        ClientEvent::Warning { warning, .. } => FeedMessage::MeshWarning(warning),
        _ => return None,
    })
}

/// Prints one message: its JSON on one line, or its readable lines.
fn show(message: &FeedMessage, json: bool) -> anyhow::Result<()> {
    if json {
        emit(serde_json::to_value(message)?)?;
    } else {
        for line in render::feed_lines(message) {
            emit(line)?;
        }
    }
    Ok(())
}

/// One `https://` node over one connection, until Ctrl-C or the node closes the feed (both a
/// clean exit); a dropped connection is an error.
async fn watch_one(node: &Node, assets: &[Asset], json: bool) -> anyhow::Result<()> {
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let (mut feed, address) = tokio::select! {
        opened = node.feed(assets) => opened?,
        signal = &mut ctrl_c => return signal.context("cannot listen for Ctrl-C"),
    };
    if !json {
        eprintln!("meshctl: watching {address} (Ctrl-C to stop)");
    }
    loop {
        let message = tokio::select! {
            message = feed.next() => message,
            signal = &mut ctrl_c => {
                signal.context("cannot listen for Ctrl-C")?;
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, feed.close(None)).await;
                return Ok(());
            }
        };
        match message {
            Some(Ok(Message::Text(text))) => match serde_json::from_str::<FeedMessage>(text.as_str()) {
                Ok(message) => show(&message, json)?,
                // A newer node may send kinds this meshctl does not know; the feed goes on.
                Err(err) => eprintln!("meshctl: skipping a feed message meshctl does not understand: {err}"),
            },
            Some(Ok(Message::Close(_))) => {
                if !json {
                    eprintln!("meshctl: the node closed the feed");
                }
                finish(&mut feed).await;
                return Ok(());
            }
            // Pings are answered by tungstenite itself; the feed sends no binary messages.
            Some(Ok(_)) => {}
            Some(Err(err)) => return Err(lost(node, &err)),
            None => return Ok(()),
        }
    }
}

/// Sends the answer to the node's close frame, briefly.
async fn finish(feed: &mut Feed) {
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, feed.close(None)).await;
}

fn lost(node: &Node, err: &tungstenite::Error) -> anyhow::Error {
    let why = match err {
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
            "connection closed".to_owned()
        }
        tungstenite::Error::Protocol(tungstenite::error::ProtocolError::ResetWithoutClosingHandshake) => {
            "the connection dropped without a goodbye".to_owned()
        }
        tungstenite::Error::Io(io) => io.kind().to_string(),
        other => other.to_string(),
    };
    anyhow::anyhow!("lost the feed from the node at {}: {why}", node.base())
}
