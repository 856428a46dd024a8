//! `GET /ws`: the live feed. On connect a client gets `PriceMeshInitial` (every served price),
//! then `PriceMeshUpdate` with only the changed assets, `NetworkStatusUpdate` when the status
//! changes and `MeshWarning`s as they come, each a [`FeedFrame`] with its sequence number.
//! `?assets=SOL,ETH` (case-insensitive) limits prices and discrepancy warnings to those assets.
//!
//! `?since=N` resumes: the client is sent what changed after `N`, starting with a
//! `PriceMeshUpdate` (empty if nothing changed) instead of the snapshot. When the node's
//! history no longer reaches back to `N`, or `N` is from another run of the node, the client
//! gets a `PriceMeshInitial` with `"gap": true` instead: changes may have been missed, and the
//! snapshot replaces what it held.
//!
//! Each client has two tasks. Its reader moves the node's events into the client's
//! [`FeedQueue`] (conflated per asset, bounded) and watches the client; its writer takes
//! whatever is pending whenever the socket can take more. So a slow client only makes its own
//! queue conflate, never the node or other clients wait. A client whose oldest unwritten item
//! waited longer than `ws_max_lag`, or that would overflow `ws_queue`, is disconnected and
//! counted (`mesh_api_ws_slow_disconnects_total`). If the reader itself misses events (the
//! node's event channel lagged), the client is sent the current state again instead. Pings go
//! out every `ws_ping_interval`; a client silent for two intervals is dropped.

mod queue;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use mesh_service::{Sequenced, ServiceEvent};
use mesh_types::{
    Asset, FeedFrame, FeedMessage, MeshWarning, NetworkStatusSummary, ServedPriceMap, WarningKind,
};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{Notify, broadcast, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::ApiState;
use crate::error::ApiError;
use crate::state::FeedSlot;
pub(crate) use queue::{Batch, FeedQueue, Overflow};

/// The largest message a client may send; it has nothing to say but pongs and close frames.
const MAX_CLIENT_MESSAGE: usize = 4 * 1024;
/// Initial size of each client's read and write buffers.
const SOCKET_BUFFER: usize = 4 * 1024;
/// The shortest ping interval used, whatever the configuration says (a zero interval would
/// spin).
const MIN_PING_INTERVAL: Duration = Duration::from_millis(10);
/// The furthest off the first ping is scheduled: about 30 years, as tokio caps its own timers
/// (in effect never), so no configured interval overflows the clock.
const MAX_FIRST_PING: Duration = Duration::from_secs(30 * 365 * 86_400);
/// The reasons a slow client is disconnected for, as `mesh_api_ws_slow_disconnects_total`
/// labels them: it stayed behind too long, or its queue overflowed.
pub(crate) const SLOW_REASONS: [&str; 2] = ["lag", "overflow"];

/// How long a closing client may take to receive its close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Query of `GET /ws`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct FeedQuery {
    /// Only these assets, comma-separated (`SOL,ETH`); absent for all.
    assets: Option<String>,
    /// Resume after this frame's `seq`: what changed since, or a full `PriceMeshInitial` with
    /// `"gap": true` when the node's history no longer reaches back.
    since: Option<u64>,
}

/// Which assets a client follows.
#[derive(Debug, Clone, Default)]
pub(crate) struct Filter(Option<HashSet<Asset>>);

impl Filter {
    /// `SOL,eth, BTC` → those assets; absent or empty → everything.
    fn parse(list: Option<&str>) -> Result<Self, ApiError> {
        let mut assets = HashSet::new();
        for symbol in list.unwrap_or_default().split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let asset = Asset::new(symbol)
                .map_err(|error| ApiError::bad_request(format!("Invalid asset filter: {error}")))?;
            assets.insert(asset);
        }
        Ok(Self((!assets.is_empty()).then_some(assets)))
    }

    fn allows(&self, asset: &Asset) -> bool {
        self.0.as_ref().is_none_or(|assets| assets.contains(asset))
    }

    /// Warnings about one asset follow the filter; the others concern everyone.
    fn allows_warning(&self, warning: &MeshWarning) -> bool {
        match &warning.kind {
            WarningKind::PriceDiscrepancy { asset, .. } => self.allows(asset),
            _ => true,
        }
    }

    fn apply(&self, prices: ServedPriceMap) -> ServedPriceMap {
        match &self.0 {
            None => prices,
            Some(_) => prices.into_iter().filter(|(asset, _)| self.allows(asset)).collect(),
        }
    }
}

