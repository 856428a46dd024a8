//! Integration tests of the network layer, in one binary so it links once: the connection
//! manager over loopback TCP (`manager`) and over the in-memory transport (`memory_mesh`), and
//! LAN discovery inside a network namespace (`lan`), and the
//! preference for peers close to the providers (`topology`).

mod lan;
mod manager;
mod memory_mesh;
mod topology;
