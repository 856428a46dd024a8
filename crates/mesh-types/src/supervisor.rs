//! [`Supervisor`]: the one owner of a node's long-running tasks — the event loop, the timers,
//! the provider loop, the listeners, the write-behind flushers, the sweeps.
//!
//! A task that panics, or a service task that ends before shutdown, is a **failure**: it is
//! logged at error level with the task's name, counted in `mesh_task_failures_total{task}`, and
//! kept in [`Supervisor::failures`], which `/health` and `/ready` report (503 with the names).
//! Failed tasks are not restarted: a node whose event loop died cannot be trusted to be
//! consistent, so it says so and lets its process manager restart it.
//!
//! [`Supervisor::shutdown`] cancels the shared token every task watches and then waits for the
//! tasks to end, instead of sleeping and hoping. A part that stops before the rest (the network
//! layer says goodbye to its peers first) takes a [`Supervisor::child`]: its tasks report to
//! the same place, but [`Supervisor::cancel`] on the child stops only them.

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::FutureExt;
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use tokio_util::task::TaskTracker;

/// Most failures remembered: a task that keeps being spawned and failing must not grow memory.
const MAX_FAILURES_KEPT: usize = 64;

/// A task that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFailure {
    /// The task's name, as given to the supervisor (`event_loop`, `provider`, …).
    pub task: &'static str,
    /// What happened: the panic message, or that it ended before shutdown.
    pub reason: String,
}

/// Owns a node's tasks; cloning gives another handle to the same supervisor.
#[derive(Clone, Default)]
pub struct Supervisor {
    inner: Arc<Inner>,
    /// Cancelled when this supervisor (or the one it is a child of) stops.
    shutdown: CancellationToken,
}

#[derive(Default)]
struct Inner {
    tracker: TaskTracker,
    // std Mutexes: held to update a map, never across an await.
    failures: Mutex<Vec<TaskFailure>>,
    running: Mutex<BTreeMap<&'static str, usize>>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("running", &*lock(&self.inner.running))
            .field("failures", &*lock(&self.inner.failures))
            .finish()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each update leaves the maps consistent, even if a holder panicked.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether a task may end on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Runs until shutdown: ending earlier is a failure.
    Service,
    /// May finish; only a panic is a failure.
    Worker,
}

impl Supervisor {
    /// A supervisor with no tasks yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A supervisor for one part of the node: its tasks are tracked and reported with this
    /// one's, its token is cancelled with this one's, and [`Supervisor::cancel`] on it stops
    /// only its own tasks.
    #[must_use]
    pub fn child(&self) -> Self {
        Self { inner: Arc::clone(&self.inner), shutdown: self.shutdown.child_token() }
    }

    /// The token every task of this supervisor should watch: cancelled by
    /// [`Supervisor::cancel`] or [`Supervisor::shutdown`] (of this one or of its parent).
    pub fn token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Completes when this supervisor is told to stop: what a task's `select!` waits on.
    pub fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        self.shutdown.cancelled()
    }

    /// Whether this supervisor has been told to stop.
    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    /// Tells this supervisor's tasks to stop, without waiting for them.
    pub fn cancel(&self) {
        self.shutdown.cancel();
    }

    /// Spawns `task`, which is meant to run until shutdown (an event loop, a listener, a
    /// timer): a panic, or an end before [`Supervisor::shutdown`], is a failure.
    ///
    /// # Panics
    /// Outside a tokio runtime, like `tokio::spawn`.
    pub fn spawn_service<F>(&self, name: &'static str, task: F) -> JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.spawn_kind(name, Kind::Service, task)
    }

    /// Spawns `task`, which may finish on its own (a flusher whose store is gone, a provider
    /// loop that was stopped): only a panic is a failure.
    ///
    /// # Panics
    /// Outside a tokio runtime, like `tokio::spawn`.
    pub fn spawn_worker<F>(&self, name: &'static str, task: F) -> JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.spawn_kind(name, Kind::Worker, task)
    }

    fn spawn_kind<F>(&self, name: &'static str, kind: Kind, task: F) -> JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        // Every task's series exists from its start, so an alert on an increase sees the
        // first failure.
        metrics::counter!("mesh_task_failures_total", "task" => name).increment(0);
        lock(&self.inner.running)
            .entry(name)
            .and_modify(|count| *count = count.saturating_add(1))
            .or_insert(1);
        let inner = Arc::clone(&self.inner);
        let stopped = self.shutdown.clone();
        self.inner.tracker.spawn(async move {
            // The task owns no state the supervisor reads, so a panic leaves nothing half-done
            // here; whatever it shared with others uses poison-tolerant locks.
            let result = AssertUnwindSafe(task).catch_unwind().await;
            let failure = match result {
                Err(panic) => Some(format!("panicked: {}", panic_message(panic.as_ref()))),
                Ok(()) if kind == Kind::Service && !stopped.is_cancelled() => {
                    Some("ended before shutdown".to_owned())
                }
                Ok(()) => None,
            };
            if let Some(reason) = failure {
                inner.record_failure(name, reason);
            }
            let mut running = lock(&inner.running);
            if let Some(count) = running.get_mut(name) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    running.remove(name);
                }
            }
        })
    }

    /// Every task failure so far, oldest first (at most the 64 latest).
    pub fn failures(&self) -> Vec<TaskFailure> {
        lock(&self.inner.failures).clone()
    }

    /// Whether no task has failed.
    pub fn is_healthy(&self) -> bool {
        lock(&self.inner.failures).is_empty()
    }

    /// The names of the tasks running now, with how many of each.
    pub fn running(&self) -> BTreeMap<&'static str, usize> {
        lock(&self.inner.running).clone()
    }

    /// Cancels the token and waits up to `grace` for every task — this supervisor's and every
    /// other one's sharing its tracker — to end; returns the names of the tasks still running
    /// then (logged too). Called on the node's root supervisor.
    pub async fn shutdown(&self, grace: Duration) -> Vec<&'static str> {
        self.shutdown.cancel();
        self.inner.tracker.close();
        if tokio::time::timeout(grace, self.inner.tracker.wait()).await.is_ok() {
            return Vec::new();
        }
        let stuck: Vec<&'static str> = lock(&self.inner.running).keys().copied().collect();
        tracing::warn!(tasks = ?stuck, grace_ms = grace.as_millis(), "tasks still running after the shutdown grace");
        stuck
    }
}

