//! Finding the real backends a test should run against.

/// The value of `var`, or `None` after printing why the calling test skips. Panics instead when
/// `MESH_REQUIRE_BACKENDS=1`, so CI cannot pass by skipping.
pub(crate) fn url_or_skip(var: &str, test: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("MESH_REQUIRE_BACKENDS").is_ok_and(|v| v == "1") => {
            panic!("{test}: {var} is not set but MESH_REQUIRE_BACKENDS=1 requires this backend")
        }
        _ => {
            eprintln!("skipping {test}: set {var} to run it against a real server");
            None
        }
    }
}