/// `GET /ws`.
#[utoipa::path(
    get,
    path = "/ws",
    tag = "feed",
    params(FeedQuery),
    responses(
        (status = 101, description = "Switching to the WebSocket feed: PriceMeshInitial, then PriceMeshUpdate, \
            NetworkStatusUpdate and MeshWarning frames, each with its seq"),
        (status = 400, description = "A bad query string, or a request that is not a WebSocket upgrade",
            body = crate::openapi::ErrorEnvelope),
        (status = 403, description = "A web page of an origin the node does not allow", body = crate::openapi::ErrorEnvelope),
        (status = 405, description = "Not a GET upgrade request", body = crate::openapi::ErrorEnvelope),
        (status = 426, description = "The request did not ask to upgrade", body = crate::openapi::ErrorEnvelope),
        (status = 503, description = "Too many WebSocket clients; try again later", body = crate::openapi::ErrorEnvelope),
    ),
)]
pub(crate) async fn websocket(
    State(state): State<ApiState>,
    query: Result<Query<FeedQuery>, QueryRejection>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let Ok(Query(query)) = query else {
        return Err(ApiError::bad_request(
            "Invalid query string: expected ?assets=SOL,ETH and ?since=N with N a sequence number",
        ));
    };
    let filter = Filter::parse(query.assets.as_deref())?;
    let upgrade = upgrade.map_err(|rejection| {
        ApiError::new(
            rejection.status(),
            "Expected a WebSocket upgrade request (GET with Upgrade: websocket)",
        )
    })?;
    let Some(slot) = state.feed_slot() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service unavailable: too many WebSocket clients, try again later",
        ));
    };
    Ok(upgrade
        // The library's default buffers are 128 KiB each way, which at 10,000 clients is
        // 2.5 GiB. A client only sends pongs and close frames, and the writer flushes after
        // each batch, so small buffers cost nothing; they grow while a large snapshot is sent.
        .read_buffer_size(SOCKET_BUFFER)
        .write_buffer_size(SOCKET_BUFFER)
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        .on_failed_upgrade(|error| tracing::debug!(%error, "WebSocket upgrade failed"))
        .on_upgrade(move |socket| serve_client(socket, state, filter, query.since, slot)))
}

/// What a client's writer and reader share.
struct Shared {
    /// A std mutex: held to move items in or out, never across an await.
    queue: Mutex<FeedQueue>,
    /// Wakes the writer when something was queued (or it should close).
    wake: Notify,
    /// The server is shutting down: the writer sends a close frame and ends.
    closing: AtomicBool,
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, FeedQueue> {
        // Every queue operation leaves it consistent, even if a holder panicked.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues what `event` holds for this client and wakes the writer; an event the client
    /// already has is skipped.
    fn push(&self, event: Sequenced, filter: &Filter) -> Result<(), Overflow> {
        let now = Instant::now();
        let mut queued = false;
        {
            let mut queue = self.queue();
            if !queue.begin(event.seq) {
                return Ok(());
            }
            let seq = event.seq;
            match event.event {
                ServiceEvent::Prices(prices) => {
                    for price in prices.into_iter().filter(|price| filter.allows(&price.asset())) {
                        queue.push_price(seq, price, now)?;
                        queued = true;
                    }
                }
                ServiceEvent::Status(status) => {
                    queue.push_status(seq, status, now);
                    queued = true;
                }
                ServiceEvent::Warning(warning) => {
                    if filter.allows_warning(&warning) {
                        queue.push_warning(seq, warning, now)?;
                        queued = true;
                    }
                }
            }
        }
        if queued {
            self.wake.notify_one();
        }
        Ok(())
    }
}

/// Why a client's feed ended.
enum End {
    /// It closed or its connection broke.
    Gone,
    /// It fell too far behind (`lag` or `overflow`).
    Slow(&'static str),
    /// It answered no ping.
    Unresponsive,
    /// The server is shutting down.
    Shutdown,
}

/// The task writing a client's frames.
type Writer = JoinHandle<Result<(), axum::Error>>;

/// One client's feed, in three steps: its first frames (the snapshot or the replay), then
/// following the node's events until something ends it, then closing as that end requires.
async fn serve_client(
    socket: WebSocket,
    state: ApiState,
    filter: Filter,
    since: Option<u64>,
    _slot: FeedSlot,
) {
    // Subscribe before taking the snapshot or the replay, so no change falls between the two;
    // a change already in them is then skipped by the queue as taken in.
    let mut events = state.service().subscribe();
    let (mut sink, stream) = socket.split();
    let (queue, first) = start_feed(&state, &filter, since);
    if !send_first(&state, &mut sink, first).await {
        return;
    }
    let shared =
        Arc::new(Shared { queue: Mutex::new(queue), wake: Notify::new(), closing: AtomicBool::new(false) });
    let ping_interval = state.config().ws_ping_interval.max(MIN_PING_INTERVAL);
    let mut writer = tokio::spawn(write(sink, shared.clone(), ping_interval));
    let end = follow(&state, &shared, &filter, &mut events, stream, &mut writer, ping_interval).await;
    finish(&state, &shared, end, writer).await;
}

/// Sends the first frames, each within the lag limit; `false` when the client is gone or too
/// slow for them (counted).
async fn send_first(
    state: &ApiState,
    sink: &mut SplitSink<WebSocket, Message>,
    first: Vec<FeedFrame>,
) -> bool {
    let max_lag = state.config().ws_max_lag;
    for frame in first {
        let Some(frame) = encode(&frame) else { return false };
        match tokio::time::timeout(max_lag, sink.send(frame)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return false,
            Err(_) => {
                state.count_slow_disconnect("lag");
                return false;
            }
        }
    }
    true
}

/// Queues the node's events for the writer until the client leaves, falls behind, stops
/// answering pings, or the server closes; says which.
async fn follow(
    state: &ApiState,
    shared: &Arc<Shared>,
    filter: &Filter,
    events: &mut broadcast::Receiver<Sequenced>,
    mut stream: SplitStream<WebSocket>,
    writer: &mut Writer,
    ping_interval: Duration,
) -> End {
    let max_lag = state.config().ws_max_lag;
    let mut closing = state.closing();
    let mut check = tokio::time::interval(check_period(max_lag));
    check.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let silence_limit = ping_interval.saturating_mul(2);
    let mut last_heard = Instant::now();
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(event) => {
                    if shared.push(event, filter).is_err() {
                        return End::Slow("overflow");
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    state.count_resync();
                    tracing::debug!(missed, "a WebSocket client missed node events; sending it the current state");
                    if resync(state, shared, filter).is_err() {
                        return End::Slow("overflow");
                    }
                }
                Err(RecvError::Closed) => return End::Shutdown,
            },
            frame = stream.next() => match frame {
                Some(Ok(Message::Close(_)) | Err(_)) | None => return End::Gone,
                Some(Ok(_)) => last_heard = Instant::now(),
            },
            _ = check.tick() => {
                let now = Instant::now();
                if shared.queue().lag(now) > max_lag {
                    return End::Slow("lag");
                }
                if now.saturating_duration_since(last_heard) > silence_limit {
                    return End::Unresponsive;
                }
            },
            () = until_closing(&mut closing) => return End::Shutdown,
            _ = &mut *writer => return End::Gone,
        }
    }
}

