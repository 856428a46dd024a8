//! [`Flusher`]: the background task of a write-behind store (the task of
//! [`crate::WriteBehind`]): it runs a round every interval or when
//! woken, holds the store only weakly between rounds, ends when the store is gone, and is
//! aborted when its owner drops. Given a [`Supervisor`] ([`Flusher::supervise`]), it runs as
//! one of the supervisor's tasks: a panic shows in the node's health, and it stops at the
//! supervisor's shutdown (the service flushes explicitly before that).

use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio::time::MissedTickBehavior;

use mesh_types::Supervisor;

/// The flusher task of one write-behind store.
#[derive(Debug, Default)]
pub struct Flusher {
    // A std Mutex: never held across an await.
    task: Mutex<Option<AbortHandle>>,
    // Its own Arc, so the task waits on it without keeping the store alive.
    wake: Arc<Notify>,
    /// Who owns the task, once set; unset, it is a plain tokio task.
    supervisor: OnceLock<Supervisor>,
}

impl Flusher {
    /// A flusher not started yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs the task under `supervisor` from its next start on (call before the first change;
    /// later calls are ignored).
    pub fn supervise(&self, supervisor: &Supervisor) {
        let _ = self.supervisor.set(supervisor.clone());
    }

    /// Asks for a round now instead of at the next interval (a batch's worth is waiting).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// The task, once started: a handle to watch or abort it.
    pub fn task(&self) -> Option<AbortHandle> {
        self.task.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Starts the task on the current tokio runtime unless it runs already: every `interval`,
    /// or when woken, it calls `round` with the store while the store still exists. Without a
    /// runtime (a store driven by another executor) it logs once per call that `store` writes
    /// only when flushed explicitly.
    pub fn ensure_running<S, R, F>(&self, shared: &Arc<S>, interval: Duration, store: &'static str, round: R)
    where
        S: Send + Sync + 'static,
        R: Fn(Arc<S>) -> F + Send + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let mut task = self.task.lock().unwrap_or_else(PoisonError::into_inner);
        if task.as_ref().is_some_and(|task| !task.is_finished()) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                store,
                "a layered store is used outside a tokio runtime; it writes only on flush()"
            );
            return;
        };
        let flusher = run(Arc::downgrade(shared), self.wake.clone(), interval, round);
        let handle = match self.supervisor.get() {
            Some(supervisor) => {
                let stop = supervisor.token();
                let _guard = runtime.enter();
                supervisor.spawn_worker(store, async move {
                    tokio::select! {
                        () = stop.cancelled() => {}
                        () = flusher => {}
                    }
                })
            }
            None => runtime.spawn(flusher),
        };
        *task = Some(handle.abort_handle());
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        if let Some(task) = self.task.get_mut().unwrap_or_else(PoisonError::into_inner).take() {
            task.abort();
        }
    }
}

async fn run<S, R, F>(shared: Weak<S>, wake: Arc<Notify>, interval: Duration, round: R)
where
    R: Fn(Arc<S>) -> F,
    F: Future<Output = ()>,
{
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = wake.notified() => {}
        }
        let Some(shared) = shared.upgrade() else { return };
        round(shared).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn runs_every_interval_and_when_woken_and_stops_with_its_owner() {
        let rounds = Arc::new(AtomicUsize::new(0));
        let flusher = Flusher::new();
        let count = |rounds: Arc<AtomicUsize>| async move {
            rounds.fetch_add(1, Ordering::SeqCst);
        };
        flusher.ensure_running(&rounds, Duration::from_secs(10), "test", count);
        flusher.ensure_running(&rounds, Duration::from_secs(10), "test", count);
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(rounds.load(Ordering::SeqCst), 1, "one task; the first tick is immediate");
        flusher.wake();
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(rounds.load(Ordering::SeqCst), 2, "woken before the interval");
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(rounds.load(Ordering::SeqCst), 3, "and every interval");
        drop(flusher);
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(rounds.load(Ordering::SeqCst), 3, "aborted with its owner");
    }

    #[tokio::test(start_paused = true)]
    async fn a_supervised_flusher_that_panics_is_a_failure_and_shutdown_stops_a_healthy_one() {
        let supervisor = Supervisor::new();
        let doomed = Flusher::new();
        doomed.supervise(&supervisor);
        let store = Arc::new(());
        doomed.ensure_running(&store, Duration::from_secs(1), "price store", |_| async {
            panic!("disk on fire")
        });
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(supervisor.failures()[0].task, "price store");

        let supervisor = Supervisor::new();
        let healthy = Flusher::new();
        healthy.supervise(&supervisor);
        healthy.ensure_running(&store, Duration::from_secs(1), "seen store", |_| async {});
        assert!(supervisor.shutdown(Duration::from_secs(5)).await.is_empty(), "it stopped at shutdown");
        assert!(supervisor.is_healthy());
    }
}
