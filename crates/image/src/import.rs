//! Importing images from local files: OCI layout directories, docker-archive directories, and
//! tarballs (optionally gzip- or zstd-compressed) of either.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use crate::refs::ImageRecord;
use crate::store::ImageStore;
use crate::unpack::{decompress, unpack_tar, UnpackError, Whiteouts};
use crate::{docker_archive, layout, ImageError};

const MAX_SYMLINK_HOPS: usize = 40;

/// Why a local image could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Neither an OCI layout nor a docker-archive.
    #[error("{path} is not an OCI image layout (index.json) or a docker-archive (manifest.json)")]
    NotAnImage {
        /// The path given.
        path: PathBuf,
    },
    /// The image carries no usable name and none was given.
    #[error("{path}: {reason}; pass --name <repository:tag> to name the image")]
    NameRequired {
        /// The path given.
        path: PathBuf,
        /// What name information it has.
        reason: String,
    },
    /// The layout or archive metadata is inconsistent.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The tarball could not be extracted.
    #[error("extracting {path}: {source}")]
    Extract {
        /// The tarball.
        path: PathBuf,
        /// Why.
        source: UnpackError,
    },
    /// Filesystem failure.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

impl ImageStore {
    /// Imports an OCI image layout or docker-archive, as a directory or a (compressed) tarball.
    ///
    /// `name` is the reference to record; without it, OCI layouts are named by their
    /// `io.containerd.image.name` or full `org.opencontainers.image.ref.name` annotations and
    /// docker-archives by their `RepoTags`. A tag-only ref name (`latest`) needs `name`.
    pub fn import(&self, path: &Path, name: Option<&str>) -> Result<Vec<ImageRecord>, ImageError> {
        let _gc = self.gc_shared()?;
        let meta = fs::metadata(path).map_err(|source| ImportError::Io { path: path.to_path_buf(), source })?;
        if meta.is_dir() {
            return self.import_dir(path, path, name);
        }
        let staging = tempfile::Builder::new()
            .prefix("import-")
            .tempdir_in(self.root.join("tmp"))
            .map_err(|source| ImportError::Io { path: self.root.join("tmp"), source })?;
        let file = File::open(path).map_err(|source| ImportError::Io { path: path.to_path_buf(), source })?;
        let extract_err = |source| ImportError::Extract { path: path.to_path_buf(), source };
        let tar = decompress(file).map_err(|source| extract_err(UnpackError::Stream { source }))?;
        unpack_tar(tar, staging.path(), &[], &self.limits, Whiteouts::Keep).map_err(extract_err)?;
        self.import_dir(staging.path(), path, name)
    }

    fn import_dir(&self, dir: &Path, origin: &Path, name: Option<&str>) -> Result<Vec<ImageRecord>, ImageError> {
        let has = |file: &str| resolve_in(dir, file).is_ok_and(|p| p.is_file());
        if has("index.json") {
            layout::import(self, dir, origin, name)
        } else if has("manifest.json") {
            docker_archive::import(self, dir, origin, name)
        } else {
            Err(ImportError::NotAnImage { path: origin.to_path_buf() }.into())
        }
    }
}

/// Resolves `rel` inside `root` the way a chroot would: symlinks are followed, but absolute
/// targets and `..` are interpreted relative to `root`, so the result never leaves it.
pub(crate) fn resolve_in(root: &Path, rel: &str) -> io::Result<PathBuf> {
    let mut pending: VecDeque<OsString> = components(Path::new(rel));
    let mut resolved = PathBuf::new();
    let mut hops = 0;
    while let Some(component) = pending.pop_front() {
        if component == ".." {
            resolved.pop();
            continue;
        }
        let candidate = root.join(&resolved).join(&component);
        match fs::symlink_metadata(&candidate) {
            Ok(m) if m.file_type().is_symlink() => {
                hops += 1;
                if hops > MAX_SYMLINK_HOPS {
                    return Err(io::Error::other(format!("too many symlinks resolving {rel}")));
                }
                let target = fs::read_link(&candidate)?;
                if target.is_absolute() {
                    resolved.clear();
                }
                for c in components(&target).into_iter().rev() {
                    pending.push_front(c);
                }
            }
            _ => resolved.push(component),
        }
    }
    Ok(root.join(resolved))
}

fn components(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

/// Reads a small metadata file of an image directory, at most `limit` bytes.
pub(crate) fn read_small(dir: &Path, rel: &str, limit: u64) -> Result<Vec<u8>, ImportError> {
    let path = resolve_in(dir, rel).map_err(|source| ImportError::Io { path: dir.join(rel), source })?;
    let file = File::open(&path).map_err(|source| ImportError::Io { path: path.clone(), source })?;
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes).map_err(|source| ImportError::Io { path: path.clone(), source })?;
    if bytes.len() as u64 > limit {
        return Err(ImportError::Invalid { path, reason: format!("larger than {limit} bytes") });
    }
    Ok(bytes)
}

/// Opens a content file of an image directory.
pub(crate) fn open_in(dir: &Path, rel: &str) -> Result<File, ImportError> {
    let path = resolve_in(dir, rel).map_err(|source| ImportError::Io { path: dir.join(rel), source })?;
    File::open(&path).map_err(|source| ImportError::Io { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn resolve_in_keeps_symlinks_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("a/b")).unwrap();
        fs::write(root.join("a/b/data"), b"x").unwrap();
        symlink("../a/b/data", root.join("a/rel")).unwrap();
        symlink("/a/b", root.join("abs")).unwrap();
        symlink("/../../../etc", root.join("escape")).unwrap();
        symlink("loop", root.join("loop")).unwrap();
        assert_eq!(resolve_in(root, "a/rel").unwrap(), root.join("a/b/data"));
        assert_eq!(resolve_in(root, "abs/data").unwrap(), root.join("a/b/data"));
        assert_eq!(resolve_in(root, "escape/passwd").unwrap(), root.join("etc/passwd"));
        assert_eq!(resolve_in(root, "../../x").unwrap(), root.join("x"));
        assert!(resolve_in(root, "loop").is_err());
    }
}
