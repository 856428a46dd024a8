//! The HTTP face of a pricemesh node: the REST endpoints and WebSocket feed of the API
//! reference (shapes in [`mesh_types::ApiResponse`] and [`mesh_types::FeedMessage`]), plus
//! `/health`, `/ready`, `/metrics` and a dashboard page.
//!
//! It arrives with the node issue; until then the crate is intentionally empty.
