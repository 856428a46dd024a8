//! A backend inside a host: a listener on the host's own loopback (say 127.0.0.1:6379) that
//! relays each connection to the real server on this machine, so a node in a namespace reaches
//! Redis or PostgreSQL at an address of its host and nothing is routed out of the test
//! network. Taking the relay down is the outage: every open connection is closed and new ones
//! are closed as soon as they arrive, as when the server dies; bringing it up serves again.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A relay from a listener in a host to `target`, which can be taken down and up.
#[derive(Debug)]
pub struct Relay {
    up: Arc<AtomicBool>,
    /// Bumped on every outage, so the connections opened before it end.
    generation: watch::Sender<u64>,
    task: JoinHandle<()>,
}

impl Relay {
    /// Relays every connection `listener` accepts to `target` (an address of this machine).
    pub fn start(listener: TcpListener, target: SocketAddr) -> Self {
        let up = Arc::new(AtomicBool::new(true));
        let (generation, _) = watch::channel(0u64);
        let task = tokio::spawn(serve(listener, target, up.clone(), generation.clone()));
        Self { up, generation, task }
    }

    /// The outage starts: open connections are closed, new ones closed on arrival.
    pub fn take_down(&self) {
        self.up.store(false, Ordering::Release);
        self.generation.send_modify(|generation| *generation = generation.wrapping_add(1));
    }

    /// The server is back.
    pub fn bring_up(&self) {
        self.up.store(true, Ordering::Release);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
        self.take_down();
    }
}

async fn serve(
    listener: TcpListener,
    target: SocketAddr,
    up: Arc<AtomicBool>,
    generation: watch::Sender<u64>,
) {
    while let Ok((mut inbound, _)) = listener.accept().await {
        if !up.load(Ordering::Acquire) {
            drop(inbound);
            continue;
        }
        let mut outage = generation.subscribe();
        tokio::spawn(async move {
            let Ok(mut outbound) = TcpStream::connect(target).await else { return };
            let _ = outbound.set_nodelay(true);
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                _ = outage.changed() => {}
            }
        });
    }
}
