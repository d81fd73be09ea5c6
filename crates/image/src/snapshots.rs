//! Unpacked layer snapshots, one directory per chain id, created whole by rename or not at all.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::digest::Digest;
use crate::ImageError;

/// Why a snapshot directory could not be managed.
#[derive(Debug, thiserror::Error)]
#[error("snapshot {path}: {source}")]
pub struct SnapshotError {
    /// The snapshot or staging directory.
    pub path: PathBuf,
    /// The underlying error.
    pub source: io::Error,
}

fn snap_err(path: &Path) -> impl FnOnce(io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError { path: path.to_path_buf(), source }
}

/// The chain ids of a layer stack: `chain(0) = diff(0)`, `chain(n) = sha256(chain(n-1) + " " + diff(n))`.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for diff in diff_ids {
        let next = match out.last() {
            None => diff.clone(),
            Some(parent) => Digest::from_hasher(Sha256::new_with_prefix(format!("{parent} {diff}"))),
        };
        out.push(next);
    }
    out
}

/// The directory of snapshots (`snapshots/<chain-id-hex>`).
#[derive(Debug, Clone)]
pub(crate) struct Snapshots {
    dir: PathBuf,
    tmp: PathBuf,
}

impl Snapshots {
    pub(crate) fn open(dir: &Path, tmp: &Path) -> Result<Self, SnapshotError> {
        fs::create_dir_all(dir).map_err(snap_err(dir))?;
        Ok(Snapshots { dir: dir.to_path_buf(), tmp: tmp.to_path_buf() })
    }

    pub(crate) fn path(&self, chain_id: &Digest) -> PathBuf {
        self.dir.join(chain_id.hex())
    }

    /// Returns the snapshot for `chain_id`, first running `fill` on an empty staging directory if
    /// it does not exist yet. A crash or error leaves only staging debris, never a partial snapshot.
    pub(crate) fn ensure(&self, chain_id: &Digest, fill: impl FnOnce(&Path) -> Result<(), ImageError>) -> Result<PathBuf, ImageError> {
        let dest = self.path(chain_id);
        if dest.is_dir() {
            return Ok(dest);
        }
        let staging = tempfile::Builder::new().prefix("snapshot-").tempdir_in(&self.tmp).map_err(snap_err(&self.tmp))?;
        fs::set_permissions(staging.path(), fs::Permissions::from_mode(0o755)).map_err(snap_err(staging.path()))?;
        fill(staging.path())?;
        // Everything written into the staging dir must be on disk before the rename makes it visible.
        let dir = fs::File::open(staging.path()).map_err(snap_err(staging.path()))?;
        nix::unistd::syncfs(std::os::fd::AsRawFd::as_raw_fd(&dir)).map_err(|e| snap_err(staging.path())(e.into()))?;
        match fs::rename(staging.path(), &dest) {
            Ok(()) => {
                let _ = staging.keep();
                crate::durable::sync_dir(&self.dir).map_err(snap_err(&self.dir))?;
            }
            // Another process unpacked the same chain first: its copy is as good as ours.
            Err(_) if dest.is_dir() => {}
            Err(e) => return Err(snap_err(&dest)(e).into()),
        }
        Ok(dest)
    }

    /// Every chain id with a snapshot.
    pub(crate) fn list(&self) -> Result<Vec<Digest>, SnapshotError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(snap_err(&self.dir))? {
            let entry = entry.map_err(snap_err(&self.dir))?;
            if let Some(d) = entry.file_name().to_str().and_then(|n| Digest::parse(&format!("sha256:{n}")).ok()) {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// Deletes a snapshot: renamed aside first, so a crash midway never leaves a half-deleted one
    /// under its real name.
    pub(crate) fn remove(&self, chain_id: &Digest) -> Result<(), SnapshotError> {
        let dest = self.path(chain_id);
        let doomed = self.tmp.join(format!("doomed-{}-{}", chain_id.hex(), std::process::id()));
        match fs::rename(&dest, &doomed) {
            Ok(()) => fs::remove_dir_all(&doomed).map_err(snap_err(&doomed)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(snap_err(&dest)(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_oci_definition() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        let chain = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(chain[0], a);
        assert_eq!(chain[1], Digest::of(format!("{a} {b}").as_bytes()));
        assert!(chain_ids(&[]).is_empty());
    }

    #[test]
    fn a_failed_fill_leaves_no_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let snaps = Snapshots::open(&dir.path().join("s"), dir.path()).unwrap();
        let id = Digest::of(b"x");
        let err = snaps.ensure(&id, |p| {
            fs::write(p.join("half"), b"").unwrap();
            Err(crate::UnpackError::TooManyEntries { limit: 0 }.into())
        });
        assert!(err.is_err());
        assert!(!snaps.path(&id).exists());
        let path = snaps
            .ensure(&id, |p| {
                fs::write(p.join("whole"), b"").unwrap();
                Ok(())
            })
            .unwrap();
        assert!(path.join("whole").exists());
        let again = snaps.ensure(&id, |_| panic!("cached snapshots are not unpacked again")).unwrap();
        assert_eq!(again, path);
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o755);
        snaps.remove(&id).unwrap();
        assert!(snaps.list().unwrap().is_empty());
    }
}
