//! The Noise session that secures a TCP connection before its first frame:
//! `Noise_XX_25519_ChaChaPoly_SHA256` (the pattern libp2p-noise uses), with each side's X25519
//! static key bound to its Ed25519 node identity.
//!
//! Why: without it anyone on the path reads and rewrites frames, and the `Hello`/`HelloAck`
//! proof, which signs only a nonce, can be relayed by an attacker who dials two nodes and
//! splices their handshakes. With it every byte after the handshake is encrypted and
//! authenticated, and the Ed25519 key the session authenticated is the only key the `Hello` on
//! that connection may claim ([`crate::handshake`] checks it).
//!
//! # Handshake
//!
//! - Each [`TcpTransport`](crate::TcpTransport) makes a fresh X25519 static key when it is
//!   built; it need not outlive the process, since the Ed25519 identity is what peers know.
//! - The prologue is [`PROLOGUE_TAG`], the network id (one length byte, then the name) and the
//!   protocol version (u16 big-endian). Both sides hash it into the handshake, so a node of
//!   another network or version fails cryptographically: the second message does not decrypt.
//! - Each handshake message travels as a u16 big-endian length and the message. A length above
//!   [`MAX_HANDSHAKE_MESSAGE`] closes the connection before anything more is read; the buffers
//!   are fixed, nothing is allocated for the peer.
//! - Message 1 (`-> e`) carries an empty payload. Messages 2 (`<- e, ee, s, es`) and 3
//!   (`-> s, se`) carry the sender's identity payload, [`IDENTITY_PAYLOAD_LEN`] bytes: its
//!   Ed25519 public key (32) and its signature (64) over [`STATIC_KEY_DOMAIN`] followed by its
//!   X25519 static public key. Each side checks the other's payload against the static key snow
//!   reports for the peer ([`snow::HandshakeState::get_remote_static`]) with strict Ed25519 rules
//!   ([`mesh_types::AuthorKey`]). A relay that terminates Noise with its own static key cannot
//!   reuse a victim's payload: the signature covers the victim's static key, not the relay's.
//!
//! # Transport
//!
//! Afterwards the plaintext is the same stream of 4-byte-length-prefixed frames as before, cut
//! into Noise transport messages of at most [`MAX_CHUNK`] plaintext bytes (65,535 with the
//! 16-byte tag), each on the wire as a u16 big-endian length and the ciphertext ([`Sealer`],
//! [`Opener`]). A frame may span several messages and one message may hold several frames. The
//! nonces are Noise's implicit counters, never sent: one per direction, counting from zero (TCP
//! neither reorders nor drops). snow's stateless transport state takes them as arguments, so the
//! reader keeps the receiving counter and the writer the sending one and the two tasks share no
//! lock. A message flipped, injected, replayed, dropped or reordered fails to decrypt, and that
//! ends the connection.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, BufMut, BytesMut};
use curve25519_dalek::montgomery::MontgomeryPoint;
use mesh_types::{
    NetworkId, NodeId, NodeIdentity, PROTOCOL_VERSION, PUBLIC_KEY_LEN, PublicKey, SIGNATURE_LEN, Signature,
    SignedMessage,
};
use rand::RngExt;
use snow::{Builder, HandshakeState, StatelessTransportState};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use zeroize::Zeroizing;

use crate::TransportError;

/// The Noise protocol name.
pub const NOISE_PARAMS: &str = "Noise_XX_25519_ChaChaPoly_SHA256";

/// The start of the prologue; a new session layout gets a new tag.
pub const PROLOGUE_TAG: &[u8] = b"pricemesh-noise/v1";

/// What an identity signature over a static key starts with, so it can never pass for another
/// signed message of the node.
pub const STATIC_KEY_DOMAIN: &[u8] = b"pricemesh-noise-static-key:";

/// Bytes of an X25519 key.
pub const STATIC_KEY_LEN: usize = 32;

/// Bytes of the identity payload of handshake messages 2 and 3: an Ed25519 public key and a
/// signature.
pub const IDENTITY_PAYLOAD_LEN: usize = 96;

/// The largest handshake message accepted. Ours are 32, 192 and 160 bytes; the Noise limit of
/// 65,535 leaves room this protocol does not use.
pub const MAX_HANDSHAKE_MESSAGE: usize = 1024;

/// Bytes of the length prefix of every Noise message on the wire.
pub const NOISE_LENGTH_LEN: usize = 2;

