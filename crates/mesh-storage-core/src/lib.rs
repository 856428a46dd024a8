//! The machinery the pricemesh storage crates share, so each of them keeps only its trait and
//! its backends:
//!
//! - [`WriteBehind`]: the engine of a layered store — memory in front decides, and what it
//!   accepted ([`Pending`]: a bounded [`Queue`] of ids, or a [`DirtySet`] of keys) is written to
//!   the durable store through a [`Sink`] in batches, by a [`Flusher`] task, degrading to
//!   memory while the durable store fails ([`BackendHealth`]) and publishing
//!   [`StoreMetrics`].
//! - [`BackendError`]: a durable backend's failure classified as retryable or not, once for
//!   Redis (feature `redis`) and once for PostgreSQL (feature `postgres`), keeping the source
//!   error; and [`Corrupt`], a value a backend holds that cannot be read back. Each storage
//!   crate's `Error` converts from both.
//! - `MIGRATOR` (feature `postgres`): the workspace's `migrations/`, embedded once.
//! - `conformance` (feature `conformance`): the `Fixture` a backend's tests set up, and the
//!   test bodies behind each storage crate's conformance macro.
//!
//! It sits between `mesh-types` and the storage crates, and depends on no storage crate.

#[cfg(feature = "conformance")]
pub mod conformance;
mod error;
mod flusher;
mod health;
mod pending;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redis")]
mod redis;
mod write_behind;

pub use error::{BackendError, BoxError, Corrupt, NoAnswer};
pub use flusher::Flusher;
pub use health::{BackendHealth, StoreMetrics};
pub use pending::{Added, DirtySet, Pending, Queue};
#[cfg(feature = "postgres")]
pub use postgres::MIGRATOR;
pub use write_behind::{Sink, WriteBehind, WriteStats, Written};
