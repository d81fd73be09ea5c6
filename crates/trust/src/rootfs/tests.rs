use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use marks::{mknod_whiteout, set_opaque};

use super::*;

/// Whiteouts and opaque markers exactly as the image store's unpacker writes them.
mod marks {
    use std::path::Path;
    use std::process::Command;

    pub fn mknod_whiteout(path: &Path) {
        let status = Command::new("mknod").arg(path).args(["c", "0", "0"]).status().unwrap();
        assert!(status.success(), "mknod needs root");
    }

    pub fn set_opaque(dir: &Path) {
        xattr::set(dir, super::OPAQUE_XATTR, b"y").expect("trusted.* xattrs need root");
    }
}

fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

/// Three layers: base, one that deletes and replaces, and a top one.
fn layers() -> (tempfile::TempDir, Rootfs) {
    let tmp = tempfile::tempdir().unwrap();
    let [base, middle, top]: [PathBuf; 3] = ["base", "middle", "top"].map(|l| tmp.path().join(l));
    for l in [&base, &middle, &top] {
        fs::create_dir_all(l).unwrap();
    }
    write(&base, "usr/lib/os-release", "ID=debian\n");
    fs::create_dir_all(base.join("etc")).unwrap();
    symlink("../usr/lib/os-release", base.join("etc/os-release")).unwrap();
    write(&base, "app/old.txt", "old");
    write(&base, "app/kept.txt", "kept");
    write(&base, "data/a.txt", "a");
    write(&base, "gone.txt", "gone");
    symlink("/../../../etc", base.join("escape")).unwrap();
    // middle: deletes gone.txt, makes data opaque with new content.
    mknod_whiteout(&middle.join("gone.txt"));
    write(&middle, "data/b.txt", "b");
    set_opaque(&middle.join("data"));
    write(&middle, "app/old.txt", "middle");
    // top: replaces app/old.txt again.
    write(&top, "app/old.txt", "top");
    (tmp, Rootfs::from_layers(vec![top, middle, base]))
}

fn text(fs: &Rootfs, path: &str) -> Option<String> {
    fs.read(path).unwrap().map(|b| String::from_utf8(b).unwrap())
}

#[test]
fn the_top_layer_wins_and_whiteouts_and_opaque_directories_hide() {
    let (_tmp, fs) = layers();
    assert_eq!(text(&fs, "/app/old.txt").as_deref(), Some("top"));
    assert_eq!(text(&fs, "app/kept.txt").as_deref(), Some("kept"));
    assert_eq!(text(&fs, "gone.txt"), None);
    assert_eq!(text(&fs, "data/a.txt"), None, "hidden by the opaque directory above");
    assert_eq!(text(&fs, "data/b.txt").as_deref(), Some("b"));
    let all: Vec<String> = fs.files(&|_, _| true, &|_| false).unwrap().into_iter().map(|f| f.path.display().to_string()).collect();
    assert_eq!(all, ["app/kept.txt", "app/old.txt", "data/b.txt", "usr/lib/os-release"]);
}

#[test]
fn symlinks_resolve_inside_the_image_only() {
    let (_tmp, fs) = layers();
    assert_eq!(text(&fs, "/etc/os-release").as_deref(), Some("ID=debian\n"));
    // `/../../../etc` resolves to the image's own /etc, never the host's.
    assert_eq!(text(&fs, "escape/passwd"), None);
    assert_eq!(text(&fs, "escape/os-release").as_deref(), Some("ID=debian\n"));
    assert_eq!(text(&fs, "../../../../etc/passwd"), None);
}

#[test]
fn a_symlink_loop_ends() {
    let tmp = tempfile::tempdir().unwrap();
    symlink("b", tmp.path().join("a")).unwrap();
    symlink("a", tmp.path().join("b")).unwrap();
    assert_eq!(Rootfs::from_dir(tmp.path()).read("a").unwrap(), None);
}

/// A lower layer's symlink in a parent's place must not lead to the host, even where an upper
/// layer has a real directory of that name.
#[test]
fn a_lower_layer_symlink_parent_never_reaches_the_host() {
    let tmp = tempfile::tempdir().unwrap();
    let (top, lower) = (tmp.path().join("top"), tmp.path().join("lower"));
    fs::create_dir_all(top.join("etc")).unwrap();
    fs::create_dir_all(&lower).unwrap();
    let host = tmp.path().join("host");
    write(&host, "os-release", "ID=host\n");
    symlink(&host, lower.join("etc")).unwrap();
    let fs = Rootfs::from_layers(vec![top, lower]);
    assert_eq!(text(&fs, "/etc/os-release"), None);
    assert!(fs.files(&|_, _| true, &|_| false).unwrap().is_empty());
}

#[test]
fn an_opaque_directory_below_a_merged_one_hides_the_layers_under_it() {
    let tmp = tempfile::tempdir().unwrap();
    let [base, middle, top]: [PathBuf; 3] = ["base", "middle", "top"].map(|l| tmp.path().join(l));
    write(&top, "data/x", "x");
    write(&middle, "data/b", "b");
    marks::set_opaque(&middle.join("data"));
    write(&base, "data/a", "a");
    write(&base, "proc/1/package-lock.json", "{}");
    write(&top, "proc/self", "");
    let fs = Rootfs::from_layers(vec![top, middle, base]);
    assert_eq!(text(&fs, "data/a"), None);
    let listed: Vec<String> = fs.files(&|_, _| true, &|name| name == "proc").unwrap().into_iter().map(|f| f.path.display().to_string()).collect();
    assert_eq!(listed, ["data/b", "data/x"], "the opaque middle hides base's data/a, and pruned proc stays pruned in every layer");
}
