//! Importing an OCI image layout directory (`oci-layout`, `index.json`, `blobs/sha256/`), as
//! written by umoci, skopeo `oci:`/`oci-archive:` and docker 25+ `docker save`.

use std::path::Path;

use crate::import::{open_in, read_small, ImportError};
use crate::manifest::{parse_document, select_platform, Descriptor, Document, Index, ManifestError, Platform, MAX_DOCUMENT_SIZE};
use crate::reference::normalize_reference;
use crate::refs::ImageRecord;
use crate::store::ImageStore;
use crate::ImageError;

/// The OCI annotation naming an index entry (a tag, or a full reference).
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// containerd's (and docker's) annotation carrying the full reference.
pub const CONTAINERD_NAME: &str = "io.containerd.image.name";
const MAX_INDEX_DEPTH: usize = 2;

/// Imports every image `index.json` lists (or the one `name` selects) from the layout at `dir`.
pub(crate) fn import(store: &ImageStore, dir: &Path, origin: &Path, name: Option<&str>) -> Result<Vec<ImageRecord>, ImageError> {
    let invalid = |file: &str, reason: String| ImportError::Invalid { path: origin.join(file), reason };
    if let Ok(bytes) = read_small(dir, "oci-layout", 4096) {
        let version =
            serde_json::from_slice::<serde_json::Value>(&bytes).ok().and_then(|v| v.get("imageLayoutVersion").and_then(|v| v.as_str()).map(str::to_string));
        if !version.as_deref().is_some_and(|v| v.starts_with("1.")) {
            return Err(invalid("oci-layout", format!("unsupported imageLayoutVersion {version:?}")).into());
        }
    }
    let index: Index = serde_json::from_slice(&read_small(dir, "index.json", MAX_DOCUMENT_SIZE)?).map_err(|e| invalid("index.json", e.to_string()))?;
    if index.manifests.is_empty() {
        return Err(invalid("index.json", "lists no images".to_string()).into());
    }
    let chosen: Vec<(String, &Descriptor)> = match name {
        Some(name) => vec![(name.to_string(), entry_for_name(&index, name, origin)?)],
        None => index.manifests.iter().map(|d| Ok((name_from_annotations(d, origin)?, d))).collect::<Result<_, ImportError>>()?,
    };
    let mut records = Vec::with_capacity(chosen.len());
    for (name, entry) in chosen {
        let name = normalize_reference(&name)?.to_string();
        let manifest = copy_image(store, dir, entry, 0)?;
        records.push(store.commit_image(&name, &manifest)?);
    }
    Ok(records)
}

/// The index entry an explicit name refers to: the only one, or the one whose ref name matches.
fn entry_for_name<'a>(index: &'a Index, name: &str, origin: &Path) -> Result<&'a Descriptor, ImageError> {
    if let [only] = index.manifests.as_slice() {
        return Ok(only);
    }
    let wanted = normalize_reference(name)?;
    let matching: Vec<_> = index
        .manifests
        .iter()
        .filter(|d| d.annotations.get(REF_NAME).is_some_and(|r| Some(r) == wanted.tag.as_ref() || normalize_reference(r).is_ok_and(|r| r == wanted)))
        .collect();
    match matching.as_slice() {
        [one] => Ok(one),
        _ => {
            let names: Vec<_> = index.manifests.iter().filter_map(|d| d.annotations.get(REF_NAME)).cloned().collect();
            Err(ImportError::Invalid {
                path: origin.join("index.json"),
                reason: format!("lists {} images (ref names: {}); {} of them match {name:?}", index.manifests.len(), names.join(", "), matching.len()),
            }
            .into())
        }
    }
}

fn name_from_annotations(entry: &Descriptor, origin: &Path) -> Result<String, ImportError> {
    if let Some(full) = entry.annotations.get(CONTAINERD_NAME) {
        return Ok(full.clone());
    }
    let required = |reason: String| ImportError::NameRequired { path: origin.to_path_buf(), reason };
    match entry.annotations.get(REF_NAME) {
        Some(r) if r.contains(['/', ':', '@']) => Ok(r.clone()),
        Some(tag) => Err(required(format!("image {} is named only by the tag {tag:?}", entry.digest))),
        None => Err(required(format!("image {} has no {REF_NAME} annotation", entry.digest))),
    }
}

/// Copies one blob from the layout into the store, verified against its descriptor.
fn copy_blob(store: &ImageStore, dir: &Path, desc: &Descriptor) -> Result<(), ImageError> {
    if store.blobs.contains(desc) {
        return Ok(());
    }
    let file = open_in(dir, &format!("blobs/sha256/{}", desc.digest.hex()))?;
    Ok(store.blobs.put_reader(desc, file)?)
}

/// Copies the image `desc` refers to, choosing the host's platform in indexes; returns the
/// descriptor of the image manifest.
fn copy_image(store: &ImageStore, dir: &Path, desc: &Descriptor, depth: usize) -> Result<Descriptor, ImageError> {
    copy_blob(store, dir, desc)?;
    let bytes = store.blobs.read_verified(desc, MAX_DOCUMENT_SIZE)?;
    match parse_document(&bytes, &desc.digest, &desc.media_type)? {
        Document::Index(index) => {
            if depth >= MAX_INDEX_DEPTH {
                return Err(ManifestError::TooDeep { digest: desc.digest.to_string() }.into());
            }
            let chosen = select_platform(&index, &desc.digest, &Platform::host())?.clone();
            copy_image(store, dir, &chosen, depth + 1)
        }
        Document::Image(manifest) => {
            copy_blob(store, dir, &manifest.config)?;
            for layer in &manifest.layers {
                copy_blob(store, dir, layer)?;
            }
            Ok(desc.clone())
        }
    }
}
