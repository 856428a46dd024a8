//! The scenarios, run one after another on one mesh, and the invariants checked after each:
//!
//! | scenario | fault |
//! | --- | --- |
//! | `steady` | none: lossy WAN-like links only; every node must reach every asset |
//! | `kill-relays` | `kill -9` of two relays, then their restart from their data directories |
//! | `kill-provider` | `kill -9` of a provider, then its restart |
//! | `partition` | the mesh cut in two with a provider on each side, longer than the heartbeat timeout, then healed |
//! | `redis-outage` | the Redis server gone mid-stream, then back: the write lag returns near zero and Redis catches up |
//! | `postgres-outage` | the same for PostgreSQL |
//! | `clock-ahead` | a provider restarted with its clock 2 s ahead (the node's test-only `MESH_TEST_CLOCK_OFFSET_MS`) |
//!
//! After each: **no accepted update lost** (every live node ends on the newest quote of every
//! provider and asset published before the fault ended), **convergence within 2 sync
//! intervals** of the heal or restart, **newest wins** over the whole history, **no panic** in
//! any log and every live node healthy, and **memory bounded** (every node's peak RSS under the
//! limit).

use std::time::Duration;

use crate::history::QuoteKey;
use crate::mesh::Mesh;
use crate::node::API_ADDR;
use crate::{ChaosError, Options};

/// A fault scenario's shape: what to break, for how long.
struct Fault<'a> {
    name: String,
    /// How long the fault lasts.
    hold: Duration,
    options: &'a Options,
}

/// Runs every scenario in order on `mesh`.
///
/// # Errors
/// When the harness itself fails (a node that cannot be restarted, a backend that cannot be
/// read); invariant failures are checks, not errors.
pub async fn run_all(mesh: &mut Mesh, options: &Options) -> Result<(), ChaosError> {
    steady(mesh, options).await;
    for round in 1..=options.rounds {
        let suffix = if options.rounds > 1 { format!("#{round}") } else { String::new() };
        let fault = |name: &str| Fault { name: format!("{name}{suffix}"), hold: options.fault_hold, options };
        kill_relays(mesh, &fault("kill-relays")).await?;
        kill_provider(mesh, &fault("kill-provider")).await?;
        partition(mesh, &fault("partition")).await?;
        for index in 0..mesh.backends.len() {
            let kind = mesh.backends[index].kind;
            outage(mesh, &fault(&format!("{kind}-outage")), index).await?;
        }
    }
    if mesh.backends.is_empty() {
        mesh.report.check(
            "backends",
            "outages run",
            false,
            "no Redis or PostgreSQL URL: the outage scenarios did not run".into(),
        );
    }
    clock_ahead(mesh, options).await?;
    Ok(())
}

async fn steady(mesh: &mut Mesh, options: &Options) {
    let start = mesh.now();
    mesh.run_for(options.steady).await;
    let end = mesh.now();
    mesh.report.lags = mesh.history.propagation_lags(start..end, None);
    // Every node must hold a quote of every asset. Providers coordinate their fetches, so one
    // fetches at a time while both are up: which one's quote a node holds does not matter.
    let mut lacking = Vec::new();
    for node in mesh.live() {
        for asset in &mesh.assets {
            if !mesh.history.shows_asset(node, asset) {
                lacking.push(format!("node{node} holds no {asset}"));
            }
        }
    }
    let detail = if lacking.is_empty() {
        format!("{} nodes × {} assets", mesh.nodes.len(), mesh.assets.len())
    } else {
        lacking.join("; ")
    };
    mesh.report.check("steady", "every node reaches every asset", lacking.is_empty(), detail);
    let targets = mesh.published_until(end);
    after_fault(mesh, "steady", &targets, options).await;
}

async fn kill_relays(mesh: &mut Mesh, fault: &Fault<'_>) -> Result<(), ChaosError> {
    let relays = relays(mesh);
    // Two relays from the middle of the chain, where the providers' paths cross.
    let victims = [relays[relays.len() / 2 - 1], relays[relays.len() / 2]];
    for &victim in &victims {
        mesh.nodes[victim].kill();
    }
    mesh.run_for(fault.hold).await;
    let end = mesh.now();
    for &victim in &victims {
        mesh.start_node(victim, &[]).await?;
    }
    let targets = mesh.published_until(end);
    after_fault(mesh, &fault.name, &targets, fault.options).await;
    Ok(())
}

