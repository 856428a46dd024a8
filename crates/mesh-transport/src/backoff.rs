//! Redial backoff per address: exponential from an initial delay to a maximum, with ±20 %
//! jitter so a crowd of nodes that lost the same peer does not redial it in lockstep.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use rand::RngExt;
use tokio::time::Instant;

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
        self.failures.insert(addr, (attempts, now + delay));
    }

    /// Records a success: the address starts over.
    pub(crate) fn succeeded(&mut self, addr: SocketAddr) {
        self.failures.remove(&addr);
    }

    fn delay(&self, attempts: u32) -> Duration {
        let exponential =
            self.initial.saturating_mul(1u32 << attempts.saturating_sub(1).min(16)).min(self.max);
        let jitter = rand::rng().random_range(0.8..=1.2);
        exponential.mul_f64(jitter).min(self.max)
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
}
