//! The retry classification of Redis errors (feature `redis`), for every Redis backend.

use crate::BackendError;

const BACKEND: &str = "redis";

impl BackendError {
    /// A Redis error: connection-level failures (I/O, refused, dropped, timed out) are
    /// retryable; anything else is the server refusing the command.
    pub fn redis(err: redis::RedisError) -> Self {
        if err.is_io_error() || err.is_connection_refusal() || err.is_connection_dropped() || err.is_timeout()
        {
            Self::Unavailable { backend: BACKEND, source: Box::new(err) }
        } else {
            Self::Failed { backend: BACKEND, source: Box::new(err) }
        }
    }

    /// No connection from the pool: the server is unreachable or every connection is busy,
    /// which retrying may change.
    pub fn redis_pool(err: deadpool_redis::PoolError) -> Self {
        Self::Unavailable { backend: BACKEND, source: Box::new(err) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_connection_is_retryable_and_a_refused_command_is_not() {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(BackendError::redis(redis::RedisError::from(io)).is_retryable());
        let refused = redis::RedisError::from((redis::ErrorKind::Client, "wrong type"));
        assert!(!BackendError::redis(refused).is_retryable());
    }
}
