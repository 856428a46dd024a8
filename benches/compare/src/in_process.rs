//! Row "100 nodes in one process": the same random 8-regular mesh, payload and signing run on
//! pricemesh and on libp2p gossipsub, each on its in-memory transport, one after the other in
//! this process; then, for each, the highest offered rate it keeps up with.

use std::time::Duration;

use crate::report::{Bytes, Latencies, Millis, ratio};
use crate::scenario::{Outcome, Scenario};
use crate::{gossipsub, ours};

/// Which implementation runs a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum System {
    /// This project.
    Pricemesh,
    /// rust-libp2p's gossipsub.
    Gossipsub,
}

impl System {
    async fn run(self, scenario: &Scenario) -> Result<Outcome, String> {
        match self {
            Self::Pricemesh => ours::run(scenario).await,
            Self::Gossipsub => gossipsub::run(scenario).await,
        }
    }
}

/// The highest p99 time-to-all-nodes at which a mesh counts as keeping up with its offered
/// rate. A mesh that falls behind an open-loop schedule queues more with every update, so its
/// p99 grows with the length of the run; one that keeps up stays near its unloaded latency.
const KEEPING_UP_P99: Duration = Duration::from_millis(100);

/// Whether every update reached every node and the p99 time-to-all stayed within
/// [`KEEPING_UP_P99`].
fn keeps_up(outcome: &Outcome) -> bool {
    let mut latencies = Latencies::new();
    latencies.record_all(outcome.time_to_all.iter().copied());
    latencies.missing() == 0 && latencies.at(0.99) <= KEEPING_UP_P99
}

/// Runs both systems at the scenario's rate, prints the comparison, then searches each
/// system's sustained rate.
///
/// # Errors
/// When either mesh cannot be built.
pub async fn compare(scenario: &Scenario, quick: bool) -> Result<(), String> {
    println!(
        "## {} nodes, random {}-regular, {:.0} updates/s for {:?} (open loop), in one process",
        scenario.nodes, scenario.degree, scenario.rate, scenario.duration
    );
    let ours = System::Pricemesh.run(scenario).await?;
    let theirs = System::Gossipsub.run(scenario).await?;
    print_comparison(&ours, &theirs);

    println!(
        "\n### Highest sustained rate (every update to every node, p99 time-to-all ≤ {})",
        Millis(KEEPING_UP_P99)
    );
    let ours_rate = sustained(System::Pricemesh, scenario, quick).await?;
    let theirs_rate = sustained(System::Gossipsub, scenario, quick).await?;
    println!(
        "| sustained updates/s | {ours_rate:.0} | {theirs_rate:.0} | {} |",
        ratio(ours_rate, theirs_rate)
    );
    println!(
        "(on 2 cores each update costs {} signature verifications, one per node: that bounds both)",
        scenario.nodes - 1
    );
    Ok(())
}

fn print_comparison(ours: &Outcome, theirs: &Outcome) {
    let latencies = |outcome: &Outcome| {
        let mut latencies = Latencies::new();
        latencies.record_all(outcome.time_to_all.iter().copied());
        latencies
    };
    let (ours_latency, theirs_latency) = (latencies(ours), latencies(theirs));
    let per_delivery = |value: u64, outcome: &Outcome| value as f64 / outcome.deliveries.max(1) as f64;
    println!("| | {} | {} | ours / theirs |", ours.system, theirs.system);
    println!("| --- | --- | --- | --- |");
    for (name, quantile) in [("p50", 0.5), ("p99", 0.99), ("p99.9", 0.999)] {
        let (a, b) = (ours_latency.at(quantile), theirs_latency.at(quantile));
        println!(
            "| time to all nodes, {name} | {} | {} | {} |",
            Millis(a),
            Millis(b),
            ratio(a.as_secs_f64(), b.as_secs_f64())
        );
    }
    println!(
        "| updates reaching every node | {} of {} | {} of {} | |",
        ours_latency.count(),
        ours.time_to_all.len(),
        theirs_latency.count(),
        theirs.time_to_all.len()
    );
    let (a, b) = (per_delivery(ours.copies_sent, ours), per_delivery(theirs.copies_sent, theirs));
    println!("| copies sent per delivered update | {a:.2} | {b:.2} | {} |", ratio(a, b));
    let duplicates = |outcome: &Outcome| {
        100.0 * outcome.copies_sent.saturating_sub(outcome.deliveries) as f64
            / outcome.copies_sent.max(1) as f64
    };
    let (a, b) = (duplicates(ours), duplicates(theirs));
    println!("| duplicate ratio (copies beyond the first) | {a:.1} % | {b:.1} % | {} |", ratio(a, b));
    let (a, b) = (per_delivery(ours.bytes_sent, ours), per_delivery(theirs.bytes_sent, theirs));
    println!("| bytes sent per delivered update | {} | {} | {} |", Bytes(a), Bytes(b), ratio(a, b));
    println!(
        "| CPU seconds | {:.2} | {:.2} | {} |",
        ours.cpu_seconds,
        theirs.cpu_seconds,
        ratio(ours.cpu_seconds, theirs.cpu_seconds)
    );
    println!(
        "| peak RSS | {} | {} | {} |",
        Bytes(ours.peak_rss as f64),
        Bytes(theirs.peak_rss as f64),
        ratio(ours.peak_rss as f64, theirs.peak_rss as f64)
    );
}

/// The highest rate `system` keeps up with: doubling from 100 updates/s until it falls behind,
/// then two bisection steps between the last rate it kept up with and the first it did not.
async fn sustained(system: System, base: &Scenario, quick: bool) -> Result<f64, String> {
    let trial = |rate: f64| Scenario {
        rate,
        duration: if quick { Duration::from_secs(2) } else { Duration::from_secs(5) },
        settle: Duration::from_secs(5),
        ..base.clone()
    };
    let mut kept_up = 0.0;
    let mut rate = 100.0;
    let mut fell_behind = None;
    while rate <= 25_600.0 {
        let outcome = system.run(&trial(rate)).await?;
        let ok = keeps_up(&outcome);
        eprintln!("  {system:?} at {rate:.0}/s: {}", if ok { "keeps up" } else { "falls behind" });
        if !ok {
            fell_behind = Some(rate);
            break;
        }
        kept_up = rate;
        rate *= 2.0;
    }
    if let Some(mut high) = fell_behind {
        let mut low = kept_up;
        for _ in 0..2 {
            let middle = (low + high) / 2.0;
            let ok = keeps_up(&system.run(&trial(middle)).await?);
            eprintln!("  {system:?} at {middle:.0}/s: {}", if ok { "keeps up" } else { "falls behind" });
            if ok { low = middle } else { high = middle }
        }
        kept_up = low;
    }
    Ok(kept_up)
}
