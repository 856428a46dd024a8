//! Whole nodes on the in-memory transport, in one test binary: gossip, anti-entropy and
//! network status (`mesh`), and provider loops coordinating through the mesh (`providers`).

mod mesh;
mod providers;
