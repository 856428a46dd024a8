//! Whole nodes on the in-memory transport, in one test binary: gossip, anti-entropy and
//! network status (`mesh`), lazy push under loss (`lazy_push`), provider loops coordinating through the mesh (`providers`), and the
//! layered stores' write-behind (`storage`).

mod lazy_push;
mod mesh;
mod providers;
mod storage;
