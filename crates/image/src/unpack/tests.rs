use super::*;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use tar::{EntryType, Header};

/// Builds tars byte by byte, so tests can write entries that well-behaved builders refuse.
#[derive(Default)]
struct Tar(Vec<u8>);

impl Tar {
    fn entry(mut self, path: &str, kind: EntryType, data: &[u8], link: Option<&str>) -> Self {
        let mut h = Header::new_gnu();
        let old = h.as_old_mut();
        old.name[..path.len()].copy_from_slice(path.as_bytes());
        if let Some(link) = link {
            old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_mode(if kind == EntryType::Directory { 0o755 } else { 0o644 });
        h.set_size(data.len() as u64);
        h.set_mtime(1_600_000_000);
        h.set_uid(1000);
        h.set_gid(1001);
        h.set_cksum();
        self.0.extend_from_slice(h.as_bytes());
        self.0.extend_from_slice(data);
        self.0.resize(self.0.len().div_ceil(512) * 512, 0);
        self
    }
    fn dir(self, path: &str) -> Self {
        self.entry(path, EntryType::Directory, b"", None)
    }
    fn file(self, path: &str, data: &[u8]) -> Self {
        self.entry(path, EntryType::Regular, data, None)
    }
    fn symlink(self, path: &str, target: &str) -> Self {
        self.entry(path, EntryType::Symlink, b"", Some(target))
    }
    fn hardlink(self, path: &str, target: &str) -> Self {
        self.entry(path, EntryType::Link, b"", Some(target))
    }
    fn bytes(mut self) -> Vec<u8> {
        self.0.extend_from_slice(&[0u8; 1024]);
        self.0
    }
}

/// A layer root inside a sandbox directory, so tests can check nothing lands beside it.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("root")).unwrap();
        Sandbox { dir }
    }
    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }
    fn unpack(&self, tar: Vec<u8>) -> Result<UnpackStats, crate::ImageError> {
        unpack_layer(&tar[..], &self.root(), &Limits::default())
    }
    /// Everything in the sandbox outside the layer root.
    fn outside(&self) -> Vec<String> {
        fs::read_dir(self.dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).filter(|n| n != "root").collect()
    }
}

#[test]
fn unpacks_files_dirs_links_with_metadata() {
    let sb = Sandbox::new();
    let tar = Tar::default()
        .dir("./")
        .dir("bin/")
        .file("bin/busybox", b"#!binary")
        .symlink("bin/sh", "busybox")
        .hardlink("bin/ash", "bin/busybox")
        .file("etc/deep/config", b"k=v")
        .bytes();
    let stats = sb.unpack(tar).unwrap();
    assert_eq!(stats, UnpackStats { entries: 6, bytes: 11, whiteouts: 0 });
    let root = sb.root();
    assert_eq!(fs::read(root.join("bin/busybox")).unwrap(), b"#!binary");
    assert_eq!(fs::read_link(root.join("bin/sh")).unwrap(), Path::new("busybox"));
    let (a, b) = (fs::metadata(root.join("bin/ash")).unwrap(), fs::metadata(root.join("bin/busybox")).unwrap());
    assert_eq!(a.ino(), b.ino(), "hardlink shares the inode");
    assert_eq!(b.mode() & 0o7777, 0o644);
    assert_eq!(b.mtime(), 1_600_000_000);
    assert_eq!(fs::metadata(root.join("bin")).unwrap().mtime(), 1_600_000_000, "dir mtimes set after children");
    if nix::unistd::geteuid().is_root() {
        assert_eq!((b.uid(), b.gid()), (1000, 1001));
    }
    assert_eq!(fs::read(root.join("etc/deep/config")).unwrap(), b"k=v");
}

#[test]
fn converts_oci_whiteouts_to_overlay_form() {
    let sb = Sandbox::new();
    let tar = Tar::default().file("etc/.wh.passwd", b"").dir("var/").file("var/.wh..wh..opq", b"").file("var/kept", b"new").file(".wh..wh.plnk", b"").bytes();
    let stats = sb.unpack(tar).unwrap();
    assert_eq!(stats.whiteouts, 2);
    let root = sb.root();
    let wh = fs::symlink_metadata(root.join("etc/passwd")).unwrap();
    assert!(wh.file_type().is_char_device());
    assert_eq!(wh.rdev(), 0);
    assert!(!root.join("etc/.wh.passwd").exists());
    assert_eq!(xattr::get(root.join("var"), "trusted.overlay.opaque").unwrap().as_deref(), Some(&b"y"[..]));
    assert_eq!(fs::read(root.join("var/kept")).unwrap(), b"new");
    assert!(!root.join(".wh..wh.plnk").exists());
}