/// Closes the feed as its end requires: a shutdown lets the writer send what it has and the
/// close frame; anything else stops the writer at once (a slow client is counted).
async fn finish(state: &ApiState, shared: &Shared, end: End, mut writer: Writer) {
    match end {
        End::Shutdown => {
            shared.closing.store(true, Ordering::Release);
            shared.wake.notify_one();
            if tokio::time::timeout(CLOSE_GRACE, &mut writer).await.is_err() {
                writer.abort();
            }
        }
        End::Slow(reason) => {
            writer.abort();
            state.count_slow_disconnect(reason);
            tracing::info!(reason, "disconnected a WebSocket client that fell behind");
        }
        End::Unresponsive => {
            writer.abort();
            tracing::debug!("disconnected a WebSocket client that answered no ping");
        }
        End::Gone => writer.abort(),
    }
}

/// The client's queue and its first frames: the replay after `since` when the node still holds
/// it (a `PriceMeshUpdate` first, empty if nothing changed), and otherwise the snapshot, flagged
/// as a gap when a resume was asked for.
fn start_feed(state: &ApiState, filter: &Filter, since: Option<u64>) -> (FeedQueue, Vec<FeedFrame>) {
    let capacity = state.config().ws_queue;
    let service = state.service();
    if let Some(since) = since {
        match service.replay_since(since) {
            Ok((last, replay)) => {
                let shared = Shared {
                    queue: Mutex::new(FeedQueue::new(capacity, since)),
                    wake: Notify::new(),
                    closing: AtomicBool::new(false),
                };
                for event in replay {
                    // A replay larger than the client's queue is a gap in all but name.
                    if shared.push(event, filter).is_err() {
                        return snapshot(state, filter, true);
                    }
                }
                let mut queue = shared.queue.into_inner().unwrap_or_else(PoisonError::into_inner);
                queue.begin(last);
                let mut frames = queue.take_batch().into_frames();
                queue.delivered();
                if !frames
                    .first()
                    .is_some_and(|frame| matches!(frame.message, FeedMessage::PriceMeshUpdate(_)))
                {
                    // It comes before everything the replay carries, so it claims only what
                    // the client already had; with nothing to replay, everything up to now.
                    let claims = if frames.is_empty() { last } else { since };
                    frames.insert(
                        0,
                        FeedFrame::new(FeedMessage::PriceMeshUpdate(ServedPriceMap::new()), claims),
                    );
                }
                return (queue, frames);
            }
            Err(gap) => tracing::debug!(%gap, "a WebSocket client resumed from beyond the history"),
        }
    }
    snapshot(state, filter, since.is_some())
}

