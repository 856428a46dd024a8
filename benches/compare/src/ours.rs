//! The pricemesh side of the in-process comparison: whole nodes (`MeshPriceService`: connection
//! manager, gossip engine with strict Ed25519 verification once per node, memory stores) run by
//! the simulator on the in-memory transport in its wire mode, so every message is encoded once
//! per broadcast and decoded by each receiver, as libp2p's memory transport makes gossipsub do.

use pricemesh::sim::{SimTransport, run as simulate};

use crate::scenario::{Outcome, Scenario, peak_rss, reset_peak_rss};

/// Runs `scenario` on a pricemesh mesh.
///
/// # Errors
/// When the mesh does not form or a node cannot start.
pub async fn run(scenario: &Scenario) -> Result<Outcome, String> {
    reset_peak_rss();
    let config = scenario.sim_config(SimTransport::MemoryWire);
    let report = simulate(&config).await.map_err(|err| err.to_string())?;
    Ok(Outcome {
        system: "pricemesh",
        time_to_all: report.spreads.iter().map(|spread| spread.all).collect(),
        // The provider's own arrival is not a delivery.
        deliveries: report.spreads.iter().map(|spread| spread.reached.saturating_sub(1) as u64).sum(),
        copies_sent: report.update_copies,
        bytes_sent: report.bytes,
        cpu_seconds: report.cpu.map_or(0.0, |cpu| cpu.as_secs_f64()),
        peak_rss: peak_rss(),
        note: None,
    })
}
