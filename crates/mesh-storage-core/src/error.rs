//! [`BackendError`]: a durable backend's failure, classified once for every storage crate:
//! retryable (the server could not be reached, or did not answer) or not. Each storage
//! crate's `Error` converts from it, keeping the source error.

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
}
