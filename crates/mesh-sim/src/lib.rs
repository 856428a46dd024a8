//! The pricemesh simulator: many whole nodes ([`mesh_service::MeshPriceService`]) in one
//! process over the in-memory transport, wired as a chosen [`Topology`] (random regular, ring,
//! line, a planned provider/relay/consumer hierarchy, or a tree grown by joining),
//! with optional link latency, loss and a temporary partition. It publishes updates from the
//! providers (a number of them, or for a duration) and reports, per update, how long until half,
//! 99 % and all of the nodes held it, how many messages the network carried per node, whether
//! every node ended with the same prices, and how many hops each node sat from the nearest
//! provider. With [`Peering::PreferClose`] the nodes learn addresses and move towards
//! the providers before the first update, as real nodes do.
//!
//! ```no_run
//! # async fn simulate() -> Result<(), mesh_sim::SimError> {
//! use mesh_sim::{SimConfig, Topology, run};
//! let report = run(&SimConfig { nodes: 200, topology: Topology::RandomRegular { degree: 6 }, ..SimConfig::default() }).await?;
//! assert_eq!(report.complete(), report.spreads.len());
//! # Ok(())
//! # }
//! ```
//!
//! # Seeded simulation
//!
//! [`run_seeded`] is the other mode: 20 to 50 nodes on a paused tokio clock, in one thread,
//! with crashes and restarts, partitions, slow and lossy links and the publications all drawn
//! from one seed, and a checker of the chaos suite's invariants — newest-wins in every node,
//! no accepted update lost, convergence within two sync intervals of every heal and restart,
//! no panic, bounded stores. A failing run names its seed and the command that replays it;
//! the `mesh-sim` binary runs one seed (`cargo run -p mesh-sim -- --seed 42`). What a seed
//! replays exactly, and what it does not, is in [`seeded`].
//!
//! ```no_run
//! use mesh_sim::{SeededConfig, run_seeded};
//! let report = run_seeded(&SeededConfig { nodes: 30, ..SeededConfig::new(42) })?;
//! if !report.passed() {
//!     panic!("{report}"); // the violations, the seed, and the command that replays it
//! }
//! # Ok::<(), mesh_sim::SimError>(())
//! ```

// The simulator runs inside one test process on values it chose itself: CI's check for
// unchecked arithmetic in library code exempts it (it is linted as the root package's dependency).
#![allow(clippy::arithmetic_side_effects)]

pub mod seeded;
mod sim;
mod topology;

pub use seeded::{SeededConfig, SeededReport, run_seeded};
pub use sim::{Peering, Report, SimConfig, SimError, SimPartition, SimTransport, Spread, run};
pub use topology::{Topology, distances, edges, is_connected};
