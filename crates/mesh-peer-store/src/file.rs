//! The JSON peer file behind [`MemoryPeerStore`](crate::MemoryPeerStore): a JSON array of
//! [`Peer`]s, ordered by id.
//!
//! Writes are atomic: the whole store goes to a fresh temporary file in the same directory,
//! which is flushed to disk and then renamed over the peer file, so a crash leaves either the
//! old or the new file, never a torn one. A file that cannot be parsed, or that breaks the
//! store's rules, is renamed to `<name>.corrupt-<unix seconds>` and reported, so it can be
//! inspected and is never overwritten by an empty store.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use mesh_types::chrono::Utc;
use uuid::Uuid;

use crate::{Error, Peer, Result};

/// The peers in the file at `path`; none if there is no file yet.
///
/// # Errors
/// [`Error::CorruptFile`] after moving a bad file aside; [`Error::File`] when it cannot be read.
pub(crate) async fn load(path: &Path) -> Result<Vec<Peer>> {
    let bytes = match tokio::fs::read(path).await {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            tracing::debug!(path = %path.display(), "no peer file yet, starting with no peers");
            return Ok(Vec::new());
        }
        Err(source) => return Err(Error::File { path: path.to_owned(), action: "read", source }),
    };
    match parse_peer_file(&bytes) {
        Ok(peers) => Ok(peers),
        Err(InvalidPeerFile { detail, source }) => {
            let moved_to = move_aside(path).await;
            match &moved_to {
                Some(moved_to) => tracing::error!(
                    path = %path.display(), moved_to = %moved_to.display(), %detail,
                    "peer file is corrupt, moved it aside"
                ),
                None => {
                    tracing::error!(path = %path.display(), %detail, "peer file is corrupt, left in place")
                }
            }
            Err(Error::CorruptFile { path: path.to_owned(), detail, source, moved_to })
        }
    }
}

/// What is wrong with a peer file's contents ([`parse_peer_file`]).
#[derive(Debug, thiserror::Error)]
#[error("{detail}")]
#[non_exhaustive]
pub struct InvalidPeerFile {
    /// What is wrong, in words (with the JSON parser's message when it refused the file).
    pub detail: String,
    /// The JSON parser's error, when the file is not a JSON array of peers.
    #[source]
    pub source: Option<serde_json::Error>,
}

impl InvalidPeerFile {
    /// The file breaks a rule of the store: `detail` says which.
    fn rule(detail: String) -> Self {
        Self { detail, source: None }
    }
}

/// The peers in `bytes`, checked against the rules the store enforces on every write, so the
/// file cannot smuggle in a state the store could not have produced.
///
/// # Errors
/// What is wrong with the file.
pub fn parse_peer_file(bytes: &[u8]) -> Result<Vec<Peer>, InvalidPeerFile> {
    let peers: Vec<Peer> = serde_json::from_slice(bytes)
        .map_err(|err| InvalidPeerFile { detail: format!("invalid JSON: {err}"), source: Some(err) })?;
    let mut ids = HashSet::new();
    let mut addresses = HashSet::new();
    for peer in &peers {
        if let Some(problem) = peer.inconsistency() {
            return Err(InvalidPeerFile::rule(format!("peer {}: {problem}", peer.id)));
        }
        if !ids.insert(peer.id) {
            return Err(InvalidPeerFile::rule(format!("peer id {} appears twice", peer.id)));
        }
        if !addresses.insert(peer.socket_addr()) {
            return Err(InvalidPeerFile::rule(format!("address {} appears twice", peer.socket_addr())));
        }
    }
    Ok(peers)
}

/// Renames the corrupt file at `path` to a free `<path>.corrupt-<unix seconds>[-n]` and returns
/// that name, or `None` if renaming failed.
async fn move_aside(path: &Path) -> Option<PathBuf> {
    let base = format!("{}.corrupt-{}", path.display(), Utc::now().timestamp());
    for attempt in 0..100u32 {
        let target = PathBuf::from(if attempt == 0 { base.clone() } else { format!("{base}-{attempt}") });
        match tokio::fs::try_exists(&target).await {
            Ok(false) => {}
            Ok(true) => continue,
            Err(err) => {
                tracing::error!(target = %target.display(), %err, "cannot check where to move the corrupt peer file");
                return None;
            }
        }
        return match tokio::fs::rename(path, &target).await {
            Ok(()) => Some(target),
            Err(err) => {
                tracing::error!(path = %path.display(), target = %target.display(), %err, "cannot move the corrupt peer file aside");
                None
            }
        };
    }
    None
}

/// Replaces the file at `path` with `peers`, atomically.
///
/// # Errors
/// [`Error::File`] when writing fails; the previous file is then untouched.
pub(crate) async fn save(path: &Path, peers: &[Peer]) -> Result<()> {
    let file_error = |action, source| Error::File { path: path.to_owned(), action, source };
    let bytes =
        serde_json::to_vec_pretty(peers).map_err(|err| file_error("serialize", io::Error::other(err)))?;
    let target = path.to_owned();
    tokio::task::spawn_blocking(move || write_atomically(&target, &bytes))
        .await
        .map_err(|err| file_error("write", io::Error::other(err)))?
        .map_err(|source| file_error("write", source))
}

fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let directory = path.parent().filter(|parent| !parent.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"))?
        .to_string_lossy();
    // Hidden and unique, so concurrent writers and directory listings do not trip over it.
    let temporary = directory.join(format!(".{name}.tmp-{}", Uuid::new_v4().simple()));
    let written = (|| {
        let mut file = File::create_new(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temporary, path)?;
        sync_directory(directory)
    })();
    if written.is_err() {
        // Best effort: after a failed rename the temporary file would otherwise stay behind.
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

/// Makes the rename itself durable: on Unix a rename is only on disk once its directory is.
#[cfg(unix)]
fn sync_directory(directory: &Path) -> io::Result<()> {
    File::open(directory)?.sync_all()
}

#[cfg(not(unix))]
fn sync_directory(_directory: &Path) -> io::Result<()> {
    Ok(())
}
