//! Time in a seeded run. The whole mesh runs on one current-thread tokio runtime whose clock
//! is paused: it jumps from one timer to the next whenever every task waits, so simulated time
//! costs nothing and does not depend on how fast the machine is.
//!
//! Nodes also read a wall clock ([`mesh_types::clock::now`]): to stamp and judge messages,
//! for their rate budgets and their liveness windows. [`NodeClock`] makes that clock follow
//! the simulated one, through the process-wide offset that exists for tests, so a node judges
//! a price's age or a peer's message rate in simulated time as a real node would in real time.
//! The offset is process-wide, so [`Session`] lets one seeded run at a time own it, and
//! counts the panics on the run's thread meanwhile.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once, PoisonError};
use std::time::Duration;

use mesh_types::Timestamp;
use mesh_types::chrono::{self, Utc};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Runs one at a time: the node clock's offset belongs to the process.
static EXCLUSIVE: Mutex<()> = Mutex::new(());
/// Panics on a thread running a seeded simulation, ever.
static PANICS: AtomicU64 = AtomicU64::new(0);
/// Installs the panic counter once, in front of whatever hook was there.
static HOOK: Once = Once::new();

thread_local! {
    /// Whether this thread runs a seeded simulation now.
    static WATCHED: Cell<bool> = const { Cell::new(false) };
}

/// How often the node clock is brought level with the simulated one. Between two ticks it
/// runs at wall-clock speed, a few microseconds of processing.
const TICK: Duration = Duration::from_millis(5);

/// One seeded run's hold on the process: the node clock's offset and the panic count.
#[derive(Debug)]
pub(crate) struct Session {
    _exclusive: MutexGuard<'static, ()>,
    panics_before: u64,
}

impl Session {
    /// Waits for any other seeded run in the process to end, then starts counting panics on
    /// this thread.
    pub(crate) fn begin() -> Self {
        // A run that panicked left nothing behind that the next one reads.
        let exclusive = EXCLUSIVE.lock().unwrap_or_else(PoisonError::into_inner);
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                if WATCHED.try_with(Cell::get).unwrap_or(false) {
                    PANICS.fetch_add(1, Ordering::Relaxed);
                }
                previous(info);
            }));
        });
        WATCHED.with(|watched| watched.set(true));
        Self { _exclusive: exclusive, panics_before: PANICS.load(Ordering::Relaxed) }
    }

    /// Panics on this thread since [`Session::begin`], caught or not: in the node's
    /// supervised tasks, in the transport's tasks, anywhere on the runtime.
    pub(crate) fn panics(&self) -> u64 {
        PANICS.load(Ordering::Relaxed).saturating_sub(self.panics_before)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        WATCHED.with(|watched| watched.set(false));
        mesh_types::clock::set_offset_for_tests(chrono::Duration::zero());
    }
}

/// The simulated wall clock: the real one when the run began, plus the simulated time since.
#[derive(Debug)]
pub(crate) struct NodeClock {
    wall: Timestamp,
    start: Instant,
}

impl NodeClock {
    /// Starts the node clock on the current (paused) runtime and keeps it level with the
    /// simulated time; abort the handle to stop.
    pub(crate) fn start() -> (Arc<Self>, JoinHandle<()>) {
        let clock = Arc::new(Self { wall: Utc::now(), start: Instant::now() });
        clock.level();
        let ticking = Arc::clone(&clock);
        let ticker = tokio::spawn(async move {
            loop {
                ticking.level();
                tokio::time::sleep(TICK).await;
            }
        });
        (clock, ticker)
    }

    /// The simulated wall-clock time now.
    pub(crate) fn now(&self) -> Timestamp {
        let elapsed = chrono::Duration::from_std(self.start.elapsed()).unwrap_or_default();
        self.wall.checked_add_signed(elapsed).unwrap_or(self.wall)
    }

    /// Sets the nodes' clock to [`NodeClock::now`].
    pub(crate) fn level(&self) {
        mesh_types::clock::set_offset_for_tests(self.now().signed_duration_since(Utc::now()));
    }
}
