//! [`TcpTransport`]: the real network. Each frame on the wire is a 4-byte big-endian length
//! followed by one [`mesh_types::Codec`] payload.
//!
//! Every connection runs two tasks:
//!
//! - a reader that refuses an oversized length prefix before allocating the body, decodes each
//!   payload, and drops the connection after [`LinkConfig::read_timeout`] of silence;
//! - a writer that batches whatever is already queued into one flush, so a burst of small
//!   relays costs one system call rather than one per frame, and gives up on a peer that does
//!   not take a batch within [`LinkConfig::write_timeout`].
//!
//! A fatal error (malformed or oversized frame, reset, timeout) reaches the user as one
//! `Err(..)` from the connection's receiver, after which it yields `None`.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use mesh_types::{Codec, MeshMessage};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_util::codec::{Decoder, FramedRead, FramedWrite, LengthDelimitedCodec, LengthDelimitedCodecError};
use tokio_util::sync::CancellationToken;
use tracing::{debug, trace, warn};

use crate::{Connection, ConnectionIo, LinkConfig, Listener, Outbound, Transport, TransportError};

/// Bytes in the length prefix of a frame.
pub(crate) const LENGTH_FIELD_LEN: usize = 4;

/// At most this many messages go out in one flush, so one busy connection cannot hold a huge
/// buffer.
const MAX_BATCH_MESSAGES: usize = 256;

/// At most about this many bytes go out in one flush; also the write buffer's flush threshold,
/// so a batch normally costs a single write.
const MAX_BATCH_BYTES: usize = 256 * 1024;

/// How long a closing connection may spend writing out what is still queued (a `Goodbye`,
/// usually) before the socket is shut down regardless.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Accepted connections waiting for the listener's owner to take them.
const ACCEPT_BACKLOG: usize = 128;

/// Pause after a failed `accept` (out of file descriptors, usually), so the loop does not spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// Connections over TCP, with length-delimited frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpTransport {
    config: LinkConfig,
}

impl TcpTransport {
    /// A transport applying `config` to every connection it makes or accepts.
    pub const fn new(config: LinkConfig) -> Self {
        Self { config }
    }

    /// The limits applied to every connection.
    pub const fn config(&self) -> &LinkConfig {
        &self.config
    }
}

impl Default for TcpTransport {
    fn default() -> Self {
        Self::new(LinkConfig::default())
    }
}

#[async_trait]
impl Transport for TcpTransport {
    async fn listen(&self, addr: SocketAddr) -> Result<Listener, TransportError> {
        let socket = TcpListener::bind(addr)
            .await
            .map_err(|err| TransportError::ListenFailed { addr, detail: err.to_string() })?;
        let local_addr = socket
            .local_addr()
            .map_err(|err| TransportError::ListenFailed { addr, detail: err.to_string() })?;
        let (listener, accepted) = Listener::new(local_addr, ACCEPT_BACKLOG);
        debug!(%local_addr, "listening");
        tokio::spawn(accept_loop(socket, local_addr, accepted, self.config));
        Ok(listener)
    }

    async fn dial(&self, addr: SocketAddr) -> Result<Connection, TransportError> {
        let stream = match timeout(self.config.connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(err)) => return Err(TransportError::from_io(addr, "connecting", &err)),
            Err(_) => return Err(TransportError::ConnectionTimeout { addr, during: "connecting" }),
        };
        set_nodelay(&stream, addr);
        trace!(%addr, "connected");
        Ok(spawn_connection(stream, addr, self.config))
    }
}

