//! A read-only view of an image's filesystem straight from its unpacked layers: the top layer
//! wins, overlay whiteouts (0/0 character devices) and opaque directories hide what lies below,
//! and symlinks resolve inside the image, never out of it.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::os::unix::fs::FileTypeExt as _;
use std::path::{Component, Path, PathBuf};

const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
const MAX_SYMLINK_HOPS: usize = 40;

/// An image filesystem made of layer directories.
#[derive(Debug, Clone)]
pub struct Rootfs {
    /// Layer directories, top layer first.
    layers: Vec<PathBuf>,
}

/// A regular file visible in the merged view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisibleFile {
    /// Its path inside the image, relative to `/`.
    pub path: PathBuf,
    /// Where it is on the host.
    pub host: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// Whether any execute bit is set.
    pub executable: bool,
}

impl Rootfs {
    /// A view of layers given top first (as the image store's `prepare_layers` returns them).
    pub fn from_layers(layers: Vec<PathBuf>) -> Rootfs {
        Rootfs { layers }
    }

    /// A view of one plain directory.
    pub fn from_dir(dir: &Path) -> Rootfs {
        Rootfs { layers: vec![dir.to_path_buf()] }
    }

    /// Reads a file by its path in the image, following symlinks inside the image. `Ok(None)`
    /// when it does not exist (or is not a regular file).
    pub fn read(&self, path: &str) -> io::Result<Option<Vec<u8>>> {
        match self.resolve(path)? {
            Some(host) => fs::read(host).map(Some),
            None => Ok(None),
        }
    }

    /// The host path of a regular file in the image, symlinks resolved inside the image.
    pub fn resolve(&self, path: &str) -> io::Result<Option<PathBuf>> {
        let mut pending: Vec<PathBuf> = normal_components(Path::new(path)).into_iter().rev().collect();
        let mut current = PathBuf::new();
        let mut hops = 0;
        while let Some(next) = pending.pop() {
            if next == Path::new("..") {
                current.pop();
                continue;
            }
            let candidate = current.join(&next);
            let Some((host, meta)) = self.lookup(&candidate)? else {
                return Ok(None);
            };
            if meta.file_type().is_symlink() {
                hops += 1;
                if hops > MAX_SYMLINK_HOPS {
                    return Ok(None);
                }
                let target = fs::read_link(&host)?;
                if target.is_absolute() {
                    current = PathBuf::new();
                }
                pending.extend(normal_components(&target).into_iter().rev());
                continue;
            }
            if pending.is_empty() {
                return Ok(meta.is_file().then_some(host));
            }
            if !meta.is_dir() {
                return Ok(None);
            }
            current = candidate;
        }
        Ok(None)
    }

    /// The topmost layer entry at `rel` (no symlinks followed), honouring whiteouts and opaque
    /// directories on the way down. In each layer the parents are checked before the entry, so
    /// the kernel never follows a symlink a layer put in a parent's place: a parent that is not
    /// a real directory there (a symlink, a file, a whiteout) hides everything below it.
    fn lookup(&self, rel: &Path) -> io::Result<Option<(PathBuf, fs::Metadata)>> {
        let absent = |e: &io::Error| e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR);
        for layer in &self.layers {
            let mut ancestor = layer.clone();
            let (mut opaque, mut missing) = (false, false);
            for component in rel.parent().into_iter().flat_map(Path::components) {
                ancestor.push(component);
                match fs::symlink_metadata(&ancestor) {
                    Ok(meta) if meta.is_dir() => opaque |= is_opaque(&ancestor),
                    Ok(_) => return Ok(None),
                    Err(e) if absent(&e) => {
                        missing = true;
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
            if !missing {
                let host = layer.join(rel);
                match fs::symlink_metadata(&host) {
                    Ok(meta) if is_whiteout(&meta) => return Ok(None),
                    Ok(meta) => return Ok(Some((host, meta))),
                    Err(e) if absent(&e) => {}
                    Err(e) => return Err(e),
                }
            }
            if opaque {
                return Ok(None);
            }
        }
        Ok(None)
    }

    /// Every regular file in the merged view whose path `wanted` accepts (given the path and
    /// file name), without descending into directories `prune` names.
    pub fn files(&self, wanted: &dyn Fn(&Path, &str) -> bool, prune: &dyn Fn(&str) -> bool) -> io::Result<Vec<VisibleFile>> {
        let mut seen: HashMap<PathBuf, bool> = HashMap::new();
        let mut opaque: HashSet<PathBuf> = HashSet::new();
        let mut pruned: HashSet<PathBuf> = HashSet::new();
        let mut out = Vec::new();
        for layer in &self.layers {
            let mut stack = vec![PathBuf::new()];
            let mut new_opaque = Vec::new();
            while let Some(dir) = stack.pop() {
                let entries = match fs::read_dir(layer.join(&dir)) {
                    Ok(entries) => entries,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                for entry in entries {
                    let entry = entry?;
                    let name = entry.file_name();
                    let rel = dir.join(&name);
                    let meta = entry.metadata()?;
                    if let Some(&is_dir) = seen.get(&rel) {
                        // An upper layer decided this path; a lower directory under an upper
                        // directory merges unless that upper one is opaque, and may itself be
                        // opaque to the layers below.
                        if is_dir && meta.is_dir() && !opaque.contains(&rel) && !pruned.contains(&rel) {
                            if is_opaque(&entry.path()) {
                                new_opaque.push(rel.clone());
                            }
                            stack.push(rel);
                        }
                        continue;
                    }
                    if is_whiteout(&meta) {
                        seen.insert(rel, false);
                        continue;
                    }
                    seen.insert(rel.clone(), meta.is_dir());
                    let name = name.to_string_lossy();
                    if meta.is_dir() {
                        if is_opaque(&entry.path()) {
                            new_opaque.push(rel.clone());
                        }
                        if prune(&name) {
                            pruned.insert(rel);
                        } else {
                            stack.push(rel);
                        }
                    } else if meta.is_file() && wanted(&rel, &name) {
                        use std::os::unix::fs::PermissionsExt as _;
                        out.push(VisibleFile { host: entry.path(), size: meta.len(), executable: meta.permissions().mode() & 0o111 != 0, path: rel });
                    }
                }
            }
            opaque.extend(new_opaque);
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }
}

fn normal_components(path: &Path) -> Vec<PathBuf> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(PathBuf::from(n)),
            Component::ParentDir => Some(PathBuf::from("..")),
            _ => None,
        })
        .collect()
}

fn is_whiteout(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    meta.file_type().is_char_device() && meta.rdev() == 0
}

fn is_opaque(dir: &Path) -> bool {
    matches!(xattr::get(dir, OPAQUE_XATTR), Ok(Some(v)) if v == b"y")
}

#[cfg(test)]
mod tests;
