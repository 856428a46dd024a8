//! What a write-behind store has yet to write ([`Pending`]): a bounded [`Queue`] of ids in
//! arrival order, or a [`DirtySet`] of keys whose current value is to be written.

use std::collections::{HashSet, VecDeque};
use std::hash::Hash;

/// The entries a write-behind store has accepted and its durable store may not hold yet.
pub trait Pending: Send + 'static {
    /// One entry: an id, or the key whose current value is written.
    type Item: Copy + Send + Sync + 'static;

    /// Adds `items`. Returns how many were new to the pending set, and how many older ones
    /// were dropped to keep it bounded.
    fn add(&mut self, items: impl IntoIterator<Item = Self::Item>) -> Added;

    /// How many entries are pending.
    fn len(&self) -> usize;

    /// Whether nothing is pending.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes every pending entry, in the order to write them.
    fn take(&mut self) -> Vec<Self::Item>;

    /// Puts back `items` that were taken but not written, as older than anything pending.
    /// Returns how many were dropped to keep the set bounded.
    fn put_back(&mut self, items: &[Self::Item]) -> usize;
}

/// What [`Pending::add`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Added {
    /// Entries new to the pending set.
    pub new: usize,
    /// Older entries dropped unwritten to stay within the bound.
    pub dropped: usize,
}

/// Ids in arrival order, each written once, at most `capacity` of them: beyond it the oldest
/// are dropped (a bounded memory in front would have forgotten them too).
#[derive(Debug)]
pub struct Queue<T> {
    items: VecDeque<T>,
    capacity: usize,
}

impl<T> Queue<T> {
    /// An empty queue that holds at most `capacity` ids (at least one).
    pub fn new(capacity: usize) -> Self {
        Self { items: VecDeque::new(), capacity: capacity.max(1) }
    }

    /// Drops the oldest beyond the capacity; returns how many.
    fn trim(&mut self) -> usize {
        let dropped = self.items.len().saturating_sub(self.capacity);
        self.items.drain(..dropped);
        dropped
    }
}

impl<T: Copy + Send + Sync + 'static> Pending for Queue<T> {
    type Item = T;

    fn add(&mut self, items: impl IntoIterator<Item = T>) -> Added {
        let before = self.items.len();
        self.items.extend(items);
        let new = self.items.len().saturating_sub(before);
        Added { new, dropped: self.trim() }
    }

    fn len(&self) -> usize {
        self.items.len()
    }

    fn take(&mut self) -> Vec<T> {
        self.items.drain(..).collect()
    }

    fn put_back(&mut self, items: &[T]) -> usize {
        for item in items.iter().rev() {
            self.items.push_front(*item);
        }
        self.trim()
    }
}

/// Keys whose value changed, each once however often it changed: the write reads the value
/// current then, so changes between two writes coalesce into one.
#[derive(Debug)]
pub struct DirtySet<K> {
    keys: HashSet<K, foldhash::fast::RandomState>,
}

impl<K> Default for DirtySet<K> {
    fn default() -> Self {
        Self { keys: HashSet::default() }
    }
}

impl<K: Copy + Eq + Hash + Send + Sync + 'static> Pending for DirtySet<K> {
    type Item = K;

    fn add(&mut self, items: impl IntoIterator<Item = K>) -> Added {
        let new = items.into_iter().filter(|key| self.keys.insert(*key)).count();
        Added { new, dropped: 0 }
    }

    fn len(&self) -> usize {
        self.keys.len()
    }

    fn take(&mut self) -> Vec<K> {
        self.keys.drain().collect()
    }

    fn put_back(&mut self, items: &[K]) -> usize {
        self.keys.extend(items.iter().copied());
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_keeps_the_newest_and_puts_back_in_front() {
        let mut queue = Queue::new(3);
        assert_eq!(queue.add([1, 2, 3, 4]), Added { new: 4, dropped: 1 });
        let taken = queue.take();
        assert_eq!(taken, [2, 3, 4]);
        queue.add([5]);
        assert_eq!(queue.put_back(&taken[1..]), 0);
        assert_eq!(queue.take(), [3, 4, 5]);
    }

    #[test]
    fn a_dirty_set_counts_a_key_once() {
        let mut dirty = DirtySet::default();
        assert_eq!(dirty.add(["SOL", "SOL", "BTC"]).new, 2);
        assert_eq!(dirty.add(["SOL"]).new, 0);
        assert_eq!(dirty.len(), 2);
    }
}