/// Accepts until the [`Listener`] is dropped; dropping the socket then refuses new dials.
async fn accept_loop(
    socket: TcpListener,
    local_addr: SocketAddr,
    accepted: mpsc::Sender<Connection>,
    config: LinkConfig,
) {
    loop {
        let result = tokio::select! {
            () = accepted.closed() => break,
            result = socket.accept() => result,
        };
        match result {
            Ok((stream, remote_addr)) => {
                set_nodelay(&stream, remote_addr);
                trace!(%local_addr, %remote_addr, "accepted");
                let connection = spawn_connection(stream, remote_addr, config);
                // The send fails only when the listener is gone; the dropped connection then
                // closes itself.
                if accepted.send(connection).await.is_err() {
                    break;
                }
            }
            Err(err) => {
                warn!(%local_addr, error = %err, "accepting a connection failed");
                tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
            }
        }
    }
    debug!(%local_addr, "stopped listening");
}

/// Without it, a small frame can wait for Nagle's algorithm while a price goes stale.
fn set_nodelay(stream: &TcpStream, addr: SocketAddr) {
    if let Err(err) = stream.set_nodelay(true) {
        debug!(%addr, error = %err, "cannot set TCP_NODELAY");
    }
}

/// The length-prefix codec both directions share.
fn frame_codec(max_frame_size: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(LENGTH_FIELD_LEN)
        .big_endian()
        .max_frame_length(max_frame_size)
        .new_codec()
}

/// Starts the reader and writer tasks of a fresh socket.
fn spawn_connection(stream: TcpStream, remote_addr: SocketAddr, config: LinkConfig) -> Connection {
    let (connection, io) = Connection::channels(remote_addr, config.send_queue);
    let ConnectionIo { outgoing, incoming, closed } = io;
    let (read_half, write_half) = stream.into_split();
    let link = Arc::new(Link {
        remote_addr,
        incoming,
        stop: closed.child_token(),
        closed,
        failed: AtomicBool::new(false),
    });
    tokio::spawn(read_loop(read_half, Arc::clone(&link), config));
    tokio::spawn(write_loop(write_half, outgoing, link, config));
    connection
}

/// What the reader and writer of one connection share.
#[derive(Debug)]
struct Link {
    remote_addr: SocketAddr,
    incoming: mpsc::Sender<Result<MeshMessage, TransportError>>,
    /// The user-visible end of the connection; cancelled last, after any error is delivered.
    closed: CancellationToken,
    /// Tells both tasks to let go of the socket. Cancelled with `closed`, but also earlier on
    /// a failure, so the socket is released even while the error waits for the user to read it.
    stop: CancellationToken,
    /// Whether a fatal error was reported; only the first one is, and the writer then skips
    /// its farewell flush.
    failed: AtomicBool,
}

impl Link {
    /// Ends the connection because of `error`, which the user receives before the end.
    async fn fail(&self, error: TransportError) {
        let first = !self.failed.swap(true, Ordering::AcqRel);
        self.stop.cancel();
        if first && !self.closed.is_cancelled() {
            debug!(addr = %self.remote_addr, %error, "connection failed");
            tokio::select! {
                biased;
                () = self.closed.cancelled() => {}
                _ = self.incoming.send(Err(error)) => {}
            }
        }
        self.closed.cancel();
    }
}

/// Why a frame could not be read.
#[derive(Debug)]
enum FrameError {
    /// The length prefix announced more than the limit.
    TooLarge { size: usize },
    /// The socket failed.
    Io(io::Error),
}

impl From<io::Error> for FrameError {
    fn from(err: io::Error) -> Self {
        Self::Io(err)
    }
}

/// [`LengthDelimitedCodec`] with the announced size of a refused frame kept, which the codec's
/// own error does not carry.
#[derive(Debug)]
struct FrameDecoder {
    inner: LengthDelimitedCodec,
    max_frame_size: usize,
}

impl FrameDecoder {
    fn new(max_frame_size: usize) -> Self {
        Self { inner: frame_codec(max_frame_size), max_frame_size }
    }
}

