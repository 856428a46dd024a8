//! Node identity: the Ed25519 key pair a node signs with, its derived [`NodeId`], and the key
//! file that keeps both across restarts.
//!
//! The key file is PKCS#8 PEM (the format `openssl genpkey -algorithm ed25519` writes, so an
//! operator can also bring their own key). It is created with mode 0600 inside a directory
//! created with mode 0700, written atomically (a temporary file linked into place, so a crash
//! never leaves half a key and an existing key is never overwritten), and refused on load when
//! other users can read it.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{Signer, SigningKey};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::{NodeId, PublicKey, Signature};

/// The key file's name inside a node's data directory.
pub const KEY_FILE_NAME: &str = "node.key";

/// A node's signing key with its public key and id.
pub struct NodeIdentity {
    signing_key: SigningKey,
    public_key: PublicKey,
    node_id: NodeId,
}

/// Why a key file could not be created or loaded.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// Reading, writing or creating the file or its directory failed.
    #[error("key file {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Other users can read or write the key file.
    #[error(
        "key file {path} is accessible by other users (mode {mode:04o}); \
         run `chmod 600 {path}` if it was not exposed, otherwise generate a new key"
    )]
    InsecurePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file is not a PKCS#8 PEM Ed25519 private key.
    #[error("key file {path} is not a PKCS#8 PEM Ed25519 private key: {detail}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What the parser reported.
        detail: String,
    },
    /// Saving would overwrite an existing key.
    #[error("key file {path} already exists; refusing to overwrite a node's identity")]
    AlreadyExists {
        /// The file.
        path: PathBuf,
    },
}

impl NodeIdentity {
    /// A new random identity from the operating system's randomness.
    pub fn generate() -> Self {
        Self::from_signing_key(SigningKey::generate(&mut rand::rng()))
    }

    /// The identity with this 32-byte Ed25519 secret (for tests and deterministic setups).
    pub fn from_secret_bytes(secret: &[u8; 32]) -> Self {
        Self::from_signing_key(SigningKey::from_bytes(secret))
    }

    fn from_signing_key(signing_key: SigningKey) -> Self {
        let public_key = PublicKey::from(signing_key.verifying_key());
        Self { node_id: NodeId::from_public_key(&public_key), public_key, signing_key }
    }

    /// The node's id.
    pub const fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The node's public key.
    pub const fn public_key(&self) -> PublicKey {
        self.public_key
    }

    /// Signs `message` (deterministic Ed25519).
    pub fn sign(&self, message: &[u8]) -> Signature {
        self.signing_key.sign(message).into()
    }

    /// Loads the identity kept at `path`.
    ///
    /// # Errors
    /// [`IdentityError::InsecurePermissions`] when other users can access the file,
    /// [`IdentityError::Malformed`] when it holds no valid key, [`IdentityError::Io`] otherwise.
    pub fn load(path: &Path) -> Result<Self, IdentityError> {
        let io_error = |source| IdentityError::Io { path: path.to_owned(), source };
        let metadata = fs::metadata(path).map_err(io_error)?;
        check_private(path, &metadata)?;
        let pem = Zeroizing::new(fs::read_to_string(path).map_err(io_error)?);
        let signing_key = SigningKey::from_pkcs8_pem(&pem)
            .map_err(|err| IdentityError::Malformed { path: path.to_owned(), detail: err.to_string() })?;
        Ok(Self::from_signing_key(signing_key))
    }

    /// Saves the identity to a new file at `path` (mode 0600), creating missing directories
    /// (mode 0700).
    ///
    /// # Errors
    /// [`IdentityError::AlreadyExists`] when a file is already there, [`IdentityError::Io`] when
    /// writing fails.
    pub fn save(&self, path: &Path) -> Result<(), IdentityError> {
        let pem = self
            .signing_key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|err| IdentityError::Malformed { path: path.to_owned(), detail: err.to_string() })?;
        let dir = path.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
        create_private_dir(dir).map_err(|source| IdentityError::Io { path: dir.to_owned(), source })?;