/// Bytes of the authentication tag of every encrypted Noise message.
pub const TAG_LEN: usize = 16;

/// The most plaintext one transport message carries: the Noise limit of 65,535 bytes less the
/// tag.
pub const MAX_CHUNK: usize = 65_519;

/// What `connection ... timed out while {during}` says for this phase.
const DURING: &str = "performing the noise handshake";

/// This node's side of every session a transport makes: its static key, the payload that binds
/// the key to the node's identity, and the prologue.
pub struct LocalKeys {
    secret: Zeroizing<[u8; STATIC_KEY_LEN]>,
    public: [u8; STATIC_KEY_LEN],
    payload: [u8; IDENTITY_PAYLOAD_LEN],
    prologue: Vec<u8>,
}

impl fmt::Debug for LocalKeys {
    // The secret is deliberately absent.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalKeys")
            .field("static_key", &hex(&self.public))
            .field("prologue", &hex(&self.prologue))
            .finish_non_exhaustive()
    }
}

impl LocalKeys {
    /// A fresh static key for `identity`, for sessions on `network` at this protocol version.
    pub fn new(identity: &NodeIdentity, network: &NetworkId) -> Self {
        Self::with_prologue(identity, prologue(network, PROLOGUE_VERSION))
    }

    /// A fresh static key for `identity`, for sessions with this `prologue`.
    pub(crate) fn with_prologue(identity: &NodeIdentity, prologue: Vec<u8>) -> Self {
        let mut secret = Zeroizing::new([0u8; STATIC_KEY_LEN]);
        rand::rng().fill(&mut secret[..]);
        // The same derivation snow applies to a private key it is given (clamped scalar times
        // the base point), so the key signed here is the key the peer sees.
        let public = MontgomeryPoint::mul_base_clamped(*secret).to_bytes();
        let payload = identity_payload(identity, &public);
        Self { secret, public, payload, prologue }
    }

    /// The X25519 static public key.
    pub const fn static_public(&self) -> &[u8; STATIC_KEY_LEN] {
        &self.public
    }

    /// The identity payload this node sends.
    #[cfg(test)]
    pub(crate) const fn payload(&self) -> &[u8; IDENTITY_PAYLOAD_LEN] {
        &self.payload
    }

    /// The same key sending another payload (to play a forger).
    #[cfg(test)]
    pub(crate) fn with_payload(mut self, payload: [u8; IDENTITY_PAYLOAD_LEN]) -> Self {
        self.payload = payload;
        self
    }

    /// A handshake state for `role`, with this node's static key and prologue.
    pub(crate) fn start(&self, role: Role) -> Result<HandshakeState, snow::Error> {
        let builder = Builder::new(NOISE_PARAMS.parse()?)
            .local_private_key(&self.secret[..])?
            .prologue(&self.prologue)?;
        match role {
            Role::Initiator => builder.build_initiator(),
            Role::Responder => builder.build_responder(),
        }
    }
}

/// The protocol version the prologue names.
const PROLOGUE_VERSION: u16 = PROTOCOL_VERSION;

/// The prologue of sessions on `network` at `protocol_version`.
pub fn prologue(network: &NetworkId, protocol_version: u16) -> Vec<u8> {
    let name = network.as_str().as_bytes();
    let mut prologue = Vec::with_capacity(64);
    prologue.extend_from_slice(PROLOGUE_TAG);
    // A network name is at most 32 bytes, so the length always fits.
    prologue.push(u8::try_from(name.len()).unwrap_or(u8::MAX));
    prologue.extend_from_slice(name);
    prologue.extend_from_slice(&protocol_version.to_be_bytes());
    prologue
}

/// The bytes an identity signs to bind `static_key` to itself.
pub fn binding_bytes(static_key: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(64);
    bytes.extend_from_slice(STATIC_KEY_DOMAIN);
    bytes.extend_from_slice(static_key);
    bytes
}

/// `identity`'s public key and its signature binding `static_key` to it.
pub fn identity_payload(identity: &NodeIdentity, static_key: &[u8]) -> [u8; IDENTITY_PAYLOAD_LEN] {
    let signature = identity.sign(&binding_bytes(static_key));
    let mut payload = [0u8; IDENTITY_PAYLOAD_LEN];
    let (key, rest) = payload.split_at_mut(PUBLIC_KEY_LEN);
    key.copy_from_slice(identity.public_key().as_bytes());
    rest.copy_from_slice(signature.as_bytes());
    payload
}

