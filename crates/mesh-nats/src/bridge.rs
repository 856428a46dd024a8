//! [`NatsBridge`]: the supervised task that publishes every price the node accepts to NATS.
//!
//! The task reads the node's accepted updates from a broadcast channel, so the node never waits
//! for it: when the task falls behind, the channel drops the oldest and the task counts them
//! (`mesh_nats_dropped_total`). Its own waits on NATS are bounded:
//!
//! - a plain publish hands the message to the client, whose bounded buffer
//!   ([`NatsConfig::client_capacity`]) rides out a short outage; once a hand-over times out
//!   (the buffer is full), further prices are dropped at once — until the client is connected
//!   again, and at most one per publish timeout tries whether it takes them again — instead of
//!   each waiting out the timeout;
//! - a JetStream publish does the same, and its acknowledgement is awaited beside the loop (at
//!   most [`NatsConfig::max_pending_acks`] at once, each for at most the publish timeout);
//! - the stream is created or updated at start and again whenever it goes missing, each
//!   attempt bounded, retried with growing pauses while NATS is away.
//!
//! An outage is logged once: a warning at the first failure, an info line when a publish works
//! again; in between, failures are only counted.

use std::sync::Arc;
use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream::{self, stream};
use async_nats::{Client, ConnectOptions, Event, HeaderMap, client};
use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use mesh_service::{AcceptedUpdate, MeshPriceService};
use mesh_types::{Asset, Codec, MessageId, NetworkId, Supervisor};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::describe_servers;
use crate::subject::is_publishable;
use crate::telemetry::{Counts, describe_metrics};
use crate::verify::update_header;
use crate::{NatsConfig, NatsError, UPDATE_HEADER, network_subjects, subject};

/// The name of the bridge's task in the supervisor (and so in `/health` when it dies).
const TASK_NAME: &str = "nats_bridge";

/// JetStream's de-duplication header: the same signed price bridged by several nodes into one
/// stream is stored once.
const MSG_ID_HEADER: &str = "Nats-Msg-Id";

/// First pause before retrying the stream setup; it doubles up to [`MAX_SETUP_BACKOFF`].
const FIRST_SETUP_BACKOFF: Duration = Duration::from_millis(500);
const MAX_SETUP_BACKOFF: Duration = Duration::from_secs(30);

/// What one bridge has done so far (the same numbers its metrics count, for this bridge only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BridgeStats {
    /// Prices handed to the client (plain NATS) or acknowledged by the stream (JetStream).
    pub published: u64,
    /// Prices dropped because NATS did not take them in time or refused them.
    pub publish_failures: u64,
    /// Accepted updates missed because the bridge fell behind the node.
    pub dropped: u64,
    /// Whether the client is connected to a server now.
    pub connected: bool,
}

/// A running bridge. Dropping it stops its task (which flushes what the client holds, for at
/// most [`NatsConfig::flush_timeout`]); [`NatsBridge::shutdown`] also waits for that.
#[derive(Debug)]
pub struct NatsBridge {
    /// A child of the node's supervisor: the task's death shows in the node's health, and
    /// cancelling it stops only this task.
    supervisor: Supervisor,
    task: Option<JoinHandle<()>>,
    counts: Arc<Counts>,
    flush_timeout: Duration,
}

