//! The behaviour every [`FetchCoordinator`] with shared state must show (memory, Redis, a
//! service's own backend — enable the `conformance` feature), as plain async functions.
//!
//! A backend gets the whole suite with one line in its tests,
//! [`fetch_coordinator_conformance!`](crate::fetch_coordinator_conformance): give it a name for
//! the tests' module and a setup — an async block that returns a [`Fixture`] of a fresh
//! coordinator, or `None` to skip (a backend whose server URL is unset):
//!
//! ```ignore
//! mesh_coordination::fetch_coordinator_conformance!(memory, async {
//!     Some(Fixture::new(Arc::new(MemoryCoordinator::new())))
//! });
//! ```
//!
//! It expands to two tests: `passes_the_conformance_suite` ([`run_all`]) and
//! `behaves_like_the_reference_model` ([`check_against_model`] on 256 random workloads from
//! [`operations`], all against one coordinator, on tokio's paused clock). A coordinator that
//! tells time by another clock (Redis uses its server's) cannot follow the paused one: add
//! `without_model` after the setup, and the second test is left out. A server backend's setup
//! creates its own namespace and gives its cleanup to [`Fixture::then`], which runs after the
//! suite.
//!
//! The checks sleep through real coordination windows of [`WINDOW`], so the suite takes about
//! two seconds.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub use mesh_storage_core::conformance::Fixture;
use mesh_storage_core::conformance::{run_model, run_suite, runtime};
#[doc(hidden)]
pub use mesh_storage_core::conformance_tests;
use mesh_types::{MessageId, NodeId, PublicKey};
use proptest::prelude::*;

use crate::FetchCoordinator;

/// The whole suite for one backend, as tests in a module `$name`; see the [module
/// docs](crate::conformance).
#[macro_export]
macro_rules! fetch_coordinator_conformance {
    ($name:ident, $setup:expr $(,)?) => {
        $crate::conformance::conformance_tests!(
            $name,
            $setup,
            $crate::conformance::test_suite,
            $crate::conformance::test_model,
            256
        );
    };
    ($name:ident, $setup:expr, without_model $(,)?) => {
        $crate::conformance::conformance_tests!($name, $setup, $crate::conformance::test_suite);
    };
}

/// Runs [`run_all`] on the coordinator `setup` gives, then finishes the fixture; does nothing
/// when `setup` gives none. The first test of
/// [`fetch_coordinator_conformance!`](crate::fetch_coordinator_conformance).
///
/// # Panics
/// On the first behaviour that differs from the contract.
pub fn test_suite<C: FetchCoordinator + 'static>(setup: impl Future<Output = Option<Fixture<C>>>) {
    run_suite(&runtime(), setup, |coordinator| run_all(coordinator));
}

/// Runs [`check_against_model`] on `cases` random workloads against the coordinator `setup` gives,
/// on a paused tokio clock, then finishes the fixture; does nothing when `setup` gives none.
/// Failing workloads are saved in `proptest-regressions/` beside `source_file` (the `file!()`
/// of the test). The second test of
/// [`fetch_coordinator_conformance!`](crate::fetch_coordinator_conformance).
///
/// # Panics
/// On the first disagreement, with the smallest workload that shows it.
pub fn test_model<C: FetchCoordinator + 'static>(
    setup: impl Future<Output = Option<Fixture<C>>>,
    cases: u32,
    source_file: &'static str,
) {
    let paused = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("build a test runtime");
    run_model(&paused, setup, operations(), cases, source_file, |coordinator, ops| async move {
        check_against_model(coordinator.as_ref(), &ops).await;
    });
}

/// The coordination window the checks use.
pub const WINDOW: Duration = Duration::from_millis(300);

/// A node id no other run uses.
pub fn fresh_node() -> NodeId {
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(MessageId::new().as_uuid().as_bytes());
    bytes[16..].copy_from_slice(MessageId::new().as_uuid().as_bytes());
    NodeId::from_public_key(&PublicKey::from_bytes(bytes))
}

/// Runs every check below against `coordinator`.
///
/// # Panics
/// On the first behaviour that differs from the contract.
pub async fn run_all(coordinator: Arc<dyn FetchCoordinator>) {
    one_fetch_per_window(coordinator.as_ref()).await;
    stale_records_are_removed(coordinator.as_ref()).await;
    one_grant_under_concurrency(coordinator).await;
}

