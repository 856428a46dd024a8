//! The behaviour every [`MessageTracker`] must show, as plain async functions any backend's
//! tests can call — ours, and a service's own backend (enable the `conformance` feature).
//!
//! A backend gets the whole suite with one line in its tests,
//! [`message_tracker_conformance!`](crate::message_tracker_conformance): give it a name for the
//! tests' module and a setup — a closure that takes the expiration to build the tracker with
//! and returns a [`Fixture`], or `None` to skip (a backend whose server URL is unset):
//!
//! ```ignore
//! mesh_dedup::message_tracker_conformance!(memory, |expiration| async move {
//!     let config = TrackerConfig { capacity: 100_000, expiration };
//!     Some(Fixture::new(Arc::new(MemoryTracker::new(config))))
//! });
//! ```
//!
//! It expands to two tests: `passes_the_conformance_suite` ([`run_all`] on a tracker built
//! with [`EXPIRATION`]) and `behaves_like_the_reference_model` ([`check_against_model`] on 24
//! random workloads from [`operations`], or `model_cases = N` after the setup, against one
//! tracker built with [`MODEL_EXPIRATION`]). A server backend's setup creates its own
//! namespace or schema and gives its cleanup to [`Fixture::then`], which runs after the suite.
//! Checks that only one backend needs (two connection pools to one server, corrupt rows) stay
//! tests of their own beside the line.
//!
//! The checks use fresh random ids and compare `len` before and after, so they do not need an
//! empty backend.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub use mesh_storage_core::conformance::Fixture;
use mesh_storage_core::conformance::{run_model, run_suite, runtime};
#[doc(hidden)]
pub use mesh_storage_core::conformance_tests;
use mesh_types::MessageId;
use proptest::prelude::*;

use crate::MessageTracker;

/// The expiration a tracker under test must be built with: short, so expiry can be observed.
pub const EXPIRATION: Duration = Duration::from_millis(1500);

/// The expiration of the tracker the model workloads run against: long, so no mark expires
/// during a workload.
pub const MODEL_EXPIRATION: Duration = Duration::from_secs(300);

/// The whole suite for one backend, as two tests in a module `$name`; see the [module
/// docs](crate::conformance).
#[macro_export]
macro_rules! message_tracker_conformance {
    ($name:ident, $setup:expr $(,)?) => {
        $crate::message_tracker_conformance!($name, $setup, model_cases = 24);
    };
    ($name:ident, $setup:expr, model_cases = $cases:expr $(,)?) => {
        $crate::conformance::conformance_tests!(
            $name,
            $setup,
            $crate::conformance::test_suite,
            $crate::conformance::test_model,
            $cases
        );
    };
}

/// Runs [`run_all`] on the tracker `setup` builds with [`EXPIRATION`], then finishes the
/// fixture; does nothing when `setup` gives none. The first test of
/// [`message_tracker_conformance!`](crate::message_tracker_conformance).
///
/// # Panics
/// On the first behaviour that differs from the contract.
pub fn test_suite<S, F>(setup: impl FnOnce(Duration) -> F)
where
    S: MessageTracker + 'static,
    F: Future<Output = Option<Fixture<S>>>,
{
    run_suite(&runtime(), setup(EXPIRATION), |tracker| run_all(tracker));
}

