//! Row "100 nodes in one process": the same random 8-regular mesh, payload and signing run on
//! pricemesh, on libp2p gossipsub and on iroh-gossip's protocol state machine, each over
//! in-memory links, one after the other in this process; then, for each, the highest offered
//! rate it keeps up with.

use std::time::Duration;

use crate::report::{Bytes, Latencies, Millis, ratio};
use crate::scenario::{Outcome, Scenario};
use crate::{gossipsub, iroh, ours};

/// Which implementation runs a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum System {
    /// This project.
    Pricemesh,
    /// rust-libp2p's gossipsub.
    Gossipsub,
    /// iroh-gossip's sans-IO HyParView + Plumtree.
    IrohGossip,
}

impl System {
    async fn run(self, scenario: &Scenario) -> Result<Outcome, String> {
        match self {
            Self::Pricemesh => ours::run(scenario).await,
            Self::Gossipsub => gossipsub::run(scenario).await,
            Self::IrohGossip => iroh::run(scenario).await,
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

/// The systems compared, ours first: every other column is divided into ours.
const SYSTEMS: [System; 3] = [System::Pricemesh, System::Gossipsub, System::IrohGossip];

/// Runs every system at the scenario's rate, prints the comparison, then searches each
/// system's sustained rate.
///
/// # Errors
/// When a mesh cannot be built.
pub async fn compare(scenario: &Scenario, quick: bool) -> Result<(), String> {
    println!(
        "## {} nodes, random {}-regular, {:.0} updates/s for {:?} (open loop), in one process",
        scenario.nodes, scenario.degree, scenario.rate, scenario.duration
    );
    let mut outcomes = Vec::with_capacity(SYSTEMS.len());
    for system in SYSTEMS {
        outcomes.push(system.run(scenario).await?);
    }
    print_comparison(&outcomes);
    for outcome in &outcomes {
        if let Some(note) = &outcome.note {
            println!("\n{note}");
        }
    }

    println!(
        "\n### Highest sustained rate (every update to every node, p99 time-to-all ≤ {})",
        Millis(KEEPING_UP_P99)
    );
    let mut rates = Vec::with_capacity(SYSTEMS.len());
    for system in SYSTEMS {
        rates.push(sustained(system, scenario, quick).await?);
    }
    let names: Vec<&str> = outcomes.iter().map(|outcome| outcome.system).collect();
    print_row_header(&names);
    print_row("sustained updates/s", &rates, |rate| format!("{rate:.0}"));
    println!(
        "(on 2 cores each update costs {} signature verifications, one per node: that bounds all of them)",
        scenario.nodes - 1
    );
    Ok(())
}

/// `| | ours | theirs… | ours / theirs… |` and the separator line.
fn print_row_header(names: &[&str]) {
    let ours = names.first().copied().unwrap_or_default();
    let ratios: Vec<String> = names.iter().skip(1).map(|theirs| format!("{ours} / {theirs}")).collect();
    println!("| | {} | {} |", names.join(" | "), ratios.join(" | "));
    println!("|{}", " --- |".repeat(2 * names.len()));
}

/// One row: each system's value shown by `show`, then ours divided by each other's.
fn print_row(name: &str, values: &[f64], show: impl Fn(f64) -> String) {
    let ours = values.first().copied().unwrap_or_default();
    let shown: Vec<String> = values.iter().map(|&value| show(value)).collect();
    let ratios: Vec<String> = values.iter().skip(1).map(|&theirs| ratio(ours, theirs)).collect();
    println!("| {name} | {} | {} |", shown.join(" | "), ratios.join(" | "));
}

fn print_comparison(outcomes: &[Outcome]) {
    let latencies: Vec<Latencies> = outcomes
        .iter()
        .map(|outcome| {
            let mut latencies = Latencies::new();
            latencies.record_all(outcome.time_to_all.iter().copied());
            latencies
        })
        .collect();
    let per_delivery = |value: u64, outcome: &Outcome| value as f64 / outcome.deliveries.max(1) as f64;
    let each = |value: &dyn Fn(&Outcome) -> f64| outcomes.iter().map(value).collect::<Vec<f64>>();
    let names: Vec<&str> = outcomes.iter().map(|outcome| outcome.system).collect();
    print_row_header(&names);
    for (name, quantile) in [("p50", 0.5), ("p99", 0.99), ("p99.9", 0.999)] {
        let values: Vec<f64> =
            latencies.iter().map(|latencies| latencies.at(quantile).as_secs_f64()).collect();
        print_row(&format!("time to all nodes, {name}"), &values, |seconds| {
            Millis(Duration::from_secs_f64(seconds)).to_string()
        });
    }
    let reached: Vec<String> = latencies
        .iter()
        .zip(outcomes)
        .map(|(latencies, outcome)| format!("{} of {}", latencies.count(), outcome.time_to_all.len()))
        .collect();
    println!("| updates reaching every node | {} |{}", reached.join(" | "), " |".repeat(outcomes.len() - 1));
    let copies = each(&|outcome| per_delivery(outcome.copies_sent, outcome));
    print_row("copies sent per delivered update", &copies, |copies| format!("{copies:.2}"));
    let duplicates = each(&|outcome| {
        100.0 * outcome.copies_sent.saturating_sub(outcome.deliveries) as f64
            / outcome.copies_sent.max(1) as f64
    });
    print_row("duplicate ratio (copies beyond the first)", &duplicates, |percent| format!("{percent:.1} %"));
    let bytes = each(&|outcome| per_delivery(outcome.bytes_sent, outcome));
    print_row("bytes sent per delivered update", &bytes, |bytes| Bytes(bytes).to_string());
    print_row("CPU seconds", &each(&|outcome| outcome.cpu_seconds), |seconds| format!("{seconds:.2}"));
    print_row("peak RSS", &each(&|outcome| outcome.peak_rss as f64), |bytes| Bytes(bytes).to_string());
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
