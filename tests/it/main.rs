//! Cross-crate integration tests, in one binary so the suite links once.
//!
//! Tests that need PostgreSQL or Redis read `MESH_TEST_DATABASE_URL` / `MESH_TEST_REDIS_URL`;
//! without them they skip with a printed reason, unless `MESH_REQUIRE_BACKENDS=1` (set by CI),
//! when a missing service fails the test.

mod architecture;
mod migrations;
mod storage;
