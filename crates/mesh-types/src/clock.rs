//! The clock a node stamps what it sends with: the system's wall clock, plus an offset that
//! only tests set, to play a node whose clock is wrong (`MESH_TEST_CLOCK_OFFSET_MS`).
//!
//! Provider updates, announcements and heartbeats are stamped with [`now`], so a node with
//! an offset looks to its peers exactly like one whose system clock is off. What a node
//! receives is still judged against the same clock, as a real node's would be.

use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{Duration, Utc};

use crate::Timestamp;

/// The offset in microseconds; zero unless a test set one.
static OFFSET_MICROS: AtomicI64 = AtomicI64::new(0);

/// The node's time: the wall clock plus the test offset.
pub fn now() -> Timestamp {
    let now = Utc::now();
    now.checked_add_signed(offset()).unwrap_or(now)
}

/// The offset [`now`] adds.
pub fn offset() -> Duration {
    Duration::microseconds(OFFSET_MICROS.load(Ordering::Relaxed))
}

/// Makes [`now`] run `offset` ahead of the wall clock (behind, when negative), for the whole
/// process. For tests only: a real node's clock is its system's.
pub fn set_offset_for_tests(offset: Duration) {
    OFFSET_MICROS.store(offset.num_microseconds().unwrap_or(0), Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offset_moves_the_clock_and_can_be_taken_back() {
        set_offset_for_tests(Duration::seconds(3));
        let ahead = now().signed_duration_since(Utc::now());
        assert!(ahead > Duration::milliseconds(2900) && ahead <= Duration::seconds(3), "{ahead}");
        set_offset_for_tests(Duration::zero());
        assert!(now().signed_duration_since(Utc::now()).abs() < Duration::milliseconds(100));
    }
}