/// A claimed binding of a static key to an Ed25519 key, checked as every signed message is.
struct StaticKeyBinding<'a> {
    node_id: NodeId,
    public_key: PublicKey,
    signature: Signature,
    static_key: &'a [u8],
}

impl SignedMessage for StaticKeyBinding<'_> {
    fn signer(&self) -> (NodeId, &PublicKey) {
        (self.node_id, &self.public_key)
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn signing_bytes(&self, _network: &NetworkId) -> Vec<u8> {
        // The network is bound by the session's prologue; the binding covers the static key.
        binding_bytes(self.static_key)
    }
}

/// The Ed25519 key the peer's identity `payload` binds to the static key the session
/// authenticated.
///
/// # Errors
/// [`TransportError::InvalidIdentityBinding`] when there is no static key, the payload is not
/// [`IDENTITY_PAYLOAD_LEN`] bytes, the key is not a valid Ed25519 key, or the signature does not
/// cover this static key under strict verification.
pub fn verify_identity(
    payload: &[u8],
    static_key: Option<&[u8]>,
    addr: SocketAddr,
) -> Result<PublicKey, TransportError> {
    let refuse = |detail: String| TransportError::InvalidIdentityBinding { addr, detail };
    let Some(static_key) = static_key.filter(|key| key.len() == STATIC_KEY_LEN) else {
        return Err(refuse("the session has no static key of the peer".to_owned()));
    };
    let parts = payload
        .split_first_chunk::<PUBLIC_KEY_LEN>()
        .and_then(|(key, signature)| Some((*key, <[u8; SIGNATURE_LEN]>::try_from(signature).ok()?)));
    let Some((key, signature)) = parts else {
        return Err(refuse(format!(
            "identity payload of {} bytes, expected {IDENTITY_PAYLOAD_LEN}",
            payload.len()
        )));
    };
    let public_key = PublicKey::from_bytes(key);
    let binding = StaticKeyBinding {
        node_id: NodeId::from_public_key(&public_key),
        public_key,
        signature: Signature::from_bytes(signature),
        static_key,
    };
    // Any network will do: the binding's bytes do not depend on it (see `signing_bytes`).
    binding
        .verify_signature(&NetworkId::mainnet())
        .map_err(|err| refuse(format!("the static key is not bound to {public_key}: {err}")))?;
    Ok(public_key)
}

/// Which end of the connection this node is: the dialler initiates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Sends messages 1 and 3.
    Initiator,
    /// Sends message 2.
    Responder,
}

/// A completed handshake.
pub struct Session {
    cipher: StatelessTransportState,
    remote_identity: PublicKey,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session").field("remote_identity", &self.remote_identity).finish_non_exhaustive()
    }
}

impl Session {
    /// The Ed25519 key the peer bound to its static key: who is at the other end.
    #[must_use]
    pub const fn remote_identity(&self) -> &PublicKey {
        &self.remote_identity
    }

    /// The receiving and sending halves, each with its own nonce counter starting at zero.
    pub fn into_halves(self) -> (Opener, Sealer) {
        let cipher = Arc::new(self.cipher);
        (Opener { cipher: Arc::clone(&cipher), nonce: 0 }, Sealer { cipher, nonce: 0 })
    }
}

