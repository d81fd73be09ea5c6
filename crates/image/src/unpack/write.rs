//! Filesystem writes for unpacking, confined to one root: parents are real directories (never
//! symlinks), existing entries are replaced rather than written through, and metadata is applied
//! without following links.

use std::cell::RefCell;
use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::{self, File, FileTimes, OpenOptions, Permissions};
use std::io::{self, Read};
use std::os::unix::fs::{symlink, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

use nix::sys::stat::{mknod, utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;

use super::UnpackError;

/// The overlayfs xattr marking a directory opaque (lower contents hidden).
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// 9999-12-31: later mtimes are clamped so time arithmetic cannot overflow.
const MAX_MTIME: u64 = 253_402_300_799;

/// Ownership, permissions, time and xattrs of one entry.
pub(super) struct Meta {
    mode: u32,
    uid: u64,
    gid: u64,
    pub(super) mtime: u64,
    xattrs: Vec<(String, Vec<u8>)>,
}

impl Meta {
    pub(super) fn from_entry<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<Self> {
        let header = entry.header();
        let mode = header.mode()? & 0o7777;
        let mtime = header.mtime().unwrap_or(0).min(MAX_MTIME);
        // Empty numeric fields read as 0, as Go's archive/tar (which wrote most layers) does.
        let (uid, gid) = (header.uid().unwrap_or(0), header.gid().unwrap_or(0));
        let mut xattrs = Vec::new();
        if let Some(pax) = entry.pax_extensions()? {
            for ext in pax {
                let ext = ext?;
                let Some(name) = ext.key().ok().and_then(|k| k.strip_prefix("SCHILY.xattr.")) else {
                    continue;
                };
                // trusted.* and other namespaces could forge overlay metadata: only file
                // capabilities and user attributes are carried over.
                if name == "security.capability" || name.starts_with("user.") {
                    xattrs.push((name.to_string(), ext.value_bytes().to_vec()));
                }
            }
        }
        Ok(Meta { mode, uid, gid, mtime, xattrs })
    }

    /// Whether the setuid or setgid bit is set.
    pub(super) fn is_setid(&self) -> bool {
        self.mode & 0o6000 != 0
    }

    /// Clears the setuid and setgid bits, and the file capabilities that grant the same.
    pub(super) fn strip_setid(&mut self) {
        self.mode &= !0o6000;
        self.xattrs.retain(|(name, _)| name != "security.capability");
    }
}

/// The destination directory of one unpack.
pub(super) struct Root<'a> {
    dir: PathBuf,
    chown: bool,
    /// The snapshots this layer is applied onto, top-most first: a directory the layer creates
    /// only implicitly (as the parent of an entry) takes its attributes from them.
    lowers: &'a [PathBuf],
    /// Paths (relative) this unpack has seen to be real directories, so that entries in the same
    /// directory do not lstat every component again. It holds every ancestor of what it holds,
    /// and is emptied whenever an entry replaces anything.
    known_dirs: RefCell<HashSet<PathBuf>>,
}

impl<'a> Root<'a> {
    pub(super) fn new(dir: &Path, lowers: &'a [PathBuf]) -> Result<Self, UnpackError> {
        let bad = |reason: String| UnpackError::Destination { path: dir.to_path_buf(), reason };
        match fs::symlink_metadata(dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(bad("not a directory".to_string())),
            Err(e) => return Err(bad(e.to_string())),
        }
        Ok(Root { dir: dir.to_path_buf(), chown: nix::unistd::geteuid().is_root(), lowers, known_dirs: RefCell::default() })
    }

    /// Creates the missing parents of `rel` and returns its full path; fails if `rel` has a
    /// component other than a plain name (`..` would leave the root), or if any existing parent
    /// is a symlink or not a directory.
    fn parent_path(&self, rel: &Path, entry: &str, create: bool) -> Result<PathBuf, UnpackError> {
        if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(UnpackError::Refused { entry: entry.to_string(), reason: format!("{} is not a plain path inside the layer", rel.display()) });
        }
        let parent = rel.parent().unwrap_or(Path::new(""));
        if parent.as_os_str().is_empty() || self.known_dirs.borrow().contains(parent) {
            return Ok(self.dir.join(rel));
        }
        let mut path = self.dir.clone();
        let mut verified = PathBuf::new();
        for component in parent.components() {
            path.push(component);
            verified.push(component);
            if self.known_dirs.borrow().contains(&verified) {
                continue;
            }
            match fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => {
                    self.known_dirs.borrow_mut().insert(verified.clone());
                }
                Ok(m) => {
                    let what = if m.file_type().is_symlink() { "a symlink" } else { "not a directory" };
                    return Err(UnpackError::Refused {
                        entry: entry.to_string(),
                        reason: format!("parent {} is {what}; refusing to write through it", parent.display()),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                    fs::create_dir(&path).map_err(write_err(entry, &path))?;
                    self.inherit(&path, entry)?;
                    self.known_dirs.borrow_mut().insert(verified.clone());
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(UnpackError::Refused { entry: entry.to_string(), reason: format!("{} is not in this layer", rel.display()) });
                }
                Err(e) => return Err(write_err(entry, &path)(e)),
            }
        }
        Ok(self.dir.join(rel))
    }

    /// Gives an implicitly created directory the mode, owner and user xattrs the same directory has
    /// in the image below this layer, as if the layer were applied onto the mounted lower
    /// snapshots (overlayfs would otherwise show this layer's bare directory over them).
    fn inherit(&self, path: &Path, entry: &str) -> Result<(), UnpackError> {
        let rel = path.strip_prefix(&self.dir).unwrap_or(path);
        let Some(lower) = lower_dir(self.lowers, rel) else {
            return Ok(());
        };
        let meta = fs::symlink_metadata(&lower).map_err(write_err(entry, &lower))?;
        if self.chown {
            std::os::unix::fs::lchown(path, Some(meta.uid()), Some(meta.gid())).map_err(write_err(entry, path))?;
        }
        fs::set_permissions(path, Permissions::from_mode(meta.mode() & 0o7777)).map_err(write_err(entry, path))?;
        for name in xattr::list(&lower).map_err(write_err(entry, &lower))? {
            // Only what a layer can carry: the opaque marker belongs to the lower layer's own
            // changes, and SELinux labels, ACLs or IMA hashes the host put on the snapshot
            // directory are not the image's.
            if !name.to_string_lossy().starts_with("user.") {
                continue;
            }
            if let Some(value) = xattr::get(&lower, &name).map_err(write_err(entry, &lower))? {
                xattr::set(path, &name, &value).map_err(write_err(entry, path))?;
            }
        }
        Ok(())
    }

    /// Creates the non-root entry `rel` with `make`, its parents created first. `make` must fail
    /// with `AlreadyExists` rather than follow or overwrite what is there: whatever is there is
    /// then removed (not followed) and `make` tried once more. Returns the entry's full path.
    fn create_new<T>(&self, rel: &Path, entry: &str, make: impl Fn(&Path) -> io::Result<T>) -> Result<(PathBuf, T), UnpackError> {
        if rel.as_os_str().is_empty() {
            return Err(UnpackError::Refused { entry: entry.to_string(), reason: "names the layer root".to_string() });
        }
        let path = self.parent_path(rel, entry, true)?;
        let made = match make(&path) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                self.forget_known_dirs();
                remove_existing(&path).map_err(write_err(entry, &path))?;
                make(&path)
            }
            made => made,
        };
        match made {
            Ok(value) => Ok((path, value)),
            Err(e) => Err(write_err(entry, &path)(e)),
        }
    }

    /// Empties the directory cache before something in the layer is replaced. Replacing is rare
    /// in real layers, and the cache is keyed by bytes: on a case-insensitive filesystem `A` and
    /// a cached `a` are one directory, so no name-based invalidation would be safe.
    fn forget_known_dirs(&self) {
        self.known_dirs.borrow_mut().clear();
    }

    pub(super) fn dir(&self, rel: &Path, meta: &Meta, entry: &str) -> Result<(), UnpackError> {
        let path = self.parent_path(rel, entry, true)?;
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                self.forget_known_dirs();
                remove_existing(&path).map_err(write_err(entry, &path))?;
                fs::create_dir(&path).map_err(write_err(entry, &path))?;
            }
            Err(_) => fs::create_dir(&path).map_err(write_err(entry, &path))?,
        }
        self.apply_owner(&path, meta, entry)?;
        fs::set_permissions(&path, Permissions::from_mode(meta.mode)).map_err(write_err(entry, &path))?;
        self.apply_xattrs(&path, meta, entry)
    }

    pub(super) fn file(&self, rel: &Path, data: &mut impl Read, meta: &Meta, entry: &str) -> Result<(), UnpackError> {
        let (path, mut file) =
            self.create_new(rel, entry, |path| OpenOptions::new().write(true).create_new(true).mode(0o600).custom_flags(libc::O_NOFOLLOW).open(path))?;
        let err = write_err(entry, &path);
        io::copy(data, &mut file).map_err(|e| UnpackError::Write { entry: entry.to_string(), path: path.clone(), source: e })?;
        if self.chown {
            std::os::unix::fs::fchown(&file, Some(id(meta.uid)), Some(id(meta.gid))).map_err(write_err(entry, &path))?;
        }
        file.set_permissions(Permissions::from_mode(meta.mode)).map_err(write_err(entry, &path))?;
        self.apply_xattrs(&path, meta, entry)?;
        set_file_mtime(&file, meta.mtime).map_err(err)
    }

    pub(super) fn symlink(&self, rel: &Path, target: &OsStr, meta: &Meta, entry: &str) -> Result<(), UnpackError> {
        let (path, ()) = self.create_new(rel, entry, |path| symlink(target, path))?;
        self.apply_owner(&path, meta, entry)?;
        set_path_mtime(&path, meta.mtime).map_err(write_err(entry, &path))
    }

    pub(super) fn hardlink(&self, rel: &Path, target: &Path, entry: &str) -> Result<(), UnpackError> {
        let refuse = |reason: String| UnpackError::Refused { entry: entry.to_string(), reason };
        let source = self.parent_path(target, entry, false)?;
        match fs::symlink_metadata(&source) {
            Ok(m) if !m.is_dir() && !target.as_os_str().is_empty() => {}
            Ok(_) => return Err(refuse(format!("hardlink target {} is a directory", target.display()))),
            Err(_) => return Err(refuse(format!("hardlink target {} is not in this layer", target.display()))),
        }
        if target == rel {
            return Ok(());
        }
        self.create_new(rel, entry, |path| fs::hard_link(&source, path)).map(drop)
    }

    pub(super) fn fifo(&self, rel: &Path, meta: &Meta, entry: &str) -> Result<(), UnpackError> {
        let (path, ()) = self.create_new(rel, entry, |path| mknod(path, SFlag::S_IFIFO, Mode::from_bits_truncate(meta.mode), 0).map_err(io::Error::from))?;
        self.apply_owner(&path, meta, entry)?;
        fs::set_permissions(&path, Permissions::from_mode(meta.mode)).map_err(write_err(entry, &path))?;
        set_path_mtime(&path, meta.mtime).map_err(write_err(entry, &path))
    }

    /// An overlayfs whiteout: a 0/0 character device hiding `rel` in lower layers. A whiteout
    /// below a path this layer already made a file or symlink is redundant (that entry hides
    /// everything under it; umoci writes such pairs when a directory becomes a file) and is
    /// skipped, without writing anything. Returns whether it was written.
    pub(super) fn whiteout(&self, rel: &Path, entry: &str) -> Result<bool, UnpackError> {
        if self.under_non_dir(rel) {
            tracing::debug!(entry, "skipping a whiteout below a file or symlink of the same layer");
            return Ok(false);
        }
        self.create_new(rel, entry, |path| mknod(path, SFlag::S_IFCHR, Mode::empty(), 0).map_err(io::Error::from))?;
        Ok(true)
    }

    /// Whether a parent of `rel` exists in this layer as something other than a directory.
    fn under_non_dir(&self, rel: &Path) -> bool {
        let mut path = self.dir.clone();
        for component in rel.parent().unwrap_or(Path::new("")).components() {
            path.push(component);
            match fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => return true,
                Err(_) => return false,
            }
        }
        false
    }

    /// Marks directory `rel` opaque (creating it if needed), hiding lower layers' contents.
    pub(super) fn make_opaque(&self, rel: &Path, entry: &str) -> Result<(), UnpackError> {
        let path = self.parent_path(&rel.join("x"), entry, true)?;
        let dir = path.parent().unwrap_or(&self.dir);
        xattr::set(dir, OPAQUE_XATTR, b"y").map_err(write_err(entry, dir))
    }

    /// Sets a directory's mtime once its children are written. A later entry may have replaced
    /// a parent with a symlink, so the parents are checked again and a changed path is skipped.
    pub(super) fn set_dir_mtime(&self, rel: &Path, mtime: u64) -> Result<(), UnpackError> {
        let name = rel.display().to_string();
        let Ok(path) = self.parent_path(rel, &name, false) else {
            return Ok(());
        };
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => set_path_mtime(&path, mtime).map_err(write_err(&name, &path)),
            _ => Ok(()),
        }
    }

    fn apply_owner(&self, path: &Path, meta: &Meta, entry: &str) -> Result<(), UnpackError> {
        if self.chown {
            std::os::unix::fs::lchown(path, Some(id(meta.uid)), Some(id(meta.gid))).map_err(write_err(entry, path))?;
        }
        Ok(())
    }

    fn apply_xattrs(&self, path: &Path, meta: &Meta, entry: &str) -> Result<(), UnpackError> {
        for (name, value) in &meta.xattrs {
            xattr::set(path, name, value).map_err(write_err(entry, path))?;
        }
        Ok(())
    }
}

