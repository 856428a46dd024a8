//! One node's connection: connect, read frames into the shared view, and when the
//! connection drops, reconnect with backoff and resume from the last sequence number.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::StreamExt as _;
use mesh_types::{FeedFrame, FeedMessage};
use rand::RngExt as _;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::view::View;
use crate::{ClientConfig, ClientEvent};

/// Everything a connection task needs.
pub(crate) struct Connection {
    pub(crate) link: usize,
    pub(crate) node: Arc<str>,
    pub(crate) config: Arc<ClientConfig>,
    pub(crate) view: Arc<Mutex<View>>,
    pub(crate) events: mpsc::Sender<ClientEvent>,
    pub(crate) stop: CancellationToken,
}

pub(crate) fn lock(view: &Mutex<View>) -> MutexGuard<'_, View> {
    // Every view operation leaves it consistent, even if a holder panicked.
    view.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Why a session with the node ended.
enum Ended {
    /// The client is closing.
    Stopped,
    /// The user dropped the client's event stream.
    Abandoned,
    /// The connection dropped (`true`: it had been up) or could not be made.
    Lost(String, bool),
}

/// A failed attempt in words: `connection refused`, or what the node answered instead.
fn attempt_failed(url: &str, err: &tokio_tungstenite::tungstenite::Error) -> String {
    use tokio_tungstenite::tungstenite::Error;
    match err {
        Error::Io(io) => io.kind().to_string(),
        Error::Http(response) => format!("the node refused the feed at {url}: {}", response.status()),
        other => other.to_string(),
    }
}

impl Connection {
    /// Runs until the client closes: a session, then backoff, then the next session.
    pub(crate) async fn run(self) {
        let mut since: Option<u64> = None;
        let mut backoff = self.config.min_backoff;
        loop {
            let (ended, delivered) = self.session(&mut since).await;
            match ended {
                Ended::Stopped | Ended::Abandoned => return,
                Ended::Lost(reason, was_up) => {
                    lock(&self.view).down(self.link, Instant::now());
                    let lost = ClientEvent::Disconnected { node: self.node.clone(), reason, was_up };
                    if self.send(lost).await.is_err() {
                        return;
                    }
                }
            }
            // A session that delivered something was healthy: start the backoff over.
            if delivered {
                backoff = self.config.min_backoff;
            }
            let wait = jittered(backoff);
            backoff = backoff.saturating_mul(2).min(self.config.max_backoff);
            tokio::select! {
                () = self.stop.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One connection: from the attempt to its end. Returns how it ended and whether any frame
    /// arrived.
    async fn session(&self, since: &mut Option<u64>) -> (Ended, bool) {
        let url = self.config.feed_url(&self.node, *since);
        let attempt =
            tokio::time::timeout(self.config.connect_timeout, tokio_tungstenite::connect_async(&url));
        let mut socket = tokio::select! {
            () = self.stop.cancelled() => return (Ended::Stopped, false),
            attempt = attempt => match attempt {
                Ok(Ok((socket, _))) => socket,
                Ok(Err(err)) => return (Ended::Lost(attempt_failed(&url, &err), false), false),
                Err(_) => return (Ended::Lost("timed out".to_owned(), false), false),
            },
        };
        lock(&self.view).up(self.link, Instant::now());
        if self.send(ClientEvent::Connected { node: self.node.clone() }).await.is_err() {
            return (Ended::Abandoned, false);
        }
        let mut delivered = false;
        loop {
            let message = tokio::select! {
                () = self.stop.cancelled() => {
                    let _ = tokio::time::timeout(Duration::from_secs(1), socket.close(None)).await;
                    return (Ended::Stopped, delivered);
                }
                message = socket.next() => message,
            };
            let text = match message {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Close(frame))) => {
                    let reason =
                        frame.map(|frame| frame.reason.to_string()).filter(|reason| !reason.is_empty());
                    let reason = reason.map_or_else(
                        || "the node closed the feed".to_owned(),
                        |reason| format!("the node closed the feed: {reason}"),
                    );
                    return (Ended::Lost(reason, true), delivered);
                }
                // Pings are answered by tungstenite; the feed sends nothing else.
                Some(Ok(_)) => continue,
                Some(Err(err)) => return (Ended::Lost(format!("connection lost: {err}"), true), delivered),
                None => return (Ended::Lost("connection lost".to_owned(), true), delivered),
            };
            let frame = match serde_json::from_str::<FeedFrame>(text.as_str()) {
                Ok(frame) => frame,
                Err(err) => {
                    // A newer node may send kinds this client does not know; the feed goes on.
                    tracing::debug!(node = %self.node, error = %err, "skipping a feed message this client does not understand");
                    continue;
                }
            };
            delivered = true;
            let resumed_from = *since;
            // A node that does not number its feed (seq 0) cannot resume one.
            if frame.seq > 0 {
                *since = Some(since.map_or(frame.seq, |held| held.max(frame.seq)));
            }
            for event in self.events_of(frame, resumed_from) {
                if self.send(event).await.is_err() {
                    return (Ended::Abandoned, delivered);
                }
            }
        }
    }

    /// What one frame means for the user, after merging it into the view.
    fn events_of(&self, frame: FeedFrame, resumed_from: Option<u64>) -> Vec<ClientEvent> {
        let node = self.node.clone();
        let mut view = lock(&self.view);
        match frame.message {
            FeedMessage::PriceMeshInitial(prices) => {
                let mut events = Vec::new();
                if let Some(since) = resumed_from.filter(|_| frame.gap)
                    && view.gap_is_real(self.link)
                {
                    events.push(ClientEvent::Gap { node: node.clone(), since });
                }
                events.extend(view.snapshot(&node, prices));
                events
            }
            FeedMessage::PriceMeshUpdate(prices) => view.merge(prices.into_values()),
            FeedMessage::NetworkStatusUpdate(status) => vec![ClientEvent::Status { node, status }],
            FeedMessage::MeshWarning(warning) => vec![ClientEvent::Warning { node, warning }],
        }
    }

    async fn send(&self, event: ClientEvent) -> Result<(), ()> {
        tokio::select! {
            () = self.stop.cancelled() => Err(()),
            sent = self.events.send(event) => sent.map_err(|_| ()),
        }
    }
}

/// `wait` give or take a quarter, so clients that lost the same node do not return together.
fn jittered(wait: Duration) -> Duration {
    wait.mul_f64(rand::rng().random_range(0.75..1.25))
}