impl Decoder for FrameDecoder {
    type Item = BytesMut;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, FrameError> {
        match self.inner.decode(src) {
            Ok(frame) => Ok(frame),
            Err(err) if err.get_ref().is_some_and(|inner| inner.is::<LengthDelimitedCodecError>()) => {
                // The codec refuses a head before consuming it, so the prefix is still here.
                let size = src
                    .get(..LENGTH_FIELD_LEN)
                    .and_then(|head| <[u8; LENGTH_FIELD_LEN]>::try_from(head).ok())
                    .and_then(|head| usize::try_from(u32::from_be_bytes(head)).ok())
                    .unwrap_or(self.max_frame_size);
                Err(FrameError::TooLarge { size })
            }
            Err(err) => Err(FrameError::Io(err)),
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<BytesMut>, FrameError> {
        match self.decode(buf)? {
            Some(frame) => Ok(Some(frame)),
            None if buf.is_empty() => Ok(None),
            // Reported as a reset: the peer went away in the middle of a frame.
            None => Err(FrameError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed in the middle of a frame",
            ))),
        }
    }
}

/// How the reader stopped.
#[derive(Debug)]
enum ReadEnd {
    /// Told to stop (the user closed, or the writer failed).
    Stopped,
    /// The peer closed its side cleanly.
    Eof,
    /// A fatal error.
    Failed(TransportError),
}

async fn read_loop(read_half: OwnedReadHalf, link: Arc<Link>, config: LinkConfig) {
    // The read half is dropped when `read_frames` returns, before the error waits for the user.
    match read_frames(read_half, &link, config).await {
        ReadEnd::Stopped => {}
        ReadEnd::Eof => {
            trace!(addr = %link.remote_addr, "peer closed the connection");
            link.closed.cancel();
        }
        ReadEnd::Failed(error) => link.fail(error).await,
    }
}

async fn read_frames(read_half: OwnedReadHalf, link: &Link, config: LinkConfig) -> ReadEnd {
    let addr = link.remote_addr;
    let max = config.max_frame_size;
    let codec = Codec::new(max);
    let mut frames = FramedRead::new(read_half, FrameDecoder::new(max));
    loop {
        let next = tokio::select! {
            biased;
            () = link.stop.cancelled() => return ReadEnd::Stopped,
            next = timeout(config.read_timeout, frames.next()) => next,
        };
        let frame = match next {
            Ok(Some(Ok(frame))) => frame,
            Ok(None) => return ReadEnd::Eof,
            Ok(Some(Err(FrameError::TooLarge { size }))) => {
                return ReadEnd::Failed(TransportError::FrameTooLarge { addr, size, max });
            }
            Ok(Some(Err(FrameError::Io(err)))) => {
                return ReadEnd::Failed(TransportError::from_io(addr, "reading", &err));
            }
            Err(_) => return ReadEnd::Failed(TransportError::ConnectionTimeout { addr, during: "reading" }),
        };
        let message = match codec.decode(&frame) {
            Ok(message) => message,
            Err(source) => return ReadEnd::Failed(TransportError::MalformedFrame { addr, source }),
        };
        tokio::select! {
            biased;
            () = link.stop.cancelled() => return ReadEnd::Stopped,
            sent = link.incoming.send(Ok(message)) => {
                // The receiver is gone, and dropping it closed the connection.
                if sent.is_err() {
                    return ReadEnd::Stopped;
                }
            }
        }
    }
}

type FrameWriter = FramedWrite<OwnedWriteHalf, LengthDelimitedCodec>;