/// The client's queue and a `PriceMeshInitial` of every served price it follows.
fn snapshot(state: &ApiState, filter: &Filter, gap: bool) -> (FeedQueue, Vec<FeedFrame>) {
    let (seq, prices) = state.service().snapshot();
    let frame = FeedFrame { message: FeedMessage::PriceMeshInitial(filter.apply(prices)), seq, gap };
    (FeedQueue::new(state.config().ws_queue, seq), vec![frame])
}

/// Queues what a client missed when it fell behind the node's events: the events after the
/// last it took in, or, when the history no longer reaches back that far, every served price
/// and the network status now.
fn resync(state: &ApiState, shared: &Shared, filter: &Filter) -> Result<(), Overflow> {
    let observed = shared.queue().observed();
    if let Ok((_, replay)) = state.service().replay_since(observed) {
        for event in replay {
            shared.push(event, filter)?;
        }
        return Ok(());
    }
    let (seq, prices) = state.service().snapshot();
    let status = NetworkStatusSummary::from(&state.service().network_status());
    {
        let now = Instant::now();
        let mut queue = shared.queue();
        if queue.begin(seq) {
            for price in filter.apply(prices).into_values() {
                queue.push_price(seq, price, now)?;
            }
            queue.push_status(seq, status, now);
        }
    }
    shared.wake.notify_one();
    Ok(())
}

/// The writer: sends whatever is pending whenever woken, and a ping every `ping_interval`.
/// Ends on a socket error, or after the close frame when the server shuts down.
async fn write(
    mut sink: SplitSink<WebSocket, Message>,
    shared: Arc<Shared>,
    ping_interval: Duration,
) -> Result<(), axum::Error> {
    let first = Instant::now().checked_add(ping_interval.min(MAX_FIRST_PING)).unwrap_or_else(Instant::now);
    let mut ping = tokio::time::interval_at(first, ping_interval);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shared.wake.notified() => {}
            _ = ping.tick() => sink.send(Message::Ping(axum::body::Bytes::from_static(b"pricemesh"))).await?,
        }
        loop {
            let batch: Batch = shared.queue().take_batch();
            if batch.is_empty() {
                break;
            }
            for frame in batch.into_frames() {
                if let Some(frame) = encode(&frame) {
                    sink.feed(frame).await?;
                }
            }
            sink.flush().await?;
            shared.queue().delivered();
        }
        if shared.closing.load(Ordering::Acquire) {
            sink.send(close(close_code::AWAY, "server shutting down")).await?;
            return Ok(());
        }
    }
}

fn encode(frame: &FeedFrame) -> Option<Message> {
    match serde_json::to_string(frame) {
        Ok(json) => Some(Message::Text(Utf8Bytes::from(json))),
        Err(error) => {
            tracing::error!(%error, "cannot serialize a feed message");
            None
        }
    }
}

fn close(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame { code, reason: Utf8Bytes::from_static(reason) }))
}

/// Completes when the server starts shutting down.
async fn until_closing(closing: &mut watch::Receiver<bool>) {
    // An error means the state is gone, which also ends the feed.
    let _ = closing.wait_for(|closing| *closing).await;
}

/// How often a client's lag is checked: a quarter of the limit, between 10 ms and 1 s.
fn check_period(max_lag: Duration) -> Duration {
    max_lag.checked_div(4).unwrap_or_default().clamp(Duration::from_millis(10), Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_case_insensitively_and_refuse_bad_symbols() {
        let filter = Filter::parse(Some("sol, ETH,,")).unwrap();
        assert!(filter.allows(&Asset::new("SOL").unwrap()));
        assert!(filter.allows(&Asset::new("eth").unwrap()));
        assert!(!filter.allows(&Asset::new("BTC").unwrap()));
        assert!(Filter::parse(None).unwrap().allows(&Asset::new("BTC").unwrap()));
        assert!(Filter::parse(Some("")).unwrap().allows(&Asset::new("BTC").unwrap()));
        assert!(Filter::parse(Some("SOL,B TC")).is_err());
        let discrepancy = MeshWarning::price_discrepancy(Asset::new("BTC").unwrap(), 6.5);
        assert!(!filter.allows_warning(&discrepancy));
        assert!(filter.allows_warning(&MeshWarning::no_providers()));
    }

    #[test]
    fn the_lag_check_runs_often_enough_but_not_too_often() {
        assert_eq!(check_period(Duration::from_secs(10)), Duration::from_secs(1));
        assert_eq!(check_period(Duration::from_millis(400)), Duration::from_millis(100));
        assert_eq!(check_period(Duration::from_millis(1)), Duration::from_millis(10));
    }
}