/// Runs the XX handshake on `stream` as `role`, and checks the peer's identity payload.
///
/// The caller bounds the time it may take.
///
/// # Errors
/// [`TransportError::NoiseHandshakeFailed`] when a message is too large, malformed or does not
/// decrypt (another network or protocol version, or tampering);
/// [`TransportError::InvalidIdentityBinding`] when the peer's payload does not bind its static
/// key; an I/O error classified by [`TransportError::from_io`] when the connection breaks.
pub async fn handshake<S>(
    stream: &mut S,
    keys: &LocalKeys,
    role: Role,
    addr: SocketAddr,
) -> Result<Session, TransportError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut state = keys.start(role).map_err(|err| failed(addr, &err))?;
    let mut message = [0u8; MAX_HANDSHAKE_MESSAGE];
    let mut payload = [0u8; MAX_HANDSHAKE_MESSAGE];
    let remote_identity = match role {
        Role::Initiator => {
            write_handshake(stream, &mut state, &[], &mut message, addr).await?;
            let len = read_handshake(stream, &mut state, &mut message, &mut payload, addr).await?;
            let identity =
                verify_identity(payload.get(..len).unwrap_or_default(), state.get_remote_static(), addr)?;
            write_handshake(stream, &mut state, &keys.payload, &mut message, addr).await?;
            identity
        }
        Role::Responder => {
            let len = read_handshake(stream, &mut state, &mut message, &mut payload, addr).await?;
            if len != 0 {
                return Err(TransportError::NoiseHandshakeFailed {
                    addr,
                    detail: format!(
                        "the first handshake message carries a {len}-byte payload; it must be empty"
                    ),
                });
            }
            write_handshake(stream, &mut state, &keys.payload, &mut message, addr).await?;
            let len = read_handshake(stream, &mut state, &mut message, &mut payload, addr).await?;
            verify_identity(payload.get(..len).unwrap_or_default(), state.get_remote_static(), addr)?
        }
    };
    let cipher = state.into_stateless_transport_mode().map_err(|err| failed(addr, &err))?;
    Ok(Session { cipher, remote_identity })
}

/// Writes the next handshake message, carrying `payload`, with its length prefix.
pub(crate) async fn write_handshake<S: AsyncWrite + Unpin>(
    stream: &mut S,
    state: &mut HandshakeState,
    payload: &[u8],
    message: &mut [u8; MAX_HANDSHAKE_MESSAGE],
    addr: SocketAddr,
) -> Result<(), TransportError> {
    let len = state.write_message(payload, message).map_err(|err| failed(addr, &err))?;
    send_handshake_message(stream, message.get(..len).unwrap_or_default(), addr).await
}

/// Writes `message` with its u16 length prefix and flushes.
pub(crate) async fn send_handshake_message<S: AsyncWrite + Unpin>(
    stream: &mut S,
    message: &[u8],
    addr: SocketAddr,
) -> Result<(), TransportError> {
    let Ok(len) = u16::try_from(message.len()) else {
        return Err(TransportError::NoiseHandshakeFailed {
            addr,
            detail: format!("a handshake message of {} bytes does not fit a noise message", message.len()),
        });
    };
    let mut framed = Vec::with_capacity(message.len().saturating_add(NOISE_LENGTH_LEN));
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(message);
    let io = |err: std::io::Error| TransportError::from_io(addr, DURING, &err);
    stream.write_all(&framed).await.map_err(io)?;
    stream.flush().await.map_err(io)
}

/// Reads the next handshake message into `message` and opens it into `payload`; returns the
/// payload's length.
pub(crate) async fn read_handshake<S: AsyncRead + Unpin>(
    stream: &mut S,
    state: &mut HandshakeState,
    message: &mut [u8; MAX_HANDSHAKE_MESSAGE],
    payload: &mut [u8; MAX_HANDSHAKE_MESSAGE],
    addr: SocketAddr,
) -> Result<usize, TransportError> {
    let received = receive_handshake_message(stream, message, addr).await?;
    state.read_message(received, payload).map_err(|err| failed(addr, &err))
}

/// Reads one length-prefixed handshake message into `buffer`, refusing a length above
/// [`MAX_HANDSHAKE_MESSAGE`] before reading the body.
pub(crate) async fn receive_handshake_message<'a, S: AsyncRead + Unpin>(
    stream: &mut S,
    buffer: &'a mut [u8; MAX_HANDSHAKE_MESSAGE],
    addr: SocketAddr,
) -> Result<&'a [u8], TransportError> {
    let io = |err: std::io::Error| TransportError::from_io(addr, DURING, &err);
    let mut head = [0u8; NOISE_LENGTH_LEN];
    stream.read_exact(&mut head).await.map_err(io)?;
    let len = usize::from(u16::from_be_bytes(head));
    let Some(body) = buffer.get_mut(..len) else {
        return Err(TransportError::NoiseHandshakeFailed {
            addr,
            detail: format!(
                "handshake message of {len} bytes exceeds the {MAX_HANDSHAKE_MESSAGE}-byte limit"
            ),
        });
    };
    stream.read_exact(body).await.map_err(io)?;
    Ok(body)
}

/// A snow failure during the handshake, said in terms of what it means here.
fn failed(addr: SocketAddr, err: &snow::Error) -> TransportError {
    let detail = match err {
        snow::Error::Decrypt => {
            "a handshake message does not decrypt: the peer is on another network or protocol \
             version, or the message was tampered with"
                .to_owned()
        }
        snow::Error::Input => "a handshake message is malformed".to_owned(),
        other => format!("noise: {other}"),
    };
    TransportError::NoiseHandshakeFailed { addr, detail }
}