        let mut temp = path.as_os_str().to_owned();
        temp.push(format!(".tmp-{}", std::process::id()));
        let temp = PathBuf::from(temp);
        let written = write_private_file(&temp, pem.as_bytes())
            .map_err(|source| IdentityError::Io { path: temp.clone(), source })
            // A hard link, unlike a rename, fails when the target exists: an existing identity
            // is never replaced, even by a concurrent `save`.
            .and_then(|()| match fs::hard_link(&temp, path) {
                Ok(()) => Ok(()),
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                    Err(IdentityError::AlreadyExists { path: path.to_owned() })
                }
                Err(source) => Err(IdentityError::Io { path: path.to_owned(), source }),
            });
        // Best effort: the temporary name is ours alone and holds nothing the final file lacks.
        let _ = fs::remove_file(&temp);
        written
    }

    /// Loads the identity at `path`, or creates and saves a new one when no file exists.
    /// Returns the identity and whether it was just created.
    ///
    /// # Errors
    /// As [`NodeIdentity::load`] and [`NodeIdentity::save`].
    pub fn load_or_generate(path: &Path) -> Result<(Self, bool), IdentityError> {
        match Self::load(path) {
            Ok(identity) => Ok((identity, false)),
            Err(IdentityError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                let identity = Self::generate();
                match identity.save(path) {
                    Ok(()) => Ok((identity, true)),
                    // Another process created it between our load and save: use theirs.
                    Err(IdentityError::AlreadyExists { .. }) => Ok((Self::load(path)?, false)),
                    Err(err) => Err(err),
                }
            }
            Err(err) => Err(err),
        }
    }
}

impl fmt::Debug for NodeIdentity {
    // The secret key is deliberately absent.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeIdentity").field("node_id", &self.node_id).finish_non_exhaustive()
    }
}

#[cfg(unix)]
fn check_private(path: &Path, metadata: &fs::Metadata) -> Result<(), IdentityError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(IdentityError::InsecurePermissions { path: path.to_owned(), mode });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path, _metadata: &fs::Metadata) -> Result<(), IdentityError> {
    Ok(())
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

fn write_private_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_identity_loads_back_with_the_same_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/node.key");
        let identity = NodeIdentity::generate();
        identity.save(&path).unwrap();
        let loaded = NodeIdentity::load(&path).unwrap();
        assert_eq!(loaded.node_id(), identity.node_id());
        assert_eq!(loaded.public_key(), identity.public_key());
    }

    #[cfg(unix)]
    #[test]
    fn key_file_is_private_and_a_readable_one_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        NodeIdentity::generate().save(&path).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);

        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = NodeIdentity::load(&path).unwrap_err();
        assert!(matches!(err, IdentityError::InsecurePermissions { mode: 0o644, .. }), "{err}");
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    #[test]
    fn save_never_overwrites_and_load_or_generate_is_stable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        let (first, created) = NodeIdentity::load_or_generate(&path).unwrap();
        assert!(created);
        let (second, created) = NodeIdentity::load_or_generate(&path).unwrap();
        assert!(!created);
        assert_eq!(first.node_id(), second.node_id());
        let err = NodeIdentity::generate().save(&path).unwrap_err();
        assert!(matches!(err, IdentityError::AlreadyExists { .. }), "{err}");
        assert_eq!(NodeIdentity::load(&path).unwrap().node_id(), first.node_id());
        // Only the key file remains; no temporary files are left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn a_corrupt_key_file_is_reported_not_replaced() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        fs::write(&path, "not a key").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let err = NodeIdentity::load_or_generate(&path).unwrap_err();
        assert!(matches!(err, IdentityError::Malformed { .. }), "{err}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "not a key");
    }

    #[test]
    fn signatures_verify_against_the_public_key() {
        let identity = NodeIdentity::from_secret_bytes(&[42; 32]);
        let signature = identity.sign(b"hello");
        let key = identity.public_key().verifying_key().unwrap();
        assert!(key.verify_strict(b"hello", &signature.to_dalek()).is_ok());
        assert!(key.verify_strict(b"hellO", &signature.to_dalek()).is_err());
        assert!(!format!("{identity:?}").contains("signing_key"));
    }
}
