//! [`MeshClient`]: a connection task per node, merged into one event stream and one view.

use std::sync::{Arc, Mutex};

use mesh_types::{Asset, ServedPrice, ServedPriceMap};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::connection::{Connection, lock};
use crate::view::View;
use crate::{ClientConfig, ClientEvent};

/// A client of one or more pricemesh nodes. Dropping it stops its connections.
#[derive(Debug)]
pub struct MeshClient {
    config: Arc<ClientConfig>,
    view: Arc<Mutex<View>>,
    events: mpsc::Receiver<ClientEvent>,
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl MeshClient {
    /// Connects to every node of `config`, each on its own task, and keeps the connections up
    /// until [`MeshClient::close`]. Must be called within a tokio runtime.
    pub fn connect(config: ClientConfig) -> Self {
        let config = Arc::new(config);
        let view = Arc::new(Mutex::new(View::default()));
        let (sender, events) = mpsc::channel(config.capacity.max(1));
        let stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        for (link, node) in config.nodes.iter().enumerate() {
            let connection = Connection {
                link,
                node: node.clone(),
                config: config.clone(),
                view: view.clone(),
                events: sender.clone(),
                stop: stop.clone(),
            };
            tasks.spawn(connection.run());
        }
        tasks.close();
        Self { config, view, events, stop, tasks }
    }

    /// The next event; `None` once the client is closed.
    pub async fn next(&mut self) -> Option<ClientEvent> {
        self.events.recv().await
    }

    /// The newest price the client holds for `asset`, from whichever node sent it first.
    pub fn latest(&self, asset: &Asset) -> Option<ServedPrice> {
        lock(&self.view).latest(asset)
    }

    /// Every newest price the client holds.
    pub fn prices(&self) -> ServedPriceMap {
        lock(&self.view).all()
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Closes every connection (with a close frame) and waits for their tasks.
    pub async fn close(mut self) {
        self.stop.cancel();
        self.events.close();
        self.tasks.wait().await;
    }
}

impl Drop for MeshClient {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