impl NatsBridge {
    /// Starts publishing every price `service` accepts from now on, under the service's
    /// supervisor (task `nats_bridge`). The server need not be reachable: the client connects
    /// in the background and reconnects whenever the connection drops, and prices published
    /// meanwhile are buffered up to [`NatsConfig::client_capacity`], then dropped and counted.
    ///
    /// # Errors
    /// When the configuration cannot work (a bad URL, stream name or limit).
    pub async fn start(config: NatsConfig, service: &MeshPriceService) -> Result<Self, NatsError> {
        let servers = config.validate()?;
        describe_metrics();
        let described = describe_servers(&servers);
        let counts = Arc::new(Counts::default());
        counts.set_connected(false);
        let events = Arc::clone(&counts);
        let max_delay = config.reconnect_delay_max;
        let client = ConnectOptions::new()
            .name(format!("pricemesh-{}", service.node_id()))
            .retry_on_initial_connect()
            .max_reconnects(None)
            .client_capacity(config.client_capacity)
            .connection_timeout(config.connect_timeout)
            .ping_interval(config.ping_interval)
            .request_timeout(Some(config.publish_timeout))
            .reconnect_delay_callback(move |attempts| reconnect_delay(attempts, max_delay))
            .event_callback(move |event| {
                let counts = Arc::clone(&events);
                async move { on_event(&counts, &event) }
            })
            .connect(servers)
            .await
            .map_err(|source| NatsError::Connect { servers: described.clone(), source })?;

        let network = service.network_id().clone();
        let jetstream = config.stream.as_ref().map(|name| JetStreamSink {
            context: jetstream::ContextBuilder::new()
                .timeout(config.publish_timeout)
                .max_ack_inflight(config.max_pending_acks)
                .backpressure_on_inflight(false)
                .build(client.clone()),
            config: stream_config(name, &network),
            ready: false,
            next_attempt: Instant::now(),
            backoff: FIRST_SETUP_BACKOFF,
            warned: false,
        });
        tracing::info!(
            servers = %described,
            stream = config.stream.as_deref().unwrap_or("none"),
            subjects = %network_subjects(&network),
            "publishing accepted prices to NATS"
        );
        let worker = Worker {
            client,
            jetstream,
            network,
            codec: Codec::default(),
            counts: Arc::clone(&counts),
            servers: described,
            publish_timeout: config.publish_timeout,
            flush_timeout: config.flush_timeout,
            acks: FuturesUnordered::new(),
            outage: None,
            overflowing: None,
            warned_refused: false,
        };
        // Subscribed before the task starts, so nothing accepted after `start` returns is missed.
        let updates = service.accepted_updates();
        let supervisor = service.supervisor().child();
        let task = supervisor.spawn_service(TASK_NAME, worker.run(updates, supervisor.clone()));
        Ok(Self { supervisor, task: Some(task), counts, flush_timeout: config.flush_timeout })
    }

    /// What this bridge has published, failed to publish and missed so far, and whether it is
    /// connected.
    pub fn stats(&self) -> BridgeStats {
        self.counts.snapshot()
    }

    /// Stops the task and waits for it to flush what the client holds (bounded by
    /// [`NatsConfig::flush_timeout`]).
    pub async fn shutdown(mut self) {
        self.supervisor.cancel();
        if let Some(task) = self.task.take() {
            // The task bounds its flush by the flush timeout; the extra second is its slack.
            let grace = self.flush_timeout.saturating_add(Duration::from_secs(1));
            if tokio::time::timeout(grace, task).await.is_err() {
                tracing::warn!(grace_ms = grace.as_millis(), "the NATS bridge did not stop in time");
            }
        }
    }
}

impl Drop for NatsBridge {
    fn drop(&mut self) {
        self.supervisor.cancel();
    }
}

/// Keeps the connected gauge; the client logs every event itself.
fn on_event(counts: &Counts, event: &Event) {
    match event {
        Event::Connected => counts.set_connected(true),
        Event::Disconnected | Event::Closed => counts.set_connected(false),
        _ => {}
    }
}

/// No pause before the first reconnection attempt, then 50 ms doubling up to `max`.
fn reconnect_delay(attempts: usize, max: Duration) -> Duration {
    let Some(doublings) = attempts.checked_sub(2) else { return Duration::ZERO };
    let factor = 1u32.checked_shl(u32::try_from(doublings).unwrap_or(u32::MAX)).unwrap_or(u32::MAX);
    Duration::from_millis(50).saturating_mul(factor).min(max)
}

/// The stream keeping the newest price of each asset on `network`.
fn stream_config(name: &str, network: &NetworkId) -> stream::Config {
    stream::Config {
        name: name.to_owned(),
        description: Some(format!("pricemesh: the newest signed price of each asset on {network}")),
        subjects: vec![network_subjects(network)],
        max_messages_per_subject: 1,
        // Readers may fetch the newest price per subject without a consumer.
        allow_direct: true,
        ..stream::Config::default()
    }
}

