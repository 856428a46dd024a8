//! [`ClockSamples`]: how far a peer's clock is from this node's, estimated NTP style from
//! heartbeats. A ping leaves at local time `t0`, the pong carries the peer's time `t1` when it
//! answered, and arrives `rtt` later; assuming the two directions take as long, the peer's
//! clock is `t1 - (t0 + rtt / 2)` ahead. Of the last [`SAMPLES`] samples the one with the
//! shortest round trip is kept, as NTP does: queueing only ever adds delay, so the fastest
//! exchange is the least distorted.

use std::collections::VecDeque;
use std::time::Duration;

use mesh_types::Timestamp;

/// Samples kept per peer.
pub(crate) const SAMPLES: usize = 8;

/// The last few offset samples of one peer.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClockSamples {
    /// (round trip, offset in microseconds), oldest first.
    samples: VecDeque<(Duration, i64)>,
}

impl ClockSamples {
    /// Records an exchange: the ping left at local time `sent`, the peer stamped its pong
    /// `peer_time`, and the pong arrived `round_trip` after the ping left.
    pub(crate) fn add(&mut self, sent: Timestamp, round_trip: Duration, peer_time: Timestamp) {
        let half = mesh_types::chrono::Duration::from_std(round_trip.checked_div(2).unwrap_or_default())
            .unwrap_or_default();
        let Some(midpoint) = sent.checked_add_signed(half) else { return };
        let Some(offset) = peer_time.signed_duration_since(midpoint).num_microseconds() else { return };
        if self.samples.len() >= SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back((round_trip, offset));
    }

    /// The peer's clock minus this node's, in milliseconds, from the fastest recent exchange.
    pub(crate) fn offset_ms(&self) -> Option<i64> {
        self.samples.iter().min_by_key(|(round_trip, _)| *round_trip).map(|(_, offset)| offset / 1000)
    }
}

#[cfg(test)]
mod tests {
    use mesh_types::chrono::{Duration as Span, Utc};

    use super::*;

    #[test]
    fn the_offset_comes_from_the_fastest_exchange() {
        let start = Utc::now();
        let mut samples = ClockSamples::default();
        assert_eq!(samples.offset_ms(), None);
        // The peer runs 3 s ahead; a 20 ms round trip answered at its midpoint.
        samples.add(start, Duration::from_millis(20), start + Span::milliseconds(3010));
        // A slow exchange whose pong was stamped late in its 500 ms: distorted by 240 ms.
        samples.add(start, Duration::from_millis(500), start + Span::milliseconds(3490));
        assert_eq!(samples.offset_ms(), Some(3000));
    }

    #[test]
    fn only_the_last_samples_count_and_a_clock_behind_is_negative() {
        let start = Utc::now();
        let mut samples = ClockSamples::default();
        samples.add(start, Duration::from_millis(1), start + Span::seconds(10));
        for _ in 0..SAMPLES {
            samples.add(start, Duration::from_millis(10), start - Span::milliseconds(1995));
        }
        assert_eq!(samples.offset_ms(), Some(-2000), "the old fast sample has left");
    }
}
