//! The mesh under test: the testbed, one node per host (two of them providers, at the two ends
//! of the bootstrap chain, so their updates cross the whole mesh), the backends relayed into
//! the hosts that use them, and the recorder that polls every live node's quotes into the
//! [`History`] while a scenario waits.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::history::{History, QuoteKey, quotes_of};
use crate::node::{API_ADDR, Node, PEER_PORT};
use crate::relay::Relay;
use crate::report::Report;
use crate::testbed::Testbed;
use crate::{ChaosError, Options};

/// How often the recorder polls every node.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// How long one API request may take before the node counts as not answering this round.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// A durable store a node writes behind to, reached through a relay in its host.
pub struct Backend {
    /// `"redis"` or `"postgres"`.
    pub kind: &'static str,
    /// The node that uses it.
    pub node: usize,
    /// The relay in that node's host; taking it down is the outage.
    pub relay: Relay,
    /// Reads what the server holds.
    pub store: Box<dyn mesh_price_cache::PriceStore>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend").field("kind", &self.kind).field("node", &self.node).finish_non_exhaustive()
    }
}

/// The running mesh.
#[derive(Debug)]
pub struct Mesh {
    /// The network.
    pub testbed: Testbed,
    /// One node per host.
    pub nodes: Vec<Node>,
    /// Each node's id, learnt from `/health` at its first start.
    pub node_ids: Vec<String>,
    /// The recorded history.
    pub history: History,
    /// The checks and figures so far.
    pub report: Report,
    /// The durable stores in play.
    pub backends: Vec<Backend>,
    /// The assets the providers quote.
    pub assets: Vec<String>,
    /// The node binary.
    pub binary: PathBuf,
    /// When the run started.
    pub started: Instant,
    /// The peak resident memory of each node, in KiB.
    pub peak_rss: Vec<u64>,
}

impl Mesh {
    /// The settings every node gets, for host `host` of `hosts`.
    pub fn settings(
        options: &Options,
        testbed: &Testbed,
        host: usize,
        provider: bool,
    ) -> Vec<(String, String)> {
        let peer = |index: usize| SocketAddr::from((testbed.hosts[index].ip, PEER_PORT)).to_string();
        // A chain of bootstrap peers (each node knows the one before and the one before that),
        // so the providers at the two ends start far apart and peer exchange does the rest.
        let bootstrap: Vec<String> =
            [host.checked_sub(1), host.checked_sub(2)].into_iter().flatten().map(peer).collect();
        let sync = options.sync_interval.as_secs().max(1).to_string();
        let mut settings: Vec<(String, String)> = [
            ("RUST_LOG", options.node_log.as_str()),
            ("MESH_NETWORK", "devnet"),
            ("MESH_API_ADDR", &API_ADDR.to_string()),
            ("MESH_LISTEN_ADDR", &peer(host)),
            ("MESH_MIN_PEER_CONNECTIONS", "2"),
            ("MESH_MAX_PEER_CONNECTIONS", "4"),
            ("MESH_HEARTBEAT_INTERVAL_SECS", "1"),
            ("MESH_HEARTBEAT_TIMEOUT_SECS", "3"),
            ("MESH_ANNOUNCE_INTERVAL_SECS", "5"),
            ("MESH_SYNC_INTERVAL_SECS", &sync),
            ("MESH_BOOTSTRAP_PEERS", &bootstrap.join(",")),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect();
        if provider {
            for (key, value) in [
                ("MESH_PRICE_SOURCE", "simulated".to_owned()),
                ("MESH_ASSETS", options.assets.join(",")),
                ("MESH_PROVIDER_FETCH_INTERVAL_SECS", "1".to_owned()),
                ("MESH_COORDINATION_WINDOW_SECS", "1".to_owned()),
            ] {
                settings.push((key.to_owned(), value));
            }
        }
        settings
    }

    /// Starts node `index` (again), records its id on the first start.
    ///
    /// # Errors
    /// When it does not come up.
    pub async fn start_node(&mut self, index: usize, extra: &[(String, String)]) -> Result<(), ChaosError> {
        let namespace = &self.testbed.hosts[index].namespace;
        self.nodes[index].start(&self.binary, namespace, extra).await?;
        if self.node_ids[index].is_empty() {
            let (_, health) = crate::http::get_json(namespace, API_ADDR, "/health", REQUEST_TIMEOUT)
                .await
                .map_err(ChaosError::Setup)?;
            self.node_ids[index] = health["data"]["node_id"].as_str().unwrap_or_default().to_owned();
        }
        Ok(())
    }

    /// Time since the run started.
    pub fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// Indices of the nodes that run.
    pub fn live(&mut self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|&index| self.nodes[index].is_running()).collect()
    }