async fn write_loop(
    write_half: OwnedWriteHalf,
    mut outgoing: mpsc::Receiver<Outbound>,
    link: Arc<Link>,
    config: LinkConfig,
) {
    let addr = link.remote_addr;
    let max_size = config.max_frame_size;
    let mut frames = FramedWrite::new(write_half, frame_codec(config.max_frame_size));
    frames.set_backpressure_boundary(MAX_BATCH_BYTES);
    loop {
        let first = tokio::select! {
            biased;
            () = link.stop.cancelled() => break,
            first = outgoing.recv() => first,
        };
        let Some(first) = first else {
            // Nobody can send any more, but the peer may still talk: keep the write side open
            // (shutting it would look like a close) until the connection ends.
            link.stop.cancelled().await;
            break;
        };
        let result = {
            let batch =
                timeout(config.write_timeout, write_batch(&mut frames, first, &mut outgoing, max_size, addr));
            tokio::pin!(batch);
            tokio::select! {
                biased;
                result = &mut batch => result,
                () = link.stop.cancelled() => {
                    // Closing mid-batch: finish it if the peer takes it quickly.
                    let _ = timeout(CLOSE_GRACE, &mut batch).await;
                    break;
                }
            }
        };
        let error = match result {
            Ok(Ok(())) => continue,
            Ok(Err(err)) => TransportError::from_io(addr, "writing", &err),
            Err(_) => TransportError::ConnectionTimeout { addr, during: "writing" },
        };
        drop(frames);
        link.fail(error).await;
        return;
    }
    if link.failed.load(Ordering::Acquire) {
        return;
    }
    // A clean close: what the user queued before closing (a `Goodbye`, say) still goes out.
    outgoing.close();
    let farewell = async {
        while let Some(message) = outgoing.recv().await {
            feed(&mut frames, &message, max_size, addr).await?;
        }
        flush(&mut frames).await?;
        frames.get_mut().shutdown().await
    };
    match timeout(CLOSE_GRACE, farewell).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => trace!(%addr, error = %err, "writing before closing failed"),
        // Dropping the write half still shuts the socket down; only the queued tail is lost.
        Err(_) => trace!(%addr, "peer too slow to take the last messages before closing"),
    }
}

/// Writes `first` and whatever else is already queued, up to the batch bounds, with one flush.
async fn write_batch(
    frames: &mut FrameWriter,
    first: Outbound,
    outgoing: &mut mpsc::Receiver<Outbound>,
    max_size: usize,
    addr: SocketAddr,
) -> io::Result<()> {
    let mut count = 1;
    let mut bytes = feed(frames, &first, max_size, addr).await?;
    while count < MAX_BATCH_MESSAGES && bytes < MAX_BATCH_BYTES {
        let Ok(message) = outgoing.try_recv() else { break };
        bytes = bytes.saturating_add(feed(frames, &message, max_size, addr).await?);
        count = count.saturating_add(1);
    }
    flush(frames).await?;
    trace!(%addr, count, bytes, "wrote batch");
    Ok(())
}

/// Writes out the write buffer. (The codec takes both `Bytes` and slices, so the sink's item
/// type must be named.)
async fn flush(frames: &mut FrameWriter) -> io::Result<()> {
    SinkExt::<Bytes>::flush(frames).await
}