/// Why a transport message could not be opened or sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CipherError {
    /// It does not decrypt and authenticate under the next nonce.
    #[error(
        "a transport message does not decrypt under the next nonce: it was tampered with, replayed or reordered; the session must end"
    )]
    Decrypt,
    /// The nonces of one direction ran out (after 2^64 - 1 messages).
    #[error("the session's nonces ran out; open a new session")]
    Exhausted,
    /// More than [`MAX_CHUNK`] bytes were given to seal.
    #[error("a transport message takes at most {MAX_CHUNK} bytes of plaintext; cut it into chunks")]
    TooLarge,
}

/// The receiving half of a session: opens the peer's transport messages in order.
pub struct Opener {
    cipher: Arc<StatelessTransportState>,
    nonce: u64,
}

impl fmt::Debug for Opener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opener").field("nonce", &self.nonce).finish_non_exhaustive()
    }
}

impl Opener {
    /// Takes one whole transport message off the front of `wire`, if it is all there, and
    /// appends its plaintext to `plain`. `Ok(false)`: more bytes are needed (room for the
    /// announced message, at most 65,537 bytes, is reserved in `wire`).
    ///
    /// # Errors
    /// [`CipherError::Decrypt`] when the message fails to authenticate, [`CipherError::Exhausted`]
    /// when the nonces ran out. The session is unusable afterwards.
    pub fn open(&mut self, wire: &mut BytesMut, plain: &mut BytesMut) -> Result<bool, CipherError> {
        let Some(head) = wire.first_chunk::<NOISE_LENGTH_LEN>() else {
            return Ok(false);
        };
        let len = usize::from(u16::from_be_bytes(*head));
        let whole = len.saturating_add(NOISE_LENGTH_LEN);
        if wire.len() < whole {
            wire.reserve(whole.saturating_sub(wire.len()));
            return Ok(false);
        }
        wire.advance(NOISE_LENGTH_LEN);
        let message = wire.split_to(len);
        let start = plain.len();
        // The plaintext is the message less its tag, so `len` bytes are room enough.
        plain.resize(start.saturating_add(len), 0);
        let opened = match plain.get_mut(start..) {
            Some(out) => self.cipher.read_message(self.nonce, &message, out),
            None => Err(snow::Error::Decrypt),
        };
        match opened {
            Ok(size) => {
                plain.truncate(start.saturating_add(size));
                self.nonce = self.nonce.checked_add(1).ok_or(CipherError::Exhausted)?;
                Ok(true)
            }
            Err(snow::Error::State(_)) => {
                plain.truncate(start);
                Err(CipherError::Exhausted)
            }
            Err(_) => {
                plain.truncate(start);
                Err(CipherError::Decrypt)
            }
        }
    }
}

/// The sending half of a session: seals plaintext into transport messages in order.
pub struct Sealer {
    cipher: Arc<StatelessTransportState>,
    nonce: u64,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer").field("nonce", &self.nonce).finish_non_exhaustive()
    }
}

impl Sealer {
    /// Appends `chunk` (at most [`MAX_CHUNK`] bytes) to `wire` as one transport message: a u16
    /// big-endian length and the ciphertext with its tag.
    ///
    /// # Errors
    /// [`CipherError::TooLarge`] for a chunk over [`MAX_CHUNK`], [`CipherError::Exhausted`] when
    /// the nonces ran out.
    pub fn seal(&mut self, chunk: &[u8], wire: &mut BytesMut) -> Result<(), CipherError> {
        if chunk.len() > MAX_CHUNK {
            return Err(CipherError::TooLarge);
        }
        let sealed = chunk.len().saturating_add(TAG_LEN);
        let head = u16::try_from(sealed).map_err(|_| CipherError::TooLarge)?;
        let nonce = self.nonce;
        self.nonce = nonce.checked_add(1).ok_or(CipherError::Exhausted)?;
        let start = wire.len();
        wire.reserve(sealed.saturating_add(NOISE_LENGTH_LEN));
        wire.put_u16(head);
        let body = start.saturating_add(NOISE_LENGTH_LEN);
        wire.resize(body.saturating_add(sealed), 0);
        let written = match wire.get_mut(body..) {
            Some(out) => self.cipher.write_message(nonce, chunk, out),
            None => Err(snow::Error::Input),
        };
        match written {
            Ok(size) if size == sealed => Ok(()),
            Ok(_) | Err(snow::Error::Input) => {
                wire.truncate(start);
                Err(CipherError::TooLarge)
            }
            Err(_) => {
                wire.truncate(start);
                Err(CipherError::Exhausted)
            }
        }
    }
}

