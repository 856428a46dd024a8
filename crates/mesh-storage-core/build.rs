//! Rebuilds when a migration changes: `sqlx::migrate!` (feature `postgres`) embeds
//! `migrations/` at compile time.

fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