async fn kill_provider(mesh: &mut Mesh, fault: &Fault<'_>) -> Result<(), ChaosError> {
    let provider = first_provider(mesh);
    mesh.nodes[provider].kill();
    mesh.run_for(fault.hold).await;
    let end = mesh.now();
    mesh.start_node(provider, &[]).await?;
    let targets = mesh.published_until(end);
    after_fault(mesh, &fault.name, &targets, fault.options).await;
    Ok(())
}

async fn partition(mesh: &mut Mesh, fault: &Fault<'_>) -> Result<(), ChaosError> {
    let hosts = mesh.nodes.len();
    let (side_a, side_b): (Vec<usize>, Vec<usize>) = (0..hosts).partition(|&host| host < hosts / 2);
    mesh.testbed.partition(&side_a, &side_b)?;
    // Longer than the heartbeat timeout, so the links across the cut really break.
    mesh.run_for(fault.hold.max(Duration::from_secs(6))).await;
    let end = mesh.now();
    mesh.testbed.heal()?;
    let targets = mesh.published_until(end);
    after_fault(mesh, &fault.name, &targets, fault.options).await;
    Ok(())
}

async fn outage(mesh: &mut Mesh, fault: &Fault<'_>, backend: usize) -> Result<(), ChaosError> {
    mesh.backends[backend].relay.take_down();
    mesh.run_for(fault.hold).await;
    let node = mesh.backends[backend].node;
    let lag_during = write_lag(mesh, node).await;
    let end = mesh.now();
    mesh.backends[backend].relay.bring_up();
    let targets = mesh.published_until(end);
    after_fault(mesh, &fault.name, &targets, fault.options).await;

    // The write lag comes back near zero and the server catches up with the node's memory.
    let limit = fault.options.sync_interval * 4;
    let started = std::time::Instant::now();
    let mut lag = write_lag(mesh, node).await;
    while lag.is_none_or(|lag| lag > 1.0) && started.elapsed() < limit {
        mesh.run_for(Duration::from_millis(500)).await;
        lag = write_lag(mesh, node).await;
    }
    mesh.report.check(
        &fault.name,
        "write lag back near zero",
        lag.is_some_and(|lag| lag <= 1.0),
        format!(
            "{:.1} s during the outage, {} after",
            lag_during.unwrap_or(f64::NAN),
            lag.map_or_else(|| "no reading".to_owned(), |lag| format!("{lag:.2} s"))
        ),
    );
    let behind = durable_behind(mesh, backend).await?;
    mesh.report.check(
        &fault.name,
        "durable store caught up",
        behind.is_empty(),
        if behind.is_empty() {
            format!("{} holds every asset's newest", mesh.backends[backend].kind)
        } else {
            behind.join("; ")
        },
    );
    Ok(())
}

/// What the durable store holds older than the node served when the fault ended: each asset's
/// newest quote the node showed must be in the store (newest-wins across providers).
async fn durable_behind(mesh: &Mesh, backend: usize) -> Result<Vec<String>, ChaosError> {
    let node = mesh.backends[backend].node;
    let newest = mesh.history.observations().iter().filter(|observation| observation.node == node).fold(
        std::collections::BTreeMap::new(),
        |mut newest, observation| {
            let entry = newest.entry(observation.key.1.clone()).or_insert(observation.quote.timestamp);
            *entry = (*entry).max(observation.quote.timestamp);
            newest
        },
    );
    let mut behind = Vec::new();
    for (asset, shown) in newest {
        let symbol = mesh_types::Asset::new(&asset).map_err(|err| ChaosError::Setup(err.to_string()))?;
        match mesh.backends[backend].store.get(symbol).await {
            Ok(Some(stored)) if stored.timestamp >= shown => {}
            Ok(Some(stored)) => {
                behind.push(format!("{asset}: stored {} but node{node} showed {shown}", stored.timestamp))
            }
            Ok(None) => behind.push(format!("{asset}: not stored")),
            Err(err) => behind.push(format!("{asset}: cannot read the store: {err}")),
        }
    }
    Ok(behind)
}

