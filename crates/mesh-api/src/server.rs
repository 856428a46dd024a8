//! The HTTP server under the routes: it accepts connections itself instead of leaving them to
//! `axum::serve`, so that a stranger on the API port cannot hold the node's resources.
//!
//! - **A connection cap** ([`ApiConfig::max_connections`], default 1,024): a connection beyond
//!   it is answered 503 with the envelope and closed.
//! - **A header deadline** ([`ApiConfig::header_timeout`], default 10 s): a request head not
//!   complete by then closes the connection, for the first request (read here) and for every
//!   later one on a kept-alive connection (hyper's `header_read_timeout`).
//! - **The envelope for malformed heads.** hyper answers a head it cannot parse with an empty
//!   400 or 431. So the first head of each connection is read and checked here — at most
//!   [`MAX_HEAD_BYTES`], a request line of visible ASCII — and a bad one gets a JSON envelope
//!   saying what was wrong; a good one is handed to hyper with the bytes already read.
//! - **A small send buffer** ([`SEND_BUFFER_BYTES`] per socket): a WebSocket client that never
//!   reads fills it quickly, so its feed falls behind and the feed's own policy (lag, queue)
//!   disconnects it, instead of the kernel quietly buffering megabytes per client.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use mesh_types::ApiResponse;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::ApiConfig;

/// The largest request head (request line and headers) accepted: far above what any client of
/// this API sends, far below what would let many connections cost much memory.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// The kernel send buffer of each API socket: room for a few price batches, so a client that
/// does not read is noticed within seconds.
pub const SEND_BUFFER_BYTES: usize = 64 * 1024;
/// How long a refused or rejected connection may take to receive its answer.
const ANSWER_GRACE: Duration = Duration::from_secs(2);
/// How long requests in progress may take to finish at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Accepts connections on `listener` and serves `app` on them until `shutdown` completes.
pub(crate) async fn run(
    listener: TcpListener,
    app: Router,
    config: &ApiConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let permits = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let connections = TaskTracker::new();
    let stop = CancellationToken::new();
    let header_timeout = config.header_timeout;
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait a moment rather than spin.
                    tracing::warn!(%error, "cannot accept an API connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        configure(&stream);
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            metrics::counter!("mesh_api_connections_refused_total").increment(1);
            connections.spawn(answer(
                stream,
                503,
                "Service Unavailable",
                "Service unavailable: too many connections to this node's API; retry later",
            ));
            continue;
        };
        let (app, stop) = (app.clone(), stop.clone());
        connections.spawn(async move {
            let _permit = permit;
            serve_connection(stream, app, header_timeout, stop).await;
        });
    }
    stop.cancel();
    connections.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, connections.wait()).await.is_err() {
        tracing::warn!("API connections still open after the shutdown grace; closing them");
    }
    Ok(())
}

/// No Nagle delay (feed messages are small), and a small send buffer (see the module docs).
fn configure(stream: &TcpStream) {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "cannot set TCP_NODELAY");
    }
    if let Err(error) = socket2::SockRef::from(stream).set_send_buffer_size(SEND_BUFFER_BYTES) {
        tracing::debug!(%error, "cannot bound the socket's send buffer");
    }
}

async fn serve_connection(
    mut stream: TcpStream,
    app: Router,
    header_timeout: Duration,
    stop: CancellationToken,
) {
    let head = match tokio::time::timeout(header_timeout, read_head(&mut stream)).await {
        Err(_) => {
            metrics::counter!("mesh_api_header_timeouts_total").increment(1);
            let seconds = header_timeout.as_secs();
            let message = format!("Request timeout: the request head must arrive within {seconds} s");
            answer(stream, 408, "Request Timeout", &message).await;
            return;
        }
        Ok(Err(HeadError::Closed)) => return,
        Ok(Err(HeadError::TooLarge)) => {
            let message = format!(
                "Request header fields too large: the request line and headers may take at most {} KiB",
                MAX_HEAD_BYTES / 1024
            );
            answer(stream, 431, "Request Header Fields Too Large", &message).await;
            return;
        }
        Ok(Err(HeadError::Malformed(what))) => {
            answer(stream, 400, "Bad Request", &format!("Bad request: {what}")).await;
            return;
        }
        Ok(Ok(head)) => head,
    };
    let io = TokioIo::new(Rewind { prefix: head, offset: 0, inner: stream });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(MAX_HEAD_BYTES.max(8192));
    let connection = builder.serve_connection(io, TowerToHyperService::new(app)).with_upgrades();
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%error, "API connection ended with an error");
            }
        }
        () = stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

