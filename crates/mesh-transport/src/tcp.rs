//! [`TcpTransport`]: the real network. A fresh connection first runs the Noise XX handshake of
//! [`crate::noise`] within [`LinkConfig::handshake_timeout`], which authenticates the peer's
//! Ed25519 identity ([`Connection::remote_identity`]). After it, each frame is a 4-byte
//! big-endian length followed by one [`mesh_types::Codec`] payload, as before, but the stream of
//! frames travels encrypted and authenticated, cut into Noise transport messages (a u16
//! big-endian length and at most 65,535 bytes of ciphertext each).
//!
//! Every connection runs two tasks:
//!
//! - a reader that opens each transport message, refuses an oversized frame length as soon as
//!   its four bytes are decrypted (before the body is buffered), decodes each payload, ends the
//!   connection on a message that fails to decrypt, and drops it after
//!   [`LinkConfig::read_timeout`] of silence;
//! - a writer that batches whatever is already queued, seals the batch into as few transport
//!   messages as fit and writes them in one flush, so a burst of small relays costs one system
//!   call and one tag rather than one of each per frame, and gives up on a peer that does not
//!   take a batch within [`LinkConfig::write_timeout`].
//!
//! Inbound handshakes run in tasks of their own, at most [`MAX_PENDING_HANDSHAKES`] at once
//! (connections beyond that are dropped at once), so a slow or silent dialler cannot stall the
//! accept loop. A connection whose handshake fails never reaches the listener's owner.
//!
//! A fatal error (a message that does not decrypt, a malformed or oversized frame, reset,
//! timeout) reaches the user as one `Err(..)` from the connection's receiver, after which it
//! yields `None`.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{BufMut, BytesMut};
use futures::StreamExt;
use mesh_types::{Codec, MeshMessage, NetworkId, NodeIdentity};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::timeout;
use tokio_util::codec::{Decoder, FramedRead, LengthDelimitedCodec, LengthDelimitedCodecError};
use tokio_util::sync::CancellationToken;
use tracing::{debug, trace, warn};

use crate::noise::{self, CipherError, LocalKeys, MAX_CHUNK, Opener, Role, Sealer, Session};
use crate::{Connection, ConnectionIo, LinkConfig, Listener, Outbound, Transport, TransportError};

/// Bytes in the length prefix of a frame.
pub(crate) const LENGTH_FIELD_LEN: usize = 4;

/// At most this many messages go out in one flush, so one busy connection cannot hold a huge
/// buffer.
const MAX_BATCH_MESSAGES: usize = 256;

/// At most about this many bytes go out in one flush; also the point at which sealed bytes are
/// written out before the batch ends, so a batch normally costs a single write.
const MAX_BATCH_BYTES: usize = 256 * 1024;

/// How long a closing connection may spend writing out what is still queued (a `Goodbye`,
/// usually) before the socket is shut down regardless.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Accepted connections waiting for the listener's owner to take them.
const ACCEPT_BACKLOG: usize = 128;

/// Inbound Noise handshakes in progress at once, per listener; a connection beyond them is
/// dropped as soon as it is accepted.
pub(crate) const MAX_PENDING_HANDSHAKES: usize = 128;

/// Pause after a failed `accept` (out of file descriptors, usually), so the loop does not spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// Connections over TCP, each secured by a Noise session bound to this node's identity.
#[derive(Debug, Clone)]
pub struct TcpTransport {
    config: LinkConfig,
    /// Shared by every connection: made once, so all sessions of a node show one static key.
    keys: Arc<LocalKeys>,
}

impl TcpTransport {
    /// A transport applying `config` to every connection it makes or accepts, proving
    /// `identity` in each session, with sessions only to nodes of `network` speaking this
    /// protocol version (both are in the Noise prologue). A fresh X25519 static key is made
    /// here and signed by `identity`; it lives as long as the transport.
    pub fn new(config: LinkConfig, identity: &NodeIdentity, network: &NetworkId) -> Self {
        Self { config, keys: Arc::new(LocalKeys::new(identity, network)) }
    }

    /// The limits applied to every connection.
    pub const fn config(&self) -> &LinkConfig {
        &self.config
    }

    /// The X25519 static public key this transport's sessions show.
    pub fn static_public_key(&self) -> [u8; 32] {
        *self.keys.static_public()
    }

    #[cfg(test)]
    pub(crate) fn with_keys(config: LinkConfig, keys: LocalKeys) -> Self {
        Self { config, keys: Arc::new(keys) }
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
        tokio::spawn(accept_loop(socket, local_addr, accepted, self.config, Arc::clone(&self.keys)));
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
        secure(stream, addr, self.config, &self.keys, Role::Initiator).await
    }
}

/// Accepts until the [`Listener`] is dropped; dropping the socket then refuses new dials.
async fn accept_loop(
    socket: TcpListener,
    local_addr: SocketAddr,
    accepted: mpsc::Sender<Connection>,
    config: LinkConfig,
    keys: Arc<LocalKeys>,
) {
    let pending = Arc::new(Semaphore::new(MAX_PENDING_HANDSHAKES));
    loop {
        let result = tokio::select! {
            () = accepted.closed() => break,
            result = socket.accept() => result,
        };
        match result {
            Ok((stream, remote_addr)) => {
                let Ok(permit) = Arc::clone(&pending).try_acquire_owned() else {
                    debug!(%local_addr, %remote_addr, "too many handshakes in progress; dropping the connection");
                    continue;
                };
                set_nodelay(&stream, remote_addr);
                trace!(%local_addr, %remote_addr, "accepted");
                tokio::spawn(inbound(
                    stream,
                    remote_addr,
                    accepted.clone(),
                    config,
                    Arc::clone(&keys),
                    permit,
                ));
            }
            Err(err) => {
                warn!(%local_addr, error = %err, "accepting a connection failed");
                tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
            }
        }
    }
    debug!(%local_addr, "stopped listening");
}