/// The node's `mesh_storage_write_lag_seconds{store="prices"}`.
async fn write_lag(mesh: &Mesh, node: usize) -> Option<f64> {
    let namespace = &mesh.testbed.hosts[node].namespace;
    let (_, text) = crate::http::get(namespace, API_ADDR, "/metrics", Duration::from_secs(2)).await.ok()?;
    text.lines().find_map(|line| {
        line.strip_prefix("mesh_storage_write_lag_seconds{store=\"prices\"} ")?.trim().parse().ok()
    })
}

async fn clock_ahead(mesh: &mut Mesh, options: &Options) -> Result<(), ChaosError> {
    let name = "clock-ahead";
    let provider = last_provider(mesh);
    // The other provider stops meanwhile, so fetch coordination gives this one every window
    // and its quotes must carry the mesh.
    let other = first_provider(mesh);
    mesh.nodes[other].kill();
    mesh.nodes[provider].kill();
    let offset = [("MESH_TEST_CLOCK_OFFSET_MS".to_owned(), "2000".to_owned())];
    mesh.start_node(provider, &offset).await?;
    let restarted = chrono::Utc::now();
    // Its quotes, signed 2 s ahead, are within the 5 s future skew: accepted everywhere.
    let id = mesh.node_ids[provider].clone();
    let since_restart: std::collections::BTreeMap<QuoteKey, chrono::DateTime<chrono::Utc>> =
        mesh.assets.iter().map(|asset| ((id.clone(), asset.clone()), restarted)).collect();
    let accepted = mesh.converge(&since_restart, options.settle_limit, options.settle_limit).await;
    mesh.report.check(
        name,
        "quotes of a provider 2 s ahead accepted",
        accepted.is_ok(),
        match accepted {
            Ok((time, _)) => format!("at every live node within {} ms of its restart", time.as_millis()),
            Err(missing) => missing.iter().take(6).cloned().collect::<Vec<_>>().join("; "),
        },
    );
    // Its peers measure the offset; further nodes read its own claim (announced every
    // announcement interval), so it is waited for.
    let id = mesh.node_ids[provider].clone();
    let started = std::time::Instant::now();
    let mut wrong = offsets_not_seen(mesh, provider, &id).await;
    while !wrong.is_empty() && started.elapsed() < options.settle_limit {
        mesh.run_for(Duration::from_secs(1)).await;
        wrong = offsets_not_seen(mesh, provider, &id).await;
    }
    let others = mesh.nodes.len() - 1;
    let detail = if wrong.is_empty() {
        format!("≈ +2000 ms at {others} nodes within {} ms", started.elapsed().as_millis())
    } else {
        let peers = peer_counts(mesh).await;
        format!("{}; connected peers per node: {peers:?}", wrong.join(", "))
    };
    mesh.report.check(name, "every node sees the offset", wrong.is_empty(), detail);
    mesh.start_node(other, &[]).await?;
    let targets = mesh.published_until(mesh.now());
    after_fault(mesh, name, &targets, options).await;
    Ok(())
}

/// The nodes other than `provider` that do not list it with a clock offset near +2,000 ms,
/// with what they list instead.
async fn offsets_not_seen(mesh: &mut Mesh, provider: usize, id: &str) -> Vec<String> {
    let mut wrong = Vec::new();
    for node in mesh.live().into_iter().filter(|&node| node != provider) {
        let namespace = &mesh.testbed.hosts[node].namespace;
        let path = "/api/mesh/network/status";
        let entry = match crate::http::get_json(namespace, API_ADDR, path, Duration::from_secs(2)).await {
            Ok((_, body)) => body["data"]["active_providers"]
                .as_array()
                .and_then(|list| list.iter().find(|entry| entry["node_id"] == id).cloned()),
            Err(err) => {
                wrong.push(format!("node{node}: {err}"));
                continue;
            }
        };
        let offset = entry.as_ref().and_then(|entry| entry["clock_offset_ms"].as_i64());
        if !offset.is_some_and(|offset| (1400..=2600).contains(&offset)) {
            let listed = entry.map_or_else(|| "not listed".to_owned(), |entry| entry.to_string());
            wrong.push(format!("node{node}: {listed}"));
        }
    }
    wrong
}

