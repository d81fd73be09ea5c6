//! Importing OCI layouts and archives written by the real tools (umoci, skopeo).

mod common;

use std::fs;
use std::path::Path;

use common::{assert_busybox_rootfs, run, skopeo, store};
use image::testing::busybox_layout;
use image::{ImageError, ImportError};

fn umoci(args: &[&str]) -> String {
    run("umoci", "umoci", args)
}

#[test]
fn imports_a_umoci_layout_once_named() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let image = format!("{}:edge", layout.display());
    umoci(&["init", "--layout", layout.to_str().unwrap()]);
    umoci(&["new", "--image", &image]);
    umoci(&["insert", "--image", &image, "/bin/busybox", "/bin/busybox"]);
    umoci(&[
        "config",
        "--image",
        &image,
        "--config.cmd",
        "/bin/busybox",
        "--config.cmd",
        "sh",
        "--config.env",
        "GREETING=hi",
        "--config.workingdir",
        "/tmp",
        "--config.exposedports",
        "8080/tcp",
    ]);

    let (_tmp, store) = store();
    let err = store.import(&layout, None).unwrap_err();
    assert!(matches!(err, ImageError::Import(ImportError::NameRequired { .. })), "{err}");
    assert!(err.to_string().contains("\"edge\"") && err.to_string().contains("--name"), "{err}");
    assert!(store.list().unwrap().is_empty());

    let records = store.import(&layout, Some("umoci/busybox:edge")).unwrap();
    assert_eq!(records.len(), 1);
    let record = &records[0];
    assert_eq!(record.name, "docker.io/umoci/busybox:edge");
    let index: serde_json::Value = serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(record.digest, index["manifests"][0]["digest"].as_str().unwrap());
    assert_eq!(store.list().unwrap(), records);

    let config = store.config(record).unwrap();
    assert_eq!(config.cmd, ["/bin/busybox", "sh"]);
    assert!(config.env.contains(&"GREETING=hi".to_string()));
    assert_eq!(config.working_dir.as_deref(), Some("/tmp"));
    assert_eq!(config.exposed_ports, ["8080/tcp"]);

    let lower = store.prepare_layers(record).unwrap();
    assert_eq!(lower.len(), 1);
    assert_eq!(fs::read(lower[0].join("bin/busybox")).unwrap(), fs::read("/bin/busybox").unwrap());
}

#[test]
fn imports_a_skopeo_docker_archive_by_its_repo_tags_plain_and_gzipped() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    busybox_layout(&layout, "1");
    let archive = dir.path().join("busybox.tar");
    skopeo(&["copy", "--quiet", &format!("oci:{}:1", layout.display()), &format!("docker-archive:{}:test/busybox:1", archive.display())]);

    let (_tmp, store) = store();
    let records = store.import(&archive, None).unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].name, "docker.io/test/busybox:1");
    assert_eq!(store.config(&records[0]).unwrap().cmd, ["sh"]);
    let lower = store.prepare_layers(&records[0]).unwrap();
    assert_busybox_rootfs(&lower[0]);

    let gzipped = dir.path().join("busybox.tar.gz");
    let mut gz = flate2::write::GzEncoder::new(fs::File::create(&gzipped).unwrap(), flate2::Compression::fast());
    std::io::copy(&mut fs::File::open(&archive).unwrap(), &mut gz).unwrap();
    gz.finish().unwrap();
    let again = store.import(&gzipped, Some("other:2")).unwrap();
    assert_eq!(again[0].name, "docker.io/library/other:2");
    assert_eq!(again[0].digest, records[0].digest, "the same archive builds the same manifest");
    assert_eq!(store.prepare_layers(&again[0]).unwrap(), lower, "snapshots are shared by chain id");
}

#[test]
fn imports_a_skopeo_oci_archive_digest_for_digest() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let manifest = busybox_layout(&layout, "1");
    let archive = dir.path().join("busybox-oci.tar");
    skopeo(&["copy", "--quiet", &format!("oci:{}:1", layout.display()), &format!("oci-archive:{}:v1", archive.display())]);

    let (_tmp, store) = store();
    let err = store.import(&archive, None).unwrap_err().to_string();
    assert!(err.contains("--name"), "{err}");
    let records = store.import(&archive, Some("localhost:5000/team/busybox:v1")).unwrap();
    assert_eq!(records[0].name, "localhost:5000/team/busybox:v1");
    assert_eq!(records[0].digest, manifest.digest.as_str());
    assert_busybox_rootfs(&store.prepare_layers(&records[0]).unwrap()[0]);
}