impl Inner {
    fn record_failure(&self, task: &'static str, reason: String) {
        tracing::error!(task, %reason, "a supervised task failed; /health now reports it");
        metrics::counter!("mesh_task_failures_total", "task" => task).increment(1);
        let mut failures = lock(&self.failures);
        if failures.len() == MAX_FAILURES_KEPT {
            failures.remove(0);
        }
        failures.push(TaskFailure { task, reason });
    }
}

/// HELP line of the supervisor's metric; the node calls it once at start.
pub fn describe_supervisor_metrics() {
    metrics::describe_counter!(
        "mesh_task_failures_total",
        "Supervised tasks that panicked or ended before shutdown, by task"
    );
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(message) = panic.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = panic.downcast_ref::<String>() {
        message.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_task_is_a_failure_with_its_message() {
        let supervisor = Supervisor::new();
        let handle = supervisor.spawn_worker("doomed", async { panic!("Division overflowed") });
        handle.await.unwrap();
        assert_eq!(
            supervisor.failures(),
            [TaskFailure { task: "doomed", reason: "panicked: Division overflowed".into() }]
        );
        assert!(!supervisor.is_healthy());
        assert!(supervisor.running().is_empty());
    }

    #[tokio::test]
    async fn a_service_task_ending_early_is_a_failure_but_a_worker_finishing_is_not() {
        let supervisor = Supervisor::new();
        supervisor.spawn_worker("flusher", async {}).await.unwrap();
        assert!(supervisor.is_healthy());
        supervisor.spawn_service("event_loop", async {}).await.unwrap();
        assert_eq!(supervisor.failures()[0].task, "event_loop");
        assert_eq!(supervisor.failures()[0].reason, "ended before shutdown");
    }

    #[tokio::test]
    async fn shutdown_waits_for_the_tasks_and_their_ends_are_no_failures() {
        let supervisor = Supervisor::new();
        let token = supervisor.token();
        let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let done = Arc::clone(&finished);
        supervisor.spawn_service("timers", async move {
            token.cancelled().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        assert_eq!(supervisor.running().get("timers"), Some(&1));
        assert!(supervisor.shutdown(Duration::from_secs(5)).await.is_empty());
        assert!(finished.load(std::sync::atomic::Ordering::SeqCst), "shutdown waited for the task");
        assert!(supervisor.is_healthy(), "ending at shutdown is expected");
    }

    #[tokio::test]
    async fn a_child_stops_its_own_tasks_without_failures_and_reports_to_the_parent() {
        let parent = Supervisor::new();
        let child = parent.child();
        let token = child.token();
        let handle = child.spawn_service("listener", async move { token.cancelled().await });
        child.cancel();
        handle.await.unwrap();
        assert!(parent.is_healthy(), "a cancelled child's service ending is expected");
        assert!(!parent.is_shutting_down(), "the parent runs on");
        child.spawn_worker("child_worker", async { panic!("boom") }).await.unwrap();
        assert_eq!(parent.failures()[0].task, "child_worker", "children report to the parent");
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_names_the_tasks_that_did_not_end_in_time() {
        let supervisor = Supervisor::new();
        supervisor.spawn_service("stubborn", std::future::pending());
        assert_eq!(supervisor.shutdown(Duration::from_secs(1)).await, ["stubborn"]);
    }

    #[tokio::test]
    async fn failures_kept_are_bounded() {
        let supervisor = Supervisor::new();
        for _ in 0..100 {
            supervisor.spawn_worker("again", async { panic!("again") }).await.unwrap();
        }
        assert_eq!(supervisor.failures().len(), MAX_FAILURES_KEPT);
    }
}
