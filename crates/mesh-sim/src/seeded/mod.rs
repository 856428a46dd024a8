//! Seeded simulation: the whole mesh in one process, on one thread, on a paused tokio clock,
//! with its topology, link latencies, faults (crashes and restarts, partitions, slow and lossy
//! links), publication schedule and message loss all drawn from one seed, and a checker of
//! the chaos suite's invariants over everything the nodes stored. A failing run names its
//! seed, and `cargo run -p mesh-sim -- --seed S` replays it.
//!
//! ```no_run
//! use mesh_sim::{SeededConfig, run_seeded};
//! let report = run_seeded(&SeededConfig::new(42)).expect("the mesh runs");
//! assert!(report.passed(), "{report}");
//! ```
//!
//! # How a run goes
//!
//! [`Scenario::generate`] draws everything from the seed first. The nodes are whole
//! [`mesh_service::MeshPriceService`]s on a [`mesh_transport::MemoryNetwork`] with a real
//! node's settings: peer exchange, the preference for peers close to the providers, redials of
//! peers lost to silence, at most 10 peers, and at least their links in the drawn topology
//! (a ring plus random chords), which are also their bootstrap peers. Every timer is its real
//! default scaled by `sync_interval / 30 s` (heartbeats and their timeout, redial backoff and
//! reconnects, handshakes, peer exchange, the preference's moves), so a run keeps the real
//! proportions and "converged within two sync intervals" means what it means on real hosts.
//! Announcements keep their real 60 s: each node announces once, at start (at the scaled
//! interval they would cost more than everything else, and no invariant rests on them).
//!
//! Once the mesh has formed, the faults and publications happen at their times. A crash cuts
//! the node off and stops it (its peers see the connections close); its restart brings back
//! the same identity, dialling all its topology links, with its price and peer stores as it
//! left them ([`Restart::FromDisk`]) or empty ([`Restart::Wiped`]). Some publications race:
//! the other provider publishes the same assets a few milliseconds later, as two providers
//! fetching in one window do. Every node's price store is wrapped so that each price it is
//! offered, and what it holds afterwards, is recorded with the simulated time; at each
//! [`Checkpoint`] what every live node holds is taken. The checker (see [`Violation`]) then
//! looks for a store going back to an older price, a node behind the newest price the mesh
//! had accepted two sync intervals after a fault ended, more prices held than assets
//! published, and panics or failed tasks.
//!
//! # Time
//!
//! The runtime is current-thread with the clock paused: when every task waits, time jumps to
//! the next timer, so a minute of mesh costs only the work done in it. The nodes' own wall
//! clock (what they stamp and judge messages with, and measure rate budgets and liveness by)
//! is made to follow the simulated clock through [`mesh_types::clock`]'s process-wide offset,
//! so seeded runs in one process take turns, and nothing else in the process should
//! use that clock meanwhile.
//!
//! # What a seed replays, and what it does not
//!
//! Replayed exactly: the node count and fault count (from [`SeededConfig::new`]), the
//! topology the mesh starts from (drawn by [`crate::edges`] with `rand`'s `StdRng`, so the same
//! for a given `rand` version; everything else is drawn by a SplitMix64 written out here, the
//! same on any build), every link's latency, every fault with its times and targets, every
//! publication with its time, provider, assets, prices and message id, and the nodes' keys (so
//! node ids, and every decision that compares them, are the same). Loss is decided by hashing
//! the seed with the link and the message ([`MemoryNetwork::seed_losses`]): a price update by
//! its id, hops and TTL, so the same copy of an update is lost on the same link in every
//! replay; other messages by their place in the link's stream.
//!
//! Not replayed bit for bit: the order in which tasks that are ready at the same simulated
//! instant run (tokio's scheduler and `select!` draw from a seed that only an unstable tokio
//! option sets, and maps iterate in a random order), and what the nodes draw from the thread's
//! generator — redial jitter, which candidate peer exchange and the preference pick — so the
//! peers the mesh settles on can differ between two runs; the signed timestamps also carry the
//! real time the run began. A replay runs the same scenario through the same faults, and a
//! violation that follows from them (a partition the mesh does not recover from, an update
//! that cannot travel) comes back at the same place. One that hinges on a close race — which
//! of two updates a few milliseconds apart reaches a node first — comes back when the race is
//! won by latency, as it mostly is, and may not when it is won by scheduling. The planted-bug
//! test checks that the seed it finds fails again.
//!
//! [`MemoryNetwork::seed_losses`]: mesh_transport::MemoryNetwork::seed_losses

mod check;
mod clock;
mod config;
mod mesh;
pub mod planted;
mod record;
mod rng;
mod run;
mod scenario;

pub use check::{Version, Violation};
pub use config::{PlantedBug, REAL_SYNC_INTERVAL, SeededConfig};
pub use run::{SeededReport, run_seeded};
pub use scenario::{Checkpoint, Fault, FaultKind, Publication, Restart, Scenario};
