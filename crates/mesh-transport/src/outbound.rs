//! [`Outbound`]: a message on its way out, shareable between connections. Relaying one update
//! to eight peers queues one shared message, encoded once by the first connection that writes
//! it, instead of eight copies encoded eight times.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use mesh_types::{Codec, CodecError, MeshMessage};

/// A message queued for one or more connections. Cloning is cheap.
#[derive(Debug, Clone)]
pub struct Outbound(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    message: MeshMessage,
    /// The wire payload, encoded on first use without a size limit; each connection checks
    /// its own limit, so the first connection's limit does not decide for the others.
    payload: OnceLock<Result<Bytes, CodecError>>,
}

impl Outbound {
    /// Wraps `message` for sending.
    pub fn new(message: MeshMessage) -> Self {
        Self(Arc::new(Shared { message, payload: OnceLock::new() }))
    }

    /// The message.
    pub fn message(&self) -> &MeshMessage {
        &self.0.message
    }

    /// The message for the receiving end of an in-memory link. Price updates are shared,
    /// not copied.
    pub fn to_message(&self) -> MeshMessage {
        self.0.message.clone()
    }

    /// The wire payload (version byte and message), encoded on the first call and shared by
    /// every later one.
    ///
    /// # Errors
    /// [`CodecError::Oversized`] when it exceeds `max_size`, or the encoder's error.
    pub fn payload(&self, max_size: usize) -> Result<Bytes, CodecError> {
        let payload = self
            .0
            .payload
            .get_or_init(|| Codec::new(usize::MAX).encode(&self.0.message).map(Bytes::from))
            .clone()?;
        if payload.len() > max_size {
            return Err(CodecError::Oversized { size: payload.len(), max: max_size });
        }
        Ok(payload)
    }
}

impl From<MeshMessage> for Outbound {
    fn from(message: MeshMessage) -> Self {
        Self::new(message)
    }
}

#[cfg(test)]
mod tests {
    use mesh_types::{Goodbye, GoodbyeReason, Heartbeat};

    use super::*;

    #[test]
    fn the_payload_is_encoded_once_and_shared() {
        let outbound = Outbound::new(MeshMessage::Ping(Heartbeat {
            nonce: 7,
            is_provider: false,
            peer_count: 1,
            sent_at: mesh_types::chrono::DateTime::UNIX_EPOCH,
            provider_hops: None,
        }));
        let copy = outbound.clone();
        let (first, second) = (outbound.payload(1024).unwrap(), copy.payload(1024).unwrap());
        assert_eq!(first.as_ptr(), second.as_ptr(), "one encoding, shared");
        assert_eq!(Codec::default().decode(&first).unwrap(), *outbound.message());
    }

    #[test]
    fn each_connection_applies_its_own_size_limit() {
        let big =
            Outbound::new(MeshMessage::Goodbye(Goodbye { reason: GoodbyeReason::Other("x".repeat(100)) }));
        assert!(matches!(big.payload(50), Err(CodecError::Oversized { max: 50, .. })));
        assert!(big.payload(1000).is_ok(), "a roomier connection still sends it");
    }
}
