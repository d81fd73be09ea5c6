//! Fuzz bodies for the parsers in this crate that read untrusted input, shared by the cargo-fuzz
//! targets in `fuzz/` and the corpus tests in `tests/fuzz_corpus.rs` so CI runs them on stable.
//!
//! Each body panics only when it finds a bug: bad input must come back as an error.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::unpack::{unpack_layer, Limits, SetIdPolicy};

mod tar_bytes;

/// Small bounds so one input cannot make a run slow (a gzip bomb, a million empty entries).
const FUZZ_LIMITS: Limits = Limits { max_bytes: 1 << 20, max_entries: 512, max_path_bytes: 4096, setid: SetIdPolicy::Keep };

/// A sibling of the layer root that a layer could reach only by escaping: `../outside/...`.
const OUTSIDE: &str = "outside";
const ROOT: &str = "root";

/// Unpacks `data` as a layer into `tmp/root` of a fresh temporary directory that also holds
/// `tmp/outside`, a directory holding a file and a subdirectory.
///
/// Asserts that nothing panics and that the unpack, successful or not, leaves `tmp` holding
/// exactly `root` and `outside`, with `outside` unchanged (no entry written, removed, chmodded or
/// retimed through `..`, a symlink or a hardlink). Uncompressed input is unpacked a second time
/// with its tar header checksums repaired, so mutations of a header reach the unpacker instead of
/// stopping at the checksum.
pub fn layer(data: &[u8]) {
    unpack_in_sandbox(data);
    if !tar_bytes::is_compressed(data) {
        let mut repaired = data.to_vec();
        tar_bytes::repair_checksums(&mut repaired);
        if repaired != data {
            unpack_in_sandbox(&repaired);
        }
    }
}

/// Builds a well-formed tar from `data` read as a list of entries (type, path, link target,
/// mode, size), the paths assembled from names the unpacker treats specially (`..`, `.wh.`,
/// the opaque marker, `outside`), and unpacks it as [`layer`] does. Byte-level mutations of a
/// raw tar rarely produce such paths with valid headers; here every input is a valid tar.
pub fn layer_entries(data: &[u8]) {
    unpack_in_sandbox(&tar_bytes::from_entries(data));
}

fn unpack_in_sandbox(data: &[u8]) {
    let tmp = tempfile::tempdir().expect("creating a temporary directory");
    let (root, outside) = (tmp.path().join(ROOT), tmp.path().join(OUTSIDE));
    fs::create_dir(&root).expect("creating the layer root");
    fs::create_dir_all(outside.join("dir")).expect("creating the outside directory");
    fs::write(outside.join("file"), b"outside the layer root").expect("writing the outside file");
    let before = snapshot(&outside);

    let result = unpack_layer(data, &root, &FUZZ_LIMITS);
    if let Err(e) = &result {
        let _ = e.to_string();
    }

    let mut names: Vec<String> = fs::read_dir(tmp.path())
        .expect("the sandbox still exists")
        .map(|e| e.expect("listing the sandbox").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, [OUTSIDE, ROOT], "the unpack added or removed entries beside its root ({result:?})");
    let root_meta = fs::symlink_metadata(&root).expect("the layer root still exists");
    assert!(root_meta.is_dir(), "the layer root is no longer a directory");
    let after = snapshot(&outside);
    let changed: Vec<_> =
        before.keys().chain(after.keys()).filter(|path| before.get(*path) != after.get(*path)).map(|path| (path, before.get(path), after.get(path))).collect();
    assert!(changed.is_empty(), "the unpack changed {OUTSIDE}/ beside its root ({result:?}): {changed:#?}");
    make_removable(&root);
}

/// Everything observable about a tree, keyed by relative path, without following symlinks.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        let meta = fs::symlink_metadata(&path).expect("reading outside metadata");
        let mut facts = format!(
            "{:?} mode={:o} uid={} gid={} size={} nlink={} mtime={}.{}",
            meta.file_type(),
            meta.mode(),
            meta.uid(),
            meta.gid(),
            meta.len(),
            meta.nlink(),
            meta.mtime(),
            meta.mtime_nsec(),
        );
        if meta.is_file() {
            facts.push_str(&format!(" content={:?}", fs::read(&path).expect("reading outside file")));
        } else if meta.file_type().is_symlink() {
            facts.push_str(&format!(" target={:?}", fs::read_link(&path).expect("reading outside link")));
        } else if meta.is_dir() {
            for entry in fs::read_dir(&path).expect("listing outside directory") {
                pending.push(entry.expect("listing outside directory").path());
            }
        }
        if let Ok(names) = xattr::list(&path) {
            let names: Vec<_> = names.collect();
            facts.push_str(&format!(" xattrs={names:?}"));
        }
        let rel = path.strip_prefix(dir).unwrap_or(&path).to_path_buf();
        out.insert(rel, facts);
    }
    out
}

/// Gives every directory under `root` owner rwx so the temporary directory can be removed when
/// the fuzzer is not root and a layer made a directory unreadable.
fn make_removable(root: &Path) {
    if nix::unistd::geteuid().is_root() {
        return;
    }
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(0o700));
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                pending.push(entry.path());
            }
        }
    }
}