/// The JetStream half of the bridge: the context to publish through and the stream's setup.
struct JetStreamSink {
    context: jetstream::Context,
    config: stream::Config,
    /// Whether the stream is known to exist with our configuration.
    ready: bool,
    next_attempt: Instant,
    backoff: Duration,
    /// Whether a failed setup was logged at warning level since the last success.
    warned: bool,
}

/// A hand-over to the client that timed out.
#[derive(Debug, Clone, Copy)]
struct Overflow {
    at: Instant,
    /// How many times the client had connected then.
    connections: u64,
}

/// Why a price was not published.
enum Failure {
    /// NATS is away or too slow: an outage, logged once.
    Outage(String),
    /// NATS refused this message (its subject or size): logged once, as it will recur.
    Refused(String),
}

type AckOutcome = Result<Result<jetstream::publish::PublishAck, jetstream::context::PublishError>, ()>;

struct Worker {
    client: Client,
    jetstream: Option<JetStreamSink>,
    network: NetworkId,
    codec: Codec,
    counts: Arc<Counts>,
    /// The servers as `host:port`, without credentials, for logs.
    servers: String,
    publish_timeout: Duration,
    flush_timeout: Duration,
    /// Stream acknowledgements awaited; bounded by the context's `max_ack_inflight`.
    acks: FuturesUnordered<BoxFuture<'static, AckOutcome>>,
    /// Failures since the outage began, while one lasts.
    outage: Option<u64>,
    /// When a hand-over to the client last timed out: its buffer is full. Prices are dropped
    /// at once until the client is connected and a publish timeout has passed.
    overflowing: Option<Overflow>,
    warned_refused: bool,
}

impl Worker {
    async fn run(mut self, mut updates: broadcast::Receiver<AcceptedUpdate>, supervisor: Supervisor) {
        loop {
            let setup_due = self.jetstream.as_ref().filter(|sink| !sink.ready).map(|sink| sink.next_attempt);
            if setup_due.is_some_and(|due| due <= Instant::now()) {
                // Before any further publish, so that at start prices reach the server after
                // the stream exists. Bounded, and abandoned at shutdown.
                tokio::select! {
                    biased;
                    () = supervisor.cancelled() => break,
                    () = self.ensure_stream() => {}
                }
                continue;
            }
            tokio::select! {
                biased;
                () = supervisor.cancelled() => break,
                // Wakes the loop for the next attempt.
                () = tokio::time::sleep_until(setup_due.unwrap_or_else(Instant::now)), if setup_due.is_some() => {}
                Some(outcome) = self.acks.next(), if !self.acks.is_empty() => self.on_ack(outcome),
                received = updates.recv() => match received {
                    Ok(accepted) => tokio::select! {
                        biased;
                        () = supervisor.cancelled() => break,
                        () = self.publish_update(&accepted) => {}
                    },
                    Err(RecvError::Lagged(missed)) => {
                        tracing::debug!(missed, "the NATS bridge fell behind the node; updates skipped");
                        self.counts.dropped(missed);
                    }
                    // The node is gone; the supervisor reports a service task ending early.
                    Err(RecvError::Closed) => break,
                },
            }
        }
        self.finish().await;
    }

    /// One message per changed price, each carrying the whole signed update.
    async fn publish_update(&mut self, accepted: &AcceptedUpdate) {
        let header = match update_header(&self.codec, &accepted.update) {
            Ok(header) => header,
            Err(err) => {
                for _ in &accepted.changed {
                    self.failed(Failure::Refused(format!("cannot encode the signed update: {err}")));
                }
                return;
            }
        };
        for price in &accepted.changed {
            let payload = match serde_json::to_vec(price) {
                Ok(payload) => Bytes::from(payload),
                Err(err) => {
                    self.failed(Failure::Refused(format!("cannot encode the price as JSON: {err}")));
                    continue;
                }
            };
            let mut headers = HeaderMap::new();
            headers.insert(UPDATE_HEADER, header.as_str());
            self.publish(
                subject(&self.network, &price.asset),
                headers,
                payload,
                accepted.update.message_id,
                price.asset,
            )
            .await;
        }
    }

