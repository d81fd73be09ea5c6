//! Overlay root filesystems: mounting image layers (read-only lower dirs) under a writable upper
//! dir, behind the [`Mounter`] trait so callers can test without the kernel.

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::ImageError;

/// The kernel's limit on mount option data (one page).
const MAX_OPTIONS_LEN: usize = 4095;

/// Why an overlay could not be mounted or unmounted.
#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    /// Overlayfs needs at least one lower directory.
    #[error("overlay at {target}: no lower directories (image has no layers)")]
    NoLowerDirs {
        /// The mount point.
        target: PathBuf,
    },
    /// A path overlayfs cannot take in its option string.
    #[error("overlay path {path} contains ',' or ':' or a NUL byte, which overlayfs options cannot carry")]
    BadPath {
        /// The offending path.
        path: PathBuf,
    },
    /// Too many or too long lower dirs for one page of mount options.
    #[error("overlay at {target}: mount options are {len} bytes, over the kernel's {MAX_OPTIONS_LEN}-byte limit (too many layers)")]
    OptionsTooLong {
        /// The mount point.
        target: PathBuf,
        /// Length of the option string.
        len: usize,
    },
    /// mount(2) failed.
    #[error("mounting overlay at {target}: {source}")]
    Mount {
        /// The mount point.
        target: PathBuf,
        /// The kernel's error.
        source: nix::Error,
    },
    /// umount(2) failed.
    #[error("unmounting {target}: {source}")]
    Unmount {
        /// The mount point.
        target: PathBuf,
        /// The kernel's error.
        source: nix::Error,
    },
}

/// Mounts and unmounts overlay filesystems.
pub trait Mounter {
    /// Mounts `lower` (top first) under `upper`, with `work` as overlayfs's work dir, at `target`.
    fn mount_overlay(&self, lower: &[PathBuf], upper: &Path, work: &Path, target: &Path) -> Result<(), OverlayError>;
    /// Unmounts `target`.
    fn unmount(&self, target: &Path) -> Result<(), OverlayError>;
}

/// The real [`Mounter`]: mount(2) and umount2(2). Needs `CAP_SYS_ADMIN`.
#[derive(Debug, Clone, Copy, Default)]
pub struct KernelMounter;

impl Mounter for KernelMounter {
    fn mount_overlay(&self, lower: &[PathBuf], upper: &Path, work: &Path, target: &Path) -> Result<(), OverlayError> {
        let options = overlay_options(lower, upper, work, target)?;
        mount(Some("overlay"), target, Some("overlay"), MsFlags::empty(), Some(options.as_str()))
            .map_err(|source| OverlayError::Mount { target: target.to_path_buf(), source })
    }

    fn unmount(&self, target: &Path) -> Result<(), OverlayError> {
        umount2(target, MntFlags::empty()).map_err(|source| OverlayError::Unmount { target: target.to_path_buf(), source })
    }
}

/// The overlayfs option string for these directories, checked for what the kernel would misparse.
pub fn overlay_options(lower: &[PathBuf], upper: &Path, work: &Path, target: &Path) -> Result<String, OverlayError> {
    if lower.is_empty() {
        return Err(OverlayError::NoLowerDirs { target: target.to_path_buf() });
    }
    let checked = |p: &Path| -> Result<String, OverlayError> {
        match p.to_str() {
            Some(s) if !s.contains([',', ':', '\0']) => Ok(s.to_string()),
            _ => Err(OverlayError::BadPath { path: p.to_path_buf() }),
        }
    };
    let lowers = lower.iter().map(|p| checked(p)).collect::<Result<Vec<_>, _>>()?.join(":");
    let options = format!("lowerdir={lowers},upperdir={},workdir={}", checked(upper)?, checked(work)?);
    if options.len() > MAX_OPTIONS_LEN {
        return Err(OverlayError::OptionsTooLong { target: target.to_path_buf(), len: options.len() });
    }
    Ok(options)
}

/// Mounts an overlay root filesystem with the kernel: `lower` top first, as
/// [`ImageStore::prepare_layers`](crate::ImageStore::prepare_layers) returns them.
pub fn mount_overlay(lower: &[PathBuf], upper: &Path, work: &Path, target: &Path) -> Result<(), ImageError> {
    Ok(KernelMounter.mount_overlay(lower, upper, work, target)?)
}

/// Unmounts what [`mount_overlay`] mounted.
pub fn unmount(target: &Path) -> Result<(), ImageError> {
    Ok(KernelMounter.unmount(target)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_options_top_layer_first() {
        let lower = vec![PathBuf::from("/s/top"), PathBuf::from("/s/base")];
        let options = overlay_options(&lower, Path::new("/c/upper"), Path::new("/c/work"), Path::new("/m")).unwrap();
        assert_eq!(options, "lowerdir=/s/top:/s/base,upperdir=/c/upper,workdir=/c/work");
    }

    #[test]
    fn refuses_what_overlayfs_would_misparse() {
        let t = Path::new("/m");
        let (u, w) = (Path::new("/u"), Path::new("/w"));
        assert!(matches!(overlay_options(&[], u, w, t), Err(OverlayError::NoLowerDirs { .. })));
        let bad = [PathBuf::from("/a:b")];
        assert!(matches!(overlay_options(&bad, u, w, t), Err(OverlayError::BadPath { .. })));
        assert!(matches!(overlay_options(&[PathBuf::from("/l")], Path::new("/u,x"), w, t), Err(OverlayError::BadPath { .. })));
        let many: Vec<_> = (0..200).map(|i| PathBuf::from(format!("/var/lib/flotilla/images/snapshots/{i:064}"))).collect();
        assert!(matches!(overlay_options(&many, u, w, t), Err(OverlayError::OptionsTooLong { .. })));
    }
}