    /// Polls every live node once: its quotes into the history, its memory into the peaks.
    pub async fn poll(&mut self) {
        for index in self.live() {
            let namespace = &self.testbed.hosts[index].namespace;
            let mut quotes = Vec::new();
            let mut answered = true;
            for asset in &self.assets {
                let path = format!("/api/mesh/prices/{asset}?quotes=true");
                match crate::http::get_json(namespace, API_ADDR, &path, REQUEST_TIMEOUT).await {
                    Ok((_, body)) => quotes.extend(quotes_of(asset, &body)),
                    Err(_) => answered = false,
                }
            }
            if answered {
                let at = self.now();
                self.history.record(at, index, self.nodes[index].starts, quotes);
            }
            if let Some(rss) = self.nodes[index].rss_kib() {
                self.peak_rss[index] = self.peak_rss[index].max(rss);
            }
        }
    }

    /// Keeps recording for `duration`.
    pub async fn run_for(&mut self, duration: Duration) {
        let until = Instant::now() + duration;
        while Instant::now() < until {
            let round = Instant::now();
            self.poll().await;
            tokio::time::sleep(POLL_INTERVAL.saturating_sub(round.elapsed())).await;
        }
    }

    /// The newest quote of each provider and asset that a node other than the provider itself
    /// showed up to `until`: what was published, as opposed to signed by a provider that died
    /// before sending it.
    pub fn published_until(&self, until: Duration) -> BTreeMap<QuoteKey, DateTime<Utc>> {
        let mut newest: BTreeMap<QuoteKey, DateTime<Utc>> = BTreeMap::new();
        for observation in self.history.observations() {
            let own = self.node_ids.get(observation.node).is_some_and(|id| *id == observation.key.0);
            if observation.at <= until && !own {
                let entry = newest.entry(observation.key.clone()).or_insert(observation.quote.timestamp);
                *entry = (*entry).max(observation.quote.timestamp);
            }
        }
        newest
    }

    /// What the live nodes lack of `targets`.
    pub fn missing(&mut self, targets: &BTreeMap<QuoteKey, DateTime<Utc>>) -> Vec<String> {
        self.live().into_iter().flat_map(|node| self.history.missing(node, targets)).collect()
    }

    /// Records until every live node holds `targets` or `limit` passes: how long it took and
    /// what was still missing when `bound` passed (empty if it converged in time), or what was
    /// still missing at the limit.
    pub async fn converge(
        &mut self,
        targets: &BTreeMap<QuoteKey, DateTime<Utc>>,
        bound: Duration,
        limit: Duration,
    ) -> Result<(Duration, Vec<String>), Vec<String>> {
        let started = Instant::now();
        let mut late = Vec::new();
        loop {
            self.poll().await;
            let missing = self.missing(targets);
            if missing.is_empty() {
                return Ok((started.elapsed(), late));
            }
            if started.elapsed() > limit {
                return Err(missing);
            }
            if started.elapsed() > bound && late.is_empty() {
                late = missing;
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// The short form of a node id, as reports print it.
    pub fn short_id(&self, index: usize) -> &str {
        let id = &self.node_ids[index];
        id.get(..8).unwrap_or(id)
    }
}