/// Each live node's connected peers, as its network status says (for a failure's detail).
async fn peer_counts(mesh: &mut Mesh) -> Vec<(usize, Option<u64>)> {
    let mut counts = Vec::new();
    for node in mesh.live() {
        let namespace = &mesh.testbed.hosts[node].namespace;
        let body =
            crate::http::get_json(namespace, API_ADDR, "/api/mesh/network/status", Duration::from_secs(2))
                .await;
        counts.push((node, body.ok().and_then(|(_, body)| body["data"]["connected_peers"].as_u64())));
    }
    counts
}

/// The invariants every scenario ends with.
async fn after_fault(
    mesh: &mut Mesh,
    scenario: &str,
    targets: &std::collections::BTreeMap<QuoteKey, chrono::DateTime<chrono::Utc>>,
    options: &Options,
) {
    let bound = options.sync_interval * 2;
    match mesh.converge(targets, bound, options.settle_limit.max(bound)).await {
        Ok((time, late)) => {
            mesh.report.convergence.push((scenario.to_owned(), time));
            mesh.report.check(
                scenario,
                "no accepted update lost",
                true,
                format!("{} quotes at every live node", targets.len()),
            );
            let mut detail = format!("{} ms, bound {} ms", time.as_millis(), bound.as_millis());
            if !late.is_empty() {
                let shown: Vec<&String> = late.iter().take(6).collect();
                detail.push_str(&format!("; missing at the bound: {shown:?}"));
            }
            mesh.report.check(scenario, "converged within 2 sync intervals", time <= bound, detail);
        }
        Err(missing) => {
            let shown: Vec<&String> = missing.iter().take(6).collect();
            let detail = format!("{} missing: {shown:?}", missing.len());
            mesh.report.check(scenario, "no accepted update lost", false, detail.clone());
            mesh.report.check(scenario, "converged within 2 sync intervals", false, detail);
        }
    }
    let violations = mesh.history.newest_wins_violations();
    let detail = if violations.is_empty() {
        format!("{} changes checked", mesh.history.observations().len())
    } else {
        violations.iter().take(6).cloned().collect::<Vec<_>>().join("; ")
    };
    mesh.report.check(scenario, "newest wins", violations.is_empty(), detail);

    let mut trouble: Vec<String> =
        mesh.nodes.iter().flat_map(|node| node.panics().into_iter().take(2)).collect();
    for node in mesh.live() {
        let namespace = &mesh.testbed.hosts[node].namespace;
        match crate::http::get(namespace, API_ADDR, "/health", Duration::from_secs(2)).await {
            Ok((200, _)) => {}
            Ok((status, body)) => trouble.push(format!("node{node} /health {status}: {body}")),
            Err(err) => trouble.push(format!("node{node} /health: {err}")),
        }
    }
    let dead: Vec<usize> = (0..mesh.nodes.len()).filter(|&node| !mesh.nodes[node].is_running()).collect();
    trouble.extend(dead.iter().map(|node| format!("node{node} is not running")));
    mesh.report.check(
        scenario,
        "no panic, every node up and healthy",
        trouble.is_empty(),
        if trouble.is_empty() { format!("{} nodes", mesh.nodes.len()) } else { trouble.join("; ") },
    );

    let peak = mesh.peak_rss.iter().copied().max().unwrap_or_default();
    mesh.report.peak_rss_kib = mesh.report.peak_rss_kib.max(peak);
    mesh.report.check(
        scenario,
        "memory bounded",
        peak > 0 && peak <= options.rss_limit_mib * 1024,
        format!("peak RSS {} MiB, limit {} MiB", peak / 1024, options.rss_limit_mib),
    );
}

fn relays(mesh: &Mesh) -> Vec<usize> {
    (0..mesh.nodes.len()).filter(|&index| !mesh.nodes[index].provider).collect()
}

fn first_provider(mesh: &Mesh) -> usize {
    (0..mesh.nodes.len()).find(|&index| mesh.nodes[index].provider).unwrap_or_default()
}

fn last_provider(mesh: &Mesh) -> usize {
    (0..mesh.nodes.len()).rev().find(|&index| mesh.nodes[index].provider).unwrap_or_default()
}
