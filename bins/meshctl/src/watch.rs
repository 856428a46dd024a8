//! `meshctl watch`: the node's live feed, one line per message, until Ctrl-C or the node closes
//! the connection (both a clean exit); a dropped connection is an error.

use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt as _;
use mesh_types::{Asset, FeedMessage};
use tokio_tungstenite::tungstenite::{self, Message};

use crate::client::{Feed, Node};
use crate::{emit, render};

/// How long a goodbye (our close frame, or the answer to the node's) may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Streams the feed of `node`, filtered to `assets` when any are given.
pub(crate) async fn run(node: &Node, assets: &[Asset], json: bool) -> anyhow::Result<()> {
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
            Some(Ok(Message::Text(text))) => show(text.as_str(), json)?,
            Some(Ok(Message::Close(frame))) => {
                if !json {
                    let reason =
                        frame.map(|frame| frame.reason.to_string()).filter(|reason| !reason.is_empty());
                    match reason {
                        Some(reason) => eprintln!("meshctl: the node closed the feed: {reason}"),
                        None => eprintln!("meshctl: the node closed the feed"),
                    }
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

/// Prints one text message: its JSON on one line, or its readable lines.
fn show(text: &str, json: bool) -> anyhow::Result<()> {
    if json {
        match serde_json::from_str::<serde_json::Value>(text) {
            Ok(value) => emit(value)?,
            Err(err) => eprintln!("meshctl: skipping a feed message that is not JSON: {err}"),
        }
        return Ok(());
    }
    match serde_json::from_str::<FeedMessage>(text) {
        Ok(message) => {
            for line in render::feed_lines(&message) {
                emit(line)?;
            }
        }
        // A newer node may send kinds this meshctl does not know; the feed goes on.
        Err(err) => eprintln!("meshctl: skipping a feed message meshctl does not understand: {err}"),
    }
    Ok(())
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
