//! [`Journal`]: the node's numbered history of what changed, from which a subscriber that
//! lost its place resumes.
//!
//! Every [`ServiceEvent`] gets the next sequence number and is kept, most recent first, until
//! the history holds more than its capacity in items (a price, a status or a warning each
//! count one). Numbers start at the node's start time in microseconds since the Unix epoch, so
//! a restarted node numbers above anything its previous run sent (a node would have to emit
//! more than one event per microsecond to catch up with the clock), and a position from an
//! earlier run is recognised as one this history cannot serve.

use std::collections::VecDeque;

use tokio::sync::broadcast;

use crate::ServiceEvent;

/// An event with its place in this node's sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct Sequenced {
    /// Its sequence number: larger than every earlier event's.
    pub seq: u64,
    /// What changed.
    pub event: ServiceEvent,
}

/// Why a subscriber cannot resume from a position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot replay from {since}: this node holds events {first} to {last}")]
pub struct ReplayGap {
    /// The position asked for.
    pub since: u64,
    /// The first event that a replay could still include.
    pub first: u64,
    /// The last event numbered so far.
    pub last: u64,
}

/// The numbered history, and the channel that publishes each event as it is numbered.
#[derive(Debug)]
pub(crate) struct Journal {
    /// The number of the last event; the next gets one more.
    last: u64,
    /// Events whose number is above this were all kept (until evicted, which raises it).
    evicted_through: u64,
    history: VecDeque<Sequenced>,
    /// Items in `history`.
    items: usize,
    capacity: usize,
    events: broadcast::Sender<Sequenced>,
}

/// How many items an event counts against the history's capacity.
fn weight(event: &ServiceEvent) -> usize {
    match event {
        ServiceEvent::Prices(prices) => prices.len().max(1),
        ServiceEvent::Status(_) | ServiceEvent::Warning(_) => 1,
    }
}

impl Journal {
    /// A journal whose first number is above `start` (the node's start time in microseconds),
    /// keeping about `capacity` items and publishing to `events`.
    pub(crate) fn new(start: u64, capacity: usize, events: broadcast::Sender<Sequenced>) -> Self {
        Self { last: start, evicted_through: start, history: VecDeque::new(), items: 0, capacity, events }
    }

    /// Numbers `event`, keeps it, and publishes it. Returns its number.
    pub(crate) fn emit(&mut self, event: ServiceEvent) -> u64 {
        self.last = self.last.saturating_add(1);
        let sequenced = Sequenced { seq: self.last, event };
        self.items = self.items.saturating_add(weight(&sequenced.event));
        self.history.push_back(sequenced.clone());
        while self.items > self.capacity {
            let Some(oldest) = self.history.pop_front() else { break };
            self.items = self.items.saturating_sub(weight(&oldest.event));
            self.evicted_through = oldest.seq;
        }
        // No subscriber is fine: nobody is listening yet.
        let _ = self.events.send(sequenced);
        self.last
    }

    /// A receiver of every event numbered from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Sequenced> {
        self.events.subscribe()
    }

    /// The number of the last event.
    pub(crate) const fn last(&self) -> u64 {
        self.last
    }

    /// Every event after `since`, oldest first.
    ///
    /// # Errors
    /// When events after `since` were already evicted, or `since` is beyond the last event
    /// (a position from another run of the node, or made up).
    pub(crate) fn since(&self, since: u64) -> Result<Vec<Sequenced>, ReplayGap> {
        if since < self.evicted_through || since > self.last {
            return Err(ReplayGap { since, first: self.evicted_through.saturating_add(1), last: self.last });
        }
        let start = self.history.partition_point(|event| event.seq <= since);
        Ok(self.history.range(start..).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use mesh_types::MeshWarning;

    use super::*;

    fn warning() -> ServiceEvent {
        ServiceEvent::Warning(MeshWarning::no_providers())
    }

    #[test]
    fn events_are_numbered_in_order_above_the_start_and_published() {
        let (sender, mut receiver) = broadcast::channel(8);
        let mut journal = Journal::new(1_000, 10, sender);
        assert_eq!(journal.emit(warning()), 1_001);
        assert_eq!(journal.emit(warning()), 1_002);
        assert_eq!(receiver.try_recv().unwrap().seq, 1_001);
        assert_eq!(receiver.try_recv().unwrap().seq, 1_002);
        assert_eq!(journal.last(), 1_002);
    }

    #[test]
    fn a_replay_returns_what_came_after_the_position() {
        let (sender, _) = broadcast::channel(8);
        let mut journal = Journal::new(0, 10, sender);
        for _ in 0..5 {
            journal.emit(warning());
        }
        let seqs = |events: Vec<Sequenced>| events.iter().map(|event| event.seq).collect::<Vec<_>>();
        assert_eq!(seqs(journal.since(2).unwrap()), [3, 4, 5]);
        assert_eq!(seqs(journal.since(0).unwrap()), [1, 2, 3, 4, 5], "from the very start");
        assert!(journal.since(5).unwrap().is_empty(), "nothing new");
        assert!(journal.since(6).is_err(), "a position never reached");
    }

    #[test]
    fn history_is_bounded_in_items_and_an_evicted_position_is_a_gap() {
        let (sender, _) = broadcast::channel(8);
        let mut journal = Journal::new(0, 3, sender);
        for _ in 0..5 {
            journal.emit(warning());
        }
        assert_eq!(journal.history.len(), 3);
        assert_eq!(journal.since(1), Err(ReplayGap { since: 1, first: 3, last: 5 }), "event 2 is gone");
        assert_eq!(journal.since(2).unwrap().len(), 3, "events 3 to 5 are all there");
    }
}
