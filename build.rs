//! Rebuilds the integration tests when a migration changes: `sqlx::migrate!` embeds the
//! `migrations/` files at compile time, and cargo does not otherwise watch them.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
