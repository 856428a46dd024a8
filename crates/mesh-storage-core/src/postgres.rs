//! PostgreSQL for every backend (feature `postgres`): the retry classification of `sqlx`
//! errors, and the one embedded copy of the workspace's `migrations/`.

use crate::BackendError;

const BACKEND: &str = "postgres";

/// The SQL migrations of the workspace's `migrations/`, embedded at compile time: what every
/// PostgreSQL backend expects to have been applied (`MIGRATOR.run(&pool)`).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

impl BackendError {
    /// A `sqlx` error: connection-level failures (I/O, TLS, the pool timing out or closed,
    /// SQLSTATE class 08 and a server shutting down, 57P01-57P03) are retryable; anything
    /// else is the server refusing the statement.
    pub fn postgres(err: sqlx::Error) -> Self {
        let unavailable = match &err {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_) => true,
            sqlx::Error::Database(db) => {
                db.code().is_some_and(|code| code.starts_with("08") || code.starts_with("57P"))
            }
            _ => false,
        };
        if unavailable {
            Self::Unavailable { backend: BACKEND, source: Box::new(err) }
        } else {
            Self::Failed { backend: BACKEND, source: Box::new(err) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_connection_is_retryable_and_a_missing_row_is_not() {
        assert!(BackendError::postgres(sqlx::Error::PoolTimedOut).is_retryable());
        assert!(!BackendError::postgres(sqlx::Error::RowNotFound).is_retryable());
    }

    #[test]
    fn the_migrations_are_embedded() {
        assert!(MIGRATOR.iter().count() > 0);
    }
}
