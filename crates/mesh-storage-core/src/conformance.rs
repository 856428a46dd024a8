//! What the storage crates' conformance suites share (feature `conformance`): the [`Fixture`]
//! a backend's setup returns, and the two test bodies every backend runs — [`run_suite`] (the
//! crate's `run_all`) and [`run_model`] (its model-based workloads).
//!
//! Each storage crate wraps them in a macro, e.g. `mesh_dedup::message_tracker_conformance!`,
//! so a backend gets its whole suite with one line; the macros expand to
//! [`conformance_tests!`](crate::conformance_tests). A setup returns `None` to skip, as a
//! backend whose server URL is unset does.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, TestRunner};
use tokio::runtime::Runtime;

/// The tests of one backend's conformance suite, in a module `$name`: what each storage crate's
/// macro (e.g. `mesh_dedup::message_tracker_conformance!`) expands to. `passes_the_conformance_suite`
/// calls `$suite($setup)`; with a `$model`, `behaves_like_the_reference_model` calls
/// `$model($setup, $cases, file!())`. The module sees its parent's names, so the setup can use
/// them.
#[macro_export]
macro_rules! conformance_tests {
    ($name:ident, $setup:expr, $suite:path $(, $model:path, $cases:expr)? $(,)?) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[test]
            fn passes_the_conformance_suite() {
                $suite($setup);
            }

            $(
                #[test]
                fn behaves_like_the_reference_model() {
                    $model($setup, $cases, file!());
                }
            )?
        }
    };
}

/// What a fixture runs when the suite is done: a future owning what it needs.
type Finish = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A store under test, and what to run once the suite is done with it.
pub struct Fixture<S: ?Sized> {
    store: Arc<S>,
    finish: Option<Finish>,
}

impl<S: ?Sized> Fixture<S> {
    /// A fixture of `store` with nothing to run afterwards.
    pub fn new(store: Arc<S>) -> Self {
        Self { store, finish: None }
    }

    /// Runs `finish` once the suite is done, after what was given before: checks a backend adds
    /// (a layered store compares its durable store), then cleanup (dropping a test schema).
    /// The future owns what it needs, e.g. clones of the store's `Arc`.
    #[must_use]
    pub fn then(mut self, finish: impl Future<Output = ()> + Send + 'static) -> Self {
        self.finish = Some(match self.finish.take() {
            Some(before) => Box::pin(async move {
                before.await;
                finish.await;
            }),
            None => Box::pin(finish),
        });
        self
    }

    /// The store under test.
    pub const fn store(&self) -> &Arc<S> {
        &self.store
    }

    /// Runs what was given to [`Fixture::then`], in order.
    pub async fn finish(self) {
        if let Some(finish) = self.finish {
            finish.await;
        }
    }
}

impl<S: ?Sized> fmt::Debug for Fixture<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fixture").field("finish", &self.finish.is_some()).finish_non_exhaustive()
    }
}

/// A runtime for one conformance test: two worker threads, so the concurrency checks run in
/// parallel.
///
/// # Panics
/// When the runtime cannot be built.
pub fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("build a test runtime")
}

/// On `runtime`: builds the fixture with `setup`, runs `suite` on its store, then finishes the
/// fixture. Does nothing when `setup` gives no fixture.
pub fn run_suite<S, Done>(
    runtime: &Runtime,
    setup: impl Future<Output = Option<Fixture<S>>>,
    suite: impl FnOnce(Arc<S>) -> Done,
) where
    S: ?Sized,
    Done: Future<Output = ()>,
{
    runtime.block_on(async {
        let Some(fixture) = setup.await else { return };
        suite(fixture.store().clone()).await;
        fixture.finish().await;
    });
}

/// On `runtime`: builds the fixture with `setup`, runs `check` on its store for `cases` random
/// workloads of `workloads` (each check uses fresh keys, so one store serves them all), then
/// finishes the fixture. Does nothing when `setup` gives no fixture. Failing workloads are saved
/// in `proptest-regressions/` beside `source_file` (the `file!()` of the test).
///
/// # Panics
/// When a workload fails, with the smallest failing workload proptest found.
pub fn run_model<S, W, Done>(
    runtime: &Runtime,
    setup: impl Future<Output = Option<Fixture<S>>>,
    workloads: W,
    cases: u32,
    source_file: &'static str,
    check: impl Fn(Arc<S>, W::Value) -> Done,
) where
    S: ?Sized,
    W: Strategy,
    Done: Future<Output = ()>,
{
    let Some(fixture) = runtime.block_on(setup) else { return };
    let mut runner = TestRunner::new(Config { cases, source_file: Some(source_file), ..Config::default() });
    let result = runner.run(&workloads, |workload| {
        runtime.block_on(check(fixture.store().clone(), workload));
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}\n{runner}");
    }
    runtime.block_on(fixture.finish());
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn finishes_in_the_order_given() {
        let order = Arc::new(Mutex::new(Vec::new()));
        let (first, second) = (order.clone(), order.clone());
        let fixture = Fixture::new(Arc::new(7))
            .then(async move { first.lock().unwrap().push("check") })
            .then(async move { second.lock().unwrap().push("cleanup") });
        assert_eq!(**fixture.store(), 7);
        assert!(order.lock().unwrap().is_empty(), "nothing runs before the suite is done");
        fixture.finish().await;
        assert_eq!(*order.lock().unwrap(), ["check", "cleanup"]);
    }

    #[test]
    fn the_model_runs_every_case_on_one_store_then_finishes() {
        let finished = Arc::new(AtomicU32::new(0));
        let at_finish = finished.clone();
        let setup = async move {
            Some(Fixture::new(Arc::new(AtomicU32::new(0))).then(async move {
                at_finish.fetch_add(1, Ordering::Relaxed);
            }))
        };
        let seen = Arc::new(AtomicU32::new(0));
        let runtime = runtime();
        run_model(&runtime, setup, 0u8..10, 20, file!(), |store: Arc<AtomicU32>, _| {
            let seen = seen.clone();
            async move {
                seen.store(store.fetch_add(1, Ordering::Relaxed) + 1, Ordering::Relaxed);
            }
        });
        assert_eq!(seen.load(Ordering::Relaxed), 20, "20 cases against one store");
        assert_eq!(finished.load(Ordering::Relaxed), 1, "finished once, after the cases");

        // No fixture: nothing runs.
        run_model(&runtime, async { None::<Fixture<AtomicU32>> }, 0u8..10, 20, file!(), |_, _| async {
            panic!("no store to check");
        });
    }
}