    async fn publish(
        &mut self,
        subject: String,
        mut headers: HeaderMap,
        payload: Bytes,
        id: MessageId,
        asset: Asset,
    ) {
        if !is_publishable(&subject) {
            self.failed(Failure::Refused(format!(
                "asset {asset} makes subject {subject:?}, which has an empty token"
            )));
            return;
        }
        if let Some(overflow) = self.overflowing {
            // While the buffer is full, one price per publish timeout probes whether the client
            // takes prices again and the others are dropped at once; once the client has
            // connected again, the next price is the probe.
            if self.client.connection_state() != State::Connected {
                self.failed(Failure::Outage("the client's buffer is full and it is not connected".into()));
                return;
            }
            let reconnected = self.counts.connections() != overflow.connections;
            if !reconnected && overflow.at.elapsed() < self.publish_timeout {
                self.failed(Failure::Outage("the client's buffer is still full".into()));
                return;
            }
            self.overflowing = None;
        }
        let timeout = self.publish_timeout;
        let Some(sink) = &self.jetstream else {
            let sent =
                tokio::time::timeout(timeout, self.client.publish_with_headers(subject, headers, payload));
            match sent.await {
                Ok(Ok(())) => self.succeeded(),
                Ok(Err(err)) => self.failed(match err.kind() {
                    client::PublishErrorKind::Send => Failure::Outage(format!("the client is closed: {err}")),
                    _ => Failure::Refused(err.to_string()),
                }),
                Err(_) => self.timed_out(),
            }
            return;
        };
        headers.insert(MSG_ID_HEADER, format!("{id}:{asset}").as_str());
        let sent =
            tokio::time::timeout(timeout, sink.context.publish_with_headers(subject, headers, payload));
        match sent.await {
            Ok(Ok(ack)) => {
                // Bounded twice: by the context's timeout, and here should that ever not hold.
                let ack = std::future::IntoFuture::into_future(ack);
                self.acks
                    .push(Box::pin(async move { tokio::time::timeout(timeout, ack).await.map_err(|_| ()) }));
            }
            Ok(Err(err)) => match err.kind() {
                jetstream::context::PublishErrorKind::TimedOut => self.timed_out(),
                jetstream::context::PublishErrorKind::MaxAckPending => {
                    self.failed(Failure::Outage("too many prices await the stream's acknowledgement".into()))
                }
                jetstream::context::PublishErrorKind::MaxPayloadExceeded => {
                    self.failed(Failure::Refused(err.to_string()))
                }
                _ => self.failed(Failure::Outage(err.to_string())),
            },
            Err(_) => self.timed_out(),
        }
    }

    fn timed_out(&mut self) {
        self.overflowing = Some(Overflow { at: Instant::now(), connections: self.counts.connections() });
        let waited = self.publish_timeout.as_millis();
        self.failed(Failure::Outage(format!("the client did not take the price within {waited} ms")));
    }

    fn on_ack(&mut self, outcome: AckOutcome) {
        match outcome {
            Ok(Ok(_)) => self.succeeded(),
            Ok(Err(err)) => {
                if matches!(err.kind(), jetstream::context::PublishErrorKind::StreamNotFound)
                    && let Some(sink) = &mut self.jetstream
                    && sink.ready
                {
                    // Deleted behind our back: set it up again now.
                    sink.ready = false;
                    sink.next_attempt = Instant::now();
                }
                self.failed(Failure::Outage(format!("the stream did not store the price: {err}")));
            }
            Err(()) => {
                self.failed(Failure::Outage("the stream did not acknowledge the price in time".into()))
            }
        }
    }

    fn succeeded(&mut self) {
        self.counts.published();
        if let Some(failures) = self.outage.take() {
            tracing::info!(servers = %self.servers, failures, "publishing prices to NATS works again");
        }
    }

