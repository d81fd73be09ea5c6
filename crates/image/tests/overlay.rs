//! Multi-layer images with whiteouts, unpacked and mounted for real with overlayfs (needs root),
//! and compared with the tree `umoci unpack` produces for the same image, crafted or umoci-built.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use common::{layer, store};
use image::testing::write_layout;
use image::{mount_overlay, unmount, ImageError, StoreError};

/// An overlay mount of image layers at `<dir>/rootfs` (upper `<dir>/upper`), unmounted on drop.
struct Mounted {
    target: PathBuf,
    upper: PathBuf,
}

impl Mounted {
    fn new(dir: &Path, lower: &[PathBuf]) -> Mounted {
        let (upper, work, target) = (dir.join("upper"), dir.join("work"), dir.join("rootfs"));
        for d in [&upper, &work, &target] {
            fs::create_dir(d).unwrap();
        }
        mount_overlay(lower, &upper, &work, &target).unwrap();
        Mounted { target, upper }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = unmount(&self.target);
    }
}

#[test]
fn whiteouts_and_opaque_dirs_hide_lower_content_in_the_mounted_rootfs() {
    assert!(nix::unistd::geteuid().is_root(), "overlay mounts need root: run the tests as root");
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let base = layer(&[
        ("etc/", None),
        ("etc/hostname", Some(b"base")),
        ("etc/deleted", Some(b"gone soon")),
        ("var/", None),
        ("var/cache/", None),
        ("var/cache/old-1", Some(b"1")),
        ("var/cache/old-2", Some(b"2")),
    ]);
    let top = layer(&[
        ("etc/.wh.deleted", Some(b"")),
        ("etc/hostname", Some(b"top")),
        ("var/cache/", None),
        ("var/cache/.wh..wh..opq", Some(b"")),
        ("var/cache/fresh", Some(b"new")),
    ]);
    write_layout(&layout, "1", &[base, top], &["sh"]);
    let (_tmp, store) = store();
    let image = store.import(&layout, Some("layered:1")).unwrap().remove(0);
    let lower = store.prepare_layers(&image).unwrap();
    assert_eq!(lower.len(), 2);
    assert!(lower[1].join("etc/deleted").exists(), "bottom layer last");

    let guard = Mounted::new(dir.path(), &lower);
    let (target, upper) = (guard.target.clone(), guard.upper.clone());
    assert_eq!(fs::read(target.join("etc/hostname")).unwrap(), b"top");
    assert!(!target.join("etc/deleted").exists(), "whiteout hides the lower file");
    let mut cache: Vec<_> = fs::read_dir(target.join("var/cache")).unwrap().map(|e| e.unwrap().file_name()).collect();
    cache.sort();
    assert_eq!(cache, ["fresh"], "opaque dir hides lower entries");
    fs::write(target.join("etc/written"), b"rw").unwrap();
    drop(guard);
    assert!(!target.join("etc").exists(), "unmounted");
    assert_eq!(fs::read(upper.join("etc/written")).unwrap(), b"rw", "writes land in the upper dir");
    assert!(lower.iter().all(|l| !l.join("etc/written").exists()), "layers stay untouched");
}

#[test]
fn a_corrupted_stored_layer_is_rejected_by_digest_and_leaves_no_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    write_layout(&layout, "1", &[layer(&[("f", Some(b"content"))])], &["sh"]);
    let (_tmp, store) = store();
    let image = store.import(&layout, Some("x")).unwrap().remove(0);
    let manifest = store.manifest(&image).unwrap();
    let digest = &manifest.layers[0].digest;
    let path = store.blobs().path(digest);
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    fs::write(&path, bytes).unwrap();
    let err = store.prepare_layers(&image).unwrap_err();
    assert!(matches!(err, ImageError::Blob(_)), "{err:?}");
    assert!(err.to_string().contains(digest.as_str()), "{err}");
    assert_eq!(fs::read_dir(store.root().join("snapshots")).unwrap().count(), 0);
}