/// Why a request head was refused.
#[derive(Debug, PartialEq, Eq)]
enum HeadError {
    /// The client closed before sending a whole head.
    Closed,
    /// Longer than [`MAX_HEAD_BYTES`].
    TooLarge,
    /// Not HTTP/1.1; what is wrong.
    Malformed(&'static str),
}

/// Reads until the end of the first request head; returns everything read (the head and any
/// bytes after it), checked by [`check_head`].
async fn read_head(stream: &mut (impl AsyncRead + Unpin)) -> Result<Vec<u8>, HeadError> {
    let mut buffer = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let read = stream.read(&mut chunk).await.map_err(|_| HeadError::Closed)?;
        if read == 0 {
            return Err(HeadError::Closed);
        }
        let searched_from = buffer.len().saturating_sub(3);
        buffer.extend_from_slice(chunk.get(..read).unwrap_or_default());
        let end = buffer.get(searched_from..).and_then(|tail| tail.windows(4).position(|w| w == b"\r\n\r\n"));
        if let Some(position) = end {
            let head_len = searched_from.saturating_add(position).saturating_add(4);
            if head_len > MAX_HEAD_BYTES {
                return Err(HeadError::TooLarge);
            }
            check_head(buffer.get(..head_len).unwrap_or_default())?;
            return Ok(buffer);
        }
        if buffer.len() > MAX_HEAD_BYTES {
            return Err(HeadError::TooLarge);
        }
    }
}

/// The request line must be `METHOD SP TARGET SP HTTP/1.x` in visible ASCII, and the header
/// lines plain text: what hyper would refuse with an empty 400, refused here with a reason.
fn check_head(head: &[u8]) -> Result<(), HeadError> {
    let line_end = head.windows(2).position(|w| w == b"\r\n").unwrap_or(head.len());
    let line = head.get(..line_end).unwrap_or_default();
    let mut parts = line.split(|byte| *byte == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::Malformed("the request line must be METHOD PATH HTTP/1.1"));
    };
    if method.is_empty() || !method.iter().all(u8::is_ascii_uppercase) {
        return Err(HeadError::Malformed("the method must be an HTTP method such as GET"));
    }
    if target.is_empty() || !target.iter().all(|byte| byte.is_ascii_graphic()) {
        return Err(HeadError::Malformed(
            "the path must be visible ASCII; percent-encode other bytes (e.g. %FF for 0xFF)",
        ));
    }
    if version != b"HTTP/1.1" && version != b"HTTP/1.0" {
        return Err(HeadError::Malformed("only HTTP/1.1 and HTTP/1.0 are served"));
    }
    let headers = head.get(line_end..).unwrap_or_default();
    if headers
        .iter()
        .any(|byte| *byte == 0 || (*byte < 0x20 && *byte != b'\r' && *byte != b'\n' && *byte != b'\t'))
    {
        return Err(HeadError::Malformed("a header contains control characters"));
    }
    Ok(())
}

/// Writes a complete response with the envelope for `message`, then closes.
async fn answer(mut stream: TcpStream, status: u16, reason: &str, message: &str) {
    let body = serde_json::to_string(&ApiResponse::<()>::error(message)).unwrap_or_default();
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let written = tokio::time::timeout(ANSWER_GRACE, async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
    if !matches!(written, Ok(Ok(()))) {
        tracing::debug!(status, "could not deliver an API error answer");
    }
}

/// A stream that first yields bytes already read from it.
struct Rewind {
    prefix: Vec<u8>,
    offset: usize,
    inner: TcpStream,
}

impl AsyncRead for Rewind {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(rest) = this.prefix.get(this.offset..).filter(|rest| !rest.is_empty()) {
            let count = rest.len().min(buf.remaining());
            buf.put_slice(rest.get(..count).unwrap_or_default());
            this.offset = this.offset.saturating_add(count);
            if this.offset >= this.prefix.len() {
                this.prefix = Vec::new();
                this.offset = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn head_of(bytes: &[u8]) -> Result<Vec<u8>, HeadError> {
        read_head(&mut &bytes[..]).await
    }

    #[tokio::test]
    async fn a_well_formed_head_is_passed_on_with_what_follows_it() {
        let request = b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\nGET /ready";
        assert_eq!(head_of(request).await.unwrap(), request.to_vec());
    }

    #[tokio::test]
    async fn bad_heads_are_refused_with_a_reason() {
        assert_eq!(
            head_of(b"GET /\xff\xfe HTTP/1.1\r\n\r\n").await.unwrap_err(),
            HeadError::Malformed(
                "the path must be visible ASCII; percent-encode other bytes (e.g. %FF for 0xFF)"
            )
        );
        assert!(matches!(head_of(b"HELLO\r\n\r\n").await, Err(HeadError::Malformed(_))));
        assert!(matches!(head_of(b"GET / HTTP/2.0\r\n\r\n").await, Err(HeadError::Malformed(_))));
        assert!(matches!(
            head_of(b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n").await,
            Err(HeadError::Malformed(_))
        ));
        let long = [b"GET /".as_slice(), &vec![b'a'; MAX_HEAD_BYTES], b" HTTP/1.1\r\n\r\n"].concat();
        assert_eq!(head_of(&long).await.unwrap_err(), HeadError::TooLarge);
        let endless = [b"GET / HTTP/1.1\r\n".as_slice(), &vec![b'a'; 3 * MAX_HEAD_BYTES]].concat();
        assert_eq!(head_of(&endless).await.unwrap_err(), HeadError::TooLarge);
        assert_eq!(head_of(b"GET / HTTP/1.1\r\n").await.unwrap_err(), HeadError::Closed);
    }
}