async fn past_any_window() {
    tokio::time::sleep(WINDOW + Duration::from_millis(100)).await;
}

/// Within a window only one node fetches; the holder may continue; after the window another
/// node may take over.
pub async fn one_fetch_per_window(coordinator: &dyn FetchCoordinator) {
    let (a, b) = (fresh_node(), fresh_node());
    past_any_window().await;
    let before = mesh_types::chrono::Utc::now();
    assert!(coordinator.try_acquire(a, WINDOW).await.unwrap(), "nobody fetched lately: granted");
    assert!(!coordinator.try_acquire(b, WINDOW).await.unwrap(), "another node inside the window: denied");
    assert!(coordinator.try_acquire(a, WINDOW).await.unwrap(), "the holder may continue");
    let last = coordinator.last_fetch_time().await.unwrap().expect("a fetch is recorded");
    assert!(last >= before - mesh_types::chrono::Duration::seconds(2), "last_fetch_time is recent: {last}");

    past_any_window().await;
    assert!(coordinator.try_acquire(b, WINDOW).await.unwrap(), "after the window another node takes over");
    assert!(!coordinator.try_acquire(a, WINDOW).await.unwrap(), "and the former holder waits");
}

/// `cleanup_stale_records` forgets a fetch older than the given age, and only then.
pub async fn stale_records_are_removed(coordinator: &dyn FetchCoordinator) {
    past_any_window().await;
    assert!(coordinator.try_acquire(fresh_node(), WINDOW).await.unwrap());
    assert_eq!(
        coordinator.cleanup_stale_records(Duration::from_secs(60)).await.unwrap(),
        0,
        "a fresh record stays"
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(coordinator.cleanup_stale_records(Duration::from_millis(100)).await.unwrap(), 1);
    assert_eq!(coordinator.last_fetch_time().await.unwrap(), None);
}

/// 50 nodes asking at once: exactly one is granted.
pub async fn one_grant_under_concurrency(coordinator: Arc<dyn FetchCoordinator>) {
    past_any_window().await;
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let coordinator = coordinator.clone();
            let node = fresh_node();
            tokio::spawn(async move { coordinator.try_acquire(node, Duration::from_secs(60)).await.unwrap() })
        })
        .collect();
    let mut granted = 0;
    for task in tasks {
        granted += usize::from(task.await.unwrap());
    }
    assert_eq!(granted, 1, "exactly one of many simultaneous providers may fetch");
}

/// One step of a random workload: a node asks, or time passes.
#[derive(Debug, Clone, Copy)]
pub enum Operation {
    /// Node `i` calls `try_acquire` with the model window.
    TryAcquire(usize),
    /// Time advances by this many milliseconds.
    Advance(u64),
}

/// The window of the model workloads.
pub const MODEL_WINDOW: Duration = Duration::from_millis(250);

/// Random workloads over three nodes.
pub fn operations() -> impl Strategy<Value = Vec<Operation>> {
    let op =
        prop_oneof![(0usize..3).prop_map(Operation::TryAcquire), (0u64..400).prop_map(Operation::Advance)];
    prop::collection::vec(op, 1..48)
}

/// Applies `operations` to `coordinator` on a paused tokio clock and to a reference model (the
/// last grant's node and time), asserting every decision agrees. The workload starts one
/// [`MODEL_WINDOW`] after whatever the coordinator did before, so one coordinator serves many
/// workloads.
///
/// # Panics
/// On the first disagreement, or when tokio's clock is not paused.
pub async fn check_against_model(coordinator: &dyn FetchCoordinator, operations: &[Operation]) {
    tokio::time::advance(MODEL_WINDOW).await;
    let nodes = [fresh_node(), fresh_node(), fresh_node()];
    let mut model: Option<(usize, Duration)> = None;
    let mut clock = Duration::ZERO;
    for (step, op) in operations.iter().enumerate() {
        match *op {
            Operation::Advance(ms) => {
                tokio::time::advance(Duration::from_millis(ms)).await;
                clock += Duration::from_millis(ms);
            }
            Operation::TryAcquire(i) => {
                let blocked = model.is_some_and(|(holder, at)| holder != i && clock - at < MODEL_WINDOW);
                let expected = !blocked;
                if expected {
                    model = Some((i, clock));
                }
                let granted = coordinator.try_acquire(nodes[i], MODEL_WINDOW).await.unwrap();
                assert_eq!(granted, expected, "step {step}: {op:?}");
            }
        }
    }
}
