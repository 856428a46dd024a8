//! Whole nodes on the in-memory transport, in one test binary: gossip, anti-entropy and
//! network status (`mesh`), provider loops coordinating through the mesh (`providers`), and the
//! layered stores' write-behind (`storage`).

mod mesh;
mod providers;
mod storage;
