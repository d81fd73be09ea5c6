//! Multi-layer images with whiteouts, unpacked and mounted for real with overlayfs (needs root).

mod common;

use std::fs;
use std::path::Path;

use common::{layer, store};
use image::testing::write_layout;
use image::{mount_overlay, unmount, ImageError, StoreError};

struct Mounted<'a>(&'a Path);

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        let _ = unmount(self.0);
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

    let upper = dir.path().join("upper");
    let work = dir.path().join("work");
    let target = dir.path().join("rootfs");
    for d in [&upper, &work, &target] {
        fs::create_dir(d).unwrap();
    }
    mount_overlay(&lower, &upper, &work, &target).unwrap();
    let guard = Mounted(&target);
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