/// Runs [`check_against_model`] on `cases` random workloads against the tracker `setup`
/// builds with [`MODEL_EXPIRATION`], then finishes the fixture; does nothing when `setup`
/// gives none. Failing workloads are saved in `proptest-regressions/` beside `source_file`
/// (the `file!()` of the test). The second test of
/// [`message_tracker_conformance!`](crate::message_tracker_conformance).
///
/// # Panics
/// On the first disagreement, with the smallest workload that shows it.
pub fn test_model<S, F>(setup: impl FnOnce(Duration) -> F, cases: u32, source_file: &'static str)
where
    S: MessageTracker + 'static,
    F: Future<Output = Option<Fixture<S>>>,
{
    let setup = setup(MODEL_EXPIRATION);
    run_model(&runtime(), setup, operations(), cases, source_file, |tracker, ops| async move {
        check_against_model(tracker.as_ref(), &ops).await
    });
}

/// Runs every check below against `tracker`.
///
/// # Panics
/// On the first behaviour that differs from the contract.
pub async fn run_all(tracker: Arc<dyn MessageTracker>) {
    first_check_and_mark_wins(tracker.as_ref()).await;
    marks_are_visible(tracker.as_ref()).await;
    mark_seen_many_marks_every_id(tracker.as_ref()).await;
    len_counts_new_ids(tracker.as_ref()).await;
    recent_lists_marked_ids(tracker.as_ref()).await;
    one_winner_under_concurrency(&[tracker.clone(), tracker.clone()]).await;
    marks_expire(tracker.as_ref()).await;
}

/// `check_and_mark` is true once, then false.
pub async fn first_check_and_mark_wins(tracker: &dyn MessageTracker) {
    let id = MessageId::new();
    assert!(!tracker.has_seen(id).await.unwrap(), "a new id is unseen");
    assert!(tracker.check_and_mark(id).await.unwrap(), "the first check_and_mark wins");
    assert!(!tracker.check_and_mark(id).await.unwrap(), "the second check_and_mark loses");
    assert!(tracker.has_seen(id).await.unwrap());
}

/// `mark_seen` makes an id seen, and `check_and_mark` then returns false.
pub async fn marks_are_visible(tracker: &dyn MessageTracker) {
    let id = MessageId::new();
    tracker.mark_seen(id).await.unwrap();
    assert!(tracker.has_seen(id).await.unwrap());
    assert!(!tracker.check_and_mark(id).await.unwrap());
    tracker.mark_seen(id).await.unwrap();
    assert!(tracker.has_seen(id).await.unwrap(), "marking twice is harmless");
}

/// `mark_seen_many` marks every id it is given, as `mark_seen` one after another would: new
/// ids, an id given twice in one batch, and an id marked before; an empty batch changes
/// nothing.
pub async fn mark_seen_many_marks_every_id(tracker: &dyn MessageTracker) {
    let before = tracker.len().await.unwrap();
    tracker.mark_seen_many(&[]).await.unwrap();
    assert_eq!(tracker.len().await.unwrap(), before, "an empty batch marks nothing");

    let known = MessageId::new();
    tracker.mark_seen(known).await.unwrap();
    let fresh: Vec<MessageId> = (0..5).map(|_| MessageId::new()).collect();
    let mut batch = fresh.clone();
    batch.push(fresh[2]);
    batch.push(known);
    tracker.mark_seen_many(&batch).await.unwrap();
    for id in &batch {
        assert!(tracker.has_seen(*id).await.unwrap(), "marked by mark_seen_many");
        assert!(!tracker.check_and_mark(*id).await.unwrap(), "and no longer new");
    }
    assert_eq!(tracker.len().await.unwrap(), before + 6, "each id counts once");
    assert!(tracker.recent(100_000).await.unwrap().contains(&fresh[4]));

    // More ids than one statement or pipeline carries.
    let many: Vec<MessageId> = (0..2_500).map(|_| MessageId::new()).collect();
    tracker.mark_seen_many(&many).await.unwrap();
    assert_eq!(tracker.len().await.unwrap(), before + 6 + many.len());
    for id in many.iter().step_by(97) {
        assert!(tracker.has_seen(*id).await.unwrap());
    }
}

/// `len` grows by one per new id and not for repeats.
pub async fn len_counts_new_ids(tracker: &dyn MessageTracker) {
    let before = tracker.len().await.unwrap();
    let ids: Vec<MessageId> = (0..5).map(|_| MessageId::new()).collect();
    for id in &ids {
        tracker.check_and_mark(*id).await.unwrap();
        tracker.check_and_mark(*id).await.unwrap();
    }
    assert_eq!(tracker.len().await.unwrap(), before + 5);
}

/// `recent` returns marked ids.
pub async fn recent_lists_marked_ids(tracker: &dyn MessageTracker) {
    let id = MessageId::new();
    tracker.mark_seen(id).await.unwrap();
    let recent = tracker.recent(100_000).await.unwrap();
    assert!(recent.contains(&id), "recent() lacks a just-marked id");
    assert!(tracker.recent(1).await.unwrap().len() <= 1, "recent() respects its limit");
}

/// 1,000 concurrent `check_and_mark`s of one id, spread over `trackers` (which must share a
/// backend — e.g. two connection pools to one server, with marks lasting at least
/// [`EXPIRATION`]), yield exactly one `true` while the first mark lasts.
///
/// On a loaded machine the calls may outlast a mark; a call after it expired rightly wins
/// again. So the winners, in the order they returned, must be at least one [`EXPIRATION`]
/// apart from the start: the second no sooner than one after, the third two, and so on.
pub async fn one_winner_under_concurrency(trackers: &[Arc<dyn MessageTracker>]) {
    let id = MessageId::new();
    let start = tokio::time::Instant::now();
    let tasks: Vec<_> = (0..1000)
        .map(|i| {
            let tracker = trackers[i % trackers.len()].clone();
            tokio::spawn(async move { tracker.check_and_mark(id).await.unwrap().then(|| start.elapsed()) })
        })
        .collect();
    let mut wins = Vec::new();
    for task in tasks {
        wins.extend(task.await.unwrap());
    }
    wins.sort_unstable();
    assert!(!wins.is_empty(), "one concurrent check_and_mark must win");
    for (later, won_after) in wins.iter().enumerate().skip(1) {
        let expired = EXPIRATION * u32::try_from(later).unwrap_or(u32::MAX);
        assert!(
            *won_after >= expired,
            "exactly one concurrent check_and_mark may win while its mark lasts: wins after {wins:?}"
        );
    }
}

/// After [`EXPIRATION`], an id is unseen again and `cleanup_expired` does not fail.
pub async fn marks_expire(tracker: &dyn MessageTracker) {
    let id = MessageId::new();
    let batched = MessageId::new();
    assert!(tracker.check_and_mark(id).await.unwrap());
    tracker.mark_seen_many(&[batched]).await.unwrap();
    tokio::time::sleep(EXPIRATION + Duration::from_millis(600)).await;
    assert!(!tracker.has_seen(id).await.unwrap(), "the mark expired");
    assert!(!tracker.has_seen(batched).await.unwrap(), "a mark of mark_seen_many expires too");
    tracker.mark_seen_many(&[batched]).await.unwrap();
    assert!(tracker.has_seen(batched).await.unwrap(), "mark_seen_many renews an expired mark");
    tracker.cleanup_expired().await.unwrap();
    assert!(!tracker.recent(100_000).await.unwrap().contains(&id), "recent() omits expired ids");
    assert!(tracker.check_and_mark(id).await.unwrap(), "an expired id counts as new");
}

/// One step of a random workload over a small set of ids (indexes into a per-run id table).
#[derive(Debug, Clone)]
pub enum Operation {
    /// `check_and_mark(ids[i])`.
    CheckAndMark(usize),
    /// `has_seen(ids[i])`.
    HasSeen(usize),
    /// `mark_seen(ids[i])`.
    MarkSeen(usize),
    /// `mark_seen_many` of these ids.
    MarkSeenMany(Vec<usize>),
    /// `len()`, compared as the change since the run started.
    Len,
}

/// Number of distinct ids a workload draws from.
pub const MODEL_IDS: usize = 8;

/// Random workloads of up to 64 operations.
pub fn operations() -> impl Strategy<Value = Vec<Operation>> {
    let op = prop_oneof![
        (0..MODEL_IDS).prop_map(Operation::CheckAndMark),
        (0..MODEL_IDS).prop_map(Operation::HasSeen),
        (0..MODEL_IDS).prop_map(Operation::MarkSeen),
        prop::collection::vec(0..MODEL_IDS, 0..5).prop_map(Operation::MarkSeenMany),
        Just(Operation::Len),
    ];
    prop::collection::vec(op, 1..64)
}

/// Applies `operations` to `tracker` (with fresh ids) and to a reference model — a set of seen
/// ids, with no expiry during the run — and asserts every observation agrees.
///
/// # Panics
/// On the first disagreement.
pub async fn check_against_model(tracker: &dyn MessageTracker, operations: &[Operation]) {
    let ids: Vec<MessageId> = (0..MODEL_IDS).map(|_| MessageId::new()).collect();
    let base_len = tracker.len().await.unwrap();
    let mut model: HashSet<usize> = HashSet::new();
    for (step, op) in operations.iter().enumerate() {
        match *op {
            Operation::MarkSeenMany(ref batch) => {
                model.extend(batch.iter().copied());
                let batch: Vec<MessageId> = batch.iter().map(|&i| ids[i]).collect();
                tracker.mark_seen_many(&batch).await.unwrap();
            }
            Operation::CheckAndMark(i) => {
                let expected = model.insert(i);
                assert_eq!(tracker.check_and_mark(ids[i]).await.unwrap(), expected, "step {step}: {op:?}");
            }
            Operation::HasSeen(i) => {
                assert_eq!(
                    tracker.has_seen(ids[i]).await.unwrap(),
                    model.contains(&i),
                    "step {step}: {op:?}"
                );
            }
            Operation::MarkSeen(i) => {
                model.insert(i);
                tracker.mark_seen(ids[i]).await.unwrap();
            }
            Operation::Len => {
                assert_eq!(tracker.len().await.unwrap(), base_len + model.len(), "step {step}: {op:?}");
            }
        }
    }
}
