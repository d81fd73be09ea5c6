//! Importing a docker-archive (`manifest.json`, `<config>.json`, layer tars), as written by
//! `docker save` and skopeo `docker-archive:`. The archive has no manifests of its own, so an OCI
//! manifest is built for each image from its config and layers.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use serde::Deserialize;

use crate::config::ConfigFile;
use crate::import::{open_in, read_small, ImportError};
use crate::manifest::{Manifest, MAX_DOCUMENT_SIZE, OCI_CONFIG, OCI_LAYER_GZIP, OCI_LAYER_TAR, OCI_MANIFEST};
use crate::refs::ImageRecord;
use crate::store::ImageStore;
use crate::ImageError;

/// One image in `manifest.json`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ArchiveImage {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// Imports every image in the docker-archive at `dir` (or the only one, as `name`).
pub(crate) fn import(store: &ImageStore, dir: &Path, origin: &Path, name: Option<&str>) -> Result<Vec<ImageRecord>, ImageError> {
    let invalid = |file: &str, reason: String| ImportError::Invalid { path: origin.join(file), reason };
    let images: Vec<ArchiveImage> =
        serde_json::from_slice(&read_small(dir, "manifest.json", MAX_DOCUMENT_SIZE)?).map_err(|e| invalid("manifest.json", e.to_string()))?;
    match (images.len(), name) {
        (0, _) => return Err(invalid("manifest.json", "lists no images".to_string()).into()),
        (n, Some(_)) if n > 1 => return Err(invalid("manifest.json", format!("lists {n} images; a name can be given to only one")).into()),
        _ => {}
    }
    let mut records = Vec::new();
    for image in &images {
        let names = match name {
            Some(name) => vec![name.to_string()],
            None => image.repo_tags.clone().unwrap_or_default(),
        };
        if names.is_empty() {
            return Err(ImportError::NameRequired { path: origin.to_path_buf(), reason: format!("image {} has no RepoTags", image.config) }.into());
        }
        let manifest = store_image(store, dir, origin, image)?;
        for name in names {
            records.push(store.commit_image(&name, &manifest)?);
        }
    }
    Ok(records)
}

/// Stores the config and layers of one image plus an OCI manifest for them; returns the manifest.
fn store_image(store: &ImageStore, dir: &Path, origin: &Path, image: &ArchiveImage) -> Result<crate::Descriptor, ImageError> {
    let config_bytes = read_small(dir, &image.config, MAX_DOCUMENT_SIZE)?;
    let config_desc = store.blobs.put_bytes(OCI_CONFIG, &config_bytes)?;
    let config = ConfigFile::parse(&config_bytes, &config_desc.digest)?;
    if config.rootfs.diff_ids.len() != image.layers.len() {
        return Err(ImportError::Invalid {
            path: origin.join(&image.config),
            reason: format!("{} diff_ids for {} layers", config.rootfs.diff_ids.len(), image.layers.len()),
        }
        .into());
    }
    let mut layers = Vec::with_capacity(image.layers.len());
    for (path, diff_id) in image.layers.iter().zip(&config.rootfs.diff_ids) {
        let mut file = open_in(dir, path)?;
        let io_err = |source| ImportError::Io { path: origin.join(path), source };
        let mut magic = [0u8; 4];
        let got = file.read(&mut magic).map_err(io_err)?;
        file.seek(SeekFrom::Start(0)).map_err(io_err)?;
        let media_type = match &magic[..got] {
            [0x1f, 0x8b, ..] => OCI_LAYER_GZIP,
            [0x28, 0xb5, 0x2f, 0xfd] => "application/vnd.oci.image.layer.v1.tar+zstd",
            _ => OCI_LAYER_TAR,
        };
        let desc = store.blobs.put_unknown(media_type, file)?;
        // Uncompressed layers are checkable against the config right away; compressed ones are
        // checked against their diff id when unpacked.
        if media_type == OCI_LAYER_TAR && desc.digest != *diff_id {
            return Err(ImportError::Invalid {
                path: origin.join(path),
                reason: format!("layer hashes to {} but the config's diff_id is {diff_id}", desc.digest),
            }
            .into());
        }
        layers.push(desc);
    }
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST.to_string()),
        config: config_desc,
        layers,
        annotations: BTreeMap::new(),
        artifact_type: None,
        subject: None,
    };
    let bytes = serde_json::to_vec(&manifest).map_err(|e| ImportError::Invalid { path: origin.to_path_buf(), reason: format!("serializing manifest: {e}") })?;
    Ok(store.blobs.put_bytes(OCI_MANIFEST, &bytes)?)
}