fn id(raw: u64) -> u32 {
    u32::try_from(raw).unwrap_or(u32::MAX - 1)
}

fn write_err<'a>(entry: &'a str, path: &'a Path) -> impl FnOnce(io::Error) -> UnpackError + 'a {
    move |source| UnpackError::Write { entry: entry.to_string(), path: path.to_path_buf(), source }
}

/// Removes whatever is at `path` without following it if it is a symlink.
fn remove_existing(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn set_file_mtime(file: &File, mtime: u64) -> io::Result<()> {
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(mtime);
    file.set_times(FileTimes::new().set_accessed(t).set_modified(t))
}

fn set_path_mtime(path: &Path, mtime: u64) -> io::Result<()> {
    let secs = i64::try_from(mtime).unwrap_or(i64::MAX);
    let t = TimeSpec::new(secs, 0);
    utimensat(None, path, &t, &t, UtimensatFlags::NoFollowSymlink).map_err(io::Error::from)
}

/// The directory `rel` as the merged view of `lowers` (top-most first) shows it, if it is one:
/// the first layer holding it wins; a file, symlink or whiteout at it or a parent in a higher
/// layer hides the layers below, and so does an opaque parent.
fn lower_dir(lowers: &[PathBuf], rel: &Path) -> Option<PathBuf> {
    let depth = rel.components().count();
    'layers: for lower in lowers {
        let mut path = lower.clone();
        let mut opaque_parent = false;
        for (i, component) in rel.components().enumerate() {
            path.push(component);
            match fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() && i + 1 == depth => return Some(path),
                Ok(m) if m.is_dir() => opaque_parent |= xattr::get(&path, OPAQUE_XATTR).ok().flatten().is_some_and(|v| v == b"y"),
                Ok(_) => return None,
                Err(_) if opaque_parent => return None,
                Err(_) => continue 'layers,
            }
        }
    }
    None
}