#[test]
fn a_layer_that_does_not_match_its_diff_id_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let manifest = write_layout(&layout, "1", &[layer(&[("f", Some(b"content"))])], &["sh"]);
    // Point the config's diff_id elsewhere (and re-hash config and manifest so the blobs are valid).
    let blob = |d: &str| layout.join("blobs/sha256").join(d.trim_start_matches("sha256:"));
    let mut m: serde_json::Value = serde_json::from_slice(&fs::read(blob(manifest.digest.as_str())).unwrap()).unwrap();
    let mut config: serde_json::Value = serde_json::from_slice(&fs::read(blob(m["config"]["digest"].as_str().unwrap())).unwrap()).unwrap();
    config["rootfs"]["diff_ids"][0] = serde_json::json!(image::Digest::of(b"something else"));
    let config_desc = image::testing::put_blob(&layout, image::OCI_CONFIG, &serde_json::to_vec(&config).unwrap());
    m["config"] = serde_json::to_value(&config_desc).unwrap();
    let manifest = image::testing::put_blob(&layout, image::OCI_MANIFEST, &serde_json::to_vec(&m).unwrap());
    image::testing::tag_layout(&layout, "1", &manifest);

    let (_tmp, store) = store();
    let image = store.import(&layout, Some("x")).unwrap().remove(0);
    let err = store.prepare_layers(&image).unwrap_err();
    assert!(matches!(err, ImageError::Store(StoreError::DiffIdMismatch { .. })), "{err}");
}

/// One tar entry of a crafted layer.
enum Entry<'a> {
    Dir(&'a str, u32, u64),
    File(&'a str, &'a [u8], u32, u64),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
    Fifo(&'a str),
    /// A file carrying `user.origin` as a PAX `SCHILY.xattr` record.
    XattrFile(&'a str, &'a [u8], &'a str),
}

/// A PAX extended header holding one `SCHILY.xattr.<name>` record.
fn pax_xattr(builder: &mut tar::Builder<Vec<u8>>, name: &str, value: &str) {
    let body = format!(" SCHILY.xattr.{name}={value}\n");
    // The record's length counts its own decimal digits.
    let mut len = body.len() + 1;
    while format!("{len}{body}").len() != len {
        len += 1;
    }
    let record = format!("{len}{body}");
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::XHeader);
    h.set_path("PaxHeaders/x").unwrap();
    h.set_size(record.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    builder.append(&h, record.as_bytes()).unwrap();
}

/// A layer whose entries carry modes, owners (uid = gid = the given id), links, FIFOs and xattrs.
fn rich_layer(entries: &[Entry]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (i, entry) in entries.iter().enumerate() {
        let mut h = tar::Header::new_ustar();
        h.set_mtime(1_600_000_000 + i as u64 * 1000);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(0);
        h.set_mode(0o777);
        match entry {
            Entry::Dir(path, mode, owner) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*mode);
                h.set_uid(*owner);
                h.set_gid(*owner);
                builder.append_data(&mut h, path, &b""[..]).unwrap();
            }
            Entry::File(path, data, mode, owner) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_uid(*owner);
                h.set_gid(*owner);
                h.set_size(data.len() as u64);
                builder.append_data(&mut h, path, *data).unwrap();
            }
            Entry::XattrFile(path, data, origin) => {
                pax_xattr(&mut builder, "user.origin", origin);
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(data.len() as u64);
                builder.append_data(&mut h, path, *data).unwrap();
            }
            Entry::Symlink(path, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                builder.append_link(&mut h, path, target).unwrap();
            }
            Entry::Hardlink(path, target) => {
                h.set_entry_type(tar::EntryType::Link);
                builder.append_link(&mut h, path, target).unwrap();
            }
            Entry::Fifo(path) => {
                h.set_entry_type(tar::EntryType::Fifo);
                h.set_mode(0o620);
                builder.append_data(&mut h, path, &b""[..]).unwrap();
            }
        }
    }
    builder.into_inner().unwrap()
}

