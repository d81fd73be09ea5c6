//! Layer unpacking: a (compressed) tar stream becomes one overlayfs lower directory, with OCI
//! whiteouts converted to overlay whiteouts and every entry confined to the destination.

mod compression;
mod write;

use std::cell::Cell;
use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use tar::EntryType;

pub(crate) use compression::decompress;
use write::{Meta, Root};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// Slack per entry for headers, padding and PAX records when capping the tar stream's size.
const PER_ENTRY_OVERHEAD: u64 = 4096;

/// Bounds on what one layer may unpack to, and what it may contain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Total bytes of regular-file content.
    pub max_bytes: u64,
    /// Number of tar entries, directories and links included.
    pub max_entries: u64,
    /// Bytes in one entry's path or link target (Linux's PATH_MAX by default).
    pub max_path_bytes: usize,
    /// What to do with setuid and setgid bits.
    pub setid: SetIdPolicy,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_bytes: 32 << 30, max_entries: 1_000_000, max_path_bytes: 4096, setid: SetIdPolicy::Keep }
    }
}

/// How setuid and setgid bits in a layer are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetIdPolicy {
    /// Keep them, as container runtimes do by default (`su`, `passwd` need them).
    Keep,
    /// Clear them: the files unpack without privilege.
    Strip,
    /// Refuse the layer.
    Refuse,
}

/// What an unpack wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnpackStats {
    /// Tar entries processed.
    pub entries: u64,
    /// Bytes of regular-file content written.
    pub bytes: u64,
    /// OCI whiteouts converted (files and opaque markers).
    pub whiteouts: u64,
}

