//! What a run found: one line per invariant per scenario, PASS or FAIL with the evidence, the
//! figures (round trip, convergence times, propagation lag, memory), and the closing
//! `N passed, M failed` line.

use std::fmt::Write as _;
use std::time::Duration;

/// One invariant checked after one scenario.
#[derive(Debug, Clone)]
pub struct Check {
    /// The scenario it followed.
    pub scenario: String,
    /// The invariant.
    pub invariant: &'static str,
    /// Whether it held.
    pub passed: bool,
    /// The evidence: a figure when it held, the violations when not.
    pub detail: String,
}

/// The whole run's result.
#[derive(Debug, Default)]
pub struct Report {
    /// Called with each check as it is made, so a long run shows progress (the binary prints).
    pub progress: Option<fn(&Check)>,
    /// How links were shaped, and the measured round trip.
    pub network: String,
    /// Every check, in order.
    pub checks: Vec<Check>,
    /// Time to converge after each fault ended, by scenario.
    pub convergence: Vec<(String, Duration)>,
    /// How long after signing each quote reached each node, in the steady state.
    pub lags: Vec<Duration>,
    /// The largest resident memory any node reached, in KiB.
    pub peak_rss_kib: u64,
    /// The userspace switch's forwarded, lost and partitioned frames, when it ran.
    pub frames: Option<(u64, u64, u64)>,
    /// Every update any node showed (the history's length).
    pub observations: usize,
}

impl Report {
    /// Adds a check, passing it to `progress` at once.
    pub fn check(&mut self, scenario: &str, invariant: &'static str, passed: bool, detail: String) {
        let check = Check { scenario: scenario.to_owned(), invariant, passed, detail };
        if let Some(progress) = self.progress {
            progress(&check);
        }
        self.checks.push(check);
    }

    /// How many checks held.
    pub fn passed(&self) -> usize {
        self.checks.iter().filter(|check| check.passed).count()
    }

    /// How many did not.
    pub fn failed(&self) -> usize {
        self.checks.len() - self.passed()
    }

    /// The figures, as printed after the checks.
    pub fn figures(&self) -> String {
        let mut text = String::new();
        let _ = writeln!(text, "network: {}", self.network);
        if let Some((forwarded, lost, partitioned)) = self.frames {
            let _ = writeln!(
                text,
                "frames: {forwarded} forwarded, {lost} lost on links, {partitioned} dropped by partitions"
            );
        }
        let _ = writeln!(text, "history: {} quote changes recorded", self.observations);
        let mut lags = self.lags.clone();
        lags.sort();
        if let (Some(p50), Some(p99), Some(max)) = (quantile(&lags, 0.5), quantile(&lags, 0.99), lags.last())
        {
            let _ = writeln!(
                text,
                "propagation lag (signed → shown, sampled every poll): p50 {} ms, p99 {} ms, max {} ms over {} arrivals",
                p50.as_millis(),
                p99.as_millis(),
                max.as_millis(),
                lags.len()
            );
        }
        let mut times: Vec<Duration> = self.convergence.iter().map(|(_, time)| *time).collect();
        times.sort();
        if let (Some(p50), Some(p99)) = (quantile(&times, 0.5), quantile(&times, 0.99)) {
            let _ = writeln!(
                text,
                "convergence after a fault: p50 {} ms, p99 {} ms over {} faults",
                p50.as_millis(),
                p99.as_millis(),
                times.len()
            );
        }
        // Per kind of fault, over its rounds (`partition#1`, `partition#2`, … are one kind).
        let mut kinds: Vec<(&str, Vec<Duration>)> = Vec::new();
        for (scenario, time) in &self.convergence {
            let kind = scenario.split('#').next().unwrap_or(scenario);
            match kinds.iter_mut().find(|(known, _)| *known == kind) {
                Some((_, times)) => times.push(*time),
                None => kinds.push((kind, vec![*time])),
            }
        }
        for (kind, mut times) in kinds {
            times.sort();
            if let (Some(p50), Some(p99)) = (quantile(&times, 0.5), quantile(&times, 0.99)) {
                let _ = writeln!(
                    text,
                    "  {kind}: p50 {} ms, p99 {} ms over {} run(s)",
                    p50.as_millis(),
                    p99.as_millis(),
                    times.len()
                );
            }
        }
        let _ = writeln!(text, "peak RSS of any node: {} MiB", self.peak_rss_kib / 1024);
        text
    }
}

/// The `PASS`/`FAIL` line of a check.
pub fn check_line(check: &Check) -> String {
    format!(
        "{} {}: {} ({})",
        if check.passed { "PASS" } else { "FAIL" },
        check.scenario,
        check.invariant,
        check.detail
    )
}

/// The value at `q` (0 to 1) of sorted `values`.
pub fn quantile(values: &[Duration], q: f64) -> Option<Duration> {
    if values.is_empty() {
        return None;
    }
    let last = values.len() - 1;
    // `q` is a fraction the harness chose, and the index is clamped to the slice.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    let index = ((q * last as f64).round() as usize).min(last);
    values.get(index).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_pick_from_the_sorted_values() {
        let values: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&values, 0.5), Some(Duration::from_millis(51)));
        assert_eq!(quantile(&values, 0.99), Some(Duration::from_millis(99)));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn the_counts_follow_the_checks() {
        let mut report = Report::default();
        report.check("steady", "no panic", true, "7 logs".into());
        report.check("steady", "no loss", false, "node3 lacks SOL".into());
        assert_eq!((report.passed(), report.failed()), (1, 1));
        assert!(check_line(&report.checks[1]).starts_with("FAIL steady: no loss"));
    }
}
