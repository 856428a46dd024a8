//! Deterministic randomness for seeded runs: SplitMix64, written out here so that a seed
//! means the same scenario whatever version of `rand` is linked, and one independent stream
//! per purpose, so that drawing more faults, say, moves neither the topology nor the
//! publications.

use std::time::Duration;

/// What a stream of numbers is for; each purpose gets its own stream of the seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// The sizes [`crate::SeededConfig::new`] draws.
    Sizes = 1,
    /// The topology's seed.
    Topology,
    /// The links' base latencies.
    Latency,
    /// The faults.
    Faults,
    /// The publication schedule.
    Publications,
    /// The nodes' keys.
    Identities,
    /// The message ids of the publications.
    Messages,
    /// The network's loss decisions.
    Losses,
}

/// One SplitMix64 step: `value` folded into `state`.
pub(crate) const fn mix(state: u64, value: u64) -> u64 {
    let mut z = (state ^ value).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The value of `seed` for `purpose`: a seed of its own.
pub(crate) const fn derive(seed: u64, purpose: Purpose) -> u64 {
    mix(seed, purpose as u64)
}

/// The stream of numbers of `seed` for `purpose`.
pub(crate) const fn stream(seed: u64, purpose: Purpose) -> SplitMix {
    SplitMix { state: derive(seed, purpose) }
}

/// A SplitMix64 generator.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix {
    state: u64,
}

impl SplitMix {
    /// The next number.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.state, 0)
    }

    /// A number in `low..=high` (the modulo bias is negligible for the small ranges used).
    pub(crate) fn range(&mut self, low: u64, high: u64) -> u64 {
        let span = high.saturating_sub(low).saturating_add(1);
        low + self.next_u64() % span
    }

    /// An index below `count` (0 when `count` is 0).
    pub(crate) fn below(&mut self, count: usize) -> usize {
        if count == 0 { 0 } else { self.range(0, count as u64 - 1) as usize }
    }

    /// A fraction in `0.0..1.0`.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// `true` with probability `p`.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// A duration in `low..=high`, to the microsecond.
    pub(crate) fn duration(&mut self, low: Duration, high: Duration) -> Duration {
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        Duration::from_micros(self.range(micros(low), micros(high).max(micros(low))))
    }

    /// `items` in an order drawn from the stream (Fisher–Yates).
    pub(crate) fn shuffle<T>(&mut self, items: &mut [T]) {
        for last in (1..items.len()).rev() {
            items.swap(last, self.below(last + 1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_repeat_differ_by_purpose_and_stay_in_range() {
        let mut a = stream(42, Purpose::Faults);
        let mut b = stream(42, Purpose::Faults);
        let mut c = stream(42, Purpose::Topology);
        let (xs, ys, zs): (Vec<u64>, Vec<u64>, Vec<u64>) = (0..100)
            .map(|_| (a.next_u64(), b.next_u64(), c.next_u64()))
            .fold((Vec::new(), Vec::new(), Vec::new()), |(mut xs, mut ys, mut zs), (x, y, z)| {
                xs.push(x);
                ys.push(y);
                zs.push(z);
                (xs, ys, zs)
            });
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
        // The first numbers of seed 1 are fixed forever: a seed must replay on any build.
        assert_eq!(stream(1, Purpose::Sizes).next_u64(), 0xB382_A305_F441_4F5E);
        let mut rng = stream(7, Purpose::Latency);
        for _ in 0..1000 {
            assert!((3..=9).contains(&rng.range(3, 9)));
            assert!((0.0..1.0).contains(&rng.unit()));
            assert!(rng.below(5) < 5);
        }
        let mut items: Vec<u32> = (0..20).collect();
        rng.shuffle(&mut items);
        items.sort_unstable();
        assert_eq!(items, (0..20).collect::<Vec<_>>());
    }
}