/// Secures one accepted connection and hands it to the listener's owner; holds its handshake
/// slot until then.
async fn inbound(
    stream: TcpStream,
    remote_addr: SocketAddr,
    accepted: mpsc::Sender<Connection>,
    config: LinkConfig,
    keys: Arc<LocalKeys>,
    _permit: OwnedSemaphorePermit,
) {
    let secured = tokio::select! {
        // The listener is gone: nobody would take the connection.
        () = accepted.closed() => return,
        secured = secure(stream, remote_addr, config, &keys, Role::Responder) => secured,
    };
    match secured {
        // The send fails only when the listener is gone; the dropped connection then closes
        // itself.
        Ok(connection) => drop(accepted.send(connection).await),
        Err(error) => debug!(%remote_addr, %error, "inbound connection refused"),
    }
}

/// Runs the Noise handshake on a fresh socket within the handshake deadline and starts the
/// connection's tasks. On failure the socket is dropped, which closes it.
async fn secure(
    mut stream: TcpStream,
    remote_addr: SocketAddr,
    config: LinkConfig,
    keys: &LocalKeys,
    role: Role,
) -> Result<Connection, TransportError> {
    let handshake = noise::handshake(&mut stream, keys, role, remote_addr);
    let session = match timeout(config.handshake_timeout, handshake).await {
        Ok(session) => session?,
        Err(_) => return Err(TransportError::HandshakeTimeout { addr: remote_addr }),
    };
    trace!(%remote_addr, identity = %session.remote_identity(), "session established");
    Ok(spawn_connection(stream, remote_addr, config, session))
}

/// Without it, a small frame can wait for Nagle's algorithm while a price goes stale.
fn set_nodelay(stream: &TcpStream, addr: SocketAddr) {
    if let Err(err) = stream.set_nodelay(true) {
        debug!(%addr, error = %err, "cannot set TCP_NODELAY");
    }
}

/// The length-prefix codec that cuts the decrypted stream into frames.
fn frame_codec(max_frame_size: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(LENGTH_FIELD_LEN)
        .big_endian()
        .max_frame_length(max_frame_size)
        .new_codec()
}

/// Starts the reader and writer tasks of a socket whose session is established.
fn spawn_connection(
    stream: TcpStream,
    remote_addr: SocketAddr,
    config: LinkConfig,
    session: Session,
) -> Connection {
    let (mut connection, io) = Connection::channels(remote_addr, config.send_queue);
    connection.remote_identity = Some(*session.remote_identity());
    let (opener, sealer) = session.into_halves();
    let ConnectionIo { outgoing, incoming, closed } = io;
    let (read_half, write_half) = stream.into_split();
    let link = Arc::new(Link {
        remote_addr,
        incoming,
        stop: closed.child_token(),
        closed,
        failed: AtomicBool::new(false),
    });
    tokio::spawn(read_loop(read_half, opener, Arc::clone(&link), config));
    tokio::spawn(write_loop(FrameWriter::new(write_half, sealer), outgoing, link, config));
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
    /// A transport message did not open.
    Cipher(CipherError),
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
}

/// Opens the peer's transport messages and cuts the plaintext into frames. The frame decoder
/// runs before each further message is opened, so an oversized length is refused as soon as it
/// is decrypted: at most the frame limit plus one transport message is ever buffered.
#[derive(Debug)]
struct SessionDecoder {
    opener: Opener,
    /// Decrypted bytes not yet cut into frames.
    plain: BytesMut,
    frames: FrameDecoder,
}

impl SessionDecoder {
    fn new(opener: Opener, max_frame_size: usize) -> Self {
        Self { opener, plain: BytesMut::new(), frames: FrameDecoder::new(max_frame_size) }
    }
}

