//! The refs index: which image name points at which manifest, kept in one JSON file that is only
//! ever replaced atomically, and the lock files that order writers and garbage collection.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::durable::write_atomic;

/// One named image in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// Normalized reference (`docker.io/library/busybox:latest`).
    pub name: String,
    /// Digest of the image manifest (`sha256:...`).
    pub digest: String,
    /// Digest of the image config, docker's "image ID".
    pub config_digest: String,
    /// Bytes of manifest, config and (compressed) layers as stored.
    pub size: u64,
    /// The config's `created` timestamp, when it has one.
    pub created: Option<String>,
}

/// Why the refs index could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum RefsError {
    /// Filesystem failure.
    #[error("refs index {path}: {source}")]
    Io {
        /// The index or lock file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The index file is not valid JSON.
    #[error("refs index {path} is corrupt: {source}")]
    Corrupt {
        /// The index file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
}

#[derive(Default, Serialize, Deserialize)]
struct IndexFile {
    images: BTreeMap<String, ImageRecord>,
}

/// The name → record map on disk.
#[derive(Debug, Clone)]
pub(crate) struct RefIndex {
    path: PathBuf,
    lock: PathBuf,
}

impl RefIndex {
    pub(crate) fn new(root: &Path) -> Self {
        RefIndex { path: root.join("refs.json"), lock: root.join("refs.lock") }
    }

    /// All records by name. Lock-free: the file is only ever replaced whole by rename.
    pub(crate) fn load(&self) -> Result<BTreeMap<String, ImageRecord>, RefsError> {
        match fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice::<IndexFile>(&bytes).map(|f| f.images).map_err(|source| RefsError::Corrupt { path: self.path.clone(), source }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(source) => Err(RefsError::Io { path: self.path.clone(), source }),
        }
    }

    /// Read-modify-write under the exclusive index lock; the change is durable when this returns.
    pub(crate) fn update<T>(&self, change: impl FnOnce(&mut BTreeMap<String, ImageRecord>) -> T) -> Result<T, RefsError> {
        let _lock = FileLock::exclusive(&self.lock)?;
        let mut images = self.load()?;
        let out = change(&mut images);
        let bytes = serde_json::to_vec_pretty(&IndexFile { images }).map_err(|source| RefsError::Corrupt { path: self.path.clone(), source })?;
        write_atomic(&self.path, &bytes).map_err(|source| RefsError::Io { path: self.path.clone(), source })?;
        Ok(out)
    }
}

/// An advisory `flock(2)` held until dropped; works across processes (CLI and agent).
pub(crate) struct FileLock {
    _lock: Flock<File>,
}

impl FileLock {
    /// Blocks until no one else holds the lock at all.
    pub(crate) fn exclusive(path: &Path) -> Result<Self, RefsError> {
        Self::lock(path, FlockArg::LockExclusive)
    }

    /// Blocks while someone holds the lock exclusively.
    pub(crate) fn shared(path: &Path) -> Result<Self, RefsError> {
        Self::lock(path, FlockArg::LockShared)
    }

    fn lock(path: &Path, how: FlockArg) -> Result<Self, RefsError> {
        let io_err = |source| RefsError::Io { path: path.to_path_buf(), source };
        let file = OpenOptions::new().create(true).truncate(false).write(true).open(path).map_err(io_err)?;
        let lock = Flock::lock(file, how).map_err(|(_, errno)| io_err(errno.into()))?;
        Ok(FileLock { _lock: lock })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str) -> ImageRecord {
        ImageRecord {
            name: name.to_string(),
            digest: format!("sha256:{}", "a".repeat(64)),
            config_digest: format!("sha256:{}", "b".repeat(64)),
            size: 1,
            created: None,
        }
    }

    #[test]
    fn concurrent_writers_and_readers_never_lose_or_tear_updates() {
        let dir = tempfile::tempdir().unwrap();
        let index = RefIndex::new(dir.path());
        std::thread::scope(|s| {
            for t in 0..4 {
                let index = index.clone();
                s.spawn(move || {
                    for i in 0..25 {
                        let name = format!("r/{t}-{i}");
                        index.update(|m| m.insert(name.clone(), record(&name))).unwrap();
                    }
                });
            }
            let index = index.clone();
            s.spawn(move || {
                for _ in 0..200 {
                    index.load().expect("a reader never sees a torn index");
                }
            });
        });
        assert_eq!(index.load().unwrap().len(), 100);
    }
}