    fn failed(&mut self, failure: Failure) {
        self.counts.failed();
        match failure {
            Failure::Outage(reason) => match &mut self.outage {
                Some(failures) => {
                    *failures = failures.saturating_add(1);
                    tracing::debug!(%reason, "price not published to NATS");
                }
                None => {
                    self.outage = Some(1);
                    tracing::warn!(
                        servers = %self.servers,
                        %reason,
                        "cannot publish prices to NATS; dropping them (counted in mesh_nats_publish_failures_total) \
                         until it works again. Gossip is not affected"
                    );
                }
            },
            Failure::Refused(reason) if !self.warned_refused => {
                self.warned_refused = true;
                tracing::warn!(%reason, "NATS refused a price; such prices are dropped and counted from now on");
            }
            Failure::Refused(reason) => tracing::debug!(%reason, "NATS refused a price"),
        }
    }

    /// Creates or updates the stream, for at most a few publish timeouts.
    async fn ensure_stream(&mut self) {
        let Some(sink) = &mut self.jetstream else { return };
        let limit = self.publish_timeout.saturating_mul(3);
        let name = sink.config.name.clone();
        let result =
            tokio::time::timeout(limit, sink.context.create_or_update_stream(sink.config.clone())).await;
        match result {
            Ok(Ok(_)) => {
                sink.ready = true;
                sink.backoff = FIRST_SETUP_BACKOFF;
                sink.warned = false;
                tracing::info!(stream = %name, subjects = ?sink.config.subjects, "JetStream stream ready");
                return;
            }
            Ok(Err(err)) => {
                let refused = matches!(err.kind(), jetstream::context::CreateStreamErrorKind::JetStream(_));
                if refused {
                    // The server answered: retrying will not help until someone changes the
                    // stream or the configuration, but it costs little.
                    tracing::error!(
                        stream = %name,
                        error = %err,
                        "NATS refused the JetStream stream; fix the existing stream (its subjects or storage) \
                         or choose another name. Prices are dropped meanwhile"
                    );
                } else if !sink.warned {
                    tracing::warn!(stream = %name, error = %err, "cannot set up the JetStream stream yet; retrying");
                } else {
                    tracing::debug!(stream = %name, error = %err, "cannot set up the JetStream stream yet");
                }
            }
            Err(_) if !sink.warned => {
                tracing::warn!(stream = %name, "setting up the JetStream stream timed out; retrying");
            }
            Err(_) => tracing::debug!(stream = %name, "setting up the JetStream stream timed out"),
        }
        sink.warned = true;
        sink.next_attempt = Instant::now().checked_add(sink.backoff).unwrap_or_else(Instant::now);
        sink.backoff = sink.backoff.saturating_mul(2).min(MAX_SETUP_BACKOFF);
    }

    /// At shutdown: writes out what the client holds and collects the acknowledgements still
    /// awaited, all within the flush timeout.
    async fn finish(mut self) {
        let pending = self.acks.len();
        let flushed = tokio::time::timeout(self.flush_timeout, async {
            let flush = self.client.flush().await;
            while let Some(outcome) = self.acks.next().await {
                self.on_ack(outcome);
            }
            flush
        })
        .await;
        match flushed {
            Ok(Ok(())) => tracing::debug!(acks = pending, "NATS bridge flushed"),
            Ok(Err(err)) => tracing::debug!(error = %err, "NATS bridge could not flush at shutdown"),
            Err(_) => tracing::warn!(
                flush_ms = self.flush_timeout.as_millis(),
                "NATS bridge stopped before NATS took everything it held"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnection_pauses_grow_to_the_maximum() {
        let max = Duration::from_secs(4);
        assert_eq!(reconnect_delay(0, max), Duration::ZERO);
        assert_eq!(reconnect_delay(1, max), Duration::ZERO);
        assert_eq!(reconnect_delay(2, max), Duration::from_millis(50));
        assert_eq!(reconnect_delay(3, max), Duration::from_millis(100));
        assert_eq!(reconnect_delay(10, max), max);
        assert_eq!(reconnect_delay(usize::MAX, max), max);
    }

    #[test]
    fn the_stream_keeps_one_price_per_subject_of_the_network() {
        let config = stream_config("PRICEMESH", &NetworkId::mainnet());
        assert_eq!(config.name, "PRICEMESH");
        assert_eq!(config.subjects, ["pricemesh.mainnet.>"]);
        assert_eq!(config.max_messages_per_subject, 1);
    }
}