#[test]
fn a_whiteout_below_a_file_of_the_same_layer_is_redundant_and_writes_nothing() {
    // umoci writes `app` (now a file) then `app/.wh.old` when a directory became a file.
    let sb = Sandbox::new();
    let stats = sb.unpack(Tar::default().file("app", b"a file now").file("app/.wh.old", b"").bytes()).unwrap();
    assert_eq!(stats.whiteouts, 0);
    assert_eq!(fs::read(sb.root().join("app")).unwrap(), b"a file now");
    // Below a symlink of the layer, the same: skipped, and nothing is written through it.
    let sb = Sandbox::new();
    fs::write(sb.dir.path().join("victim"), b"original").unwrap();
    let tar = Tar::default().symlink("link", sb.dir.path().to_str().unwrap()).file("link/.wh.victim", b"").bytes();
    sb.unpack(tar).unwrap();
    assert_eq!(fs::read(sb.dir.path().join("victim")).unwrap(), b"original");
    assert_eq!(sb.outside(), ["victim"]);
}

#[test]
fn parent_escapes_are_refused() {
    for path in ["../x", "a/../../x", "./../../x"] {
        let sb = Sandbox::new();
        let err = sb.unpack(Tar::default().file(path, b"evil").bytes()).unwrap_err();
        assert!(err.to_string().contains(path), "{path}: {err}");
        assert!(sb.outside().is_empty(), "{path} wrote {:?}", sb.outside());
    }
    let sb = Sandbox::new();
    let err = sb.unpack(Tar::default().file("a", b"x").hardlink("b", "../a").bytes()).unwrap_err();
    assert!(err.to_string().contains("escapes"), "{err}");
}

#[test]
fn absolute_paths_land_inside_the_root() {
    let sb = Sandbox::new();
    let name = format!("flotilla-unpack-test-{}", std::process::id());
    sb.unpack(Tar::default().file(&format!("/tmp/{name}"), b"inside").bytes()).unwrap();
    assert_eq!(fs::read(sb.root().join("tmp").join(&name)).unwrap(), b"inside");
    assert!(!Path::new("/tmp").join(&name).exists());
}

#[test]
fn never_writes_through_a_symlink() {
    let sb = Sandbox::new();
    let victim = sb.dir.path().join("victim");
    let tar = Tar::default().symlink("escape", "/").file(&format!("escape{}/owned", sb.dir.path().display()), b"evil").bytes();
    let err = sb.unpack(tar).unwrap_err();
    assert!(err.to_string().contains("symlink"), "{err}");
    assert!(sb.outside().is_empty());

    let sb = Sandbox::new();
    fs::write(&victim, b"original").unwrap();
    let tar = Tar::default()
        .symlink("f", victim.to_str().unwrap())
        .file("f", b"replaced")
        .symlink("d", sb.dir.path().to_str().unwrap())
        .hardlink("h", "d/victim")
        .bytes();
    let err = sb.unpack(tar).unwrap_err();
    assert!(err.to_string().contains("\"h\""), "{err}");
    assert_eq!(fs::read(&victim).unwrap(), b"original", "the symlink was replaced, not followed");
    assert_eq!(fs::read(sb.root().join("f")).unwrap(), b"replaced");
}

#[test]
fn whiteouts_of_dot_and_dotdot_are_refused() {
    // `.wh...` names `..`: whiting it out would remove the destination's parent.
    for path in [".wh...", ".wh..", "a/.wh..", "a/.wh..."] {
        let sb = Sandbox::new();
        let err = sb.unpack(Tar::default().file("a/keep", b"x").file(path, b"").bytes()).unwrap_err();
        assert!(err.to_string().contains("whiteout names no file"), "{path}: {err}");
        assert!(sb.outside().is_empty(), "{path} wrote {:?}", sb.outside());
        assert_eq!(fs::read(sb.root().join("a/keep")).unwrap(), b"x", "{path}");
    }
}