/// What a tree walk records of one path: type, permission and set-id bits, owner, then content
/// digest and mtime for files, target for symlinks, and `user.*` xattrs.
fn describe_tree(root: &Path) -> (BTreeMap<String, String>, Vec<Vec<String>>) {
    use sha2::Digest as _;
    use std::os::unix::fs::MetadataExt;
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<(u64, u64), Vec<String>> = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let meta = fs::symlink_metadata(&path).unwrap();
            let kind = meta.file_type();
            let mut line = format!("mode={:o} owner={}:{}", meta.mode() & 0o7777, meta.uid(), meta.gid());
            if kind.is_dir() {
                line = format!("dir {line}");
                stack.push(path.clone());
            } else if kind.is_symlink() {
                // A symlink's own mode is always 0777; its owner is what lchown set.
                line = format!("symlink -> {} owner={}:{} mtime={}", fs::read_link(&path).unwrap().display(), meta.uid(), meta.gid(), meta.mtime());
            } else if kind.is_file() {
                let digest = hex::encode(sha2::Sha256::digest(fs::read(&path).unwrap()));
                line = format!("file {line} sha256={} mtime={}", &digest[..16], meta.mtime());
                inodes.entry((meta.dev(), meta.ino())).or_default().push(rel.clone());
            } else {
                line = format!("other({:?}) {line}", kind);
            }
            let mut names: Vec<String> = xattr::list(&path)
                .map(|names| names.map(|n| n.to_string_lossy().into_owned()).filter(|n| n.starts_with("user.")).collect())
                .unwrap_or_default();
            names.sort();
            for name in names {
                let value = xattr::get(&path, &name).unwrap().unwrap_or_default();
                line.push_str(&format!(" {name}={}", String::from_utf8_lossy(&value)));
            }
            out.insert(rel, line);
        }
    }
    let mut links: Vec<Vec<String>> = inodes
        .into_values()
        .filter(|paths| paths.len() > 1)
        .map(|mut paths| {
            paths.sort();
            paths
        })
        .collect();
    links.sort();
    (out, links)
}

/// Asserts that our tree and umoci's (as `describe_tree` gives them) are the same, listing every
/// path that differs.
fn assert_same_tree(umoci: (&BTreeMap<String, String>, &Vec<Vec<String>>), ours: (&BTreeMap<String, String>, &Vec<Vec<String>>)) {
    let differing: Vec<String> = umoci
        .0
        .keys()
        .chain(ours.0.keys())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter(|path| umoci.0.get(*path) != ours.0.get(*path))
        .map(|path| format!("{path}:\n  umoci: {:?}\n  ours:  {:?}", umoci.0.get(path), ours.0.get(path)))
        .collect();
    assert!(differing.is_empty(), "the trees differ:\n{}", differing.join("\n"));
    assert_eq!(umoci.1, ours.1, "hardlink groups");
}