/// Why a layer could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The stream is not a readable (compressed) tar.
    #[error("layer stream unreadable: {source}")]
    Stream {
        /// The decoder's or tar reader's error.
        source: io::Error,
    },
    /// An entry that is not allowed (escapes the root, device node, ...).
    #[error("layer entry {entry:?} refused: {reason}")]
    Refused {
        /// The entry's path as stored in the tar.
        entry: String,
        /// Why.
        reason: String,
    },
    /// Writing an entry failed.
    #[error("layer entry {entry:?}: writing {path}: {source}")]
    Write {
        /// The entry's path as stored in the tar.
        entry: String,
        /// The file being written.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// More entries than [`Limits::max_entries`].
    #[error("layer has more than {limit} entries")]
    TooManyEntries {
        /// The limit.
        limit: u64,
    },
    /// More file content than [`Limits::max_bytes`].
    #[error("layer content exceeds {limit} bytes (at entry {entry:?})")]
    TooLarge {
        /// The limit.
        limit: u64,
        /// The entry that crossed it.
        entry: String,
    },
    /// The destination is not a usable directory.
    #[error("unpack destination {path}: {reason}")]
    Destination {
        /// The destination.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// How OCI whiteout files are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Whiteouts {
    /// Convert to overlayfs whiteouts (layers).
    Overlay,
    /// Keep as ordinary files (image archives, which are not layers).
    Keep,
}

/// Unpacks a layer (tar, tar+gzip or tar+zstd) into `dest`, an existing directory, in overlay form.
///
/// Safe on arbitrary bytes: bad input is an error, never a write outside `dest`.
pub fn unpack_layer(reader: impl Read, dest: &Path, limits: &Limits) -> Result<UnpackStats, crate::ImageError> {
    let tar = decompress(reader).map_err(|source| UnpackError::Stream { source })?;
    Ok(unpack_tar(tar, dest, &[], limits, Whiteouts::Overlay)?)
}

/// Unpacks an uncompressed tar stream into `dest`, a layer applied onto the snapshots `lowers`
/// (top-most first; empty for the bottom layer or a standalone tree).
pub(crate) fn unpack_tar(reader: impl Read, dest: &Path, lowers: &[PathBuf], limits: &Limits, whiteouts: Whiteouts) -> Result<UnpackStats, UnpackError> {
    let root = Root::new(dest, lowers)?;
    let cap = limits.max_bytes.saturating_add(limits.max_entries.saturating_mul(PER_ENTRY_OVERHEAD));
    let progress = Rc::new(Progress::default());
    let capped = CappedReader { inner: reader, remaining: cap, cap, progress: Rc::clone(&progress) };
    let mut archive = tar::Archive::new(capped);
    let mut stats = UnpackStats::default();
    let mut dir_times = Vec::new();
    let stream = |source| UnpackError::Stream { source };
    let mut entries = archive.entries().map_err(stream)?;
    let mut last_data_end = 0;
    loop {
        let mut entry = match entries.next() {
            None => break,
            Some(Ok(entry)) => entry,
            // Some writers (umoci 0.4) omit the last entry's padding and the end-of-archive
            // blocks; the content itself is complete, so that ending is accepted.
            Some(Err(_)) if progress.eof.get() && progress.consumed.get() == last_data_end && stats.entries > 0 => {
                tracing::debug!("layer ends without tar padding or end-of-archive blocks");
                break;
            }
            Some(Err(e)) => return Err(stream(e)),
        };
        let data_end = entry.raw_file_position().saturating_add(entry.size());
        stats.entries += 1;
        if stats.entries > limits.max_entries {
            return Err(UnpackError::TooManyEntries { limit: limits.max_entries });
        }
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let refuse = |reason: &str| UnpackError::Refused { entry: name.clone(), reason: reason.to_string() };
        let link_len = entry.link_name_bytes().map_or(0, |l| l.len());
        if raw.len() > limits.max_path_bytes || link_len > limits.max_path_bytes {
            return Err(refuse(&format!("path or link target longer than {} bytes", limits.max_path_bytes)));
        }
        let rel = clean_path(&raw).map_err(refuse)?;
        let kind = entry.header().entry_type();
        if whiteouts == Whiteouts::Overlay {
            if let Some(file_name) = rel.file_name().and_then(OsStr::to_str) {
                if let Some(target) = file_name.strip_prefix(WHITEOUT_PREFIX) {
                    let parent = rel.parent().unwrap_or(Path::new(""));
                    if file_name == OPAQUE_MARKER {
                        root.make_opaque(parent, &name)?;
                    } else if matches!(target, "" | "." | "..") {
                        return Err(refuse("whiteout names no file"));
                    } else if target.starts_with(WHITEOUT_PREFIX) {
                        tracing::debug!(entry = %name, "ignoring AUFS metadata entry");
                        continue;
                    } else if !root.whiteout(&parent.join(target), &name)? {
                        continue;
                    }
                    stats.whiteouts += 1;
                    continue;
                }
            }
        }
        let mut meta = Meta::from_entry(&mut entry).map_err(stream)?;
        if meta.is_setid() {
            match limits.setid {
                SetIdPolicy::Keep => {}
                SetIdPolicy::Strip => meta.strip_setid(),
                SetIdPolicy::Refuse => return Err(refuse("setuid/setgid bits are not allowed by policy")),
            }
        }
        match kind {
            EntryType::Directory => {
                root.dir(&rel, &meta, &name)?;
                dir_times.push((rel, meta.mtime));
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let size = entry.size();
                stats.bytes = stats.bytes.saturating_add(size);
                if stats.bytes > limits.max_bytes {
                    return Err(UnpackError::TooLarge { limit: limits.max_bytes, entry: name });
                }
                root.file(&rel, &mut entry, &meta, &name)?;
            }
            EntryType::Symlink => {
                let target = entry.link_name_bytes().ok_or_else(|| refuse("symlink without a target"))?;
                root.symlink(&rel, OsStr::from_bytes(&target), &meta, &name)?;
            }
            EntryType::Link => {
                let target = entry.link_name_bytes().ok_or_else(|| refuse("hardlink without a target"))?;
                let target = clean_path(&target).map_err(|r| refuse(&format!("hardlink target {r}")))?;
                root.hardlink(&rel, &target, &name)?;
            }
            EntryType::Char | EntryType::Block => {
                let (major, minor) = (entry.header().device_major(), entry.header().device_minor());
                let is_overlay_whiteout = kind == EntryType::Char && matches!((major, minor), (Ok(Some(0)), Ok(Some(0)))) && whiteouts == Whiteouts::Overlay;
                if !is_overlay_whiteout {
                    return Err(refuse("device nodes are not allowed in layers"));
                }
                if root.whiteout(&rel, &name)? {
                    stats.whiteouts += 1;
                }
            }
            EntryType::Fifo => root.fifo(&rel, &meta, &name)?,
            EntryType::XGlobalHeader => {}
            other => return Err(refuse(&format!("unsupported tar entry type {other:?}"))),
        }
        last_data_end = data_end;
    }
    for (rel, mtime) in dir_times.iter().rev() {
        root.set_dir_mtime(rel, *mtime)?;
    }
    Ok(stats)
}

/// Makes an entry path relative to the layer root: leading `/` and `.` components are dropped,
/// `..` is resolved lexically and refused if it would leave the root.
fn clean_path(raw: &[u8]) -> Result<PathBuf, &'static str> {
    if raw.contains(&0) {
        return Err("contains a NUL byte");
    }
    let mut out = PathBuf::new();
    for component in Path::new(OsStr::from_bytes(raw)).components() {
        match component {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                if !out.pop() {
                    return Err("escapes the root with '..'");
                }
            }
            Component::Normal(c) => out.push(c),
        }
    }
    Ok(out)
}

/// How far the tar reader got, shared with the unpack loop.
#[derive(Default)]
struct Progress {
    consumed: Cell<u64>,
    eof: Cell<bool>,
}

/// Fails the stream once it grows past `cap` bytes, bounding memory for long names and PAX data.
struct CappedReader<R> {
    inner: R,
    remaining: u64,
    cap: u64,
    progress: Rc<Progress>,
}

impl<R: Read> Read for CappedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(io::Error::other(format!("tar stream larger than {} bytes", self.cap))),
            };
        }
        let len = buf.len().min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..len])?;
        self.remaining -= n as u64;
        self.progress.consumed.set(self.progress.consumed.get() + n as u64);
        if n == 0 && len > 0 {
            self.progress.eof.set(true);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests;