#[test]
fn names_layouts_by_full_ref_name_annotations() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    busybox_layout(&layout, "registry.example.com/tools/busybox:1.36");
    busybox_layout(&layout, "busybox:latest");
    let (_tmp, store) = store();
    let mut names: Vec<_> = store.import(&layout, None).unwrap().into_iter().map(|r| r.name).collect();
    names.sort();
    assert_eq!(names, ["docker.io/library/busybox:latest", "registry.example.com/tools/busybox:1.36"]);
}

#[test]
fn a_corrupt_layout_blob_is_rejected_by_digest_and_nothing_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let manifest = busybox_layout(&layout, "1");
    let m: serde_json::Value = serde_json::from_slice(&fs::read(layout.join("blobs/sha256").join(manifest.digest.hex())).unwrap()).unwrap();
    let layer_digest = m["layers"][0]["digest"].as_str().unwrap().to_string();
    let layer_path = layout.join("blobs/sha256").join(layer_digest.trim_start_matches("sha256:"));
    let mut bytes = fs::read(&layer_path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    fs::write(&layer_path, bytes).unwrap();

    let (_tmp, store) = store();
    let err = store.import(&layout, Some("busybox")).unwrap_err().to_string();
    assert!(err.contains(&layer_digest) && err.contains("corrupt"), "{err}");
    assert!(store.list().unwrap().is_empty());
    assert!(!store.blobs().path(&image::Digest::parse(&layer_digest).unwrap()).exists());
}

#[test]
fn resolves_by_name_digest_and_prefix_and_remove_collects_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    busybox_layout(&layout, "1");
    let (_tmp, store) = store();
    let a = store.import(&layout, Some("busybox")).unwrap().remove(0);
    let b = store.import(&layout, Some("mirror.local/busybox:1")).unwrap().remove(0);
    assert_eq!(a.digest, b.digest);

    assert_eq!(store.resolve("busybox").unwrap().unwrap().name, "docker.io/library/busybox:latest");
    assert_eq!(store.resolve("docker.io/library/busybox:latest").unwrap(), Some(a.clone()));
    assert_eq!(store.resolve(&a.digest).unwrap().unwrap().digest, a.digest);
    assert_eq!(store.resolve(&a.config_digest).unwrap().unwrap().digest, a.digest);
    assert_eq!(store.resolve(&a.config_digest["sha256:".len()..][..12]).unwrap().unwrap().digest, a.digest);
    assert_eq!(store.resolve(&format!("busybox@{}", a.digest)).unwrap().unwrap().name, a.name);
    assert_eq!(store.resolve("busybox:other").unwrap(), None);

    let lower = store.prepare_layers(&a).unwrap();
    store.remove("busybox").unwrap();
    assert_eq!(store.resolve("busybox").unwrap(), None);
    assert!(lower[0].exists(), "still used by mirror.local/busybox:1");
    assert!(store.prepare_layers(&b).is_ok());

    store.remove(&b.digest).unwrap();
    assert!(store.list().unwrap().is_empty());
    assert!(!lower[0].exists(), "unreferenced snapshot removed");
    assert!(store.blobs().list().unwrap().is_empty(), "unreferenced blobs removed");
    let err = store.remove("busybox").unwrap_err().to_string();
    assert!(err.contains("no image \"busybox\""), "{err}");
}

#[test]
fn refuses_paths_that_are_not_images() {
    let dir = tempfile::tempdir().unwrap();
    let (_tmp, store) = store();
    let err = store.import(dir.path(), None).unwrap_err().to_string();
    assert!(err.contains("is not an OCI image layout"), "{err}");
    let junk = dir.path().join("junk.tar");
    fs::write(&junk, b"definitely not a tarball").unwrap();
    assert!(store.import(&junk, None).is_err());
    assert!(store.import(Path::new("/nonexistent/image.tar"), None).unwrap_err().to_string().contains("/nonexistent"));
}