#[test]
fn a_multi_layer_image_mounts_to_the_same_tree_umoci_unpacks() {
    use Entry::*;
    assert!(nix::unistd::geteuid().is_root(), "overlay mounts and umoci unpack need root: run the tests as root");
    let big: Vec<u8> = (0..300_000u32).flat_map(|i| i.wrapping_mul(2_654_435_761).to_le_bytes()).collect();
    let base = rich_layer(&[
        Dir("bin", 0o755, 0),
        File("bin/tool", b"#!/bin/sh\necho tool\n", 0o4755, 0),
        Hardlink("bin/tool-link", "bin/tool"),
        Symlink("bin/sh", "tool"),
        Dir("etc", 0o755, 0),
        File("etc/hostname", b"base", 0o644, 0),
        File("etc/shadow", b"root:*:19000::::::\n", 0o640, 42),
        File("etc/to-delete", b"gone soon", 0o644, 0),
        Symlink("etc/localtime", "/usr/share/zoneinfo/UTC"),
        XattrFile("etc/labelled", b"x", "base"),
        Dir("home", 0o755, 0),
        Dir("home/user", 0o700, 1000),
        File("home/user/.profile", b"export A=1\n", 0o600, 1000),
        Dir("opt", 0o755, 0),
        Dir("opt/app", 0o755, 0),
        Dir("opt/app/lib", 0o755, 0),
        File("opt/app/lib/a.so", b"a", 0o755, 0),
        File("opt/app/lib/b.so", b"b", 0o755, 0),
        Symlink("lib", "opt/app/lib"),
        Dir("var", 0o755, 0),
        Dir("var/cache", 0o755, 0),
        File("var/cache/one", b"1", 0o644, 0),
        File("var/cache/two", b"2", 0o644, 0),
        Dir("var/flip", 0o755, 0),
        File("var/flip/inner", b"inner", 0o644, 0),
        Dir("run", 0o755, 0),
        Fifo("run/events"),
        File("data.bin", &big, 0o644, 0),
    ]);
    let middle = rich_layer(&[
        Dir("etc", 0o755, 0),
        File("etc/.wh.to-delete", b"", 0o644, 0),
        File("etc/hostname", b"middle", 0o600, 0),
        XattrFile("etc/labelled", b"y", "middle"),
        Dir("var/cache", 0o755, 0),
        File("var/cache/.wh..wh..opq", b"", 0o644, 0),
        File("var/cache/three", b"3", 0o644, 0),
        File("var/cache/four", b"4", 0o644, 0),
        File("var/flip", b"now a file", 0o644, 0),
        File("opt/app/lib/.wh.a.so", b"", 0o644, 0),
        File("home/user/.profile", b"export A=2\n", 0o600, 1000),
        File(".wh.lib", b"", 0o644, 0),
        Dir("lib", 0o755, 0),
        File("lib/real", b"a directory now", 0o644, 0),
        Dir("usr", 0o755, 0),
        Dir("usr/bin", 0o755, 0),
        File("usr/bin/x", b"x", 0o755, 0),
        Hardlink("usr/bin/y", "usr/bin/x"),
    ]);
    let top = rich_layer(&[
        Dir("etc", 0o750, 0),
        File("etc/to-delete", b"back again", 0o644, 0),
        File("var/cache/.wh.three", b"", 0o644, 0),
        Dir("var/flip", 0o711, 0),
        File("var/flip/again", b"a directory again", 0o644, 0),
        File("bin/sh", b"no longer a link", 0o755, 0),
        File(".wh.data.bin", b"", 0o644, 0),
        File("data.bin", b"small now", 0o644, 0),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    write_layout(&layout, "3", &[base, middle, top], &["sh"]);

    let bundle = dir.path().join("bundle");
    common::run("umoci", "umoci", &["unpack", "--image", &format!("{}:3", layout.display()), bundle.to_str().unwrap()]);
    let (umoci_tree, umoci_links) = describe_tree(&bundle.join("rootfs"));

    let (_tmp, store) = store();
    let image = store.import(&layout, Some("layered:3")).unwrap().remove(0);
    let lower = store.prepare_layers(&image).unwrap();
    let mounted = Mounted::new(dir.path(), &lower);
    let (ours, our_links) = describe_tree(&mounted.target);

    // Spot checks, so that the comparison cannot pass on two equally wrong trees.
    assert_eq!(ours["etc/hostname"].split(' ').nth(1), Some("mode=600"));
    assert!(!ours.contains_key("var/cache/one") && !ours.contains_key("var/cache/three") && ours.contains_key("var/cache/four"));
    assert!(ours["var/flip"].starts_with("dir mode=711") && !ours.contains_key("var/flip/inner"));
    assert!(ours["etc/labelled"].ends_with("user.origin=middle"), "{}", ours["etc/labelled"]);
    assert!(ours["bin/tool"].contains("mode=4755"));
    // The middle layer writes home/user/.profile without a home/user entry: the directory keeps
    // the base layer's mode and owner rather than showing a bare 0755 root directory over it.
    assert_eq!(ours["home/user"], "dir mode=700 owner=1000:1000");
    assert!(ours["lib"].starts_with("dir ") && !ours.contains_key("lib/a.so"));
    assert_eq!(our_links, [vec!["bin/tool".to_string(), "bin/tool-link".to_string()], vec!["usr/bin/x".to_string(), "usr/bin/y".to_string()]]);

    assert_same_tree((&umoci_tree, &umoci_links), (&ours, &our_links));
}

/// Runs `umoci` with `args`, panicking with its stderr if it fails.
fn umoci(args: &[&str]) {
    common::run("umoci", "umoci", args);
}

/// `umoci unpack` of `image` into a fresh bundle under `dir`; returns the bundle's rootfs.
fn umoci_unpack(dir: &Path, image: &str, bundle: &str) -> PathBuf {
    let bundle = dir.join(bundle);
    umoci(&["unpack", "--image", image, bundle.to_str().unwrap()]);
    bundle.join("rootfs")
}

#[test]
fn an_image_built_by_umoci_pulled_from_a_registry_mounts_to_the_tree_umoci_unpacks_and_runs() {
    use std::os::unix::fs::PermissionsExt;
    assert!(nix::unistd::geteuid().is_root(), "overlay mounts and umoci unpack need root: run the tests as root");
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let at = |tag: &str| format!("{}:{tag}", layout.display());
    umoci(&["init", "--layout", layout.to_str().unwrap()]);
    umoci(&["new", "--image", &at("empty")]);

    // Layer 1: busybox and an application tree.
    let root = umoci_unpack(dir.path(), &at("empty"), "b1");
    for d in ["bin", "etc/app/plugins", "var/cache/app", "home/svc"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
    fs::write(root.join("etc/app/conf"), "version=1\n").unwrap();
    fs::write(root.join("etc/app/secret"), "s3cret\n").unwrap();
    fs::set_permissions(root.join("etc/app/secret"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(root.join("etc/app/plugins/old.so"), "old").unwrap();
    fs::write(root.join("var/cache/app/blob-1"), vec![7u8; 100_000]).unwrap();
    fs::write(root.join("var/cache/app/blob-2"), "2").unwrap();
    fs::hard_link(root.join("etc/app/conf"), root.join("etc/app/conf.link")).unwrap();
    nix::unistd::chown(&root.join("home/svc"), Some(1000.into()), Some(1000.into())).unwrap();
    fs::set_permissions(root.join("home/svc"), fs::Permissions::from_mode(0o750)).unwrap();
    umoci(&["repack", "--image", &at("v1"), dir.path().join("b1").to_str().unwrap()]);

    // Layer 2: deletions (umoci writes whiteouts), a replaced directory, changed content.
    let root = umoci_unpack(dir.path(), &at("v1"), "b2");
    fs::remove_file(root.join("etc/app/secret")).unwrap();
    fs::remove_dir_all(root.join("etc/app/plugins")).unwrap();
    fs::remove_dir_all(root.join("var/cache/app")).unwrap();
    fs::write(root.join("var/cache/app"), "a file now\n").unwrap();
    fs::remove_file(root.join("etc/app/conf.link")).unwrap();
    fs::write(root.join("etc/app/conf"), "version=2\n").unwrap();
    fs::write(root.join("home/svc/.profile"), "export X=1\n").unwrap();
    umoci(&["repack", "--image", &at("v2"), dir.path().join("b2").to_str().unwrap()]);
    umoci(&["config", "--image", &at("v2"), "--config.cmd", "sh"]);

    let index: serde_json::Value = serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let tags: Vec<&str> =
        index["manifests"].as_array().unwrap().iter().filter_map(|m| m["annotations"]["org.opencontainers.image.ref.name"].as_str()).collect();
    assert!(tags.contains(&"v2"), "{tags:?}");
    let expected = umoci_unpack(dir.path(), &at("v2"), "reference");
    let (umoci_tree, umoci_links) = describe_tree(&expected);

    // Through a real registry, then our pull, unpack and overlay mount.
    let registry = image::testing::Registry::start();
    let reference = registry.push(&layout, "v2", "umoci/app", "v2");
    let (_tmp, store) = store();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let record = runtime.block_on(store.pull(&reference, &image::PullOptions::default())).unwrap();
    let lower = store.prepare_layers(&record).unwrap();
    assert!(lower.len() >= 2, "umoci wrote {} layers", lower.len());
    let whiteouts = lower.iter().flat_map(|l| walkdir_chardevs(l)).count();
    assert!(whiteouts >= 3, "the top layer deletes with whiteouts ({whiteouts} found)");
    let mounted = Mounted::new(dir.path(), &lower);
    let (ours, our_links) = describe_tree(&mounted.target);

    assert!(!ours.contains_key("etc/app/secret") && !ours.contains_key("etc/app/plugins") && !ours.contains_key("etc/app/conf.link"));
    assert!(ours["var/cache/app"].starts_with("file "), "{}", ours["var/cache/app"]);
    assert!(ours["home/svc"].starts_with("dir mode=750 owner=1000:1000"), "{}", ours["home/svc"]);
    assert_same_tree((&umoci_tree, &umoci_links), (&ours, &our_links));

    // And it runs: busybox from the mounted tree, confined to it.
    let out = std::process::Command::new("chroot")
        .arg(&mounted.target)
        .args(["/bin/sh", "-c", "b=/bin/busybox; $b cat /etc/app/conf; $b ls /etc/app; $b cat /var/cache/app"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "version=2\nconf\na file now\n");
}

/// Paths of the character devices (overlay whiteouts) under `root`.
fn walkdir_chardevs(root: &Path) -> Vec<PathBuf> {
    use std::os::unix::fs::FileTypeExt;
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_char_device() {
                found.push(entry.path());
            }
        }
    }
    found
}