#[test]
fn dir_mtimes_are_not_set_through_a_later_symlink() {
    let sb = Sandbox::new();
    let victim = sb.dir.path().join("victim");
    fs::create_dir_all(victim.join("dir")).unwrap();
    let before = fs::metadata(victim.join("dir")).unwrap().mtime();
    let tar = Tar::default().dir("a/").dir("a/dir/").symlink("a", "../victim").bytes();
    sb.unpack(tar).unwrap();
    assert_eq!(fs::metadata(victim.join("dir")).unwrap().mtime(), before);
    assert!(fs::symlink_metadata(sb.root().join("a")).unwrap().file_type().is_symlink());
}

#[test]
fn hardlinks_must_point_at_files_in_this_layer() {
    let sb = Sandbox::new();
    let err = sb.unpack(Tar::default().hardlink("shadow", "/etc/shadow").bytes()).unwrap_err();
    assert!(err.to_string().contains("not in this layer"), "{err}");
    let err = sb.unpack(Tar::default().dir("d/").hardlink("l", "d").bytes()).unwrap_err();
    assert!(err.to_string().contains("directory"), "{err}");
}

#[test]
fn device_nodes_are_refused_but_fifos_allowed() {
    let sb = Sandbox::new();
    let mut tar = Tar::default().entry("dev/sda", EntryType::Block, b"", None).bytes();
    let err = sb.unpack(tar.clone()).unwrap_err();
    assert!(err.to_string().contains("dev/sda") && err.to_string().contains("device"), "{err}");
    tar = Tar::default().entry("run/fifo", EntryType::Fifo, b"", None).bytes();
    sb.unpack(tar).unwrap();
    assert!(fs::symlink_metadata(sb.root().join("run/fifo")).unwrap().file_type().is_fifo());
}

#[test]
fn limits_are_enforced_with_clear_errors() {
    let sb = Sandbox::new();
    let tar = Tar::default().file("a", b"12345").file("b", b"67890").bytes();
    let small = Limits { max_bytes: 8, max_entries: 10, ..Limits::default() };
    let err = unpack_layer(&tar[..], &sb.root(), &small).unwrap_err().to_string();
    assert!(err.contains("exceeds 8 bytes") && err.contains("\"b\""), "{err}");
    let few = Limits { max_bytes: 100, max_entries: 1, ..Limits::default() };
    let err = unpack_layer(&tar[..], &sb.root(), &few).unwrap_err().to_string();
    assert!(err.contains("more than 1 entries"), "{err}");
}

#[test]
fn arbitrary_bytes_never_panic_or_escape() {
    let base = Tar::default().dir("d/").file("d/f", b"data").symlink("s", "/").hardlink("h", "d/f").file("d/.wh.g", b"").bytes();
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..300 {
        let mut bytes = base.clone();
        for _ in 0..(next() % 16 + 1) {
            let i = (next() as usize) % bytes.len();
            bytes[i] = next() as u8;
        }
        let cut = (next() as usize) % (bytes.len() + 1);
        let sb = Sandbox::new();
        let _ = sb.unpack(bytes[..cut.max(bytes.len() / 2)].to_vec());
        assert!(sb.outside().is_empty());
    }
    let sb = Sandbox::new();
    assert!(sb.unpack(vec![0x1f, 0x8b, 8, 0, 0xff, 0xff]).is_err());
}

#[test]
fn accepts_a_tar_missing_its_final_padding_but_not_truncated_content() {
    let full = Tar::default().file("a", b"x").file("b", &[7u8; 700]).bytes();
    // umoci 0.4 stops right after the last entry's data.
    let unpadded = full[..512 + 512 + 512 + 700].to_vec();
    let sb = Sandbox::new();
    sb.unpack(unpadded).unwrap();
    assert_eq!(fs::read(sb.root().join("b")).unwrap(), vec![7u8; 700]);
    let truncated = full[..512 + 512 + 512 + 600].to_vec();
    let sb = Sandbox::new();
    assert!(sb.unpack(truncated).is_err());
}

mod cves;