/// Lowercase hex of `bytes`, for logs.
fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut out, byte| {
        let _ = write!(out, "{byte:02x}");
        out
    })
}

#[cfg(test)]
mod tests {
    use tokio::io::duplex;

    use super::*;

    fn addr() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 9470))
    }

    /// Runs both sides of a handshake over an in-process pipe.
    async fn run(
        initiator: &LocalKeys,
        responder: &LocalKeys,
    ) -> (Result<Session, TransportError>, Result<Session, TransportError>) {
        let (mut a, mut b) = duplex(4096);
        // Each side drops its end when it is done, so a side that gives up ends the other's wait.
        tokio::join!(async move { handshake(&mut a, initiator, Role::Initiator, addr()).await }, async move {
            handshake(&mut b, responder, Role::Responder, addr()).await
        })
    }

    #[test]
    fn the_constants_agree_with_snow() {
        assert_eq!(MAX_CHUNK + TAG_LEN, usize::from(u16::MAX), "the noise message limit");
        assert_eq!(IDENTITY_PAYLOAD_LEN, PUBLIC_KEY_LEN + SIGNATURE_LEN);
    }

    #[test]
    fn the_prologue_names_the_network_and_the_version() {
        let devnet = prologue(&NetworkId::devnet(), 1);
        assert!(devnet.starts_with(PROLOGUE_TAG));
        assert_ne!(devnet, prologue(&NetworkId::testnet(), 1));
        assert_ne!(devnet, prologue(&NetworkId::devnet(), 2));
        assert_eq!(devnet.len(), PROLOGUE_TAG.len() + 1 + "devnet".len() + 2);
    }

    #[tokio::test]
    async fn both_sides_learn_the_identity_bound_to_the_other_static_key() {
        let (alice, bob) = (NodeIdentity::generate(), NodeIdentity::generate());
        let (a, b) =
            (LocalKeys::new(&alice, &NetworkId::devnet()), LocalKeys::new(&bob, &NetworkId::devnet()));
        let (from_a, from_b) = run(&a, &b).await;
        let (from_a, from_b) = (from_a.unwrap(), from_b.unwrap());
        // Each payload verified against the static key snow reports, so the key signed here is
        // the one snow derives from the secret.
        assert_eq!(from_a.remote_identity, bob.public_key());
        assert_eq!(from_b.remote_identity, alice.public_key());

        // The halves talk: what one seals the other opens, in order.
        let ((mut a_open, mut a_seal), (mut b_open, mut b_seal)) =
            (from_a.into_halves(), from_b.into_halves());
        let mut wire = BytesMut::new();
        a_seal.seal(b"first", &mut wire).unwrap();
        a_seal.seal(b"second", &mut wire).unwrap();
        let mut plain = BytesMut::new();
        assert!(b_open.open(&mut wire, &mut plain).unwrap());
        assert!(b_open.open(&mut wire, &mut plain).unwrap());
        assert!(!b_open.open(&mut wire, &mut plain).unwrap(), "nothing more");
        assert_eq!(&plain[..], b"firstsecond");
        b_seal.seal(b"back", &mut wire).unwrap();
        plain.clear();
        assert!(a_open.open(&mut wire, &mut plain).unwrap());
        assert_eq!(&plain[..], b"back");
    }

    #[tokio::test]
    async fn another_prologue_fails_the_handshake() {
        let (alice, bob) = (NodeIdentity::generate(), NodeIdentity::generate());
        let a = LocalKeys::new(&alice, &NetworkId::devnet());
        let b = LocalKeys::with_prologue(&bob, prologue(&NetworkId::devnet(), PROTOCOL_VERSION + 1));
        let (from_a, _) = run(&a, &b).await;
        let error = from_a.unwrap_err();
        assert!(matches!(error, TransportError::NoiseHandshakeFailed { .. }), "{error}");
        assert!(error.to_string().contains("another network or protocol version"), "{error}");
    }

    #[test]
    fn a_payload_binds_only_its_own_static_key() {
        let identity = NodeIdentity::generate();
        let keys = LocalKeys::new(&identity, &NetworkId::devnet());
        let other = LocalKeys::new(&identity, &NetworkId::devnet());
        let payload = keys.payload();
        assert_eq!(
            verify_identity(payload, Some(keys.static_public()), addr()).unwrap(),
            identity.public_key()
        );
        for (name, static_key) in [("another static key", Some(&other.static_public()[..])), ("none", None)] {
            let error = verify_identity(payload, static_key, addr()).unwrap_err();
            assert!(matches!(error, TransportError::InvalidIdentityBinding { .. }), "{name}: {error}");
        }
        // Truncated, extended, or with a key that is not a point.
        let error = verify_identity(&payload[..95], Some(keys.static_public()), addr()).unwrap_err();
        assert!(error.to_string().contains("95 bytes"), "{error}");
        let mut longer = payload.to_vec();
        longer.push(0);
        assert!(verify_identity(&longer, Some(keys.static_public()), addr()).is_err());
        let mut small_order = *payload;
        small_order[..32].copy_from_slice(&[0; 32]);
        small_order[0] = 1; // the identity point: of small order
        assert!(verify_identity(&small_order, Some(keys.static_public()), addr()).is_err());
    }

    #[tokio::test]
    async fn a_handshake_message_over_the_limit_is_refused_before_its_body() {
        let keys = LocalKeys::new(&NodeIdentity::generate(), &NetworkId::devnet());
        let (mut a, mut b) = duplex(64);
        // Only the length prefix is sent: waiting for the body would hang.
        a.write_all(&u16::MAX.to_be_bytes()).await.unwrap();
        let error = handshake(&mut b, &keys, Role::Responder, addr()).await.unwrap_err();
        assert!(error.to_string().contains("65535 bytes exceeds"), "{error}");
    }

    #[tokio::test]
    async fn a_flipped_bit_or_a_replay_does_not_open() {
        let (alice, bob) = (NodeIdentity::generate(), NodeIdentity::generate());
        let (a, b) =
            (LocalKeys::new(&alice, &NetworkId::devnet()), LocalKeys::new(&bob, &NetworkId::devnet()));
        let (from_a, from_b) = run(&a, &b).await;
        let ((_, mut seal), (mut open, _)) = (from_a.unwrap().into_halves(), from_b.unwrap().into_halves());
        let mut wire = BytesMut::new();
        seal.seal(b"price", &mut wire).unwrap();
        let original = wire.clone();
        let mut plain = BytesMut::new();
        let mut flipped = original.clone();
        flipped[4] ^= 1;
        assert_eq!(open.open(&mut flipped, &mut plain), Err(CipherError::Decrypt));
        assert!(plain.is_empty(), "nothing of a forged message is kept");

        // A fresh opener takes the original, then refuses the same message again.
        let (from_a, from_b) = run(&a, &b).await;
        let ((_, mut seal), (mut open, _)) = (from_a.unwrap().into_halves(), from_b.unwrap().into_halves());
        let mut wire = BytesMut::new();
        seal.seal(b"price", &mut wire).unwrap();
        let mut replay = wire.clone();
        assert!(open.open(&mut wire, &mut plain).unwrap());
        assert_eq!(open.open(&mut replay, &mut plain), Err(CipherError::Decrypt), "a replay fails");
    }

    #[tokio::test]
    async fn a_chunk_over_the_limit_is_not_sealed() {
        let (alice, bob) = (NodeIdentity::generate(), NodeIdentity::generate());
        let (a, b) =
            (LocalKeys::new(&alice, &NetworkId::devnet()), LocalKeys::new(&bob, &NetworkId::devnet()));
        let (from_a, _) = run(&a, &b).await;
        let (_, mut seal) = from_a.unwrap().into_halves();
        let mut wire = BytesMut::new();
        assert_eq!(seal.seal(&vec![0; MAX_CHUNK + 1], &mut wire), Err(CipherError::TooLarge));
        assert!(wire.is_empty());
        seal.seal(&vec![0; MAX_CHUNK], &mut wire).unwrap();
        assert_eq!(wire.len(), NOISE_LENGTH_LEN + MAX_CHUNK + TAG_LEN);
        assert_eq!(&wire[..2], &u16::MAX.to_be_bytes());
    }
}