/// Queues one frame in the write buffer and returns its payload size. The payload is encoded
/// once for every connection the message goes to. A message that cannot be encoded (too
/// large) is skipped: the peer would refuse it anyway, and the connection is still good for
/// everything else.
async fn feed(
    frames: &mut FrameWriter,
    message: &Outbound,
    max_size: usize,
    addr: SocketAddr,
) -> io::Result<usize> {
    let payload = match message.payload(max_size) {
        Ok(payload) => payload,
        Err(err) => {
            warn!(%addr, kind = message.message().kind(), error = %err, "dropping a message that cannot be sent");
            return Ok(0);
        }
    };
    let size = payload.len();
    frames.feed(payload).await?;
    Ok(size)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use mesh_types::chrono::{DateTime, Utc};
    use mesh_types::rust_decimal::Decimal;
    use mesh_types::{
        Alert, Announce, Asset, Digest, DigestEntry, Goodbye, GoodbyeReason, Heartbeat, Hello, HelloAck,
        NONCE_LEN, NetworkId, NodeIdentity, PROTOCOL_VERSION, PeerAddress, PeerExchange, PriceData,
        PriceUpdate, Request, WarningKind,
    };
    use tokio::io::AsyncReadExt;

    use super::*;

    const WAIT: Duration = Duration::from_secs(10);

    fn localhost() -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
    }

    fn ping(nonce: u64) -> MeshMessage {
        MeshMessage::Ping(Heartbeat { nonce, is_provider: false, peer_count: 3 })
    }

    fn price_update(identity: &NodeIdentity, now: DateTime<Utc>) -> PriceUpdate {
        let price = PriceData {
            asset: Asset::new("SOL").unwrap(),
            price: Decimal::new(12345, 2),
            blockchain: "Solana".into(),
            change_24h: Some(Decimal::new(-31, 1)),
        };
        PriceUpdate::new_signed(identity, &mesh_types::NetworkId::mainnet(), [price], 10, now)
    }

    /// One message of every kind.
    fn every_kind() -> Vec<MeshMessage> {
        let identity = NodeIdentity::generate();
        let now = Utc::now();
        let network = NetworkId::testnet();
        let addr = SocketAddr::from((Ipv4Addr::new(10, 0, 0, 7), 7000));
        let sol = Asset::new("SOL").unwrap();
        let nonce = [7; NONCE_LEN];
        let messages = vec![
            MeshMessage::Hello(Hello {
                network: network.clone(),
                protocol_version: PROTOCOL_VERSION,
                node_id: identity.node_id(),
                public_key: identity.public_key(),
                listen_addr: Some(addr),
                user_agent: "pricemesh/test".into(),
                nonce,
            }),
            MeshMessage::HelloAck(HelloAck::prove(&identity, &network, &nonce)),
            ping(1),
            MeshMessage::Pong(Heartbeat { nonce: 1, is_provider: true, peer_count: 8 }),
            MeshMessage::from(price_update(&identity, now)),
            MeshMessage::Digest(Digest {
                entries: vec![DigestEntry {
                    asset: sol,
                    timestamp: now,
                    source_node_id: identity.node_id(),
                    content: [7; 32],
                }],
            }),
            MeshMessage::Request(Request { assets: vec![sol, Asset::new("BTC").unwrap()] }),
            MeshMessage::PeerExchange(PeerExchange {
                peers: vec![PeerAddress { node_id: identity.node_id(), addr }],
            }),
            MeshMessage::Announce(Announce::new_signed(
                &identity,
                &mesh_types::NetworkId::mainnet(),
                true,
                Some(addr),
                5,
                now,
            )),
            MeshMessage::Alert(Alert::new_signed(
                &identity,
                &mesh_types::NetworkId::mainnet(),
                WarningKind::StaleData { age_seconds: 90 },
                5,
                now,
            )),
            MeshMessage::Goodbye(Goodbye { reason: GoodbyeReason::Other("bye".into()) }),
        ];
        let mut kinds: Vec<_> = messages.iter().map(MeshMessage::kind).collect();
        kinds.dedup();
        assert_eq!(kinds.len(), 11, "one message of each of the 11 kinds");
        messages
    }

    fn short_timeouts() -> LinkConfig {
        LinkConfig {
            read_timeout: Duration::from_millis(300),
            write_timeout: Duration::from_millis(300),
            connect_timeout: Duration::from_secs(2),
            ..LinkConfig::default()
        }
    }

    async fn accept(listener: &mut Listener) -> Connection {
        timeout(WAIT, listener.accept()).await.unwrap().unwrap()
    }

    async fn recv(connection: &mut Connection) -> Option<Result<MeshMessage, TransportError>> {
        timeout(WAIT, connection.receiver.recv()).await.unwrap()
    }

    /// A dialled connection and its accepted other end.
    async fn pair(transport: &TcpTransport, listener: &mut Listener) -> (Connection, Connection) {
        let dialled = transport.dial(listener.local_addr()).await.unwrap();
        let accepted = accept(listener).await;
        (dialled, accepted)
    }

    async fn assert_round_trip(dialled: &mut Connection, accepted: &mut Connection, nonce: u64) {
        dialled.sender.send(ping(nonce)).await.unwrap();
        assert_eq!(recv(accepted).await.unwrap().unwrap(), ping(nonce));
        accepted.sender.send(ping(nonce + 1)).await.unwrap();
        assert_eq!(recv(dialled).await.unwrap().unwrap(), ping(nonce + 1));
    }

    /// A raw socket's read returns end of stream or a reset: the node dropped it.
    async fn assert_socket_closed(raw: &mut TcpStream) {
        let mut buffer = [0; 64];
        match timeout(WAIT, raw.read(&mut buffer)).await.unwrap() {
            Ok(0) | Err(_) => {}
            Ok(n) => panic!("expected the node to close the socket, read {n} bytes"),
        }
    }

    #[tokio::test]
    async fn every_message_kind_round_trips_both_ways() {
        let transport = TcpTransport::default();
        let mut listener = transport.listen(localhost()).await.unwrap();
        assert_ne!(listener.local_addr().port(), 0, "the real port is reported");
        let (mut dialled, mut accepted) = pair(&transport, &mut listener).await;
        assert_eq!(dialled.remote_addr, listener.local_addr());
        assert_eq!(accepted.remote_addr.ip(), Ipv4Addr::LOCALHOST);

        let messages = every_kind();
        for message in &messages {
            dialled.sender.send(message.clone()).await.unwrap();
        }
        for message in &messages {
            assert_eq!(&recv(&mut accepted).await.unwrap().unwrap(), message);
        }
        for message in &messages {
            accepted.sender.send(message.clone()).await.unwrap();
        }
        for message in &messages {
            assert_eq!(&recv(&mut dialled).await.unwrap().unwrap(), message);
        }
    }

    #[tokio::test]
    async fn a_burst_of_ten_thousand_arrives_in_order() {
        const COUNT: u64 = 10_000;
        let transport = TcpTransport::default();
        let mut listener = transport.listen(localhost()).await.unwrap();
        let (dialled, mut accepted) = pair(&transport, &mut listener).await;
        let sender = dialled.sender.clone();
        let sending = tokio::spawn(async move {
            for nonce in 0..COUNT {
                sender.send(ping(nonce)).await.unwrap();
            }
        });
        for nonce in 0..COUNT {
            assert_eq!(recv(&mut accepted).await.unwrap().unwrap(), ping(nonce));
        }
        sending.await.unwrap();
        drop(dialled);
    }

    #[tokio::test]
    async fn garbage_closes_only_that_connection() {
        let transport = TcpTransport::default();
        let mut listener = transport.listen(localhost()).await.unwrap();
        let (mut good, mut good_accepted) = pair(&transport, &mut listener).await;

        let mut raw = TcpStream::connect(listener.local_addr()).await.unwrap();
        let mut bad = accept(&mut listener).await;
        // A well-formed frame whose payload is not a message (unknown version byte).
        raw.write_all(&[0, 0, 0, 5, 0xde, 0xad, 0xbe, 0xef, 0x99]).await.unwrap();
        let error = recv(&mut bad).await.unwrap().unwrap_err();
        assert!(matches!(error, TransportError::MalformedFrame { .. }), "{error}");
        assert!(!error.is_retryable());
        assert!(recv(&mut bad).await.is_none());
        assert!(bad.sender.is_closed());
        assert_socket_closed(&mut raw).await;

        assert_round_trip(&mut good, &mut good_accepted, 10).await;
        let (mut later, mut later_accepted) = pair(&transport, &mut listener).await;
        assert_round_trip(&mut later, &mut later_accepted, 20).await;
    }

    #[tokio::test]
    async fn a_huge_length_prefix_is_refused_before_reading_the_body() {
        let transport = TcpTransport::default();
        let mut listener = transport.listen(localhost()).await.unwrap();
        let mut raw = TcpStream::connect(listener.local_addr()).await.unwrap();
        let mut bad = accept(&mut listener).await;
        raw.write_all(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]).await.unwrap();
        match recv(&mut bad).await.unwrap() {
            Err(TransportError::FrameTooLarge { size, max, .. }) => {
                assert_eq!(size, 0xFFFF_FFFF);
                assert_eq!(max, LinkConfig::default().max_frame_size);
            }
            other => panic!("expected FrameTooLarge, got {other:?}"),
        }
        assert!(recv(&mut bad).await.is_none());
        assert_socket_closed(&mut raw).await;

        let (mut dialled, mut accepted) = pair(&transport, &mut listener).await;
        assert_round_trip(&mut dialled, &mut accepted, 1).await;
    }

    #[tokio::test]
    async fn a_frame_just_over_the_limit_is_refused() {
        let config = LinkConfig { max_frame_size: 64, ..LinkConfig::default() };
        let transport = TcpTransport::new(config);
        let mut listener = transport.listen(localhost()).await.unwrap();
        let mut raw = TcpStream::connect(listener.local_addr()).await.unwrap();
        let mut bad = accept(&mut listener).await;
        raw.write_all(&65u32.to_be_bytes()).await.unwrap();
        match recv(&mut bad).await.unwrap() {
            Err(TransportError::FrameTooLarge { size: 65, max: 64, .. }) => {}
            other => panic!("expected FrameTooLarge, got {other:?}"),
        }
        assert!(recv(&mut bad).await.is_none());
    }

    #[tokio::test]
    async fn closing_in_the_middle_of_a_frame_is_a_reset() {
        let transport = TcpTransport::default();
        let mut listener = transport.listen(localhost()).await.unwrap();
        let mut raw = TcpStream::connect(listener.local_addr()).await.unwrap();
        let mut bad = accept(&mut listener).await;
        raw.write_all(&[0, 0, 0, 10, 1, 2]).await.unwrap();
        drop(raw);
        let error = recv(&mut bad).await.unwrap().unwrap_err();
        assert!(matches!(error, TransportError::ConnectionReset { .. }), "{error}");
        assert!(error.is_retryable());
        assert!(recv(&mut bad).await.is_none());
    }

    #[tokio::test]
    async fn a_silent_connection_times_out() {
        let transport = TcpTransport::new(short_timeouts());
        let mut listener = transport.listen(localhost()).await.unwrap();
        let mut raw = TcpStream::connect(listener.local_addr()).await.unwrap();
        let mut silent = accept(&mut listener).await;
        let started = tokio::time::Instant::now();
        match recv(&mut silent).await.unwrap() {
            Err(TransportError::ConnectionTimeout { during: "reading", .. }) => {}
            other => panic!("expected a read timeout, got {other:?}"),
        }
        assert!(started.elapsed() >= Duration::from_millis(250));
        assert!(recv(&mut silent).await.is_none());
        assert_socket_closed(&mut raw).await;
    }

    #[tokio::test]
    async fn traffic_keeps_a_connection_inside_the_read_timeout() {
        let transport = TcpTransport::new(short_timeouts());
        let mut listener = transport.listen(localhost()).await.unwrap();
        let (mut dialled, mut accepted) = pair(&transport, &mut listener).await;
        // Each side times out on its own silence, so both must hear something.
        for nonce in 0..8 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert_round_trip(&mut dialled, &mut accepted, nonce * 2).await;
        }
    }

    #[tokio::test]
    async fn a_peer_that_does_not_read_times_out_the_writer() {
        let config =
            LinkConfig { write_timeout: Duration::from_millis(300), send_queue: 8, ..LinkConfig::default() };
        let transport = TcpTransport::new(config);
        let raw_listener = TcpListener::bind(localhost()).await.unwrap();
        let mut dialled = transport.dial(raw_listener.local_addr().unwrap()).await.unwrap();
        let (_raw, _) = raw_listener.accept().await.unwrap();
        let big = MeshMessage::Goodbye(Goodbye { reason: GoodbyeReason::Other("x".repeat(512 * 1024)) });
        let sender = dialled.sender.clone();
        tokio::spawn(async move { while sender.send(big.clone()).await.is_ok() {} });
        match recv(&mut dialled).await.unwrap() {
            Err(TransportError::ConnectionTimeout { during: "writing", .. }) => {}
            other => panic!("expected a write timeout, got {other:?}"),
        }
        assert!(recv(&mut dialled).await.is_none());
    }

    #[tokio::test]
    async fn a_message_too_large_to_send_is_skipped() {
        let config = LinkConfig { max_frame_size: 256, ..LinkConfig::default() };
        let transport = TcpTransport::new(config);
        let mut listener = transport.listen(localhost()).await.unwrap();
        let (dialled, mut accepted) = pair(&transport, &mut listener).await;
        let big = MeshMessage::Goodbye(Goodbye { reason: GoodbyeReason::Other("x".repeat(1000)) });
        dialled.sender.send(ping(1)).await.unwrap();
        dialled.sender.send(big).await.unwrap();
        dialled.sender.send(ping(2)).await.unwrap();
        assert_eq!(recv(&mut accepted).await.unwrap().unwrap(), ping(1));
        assert_eq!(recv(&mut accepted).await.unwrap().unwrap(), ping(2));
        assert!(!dialled.sender.is_closed());
    }

    #[tokio::test]
    async fn dialling_a_closed_port_is_refused_and_retryable() {
        let socket = TcpListener::bind(localhost()).await.unwrap();
        let addr = socket.local_addr().unwrap();
        drop(socket);
        let error = TcpTransport::default().dial(addr).await.unwrap_err();
        assert!(
            matches!(error, TransportError::ConnectionRefused { addr: refused } if refused == addr),
            "{error}"
        );
        assert!(error.is_retryable());
    }

    #[tokio::test]
    async fn listening_on_a_taken_address_fails() {
        let transport = TcpTransport::default();
        let listener = transport.listen(localhost()).await.unwrap();
        let error = transport.listen(listener.local_addr()).await.unwrap_err();
        assert!(matches!(error, TransportError::ListenFailed { .. }), "{error}");
    }

    #[tokio::test]
    async fn closing_one_side_ends_the_other() {
        let transport = TcpTransport::default();
        let mut listener = transport.listen(localhost()).await.unwrap();

        let (mut dialled, mut accepted) = pair(&transport, &mut listener).await;
        // What was queued before the close still arrives.
        let goodbye = MeshMessage::Goodbye(Goodbye { reason: GoodbyeReason::Shutdown });
        dialled.sender.send(goodbye.clone()).await.unwrap();
        dialled.close();
        assert!(recv(&mut dialled).await.is_none());
        assert_eq!(recv(&mut accepted).await.unwrap().unwrap(), goodbye);
        assert!(recv(&mut accepted).await.is_none());
        assert!(accepted.sender.send(ping(1)).await.is_err());

        let (mut dialled, mut accepted) = pair(&transport, &mut listener).await;
        assert_round_trip(&mut dialled, &mut accepted, 1).await;
        drop(accepted);
        assert!(recv(&mut dialled).await.is_none());
        timeout(WAIT, dialled.sender.closed()).await.unwrap();
    }

    #[tokio::test]
    async fn dropping_the_listener_stops_accepting() {
        let transport = TcpTransport::default();
        let mut listener = transport.listen(localhost()).await.unwrap();
        let addr = listener.local_addr();
        let (mut dialled, mut accepted) = pair(&transport, &mut listener).await;
        drop(listener);

        let mut refused = false;
        for _ in 0..100 {
            match transport.dial(addr).await {
                Err(TransportError::ConnectionRefused { .. }) => {
                    refused = true;
                    break;
                }
                // The accept loop has not noticed yet.
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        assert!(refused, "dials are refused once the listener is dropped");
        // Connections already made are not affected.
        assert_round_trip(&mut dialled, &mut accepted, 1).await;
    }
}