impl Decoder for SessionDecoder {
    type Item = BytesMut;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, FrameError> {
        loop {
            if let Some(frame) = self.frames.decode(&mut self.plain)? {
                return Ok(Some(frame));
            }
            // Each round either opens one whole message off `src` or waits for more bytes.
            if !self.opener.open(src, &mut self.plain).map_err(FrameError::Cipher)? {
                return Ok(None);
            }
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<BytesMut>, FrameError> {
        match self.decode(buf)? {
            Some(frame) => Ok(Some(frame)),
            None if buf.is_empty() && self.plain.is_empty() => Ok(None),
            // Reported as a reset: the peer went away in the middle of a frame or a message.
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

async fn read_loop(read_half: OwnedReadHalf, opener: Opener, link: Arc<Link>, config: LinkConfig) {
    // The read half is dropped when `read_frames` returns, before the error waits for the user.
    match read_frames(read_half, opener, &link, config).await {
        ReadEnd::Stopped => {}
        ReadEnd::Eof => {
            trace!(addr = %link.remote_addr, "peer closed the connection");
            link.closed.cancel();
        }
        ReadEnd::Failed(error) => link.fail(error).await,
    }
}

async fn read_frames(read_half: OwnedReadHalf, opener: Opener, link: &Link, config: LinkConfig) -> ReadEnd {
    let addr = link.remote_addr;
    let max = config.max_frame_size;
    let codec = Codec::new(max);
    let mut frames = FramedRead::new(read_half, SessionDecoder::new(opener, max));
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
            Ok(Some(Err(FrameError::Cipher(CipherError::Exhausted)))) => {
                return ReadEnd::Failed(TransportError::ConnectionFailed {
                    addr,
                    detail: "the session's receiving nonces are exhausted".to_owned(),
                });
            }
            Ok(Some(Err(FrameError::Cipher(_)))) => {
                return ReadEnd::Failed(TransportError::DecryptionFailed { addr });
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

/// The sending half of a connection: frames are laid out as plaintext, sealed into transport
/// messages as each message's worth fills, and written out per batch.
#[derive(Debug)]
struct FrameWriter {
    socket: OwnedWriteHalf,
    sealer: Sealer,
    /// Framed plaintext not sealed yet: less than one message's worth between calls.
    plain: BytesMut,
    /// Sealed messages not written yet. Writing advances it, so a write cut short (a timeout,
    /// a close) leaves exactly the unwritten rest.
    wire: BytesMut,
}

impl FrameWriter {
    fn new(socket: OwnedWriteHalf, sealer: Sealer) -> Self {
        Self { socket, sealer, plain: BytesMut::new(), wire: BytesMut::new() }
    }

    /// Lays out one frame (length, payload), sealing every full message's worth.
    fn push(&mut self, payload: &[u8]) -> io::Result<()> {
        let len = u32::try_from(payload.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame longer than 4 GiB"))?;
        self.append(&len.to_be_bytes())?;
        self.append(payload)
    }

    fn append(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            if self.plain.is_empty() && bytes.len() >= MAX_CHUNK {
                // A whole message's worth: sealed straight from the payload, not copied first.
                let (chunk, rest) = bytes.split_at(MAX_CHUNK);
                self.sealer.seal(chunk, &mut self.wire).map_err(cipher_error)?;
                bytes = rest;
                continue;
            }
            let room = MAX_CHUNK.saturating_sub(self.plain.len());
            let (now, rest) = bytes.split_at(room.min(bytes.len()));
            self.plain.put_slice(now);
            bytes = rest;
            if self.plain.len() >= MAX_CHUNK {
                self.seal()?;
            }
        }
        Ok(())
    }

    /// Seals what plaintext is waiting into one message.
    fn seal(&mut self) -> io::Result<()> {
        if !self.plain.is_empty() {
            self.sealer.seal(&self.plain, &mut self.wire).map_err(cipher_error)?;
            self.plain.clear();
        }
        Ok(())
    }

    /// Queues one frame; writes out what is sealed once it passes the batch bound.
    async fn feed(&mut self, payload: &[u8]) -> io::Result<()> {
        self.push(payload)?;
        if self.wire.len() >= MAX_BATCH_BYTES {
            self.socket.write_all_buf(&mut self.wire).await?;
        }
        Ok(())
    }

    /// Seals the rest, writes everything out and flushes.
    async fn flush(&mut self) -> io::Result<()> {
        self.seal()?;
        self.socket.write_all_buf(&mut self.wire).await?;
        self.socket.flush().await
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        self.socket.shutdown().await
    }
}

fn cipher_error(err: CipherError) -> io::Error {
    io::Error::other(match err {
        CipherError::Exhausted => "the session's sending nonces are exhausted",
        CipherError::TooLarge | CipherError::Decrypt => "cannot seal a transport message",
    })
}

async fn write_loop(
    mut frames: FrameWriter,
    mut outgoing: mpsc::Receiver<Outbound>,
    link: Arc<Link>,
    config: LinkConfig,
) {
    let addr = link.remote_addr;
    let max_size = config.max_frame_size;
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
        frames.flush().await?;
        frames.shutdown().await
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
    frames.flush().await?;
    trace!(%addr, count, bytes, "wrote batch");
    Ok(())
}

/// Queues one frame and returns its payload size. The payload is encoded once for every
/// connection the message goes to (and sealed once per connection). A message that cannot be
/// encoded (too large) is skipped: the peer would refuse it anyway, and the connection is still
/// good for everything else.
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
    frames.feed(&payload).await?;
    Ok(payload.len())
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
    use std::sync::Mutex;

    use mesh_types::PublicKey;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::handshake::{HandshakeConfig, handshake};
    use crate::noise::{read_handshake, write_handshake};

    const WAIT: Duration = Duration::from_secs(10);

    fn localhost() -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
    }

    fn ping(nonce: u64) -> MeshMessage {
        MeshMessage::Ping(Heartbeat {
            nonce,
            is_provider: false,
            peer_count: 3,
            sent_at: mesh_types::chrono::DateTime::UNIX_EPOCH,
            provider_hops: None,
        })
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
            MeshMessage::Pong(Heartbeat {
                nonce: 1,
                is_provider: true,
                peer_count: 8,
                sent_at: mesh_types::chrono::DateTime::UNIX_EPOCH,
                provider_hops: None,
            }),
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
                peers: vec![PeerAddress { node_id: identity.node_id(), addr, provider_hops: Some(1) }],
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
            handshake_timeout: Duration::from_millis(300),
            ..LinkConfig::default()
        }
    }

    fn devnet() -> NetworkId {
        NetworkId::devnet()
    }

    /// A transport of a fresh identity on devnet.
    fn transport(config: LinkConfig) -> TcpTransport {
        TcpTransport::new(config, &NodeIdentity::generate(), &devnet())
    }

    fn default_transport() -> TcpTransport {
        transport(LinkConfig::default())
    }

    async fn accept(listener: &mut Listener) -> Connection {
        timeout(WAIT, listener.accept()).await.unwrap().unwrap()
    }

    /// Nothing reaches the listener's owner for a while.
    async fn assert_nothing_accepted(listener: &mut Listener) {
        let accepted = timeout(Duration::from_millis(500), listener.accept()).await;
        assert!(accepted.is_err(), "no connection may come out of a failed session");
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
        loop {
            match timeout(WAIT, raw.read(&mut buffer)).await.unwrap() {
                Ok(0) | Err(_) => return,
                // Whatever the node said before closing (its handshake message, say).
                Ok(_) => {}
            }
        }
    }

    /// One frame as it travels inside the session: length, then the codec payload.
    fn frame(message: &MeshMessage) -> Vec<u8> {
        let payload = Codec::default().encode(message).unwrap();
        let mut frame = u32::try_from(payload.len()).unwrap().to_be_bytes().to_vec();
        frame.extend_from_slice(&payload);
        frame
    }

    /// A peer played by hand over a raw socket: a genuine session, then whatever bytes the test
    /// wants to send.
    struct RawPeer {
        stream: TcpStream,
        decoder: SessionDecoder,
        received: BytesMut,
        sealer: Sealer,
        remote_identity: PublicKey,
    }

    impl RawPeer {
        /// Dials `addr` and completes a session as a fresh devnet identity.
        async fn dial(addr: SocketAddr) -> Self {
            let keys = LocalKeys::new(&NodeIdentity::generate(), &devnet());
            Self::dial_with(addr, &keys).await.unwrap()
        }

        async fn dial_with(addr: SocketAddr, keys: &LocalKeys) -> Result<Self, TransportError> {
            let stream = TcpStream::connect(addr).await.unwrap();
            Self::secure(stream, keys, Role::Initiator, addr).await
        }

        /// Accepts one connection on `listener` and completes the session as a responder.
        async fn accept(listener: &TcpListener) -> Self {
            let (stream, addr) = listener.accept().await.unwrap();
            let keys = LocalKeys::new(&NodeIdentity::generate(), &devnet());
            Self::secure(stream, &keys, Role::Responder, addr).await.unwrap()
        }

        async fn secure(
            mut stream: TcpStream,
            keys: &LocalKeys,
            role: Role,
            addr: SocketAddr,
        ) -> Result<Self, TransportError> {
            let session = noise::handshake(&mut stream, keys, role, addr).await?;
            let remote_identity = *session.remote_identity();
            let (opener, sealer) = session.into_halves();
            let decoder = SessionDecoder::new(opener, LinkConfig::default().max_frame_size);
            Ok(Self { stream, decoder, received: BytesMut::new(), sealer, remote_identity })
        }

        /// `plain` sealed as one transport message, as it goes on the wire.
        fn seal(&mut self, plain: &[u8]) -> BytesMut {
            let mut wire = BytesMut::new();
            self.sealer.seal(plain, &mut wire).unwrap();
            wire
        }

        /// Sends `plain` through the session as one transport message.
        async fn send_plain(&mut self, plain: &[u8]) {
            let wire = self.seal(plain);
            self.stream.write_all(&wire).await.unwrap();
        }

        /// The next message the node sends, decrypted as the node's own reader would.
        async fn recv(&mut self) -> MeshMessage {
            loop {
                if let Some(frame) = self.decoder.decode(&mut self.received).unwrap() {
                    return Codec::default().decode(&frame).unwrap();
                }
                let read = timeout(WAIT, self.stream.read_buf(&mut self.received)).await.unwrap();
                assert_ne!(read.unwrap(), 0, "the node closed the connection");
            }
        }
    }

    /// A TCP relay for one connection to `target` that records every byte, both ways.
    struct Tap {
        addr: SocketAddr,
        recorded: Arc<Mutex<Vec<u8>>>,
    }

    impl Tap {
        async fn start(target: SocketAddr) -> Self {
            let listener = TcpListener::bind(localhost()).await.unwrap();
            let addr = listener.local_addr().unwrap();
            let recorded = Arc::new(Mutex::new(Vec::new()));
            let tape = Arc::clone(&recorded);
            tokio::spawn(async move {
                let (inbound, _) = listener.accept().await.unwrap();
                let outbound = TcpStream::connect(target).await.unwrap();
                let (from_dialler, to_dialler) = inbound.into_split();
                let (from_target, to_target) = outbound.into_split();
                tokio::spawn(Self::copy(from_dialler, to_target, Arc::clone(&tape)));
                tokio::spawn(Self::copy(from_target, to_dialler, tape));
            });
            Self { addr, recorded }
        }

        async fn copy(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, tape: Arc<Mutex<Vec<u8>>>) {
            let mut buffer = vec![0; 64 * 1024];
            while let Ok(n) = from.read(&mut buffer).await {
                if n == 0 {
                    break;
                }
                tape.lock().unwrap().extend_from_slice(&buffer[..n]);
                if to.write_all(&buffer[..n]).await.is_err() {
                    break;
                }
            }
        }

        fn recorded(&self) -> Vec<u8> {
            self.recorded.lock().unwrap().clone()
        }
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|window| window == needle)
    }

    #[tokio::test]
    async fn every_message_kind_round_trips_both_ways() {
        let transport = default_transport();
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
    async fn sessions_authenticate_both_identities_and_the_wire_carries_no_plaintext() {
        let (alice, bob) = (NodeIdentity::generate(), NodeIdentity::generate());
        let (alice_transport, bob_transport) = (
            TcpTransport::new(LinkConfig::default(), &alice, &devnet()),
            TcpTransport::new(LinkConfig::default(), &bob, &devnet()),
        );
        let mut bob_listener = bob_transport.listen(localhost()).await.unwrap();
        let tap = Tap::start(bob_listener.local_addr()).await;
        let mut dialled = alice_transport.dial(tap.addr).await.unwrap();
        let mut accepted = accept(&mut bob_listener).await;
        assert_eq!(dialled.remote_identity, Some(bob.public_key()), "alice knows bob's key");
        assert_eq!(accepted.remote_identity, Some(alice.public_key()), "bob knows alice's key");

        const MARKER: &str = "marker-that-must-never-be-seen-on-the-wire";
        let hello = MeshMessage::Hello(Hello {
            network: devnet(),
            protocol_version: PROTOCOL_VERSION,
            node_id: alice.node_id(),
            public_key: alice.public_key(),
            listen_addr: None,
            user_agent: MARKER.into(),
            nonce: [5; NONCE_LEN],
        });
        dialled.sender.send(hello.clone()).await.unwrap();
        assert_eq!(recv(&mut accepted).await.unwrap().unwrap(), hello);
        let big = MeshMessage::Goodbye(Goodbye { reason: GoodbyeReason::Other(MARKER.repeat(2_000)) });
        accepted.sender.send(big.clone()).await.unwrap();
        assert_eq!(recv(&mut dialled).await.unwrap().unwrap(), big);

        let wire = tap.recorded();
        assert!(wire.len() > MARKER.len() * 2_000, "the tap saw the traffic ({} bytes)", wire.len());
        assert!(!contains(&wire, MARKER.as_bytes()), "the marker crossed the wire in plaintext");
        assert!(!contains(&wire, &frame(&hello)), "the frame crossed the wire in plaintext");
        assert!(!contains(&wire, &Codec::default().encode(&hello).unwrap()[..32]));
    }

    #[tokio::test]
    async fn frames_larger_than_a_transport_message_are_split_and_reassembled() {
        let transport = default_transport();
        let mut listener = transport.listen(localhost()).await.unwrap();
        let (dialled, mut accepted) = pair(&transport, &mut listener).await;
        // About 15 transport messages' worth, and one just under the frame limit, between pings.
        let sizes =
            [MAX_CHUNK - 4, MAX_CHUNK, MAX_CHUNK + 1, 1_000_000, LinkConfig::default().max_frame_size - 64];
        let mut sent = Vec::new();
        for (index, size) in sizes.into_iter().enumerate() {
            sent.push(ping(index as u64));
            sent.push(MeshMessage::Goodbye(Goodbye { reason: GoodbyeReason::Other("y".repeat(size)) }));
        }
        sent.push(ping(99));
        for message in &sent {
            dialled.sender.send(message.clone()).await.unwrap();
        }
        for message in &sent {
            let received = recv(&mut accepted).await.unwrap().unwrap();
            assert!(&received == message, "{} arrived as {}", message.kind(), received.kind());
        }
    }

    #[tokio::test]
    async fn a_burst_of_ten_thousand_arrives_in_order() {
        const COUNT: u64 = 10_000;
        let transport = default_transport();
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
    async fn another_network_fails_the_noise_handshake_before_any_frame() {
        let devnet_node = default_transport();
        let mut listener = devnet_node.listen(localhost()).await.unwrap();
        let testnet_node =
            TcpTransport::new(LinkConfig::default(), &NodeIdentity::generate(), &NetworkId::testnet());
        let error = testnet_node.dial(listener.local_addr()).await.unwrap_err();
        assert!(matches!(error, TransportError::NoiseHandshakeFailed { .. }), "{error}");
        assert!(!error.is_retryable());
        assert_eq!(error.ban_reason(), None, "nothing is proven about a peer that fails the prologue");
        assert_nothing_accepted(&mut listener).await;
        // The same network is still welcome.
        let (mut dialled, mut accepted) = pair(&transport(LinkConfig::default()), &mut listener).await;
        assert_round_trip(&mut dialled, &mut accepted, 1).await;
    }

    /// An attacker in the middle terminates Noise on both sides with its own static key and
    /// forwards each victim's identity payload to the other.
    #[tokio::test]
    async fn a_spliced_handshake_is_refused_by_both_victims() {
        let (alice, bob) = (default_transport(), default_transport());
        let mut alice_listener = alice.listen(localhost()).await.unwrap();
        let mut bob_listener = bob.listen(localhost()).await.unwrap();
        let mallory = LocalKeys::new(&NodeIdentity::generate(), &devnet());
        let (mut message, mut payload) =
            ([0u8; noise::MAX_HANDSHAKE_MESSAGE], [0u8; noise::MAX_HANDSHAKE_MESSAGE]);

        // Mallory dials both: each answers with its genuine payload in message 2, and each gets
        // the other's in message 3, under Mallory's static key.
        let mut to_alice = TcpStream::connect(alice_listener.local_addr()).await.unwrap();
        let mut to_bob = TcpStream::connect(bob_listener.local_addr()).await.unwrap();
        let (a, b) = (alice_listener.local_addr(), bob_listener.local_addr());
        let mut with_alice = mallory.start(Role::Initiator).unwrap();
        let mut with_bob = mallory.start(Role::Initiator).unwrap();
        write_handshake(&mut to_alice, &mut with_alice, &[], &mut message, a).await.unwrap();
        write_handshake(&mut to_bob, &mut with_bob, &[], &mut message, b).await.unwrap();
        let len =
            read_handshake(&mut to_alice, &mut with_alice, &mut message, &mut payload, a).await.unwrap();
        let alice_payload = payload[..len].to_vec();
        let len = read_handshake(&mut to_bob, &mut with_bob, &mut message, &mut payload, b).await.unwrap();
        let bob_payload = payload[..len].to_vec();
        assert_eq!(alice_payload.len(), noise::IDENTITY_PAYLOAD_LEN);
        write_handshake(&mut to_alice, &mut with_alice, &bob_payload, &mut message, a).await.unwrap();
        write_handshake(&mut to_bob, &mut with_bob, &alice_payload, &mut message, b).await.unwrap();
        assert_socket_closed(&mut to_alice).await;
        assert_socket_closed(&mut to_bob).await;
        assert_nothing_accepted(&mut alice_listener).await;
        assert_nothing_accepted(&mut bob_listener).await;

        // Alice dials Mallory, who relays to Bob and hands Alice Bob's payload in message 2.
        let relay = TcpListener::bind(localhost()).await.unwrap();
        let relay_addr = relay.local_addr().unwrap();
        let mallory_side = tokio::spawn(async move {
            let (mut from_alice, alice_addr) = relay.accept().await.unwrap();
            let mut to_bob = TcpStream::connect(b).await.unwrap();
            let (mut message, mut payload) =
                ([0u8; noise::MAX_HANDSHAKE_MESSAGE], [0u8; noise::MAX_HANDSHAKE_MESSAGE]);
            let mut with_alice = mallory.start(Role::Responder).unwrap();
            let mut with_bob = mallory.start(Role::Initiator).unwrap();
            read_handshake(&mut from_alice, &mut with_alice, &mut message, &mut payload, alice_addr)
                .await
                .unwrap();
            write_handshake(&mut to_bob, &mut with_bob, &[], &mut message, b).await.unwrap();
            let len =
                read_handshake(&mut to_bob, &mut with_bob, &mut message, &mut payload, b).await.unwrap();
            let bob_payload = payload[..len].to_vec();
            write_handshake(&mut from_alice, &mut with_alice, &bob_payload, &mut message, alice_addr)
                .await
                .unwrap();
            (from_alice, to_bob)
        });
        let error = alice.dial(relay_addr).await.unwrap_err();
        assert!(matches!(error, TransportError::InvalidIdentityBinding { .. }), "{error}");
        assert_eq!(error.ban_reason(), None, "a relay must not get the honest address banned");
        let (_from_alice, _to_bob) = mallory_side.await.unwrap();
        assert_nothing_accepted(&mut bob_listener).await;
    }

    #[tokio::test]
    async fn a_payload_signed_over_another_static_key_is_refused() {
        let honest = default_transport();
        let mut honest_listener = honest.listen(localhost()).await.unwrap();
        // A real identity and a valid signature, but over another static key than the session's.
        let forger = NodeIdentity::generate();
        let elsewhere = LocalKeys::new(&forger, &devnet());
        let forged = LocalKeys::new(&forger, &devnet()).with_payload(*elsewhere.payload());

        // As the dialler: the honest listener refuses message 3 and closes.
        let mut peer = RawPeer::dial_with(honest_listener.local_addr(), &forged).await.unwrap();
        assert_socket_closed(&mut peer.stream).await;
        assert_nothing_accepted(&mut honest_listener).await;

        // As the listener: the honest dialler refuses message 2.
        let forger_transport = TcpTransport::with_keys(LinkConfig::default(), forged);
        let forger_listener = forger_transport.listen(localhost()).await.unwrap();
        let error = honest.dial(forger_listener.local_addr()).await.unwrap_err();
        match &error {
            TransportError::InvalidIdentityBinding { detail, .. } => {
                assert!(detail.contains("does not verify"), "{detail}");
            }
            other => panic!("expected InvalidIdentityBinding, got {other}"),
        }
        assert!(!error.is_retryable());
    }

    #[tokio::test]
    async fn a_hello_claiming_another_key_than_the_session_is_refused() {
        let (me, peer, other) =
            (NodeIdentity::generate(), NodeIdentity::generate(), NodeIdentity::generate());
        let mine = TcpTransport::new(LinkConfig::default(), &me, &devnet());
        let mut listener = mine.listen(localhost()).await.unwrap();
        let theirs = TcpTransport::new(LinkConfig::default(), &peer, &devnet());
        let settings = HandshakeConfig { timeout: Duration::from_secs(2), ..HandshakeConfig::new(devnet()) };

        // The peer holds both keys, so its Hello and HelloAck for `other` are flawless; only the
        // session says the connection is `peer`'s.
        let mut dialled = theirs.dial(listener.local_addr()).await.unwrap();
        let mut accepted = accept(&mut listener).await;
        let claim = Hello {
            network: devnet(),
            protocol_version: PROTOCOL_VERSION,
            node_id: other.node_id(),
            public_key: other.public_key(),
            listen_addr: None,
            user_agent: "two-keys/1".into(),
            nonce: [3; NONCE_LEN],
        };
        let scripted = async {
            dialled.sender.send(MeshMessage::Hello(claim)).await.unwrap();
            if let Some(Ok(MeshMessage::Hello(ours))) = dialled.receiver.recv().await {
                let ack = HelloAck::prove(&other, &devnet(), &ours.nonce);
                let _ = dialled.sender.send(MeshMessage::HelloAck(ack)).await;
            }
            while dialled.receiver.recv().await.is_some() {}
        };
        let (result, ()) = tokio::join!(handshake(&mut accepted, &me, &settings), scripted);
        let failure = result.unwrap_err();
        match &failure.error {
            TransportError::SessionKeyMismatch { session, claimed, .. } => {
                assert_eq!((*session, *claimed), (peer.public_key(), other.public_key()));
            }
            other => panic!("expected SessionKeyMismatch, got {other}"),
        }
        assert!(failure.error.ban_reason().is_some());
        assert!(!failure.proven, "the claimed key proved nothing");

        // Claiming the session's own key goes through.
        let (mut dialled, mut accepted) =
            (theirs.dial(listener.local_addr()).await.unwrap(), accept(&mut listener).await);
        let (from_me, from_peer) =
            tokio::join!(handshake(&mut accepted, &me, &settings), handshake(&mut dialled, &peer, &settings));
        assert_eq!(from_me.unwrap().public_key, peer.public_key());
        assert_eq!(from_peer.unwrap().public_key, me.public_key());
    }

    #[tokio::test]
    async fn a_flipped_bit_or_an_injected_frame_closes_the_connection() {
        let me = NodeIdentity::generate();
        let transport = TcpTransport::new(LinkConfig::default(), &me, &devnet());
        let mut listener = transport.listen(localhost()).await.unwrap();

        let mut peer = RawPeer::dial(listener.local_addr()).await;
        let mut accepted = accept(&mut listener).await;
        assert_eq!(peer.remote_identity, me.public_key());
        peer.send_plain(&frame(&ping(1))).await;
        assert_eq!(recv(&mut accepted).await.unwrap().unwrap(), ping(1), "the genuine frame arrives");
        let mut flipped = peer.seal(&frame(&ping(2)));
        let last = flipped.len() - 1;
        flipped[last / 2] ^= 0x01;
        peer.stream.write_all(&flipped).await.unwrap();
        let error = recv(&mut accepted).await.unwrap().unwrap_err();
        assert!(matches!(error, TransportError::DecryptionFailed { .. }), "{error}");
        assert!(recv(&mut accepted).await.is_none());
        assert_socket_closed(&mut peer.stream).await;

        // A plaintext frame injected into a session, dressed as a transport message.
        let mut peer = RawPeer::dial(listener.local_addr()).await;
        let mut accepted = accept(&mut listener).await;
        let injected = frame(&ping(3));
        let mut wire = u16::try_from(injected.len() + noise::TAG_LEN).unwrap().to_be_bytes().to_vec();
        wire.extend_from_slice(&injected);
        wire.extend_from_slice(&[0; noise::TAG_LEN]);
        peer.stream.write_all(&wire).await.unwrap();
        let error = recv(&mut accepted).await.unwrap().unwrap_err();
        assert!(matches!(error, TransportError::DecryptionFailed { .. }), "{error}");
        assert_socket_closed(&mut peer.stream).await;

        // The listener is unaffected.
        let (mut dialled, mut accepted) = pair(&transport, &mut listener).await;
        assert_round_trip(&mut dialled, &mut accepted, 10).await;
    }

    #[tokio::test]
    async fn garbage_closes_only_that_connection() {
        let transport = default_transport();
        let mut listener = transport.listen(localhost()).await.unwrap();
        let (mut good, mut good_accepted) = pair(&transport, &mut listener).await;

        // Inside a session: a well-formed frame whose payload is not a message (unknown version
        // byte).
        let mut peer = RawPeer::dial(listener.local_addr()).await;
        let mut bad = accept(&mut listener).await;
        bad.sender.send(ping(7)).await.unwrap();
        assert_eq!(peer.recv().await, ping(7), "the session works both ways");
        peer.send_plain(&[0, 0, 0, 5, 0xde, 0xad, 0xbe, 0xef, 0x99]).await;
        let error = recv(&mut bad).await.unwrap().unwrap_err();
        assert!(matches!(error, TransportError::MalformedFrame { .. }), "{error}");
        assert!(!error.is_retryable());
        assert!(recv(&mut bad).await.is_none());
        assert!(bad.sender.is_closed());
        assert_socket_closed(&mut peer.stream).await;

        // Without one: the old plaintext framing is not a handshake message.
        let mut raw = TcpStream::connect(listener.local_addr()).await.unwrap();
        raw.write_all(&[0, 0, 0, 5, 0xde, 0xad, 0xbe, 0xef, 0x99]).await.unwrap();
        assert_socket_closed(&mut raw).await;
        assert_nothing_accepted(&mut listener).await;

        assert_round_trip(&mut good, &mut good_accepted, 10).await;
        let (mut later, mut later_accepted) = pair(&transport, &mut listener).await;
        assert_round_trip(&mut later, &mut later_accepted, 20).await;
    }

    #[tokio::test]
    async fn a_huge_length_prefix_is_refused_before_reading_the_body() {
        let transport = default_transport();
        let mut listener = transport.listen(localhost()).await.unwrap();
        let mut peer = RawPeer::dial(listener.local_addr()).await;
        let mut bad = accept(&mut listener).await;
        // Only the head of a 4 GiB frame: waiting for (or allocating) the body would hang.
        peer.send_plain(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]).await;
        match recv(&mut bad).await.unwrap() {
            Err(TransportError::FrameTooLarge { size, max, .. }) => {
                assert_eq!(size, 0xFFFF_FFFF);
                assert_eq!(max, LinkConfig::default().max_frame_size);
            }
            other => panic!("expected FrameTooLarge, got {other:?}"),
        }
        assert!(recv(&mut bad).await.is_none());
        assert_socket_closed(&mut peer.stream).await;

        // A handshake message over its limit is refused the same way, before its body.
        let mut raw = TcpStream::connect(listener.local_addr()).await.unwrap();
        raw.write_all(&u16::MAX.to_be_bytes()).await.unwrap();
        assert_socket_closed(&mut raw).await;
        assert_nothing_accepted(&mut listener).await;

        let (mut dialled, mut accepted) = pair(&transport, &mut listener).await;
        assert_round_trip(&mut dialled, &mut accepted, 1).await;
    }

    #[tokio::test]
    async fn a_frame_just_over_the_limit_is_refused() {
        let config = LinkConfig { max_frame_size: 64, ..LinkConfig::default() };
        let transport = transport(config);
        let mut listener = transport.listen(localhost()).await.unwrap();
        let mut peer = RawPeer::dial(listener.local_addr()).await;
        let mut bad = accept(&mut listener).await;
        peer.send_plain(&65u32.to_be_bytes()).await;
        match recv(&mut bad).await.unwrap() {
            Err(TransportError::FrameTooLarge { size: 65, max: 64, .. }) => {}
            other => panic!("expected FrameTooLarge, got {other:?}"),
        }
        assert!(recv(&mut bad).await.is_none());
    }

    #[tokio::test]
    async fn closing_in_the_middle_of_a_frame_is_a_reset() {
        let transport = default_transport();
        let mut listener = transport.listen(localhost()).await.unwrap();
        // In the middle of a frame, and in the middle of a transport message.
        for cut in [false, true] {
            let mut peer = RawPeer::dial(listener.local_addr()).await;
            let mut bad = accept(&mut listener).await;
            let wire = peer.seal(&[0, 0, 0, 10, 1, 2]);
            let sent = if cut { &wire[..wire.len() - 3] } else { &wire[..] };
            peer.stream.write_all(sent).await.unwrap();
            drop(peer);
            let error = recv(&mut bad).await.unwrap().unwrap_err();
            assert!(matches!(error, TransportError::ConnectionReset { .. }), "{error}");
            assert!(error.is_retryable());
            assert!(recv(&mut bad).await.is_none());
        }
    }

    #[tokio::test]
    async fn a_silent_connection_times_out() {
        let transport = transport(short_timeouts());
        let mut listener = transport.listen(localhost()).await.unwrap();
        let mut peer = RawPeer::dial(listener.local_addr()).await;
        let mut silent = accept(&mut listener).await;
        let started = tokio::time::Instant::now();
        match recv(&mut silent).await.unwrap() {
            Err(TransportError::ConnectionTimeout { during: "reading", .. }) => {}
            other => panic!("expected a read timeout, got {other:?}"),
        }
        assert!(started.elapsed() >= Duration::from_millis(250));
        assert!(recv(&mut silent).await.is_none());
        assert_socket_closed(&mut peer.stream).await;
    }

    #[tokio::test]
    async fn a_handshake_that_stalls_is_dropped_at_its_deadline() {
        let transport = transport(short_timeouts());
        let mut listener = transport.listen(localhost()).await.unwrap();
        // A dialler that never says anything.
        let started = tokio::time::Instant::now();
        let mut raw = TcpStream::connect(listener.local_addr()).await.unwrap();
        assert_socket_closed(&mut raw).await;
        assert!(started.elapsed() >= Duration::from_millis(250), "dropped at the deadline, not before");
        assert_nothing_accepted(&mut listener).await;

        // A listener that never answers.
        let mute = TcpListener::bind(localhost()).await.unwrap();
        let started = tokio::time::Instant::now();
        let error = transport.dial(mute.local_addr().unwrap()).await.unwrap_err();
        assert!(matches!(error, TransportError::HandshakeTimeout { .. }), "{error}");
        assert!(started.elapsed() >= Duration::from_millis(250));
    }

    #[tokio::test]
    async fn pending_handshakes_are_bounded() {
        let transport =
            transport(LinkConfig { handshake_timeout: Duration::from_secs(30), ..LinkConfig::default() });
        let mut listener = transport.listen(localhost()).await.unwrap();
        let mut silent = Vec::new();
        for _ in 0..MAX_PENDING_HANDSHAKES {
            silent.push(TcpStream::connect(listener.local_addr()).await.unwrap());
        }
        // Every slot is taken by a silent dialler: one more is dropped at once.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut extra = TcpStream::connect(listener.local_addr()).await.unwrap();
        let started = tokio::time::Instant::now();
        assert_socket_closed(&mut extra).await;
        assert!(started.elapsed() < Duration::from_secs(5), "not held until a deadline");
        // Once they leave, newcomers get in again.
        drop(silent);
        let mut connected = None;
        for _ in 0..50 {
            if let Ok(Ok(connection)) =
                timeout(Duration::from_secs(2), transport.dial(listener.local_addr())).await
            {
                connected = Some(connection);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut dialled = connected.expect("a slot frees up once the silent diallers are gone");
        let mut accepted = accept(&mut listener).await;
        assert_round_trip(&mut dialled, &mut accepted, 1).await;
    }

    #[tokio::test]
    async fn traffic_keeps_a_connection_inside_the_read_timeout() {
        let transport = transport(short_timeouts());
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
        let transport = transport(config);
        let raw_listener = TcpListener::bind(localhost()).await.unwrap();
        let addr = raw_listener.local_addr().unwrap();
        // The peer completes the session, then never reads.
        let (mut dialled, _peer) =
            tokio::join!(async { transport.dial(addr).await.unwrap() }, RawPeer::accept(&raw_listener));
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
        let transport = transport(config);
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
        let error = default_transport().dial(addr).await.unwrap_err();
        assert!(
            matches!(error, TransportError::ConnectionRefused { addr: refused } if refused == addr),
            "{error}"
        );
        assert!(error.is_retryable());
    }

    #[tokio::test]
    async fn listening_on_a_taken_address_fails() {
        let transport = default_transport();
        let listener = transport.listen(localhost()).await.unwrap();
        let error = transport.listen(listener.local_addr()).await.unwrap_err();
        assert!(matches!(error, TransportError::ListenFailed { .. }), "{error}");
    }

    #[tokio::test]
    async fn closing_one_side_ends_the_other() {
        let transport = default_transport();
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
        let transport = default_transport();
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
