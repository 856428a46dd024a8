//! Redial backoff per address: exponential from an initial delay to a maximum, with ±20 %
//! jitter so a crowd of nodes that lost the same peer does not redial it in lockstep.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use rand::RngExt;
use tokio::time::Instant;

/// The longest wait before a redial: about 30 years, as tokio caps its own timers (in effect
/// never), so no configured maximum overflows the clock.
const MAX_WAIT: Duration = Duration::from_secs(30 * 365 * 86_400);

/// When each failed address may be dialled again.
#[derive(Debug)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    failures: HashMap<SocketAddr, (u32, Instant)>,
}

impl Backoff {
    pub(crate) fn new(initial: Duration, max: Duration) -> Self {
        Self { initial, max, failures: HashMap::new() }
    }

    /// Whether `addr` may be dialled at `now`.
    pub(crate) fn ready(&self, addr: SocketAddr, now: Instant) -> bool {
        self.failures.get(&addr).is_none_or(|(_, next)| now >= *next)
    }

    /// Records a failure; `permanent` failures (not worth retrying soon) wait the maximum.
    pub(crate) fn failed(&mut self, addr: SocketAddr, now: Instant, permanent: bool) {
        let attempts = self.failures.get(&addr).map_or(0, |(attempts, _)| *attempts).saturating_add(1);
        let delay = if permanent { self.max } else { self.delay(attempts) };
        self.failures.insert(addr, (attempts, now.checked_add(delay.min(MAX_WAIT)).unwrap_or(now)));
    }

    /// Records a success: the address starts over.
    pub(crate) fn succeeded(&mut self, addr: SocketAddr) {
        self.failures.remove(&addr);
    }

    fn delay(&self, attempts: u32) -> Duration {
        let exponential =
            self.initial.saturating_mul(1u32 << attempts.saturating_sub(1).min(16)).min(self.max);
        let jitter = rand::rng().random_range(0.8..=1.2);
        // `mul_f64`, without its panic when a maximum near `u64::MAX` seconds grows past the range.
        Duration::try_from_secs_f64(jitter * exponential.as_secs_f64()).unwrap_or(self.max).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_the_maximum_and_reset_on_success() {
        let addr: SocketAddr = "127.0.0.1:9470".parse().unwrap();
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let start = Instant::now();
        assert!(backoff.ready(addr, start));
        backoff.failed(addr, start, false);
        assert!(!backoff.ready(addr, start));
        assert!(backoff.ready(addr, start + Duration::from_millis(1200)));
        for _ in 0..10 {
            backoff.failed(addr, start, false);
        }
        assert!(!backoff.ready(addr, start + Duration::from_secs(47)), "grown to about a minute");
        assert!(backoff.ready(addr, start + Duration::from_secs(61)), "never beyond the maximum");
        backoff.succeeded(addr);
        assert!(backoff.ready(addr, start));
        let delays: Vec<Duration> = (1..=4).map(|n| backoff.delay(n)).collect();
        assert!(delays[0] >= Duration::from_millis(800) && delays[3] >= Duration::from_millis(6400));
    }

    #[test]
    fn a_maximum_past_the_clock_neither_panics_nor_overflows() {
        let addr: SocketAddr = "127.0.0.1:9470".parse().unwrap();
        let mut backoff = Backoff::new(Duration::MAX, Duration::MAX);
        let start = Instant::now();
        backoff.failed(addr, start, false);
        backoff.failed(addr, start, true);
        assert!(!backoff.ready(addr, start + Duration::from_secs(3600)));
    }
}
