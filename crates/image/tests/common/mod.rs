//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

use image::testing::require_tool;
use image::ImageStore;

/// A fresh store in a temp dir.
pub fn store() -> (tempfile::TempDir, ImageStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(&dir.path().join("store")).unwrap();
    (dir, store)
}

/// Runs a tool (panicking with the apt package to install if it is missing) and returns stdout.
pub fn run(tool: &str, package: &str, args: &[&str]) -> String {
    let path = require_tool(tool, package);
    let out = Command::new(path).args(args).output().unwrap();
    assert!(out.status.success(), "{tool} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs skopeo with policy checks off (the test images are unsigned).
pub fn skopeo(args: &[&str]) -> String {
    let mut all = vec!["--insecure-policy"];
    all.extend_from_slice(args);
    run("skopeo", "skopeo", &all)
}

/// A tar layer built from `(path, content)` entries; `None` content makes a directory.
pub fn layer(entries: &[(&str, Option<&[u8]>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, content) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        match content {
            Some(data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(data.len() as u64);
                builder.append_data(&mut h, path, *data).unwrap();
            }
            None => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                builder.append_data(&mut h, path, &b""[..]).unwrap();
            }
        }
    }
    builder.into_inner().unwrap()
}

/// Asserts that `root/bin/busybox` is the host's busybox and `sh` links to it.
pub fn assert_busybox_rootfs(root: &Path) {
    assert_eq!(std::fs::read(root.join("bin/busybox")).unwrap(), std::fs::read("/bin/busybox").unwrap());
    assert_eq!(std::fs::read_link(root.join("bin/sh")).unwrap(), Path::new("busybox"));
}
