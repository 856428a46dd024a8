//! [`TcpProxy`]: a loopback TCP relay in front of a real server that a test can cut and
//! restore, to test how a client behaves when its server becomes unreachable and comes back.

use std::net::SocketAddr;
use std::sync::Mutex;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// Relays connections from a local port to `target` until [`TcpProxy::cut`].
#[derive(Debug)]
pub struct TcpProxy {
    addr: SocketAddr,
    target: String,
    relay: Mutex<Option<JoinHandle<()>>>,
}

impl TcpProxy {
    /// Starts relaying from a free loopback port to `target` (`host:port`).
    ///
    /// # Panics
    /// When no loopback port can be bound.
    pub async fn start(target: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        let addr = listener.local_addr().expect("bound address");
        let proxy = Self { addr, target: target.to_owned(), relay: Mutex::new(None) };
        proxy.serve(listener);
        proxy
    }

    /// The local address clients should connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn serve(&self, listener: TcpListener) {
        let target = self.target.clone();
        let relay = tokio::spawn(async move {
            // Dropping the set (when this task is aborted) aborts every open connection.
            let mut connections = JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                connections.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
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

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut();
    }
}
