//! [`TcpProxy`]: a loopback TCP relay in front of a real server that a test can cut and
//! restore (the server becomes unreachable and comes back), or freeze and thaw (connections
//! stay open but go silent, as when a machine loses power or a network drops packets).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// Relays connections from a local port to `target` until [`TcpProxy::cut`].
#[derive(Debug)]
pub struct TcpProxy {
    addr: SocketAddr,
    target: String,
    relay: Mutex<Option<JoinHandle<()>>>,
    frozen: Arc<AtomicBool>,
}

impl TcpProxy {
    /// Starts relaying from a free loopback port to `target` (`host:port`).
    ///
    /// # Panics
    /// When no loopback port can be bound.
    pub async fn start(target: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        let addr = listener.local_addr().expect("bound address");
        let proxy = Self {
            addr,
            target: target.to_owned(),
            relay: Mutex::new(None),
            frozen: Arc::new(AtomicBool::new(false)),
        };
        proxy.serve(listener);
        proxy
    }

    /// The local address clients should connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn serve(&self, listener: TcpListener) {
        let target = self.target.clone();
        let frozen = self.frozen.clone();
        let relay = tokio::spawn(async move {
            // Dropping the set (when this task is aborted) aborts every open connection.
            let mut connections = JoinSet::new();
            while let Ok((inbound, _)) = listener.accept().await {
                let target = target.clone();
                let frozen = frozen.clone();
                connections.spawn(async move {
                    if let Ok(outbound) = TcpStream::connect(&target).await {
                        let (in_read, in_write) = inbound.into_split();
                        let (out_read, out_write) = outbound.into_split();
                        tokio::join!(
                            pump(in_read, out_write, frozen.clone()),
                            pump(out_read, in_write, frozen)
                        );
                    }
                });
            }
        });
        *self.relay.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(relay);
    }

    /// Closes the port and kills every open connection, as a crashed server or a network
    /// partition would.
    pub fn cut(&self) {
        if let Some(relay) = self.relay.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
            relay.abort();
        }
    }

    /// Stops forwarding without closing anything: both ends see silence. Data read meanwhile
    /// is held back, and dropped if the proxy is cut.
    pub fn freeze(&self) {
        self.frozen.store(true, Ordering::Release);
    }

    /// Resumes forwarding after [`TcpProxy::freeze`].
    pub fn thaw(&self) {
        self.frozen.store(false, Ordering::Release);
    }

    /// Opens the same port again.
    ///
    /// # Panics
    /// When the port was taken meanwhile.
    pub async fn restore(&self) {
        self.cut();
        // The aborted task releases the listener asynchronously; retry briefly.
        for _ in 0..50 {
            if let Ok(listener) = TcpListener::bind(self.addr).await {
                self.serve(listener);
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("could not rebind {}", self.addr);
    }
}

/// Copies one direction, holding data back while `frozen`.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        while frozen.load(Ordering::Acquire) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            break;
        }
    }
    // A frozen link passes on nothing, not even a close: the other side keeps hearing silence.
    while frozen.load(Ordering::Acquire) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = to.shutdown().await;
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut();
    }
}
