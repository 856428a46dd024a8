//! Turning measurements into the lines `BENCHMARKS.md` quotes: latency percentiles from an HDR
//! histogram, ratios between two systems measured in the same run, and byte sizes.

use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;

/// Latencies recorded in nanoseconds with three significant digits, from 1 ns to 10 minutes.
#[derive(Debug, Clone)]
pub struct Latencies {
    histogram: Histogram<u64>,
    missing: u64,
}

impl Latencies {
    /// An empty record.
    pub fn new() -> Self {
        let histogram = Histogram::new_with_bounds(1, 600_000_000_000, 3).expect("valid histogram bounds");
        Self { histogram, missing: 0 }
    }

    /// Records one latency.
    pub fn record(&mut self, latency: Duration) {
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX).max(1);
        self.histogram.saturating_record(nanos);
    }

    /// Records every latency, and counts each `None` as an event that never happened.
    pub fn record_all(&mut self, latencies: impl IntoIterator<Item = Option<Duration>>) {
        for latency in latencies {
            match latency {
                Some(latency) => self.record(latency),
                None => self.missing += 1,
            }
        }
    }

    /// Adds everything `other` recorded.
    pub fn merge(&mut self, other: &Self) {
        self.histogram.add(&other.histogram).expect("histograms with the same bounds");
        self.missing += other.missing;
    }

    /// Events recorded (not counting missing ones).
    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// Events that never happened (an update that did not reach every node).
    pub const fn missing(&self) -> u64 {
        self.missing
    }

    /// The latency at `quantile` (0.0–1.0).
    pub fn at(&self, quantile: f64) -> Duration {
        Duration::from_nanos(self.histogram.value_at_quantile(quantile))
    }

    /// The largest latency recorded.
    pub fn max(&self) -> Duration {
        Duration::from_nanos(self.histogram.max())
    }

    /// `p50 … / p99 … / p99.9 … / max …`.
    pub fn summary(&self) -> String {
        format!(
            "p50 {} / p99 {} / p99.9 {} / max {}",
            Millis(self.at(0.5)),
            Millis(self.at(0.99)),
            Millis(self.at(0.999)),
            Millis(self.max())
        )
    }
}

impl Default for Latencies {
    fn default() -> Self {
        Self::new()
    }
}

/// A duration shown in milliseconds with a precision that suits its size.
#[derive(Debug, Clone, Copy)]
pub struct Millis(pub Duration);

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_secs_f64() * 1000.0;
        if ms < 1.0 {
            write!(f, "{ms:.3} ms")
        } else if ms < 100.0 {
            write!(f, "{ms:.2} ms")
        } else {
            write!(f, "{ms:.0} ms")
        }
    }
}

/// A byte count in B, KiB or MiB.
#[derive(Debug, Clone, Copy)]
pub struct Bytes(pub f64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = self.0;
        if bytes < 1024.0 {
            write!(f, "{bytes:.0} B")
        } else if bytes < 1024.0 * 1024.0 {
            write!(f, "{:.1} KiB", bytes / 1024.0)
        } else {
            write!(f, "{:.1} MiB", bytes / (1024.0 * 1024.0))
        }
    }
}

/// `ours / theirs` as `0.42×`, or `-` when either is missing or zero.
pub fn ratio(ours: f64, theirs: f64) -> String {
    if ours > 0.0 && theirs > 0.0 && ours.is_finite() && theirs.is_finite() {
        format!("{:.2}×", ours / theirs)
    } else {
        "-".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_what_was_recorded() {
        let mut latencies = Latencies::new();
        latencies.record_all((1..=100).map(|ms| Some(Duration::from_millis(ms))));
        latencies.record_all([None]);
        assert_eq!(latencies.count(), 100);
        assert_eq!(latencies.missing(), 1);
        let p99 = latencies.at(0.99).as_secs_f64() * 1000.0;
        assert!((98.5..=99.5).contains(&p99), "{p99}");
        assert_eq!(ratio(1.0, 4.0), "0.25×");
        assert_eq!(ratio(1.0, 0.0), "-");
    }
}
