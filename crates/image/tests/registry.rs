//! Pulling from a real registry (Debian's docker-registry) that skopeo pushed to.

mod common;

use std::fs;

use common::{assert_busybox_rootfs, skopeo, store};
use image::testing::{busybox_layout, put_blob, tag_layout, write_layout, Registry};
use image::{Descriptor, ImageError, Platform, PullOptions, RegistryError, OCI_INDEX};

#[tokio::test]
async fn pulls_what_skopeo_pushed_digest_for_digest() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let manifest = busybox_layout(&layout, "1");
    let reference = registry.push(&layout, "1", "test/busybox", "1");
    let inspected = skopeo(&["inspect", "--tls-verify=false", "--format", "{{.Digest}}", &format!("docker://{reference}")]);

    let (_tmp, store) = store();
    let record = store.pull(&reference, &PullOptions::default()).await.unwrap();
    assert_eq!(record.name, format!("{}/test/busybox:1", registry.addr));
    assert_eq!(record.digest, manifest.digest.as_str());
    assert_eq!(record.digest, inspected.trim());
    let pulled = store.manifest(&record).unwrap();
    let pushed: image::Manifest = serde_json::from_slice(&fs::read(layout.join("blobs/sha256").join(manifest.digest.hex())).unwrap()).unwrap();
    assert_eq!(pulled.config, pushed.config);
    assert_eq!(pulled.layers, pushed.layers);
    assert_eq!(store.config(&record).unwrap().cmd, ["sh"]);
    assert_busybox_rootfs(&store.prepare_layers(&record).unwrap()[0]);
    assert_eq!(store.resolve(&reference).unwrap(), Some(record.clone()));

    let by_digest = format!("{}/test/busybox@{}", registry.addr, record.digest);
    let pinned = store.pull(&by_digest, &PullOptions::default()).await.unwrap();
    assert_eq!(pinned.digest, record.digest);
    assert_eq!(pinned.name, by_digest);

    let err = store.pull(&format!("{}/test/busybox:missing", registry.addr), &PullOptions::default()).await.unwrap_err();
    assert!(matches!(err, ImageError::Registry(RegistryError::Status { status: 404, .. })), "{err}");
}

#[tokio::test]
async fn chooses_the_platform_from_a_pushed_index() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let host = busybox_layout(&layout, "host");
    let other = write_layout(&layout, "other", &[common::layer(&[("marker", Some(b"riscv"))])], &["true"]);
    let host_platform = Platform::host();
    let riscv = Platform { architecture: "riscv64".into(), os: "linux".into(), variant: None };
    let entry = |desc: &Descriptor, platform: &Platform| Descriptor { platform: Some(platform.clone()), ..desc.clone() };
    let index = serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [entry(&other, &riscv), entry(&host, &host_platform)],
    });
    let index = put_blob(&layout, OCI_INDEX, &serde_json::to_vec(&index).unwrap());
    tag_layout(&layout, "multi", &index);
    let reference = format!("{}/test/multi:1", registry.addr);
    skopeo(&["copy", "--quiet", "--all", "--dest-tls-verify=false", &format!("oci:{}:multi", layout.display()), &format!("docker://{reference}")]);

    let (_tmp, store) = store();
    let record = store.pull(&reference, &PullOptions::default()).await.unwrap();
    assert_eq!(record.digest, host.digest.as_str(), "the host's platform is chosen");
    let opts = PullOptions { platform: riscv, ..PullOptions::default() };
    let record = store.pull(&reference, &opts).await.unwrap();
    assert_eq!(record.digest, other.digest.as_str());
    let lower = store.prepare_layers(&record).unwrap();
    assert_eq!(fs::read(lower[0].join("marker")).unwrap(), b"riscv");

    let s390x = PullOptions { platform: Platform { architecture: "s390x".into(), os: "linux".into(), variant: None }, ..PullOptions::default() };
    let err = store.pull(&reference, &s390x).await.unwrap_err().to_string();
    assert!(err.contains("linux/s390x") && err.contains("linux/riscv64"), "{err}");
}

#[tokio::test]
async fn a_corrupted_registry_blob_is_rejected_by_digest() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let manifest = busybox_layout(&layout, "1");
    let reference = registry.push(&layout, "1", "test/busybox", "1");
    let pushed: image::Manifest = serde_json::from_slice(&fs::read(layout.join("blobs/sha256").join(manifest.digest.hex())).unwrap()).unwrap();
    let layer = &pushed.layers[0].digest;
    let data = registry.storage.join("docker/registry/v2/blobs/sha256").join(&layer.hex()[..2]).join(layer.hex()).join("data");
    let mut bytes = fs::read(&data).unwrap();
    bytes[100] ^= 0xff;
    fs::write(&data, bytes).unwrap();

    let (_tmp, store) = store();
    let err = store.pull(&reference, &PullOptions::default()).await.unwrap_err();
    assert!(matches!(err, ImageError::Blob(image::BlobError::Corrupt { .. })), "{err}");
    assert!(err.to_string().contains(layer.as_str()), "{err}");
    assert!(store.list().unwrap().is_empty());
    assert!(!store.blobs().path(layer).exists());
}
