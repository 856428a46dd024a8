//! The failures every storage crate shares, each crate's `Error` converting from them and
//! keeping the source error:
//!
//! - [`BackendError`]: a durable backend's failure, classified once for every storage crate:
//!   retryable (the server could not be reached, or did not answer) or not.
//! - [`Corrupt`]: a backend holds a value that cannot be read back as what the crate stores.

use std::fmt;
use std::time::Duration;

/// Any error, boxed: the source a storage error keeps.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A durable backend's failure, with its source, and whether retrying may help.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The server could not be reached or did not answer; the operation may succeed when
    /// retried.
    #[error("{backend} unavailable: {source}")]
    Unavailable {
        /// Which backend, e.g. `"redis"`.
        backend: &'static str,
        /// What went wrong.
        #[source]
        source: BoxError,
    },
    /// The server answered with an error that retrying will not change.
    #[error("{backend} error: {source}")]
    Failed {
        /// Which backend.
        backend: &'static str,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
}

/// A backend holds a value that cannot be read back: a row or key written by something else, or
/// by an incompatible version. Retrying does not help; the value must be fixed or deleted (the
/// stores skip such values in listings, and report them when asked for them).
#[derive(Debug, thiserror::Error)]
#[error("{backend} holds an invalid {entry}: {detail}")]
#[non_exhaustive]
pub struct Corrupt {
    /// Which backend, e.g. `"postgres"`.
    pub backend: &'static str,
    /// What it holds, and under which key or id, e.g. `price under "SOL"`.
    pub entry: String,
    /// What is wrong with it, with the source error's message when there is one.
    pub detail: String,
    /// The error that refused the value (a JSON, decimal or address parser's), if one did.
    #[source]
    pub source: Option<BoxError>,
}

impl Corrupt {
    /// `backend` holds `entry`, which the store's own check refused: `detail` says why.
    pub fn new(backend: &'static str, entry: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { backend, entry: entry.into(), detail: detail.into(), source: None }
    }

    /// `backend` holds `entry`, whose part `what` (e.g. `price "twelve"`) `source` refused; the
    /// detail reads `{what}: {source}`.
    pub fn because(
        backend: &'static str,
        entry: impl Into<String>,
        what: impl fmt::Display,
        source: impl Into<BoxError>,
    ) -> Self {
        let source = source.into();
        Self { backend, entry: entry.into(), detail: format!("{what}: {source}"), source: Some(source) }
    }
}

/// A call that got no answer in time.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("no answer within {0:?}")]
pub struct NoAnswer(pub Duration);

impl BackendError {
    /// `backend` could not be reached because of `source`.
    pub fn unavailable(backend: &'static str, source: impl Into<BoxError>) -> Self {
        Self::Unavailable { backend, source: source.into() }
    }

    /// `backend` refused the operation with `source`, which retrying will not change.
    pub fn failed(backend: &'static str, source: impl Into<BoxError>) -> Self {
        Self::Failed { backend, source: source.into() }
    }

    /// `backend` gave no answer within `timeout`.
    pub fn no_answer(backend: &'static str, timeout: Duration) -> Self {
        Self::unavailable(backend, NoAnswer(timeout))
    }

    /// Whether retrying the same operation later may succeed.
    pub const fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }

    /// The backend's name, whether retrying may help, and the source error: what a storage
    /// crate's `Error` is built from.
    pub fn into_parts(self) -> (&'static str, bool, BoxError) {
        match self {
            Self::Unavailable { backend, source } => (backend, true, source),
            Self::Failed { backend, source } => (backend, false, source),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeout_is_retryable_and_keeps_its_source() {
        let err = BackendError::no_answer("durable tracker", Duration::from_secs(5));
        assert!(err.is_retryable());
        assert_eq!(err.to_string(), "durable tracker unavailable: no answer within 5s");
        let source = std::error::Error::source(&err).expect("the source is kept");
        assert!(source.is::<NoAnswer>());
    }

    #[test]
    fn a_corrupt_value_says_where_and_keeps_its_source() {
        let source = "twelve".parse::<u32>().unwrap_err();
        let err = Corrupt::because("postgres", "price under \"SOL\"", "price \"twelve\"", source.clone());
        assert_eq!(
            err.to_string(),
            format!("postgres holds an invalid price under \"SOL\": price \"twelve\": {source}")
        );
        let kept = std::error::Error::source(&err).expect("the source is kept");
        assert_eq!(kept.downcast_ref::<std::num::ParseIntError>(), Some(&source));

        let err = Corrupt::new("redis", "fetch record", "fetch time 9 ms is out of range");
        assert_eq!(err.to_string(), "redis holds an invalid fetch record: fetch time 9 ms is out of range");
        assert!(std::error::Error::source(&err).is_none());
    }
}
