//! The API served for real on `127.0.0.1:0` (or driven through the router with `oneshot`),
//! in one test binary: read endpoints (`rest`), provider control (`provider`), error
//! envelopes (`errors`), the WebSocket feed (`feed`), metrics (`metrics`) and the dashboard
//! (`dashboard`).

mod contract;
mod dashboard;
mod errors;
mod feed;
mod hostile;
mod metrics;
mod provider;
mod rest;
mod support;
