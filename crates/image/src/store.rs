//! The image store: blobs, the refs index and snapshots under one root directory, and the
//! operations on named images (list, resolve, config, prepare layers, remove).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::blobs::BlobStore;
use crate::config::{ConfigFile, ImageConfig};
use crate::digest::{Digest, HashingReader};
use crate::manifest::{parse_document, Descriptor, Document, Manifest, MAX_DOCUMENT_SIZE, OCI_MANIFEST};
use crate::reference::normalize_reference;
use crate::refs::{FileLock, ImageRecord, RefIndex};
use crate::snapshots::{chain_ids, Snapshots};
use crate::unpack::{decompress, unpack_tar, Limits, UnpackError, Whiteouts};
use crate::ImageError;

/// Staging entries older than this are debris from a crash.
const STALE_STAGING: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Why a store operation on a named image failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No image matches the reference.
    #[error("no image {reference:?} in the store")]
    NotFound {
        /// The reference looked up.
        reference: String,
    },
    /// The config lists a different number of layers than the manifest.
    #[error("image {manifest}: manifest has {layers} layers but config {config} has {diff_ids} diff_ids")]
    LayerCountMismatch {
        /// Manifest digest.
        manifest: Digest,
        /// Config digest.
        config: Digest,
        /// Layers in the manifest.
        layers: usize,
        /// Diff ids in the config.
        diff_ids: usize,
    },
    /// An unpacked layer's content does not hash to the config's diff id.
    #[error("layer {layer}: uncompressed content hashes to {actual}, but the config says {expected}")]
    DiffIdMismatch {
        /// The layer blob.
        layer: Digest,
        /// Diff id in the config.
        expected: Digest,
        /// Digest of what was unpacked.
        actual: Digest,
    },
    /// A layer failed to unpack.
    #[error("layer {layer}: {source}")]
    Layer {
        /// The layer blob.
        layer: Digest,
        /// Why.
        source: UnpackError,
    },
    /// A manifest that should be an image manifest is an index.
    #[error("{digest} is an index, not an image manifest")]
    NotAnImage {
        /// Its digest.
        digest: Digest,
    },
    /// Filesystem failure at the store root.
    #[error("image store {path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

/// The node's image store, rooted at a directory (e.g. `/var/lib/flotilla/images`).
///
/// Layout: `blobs/sha256/<hex>`, `snapshots/<chain-id-hex>/`, `refs.json`, `tmp/`, lock files.
#[derive(Debug, Clone)]
pub struct ImageStore {
    pub(crate) root: PathBuf,
    pub(crate) blobs: BlobStore,
    pub(crate) refs: RefIndex,
    pub(crate) snapshots: Snapshots,
    pub(crate) limits: Limits,
}

impl ImageStore {
    /// Opens the store at `root`, creating its directories if needed.
    pub fn open(root: &Path) -> Result<Self, ImageError> {
        fs::create_dir_all(root).map_err(|source| StoreError::Io { path: root.to_path_buf(), source })?;
        let tmp = root.join("tmp");
        let store = ImageStore {
            root: root.to_path_buf(),
            blobs: BlobStore::open(&root.join("blobs").join("sha256"), &tmp)?,
            refs: RefIndex::new(root),
            snapshots: Snapshots::open(&root.join("snapshots"), &tmp)?,
            limits: Limits::default(),
        };
        store.sweep_stale_staging(&tmp);
        Ok(store)
    }

    /// Deletes staging debris (interrupted imports, unpacks, downloads) old enough that no live
    /// operation can still own it. Best effort: failures only cost disk space.
    fn sweep_stale_staging(&self, tmp: &Path) {
        let Ok(entries) = fs::read_dir(tmp) else {
            return;
        };
        let cutoff = std::time::SystemTime::now() - STALE_STAGING;
        for entry in entries.flatten() {
            let stale = entry.metadata().and_then(|m| m.modified()).is_ok_and(|t| t < cutoff);
            if stale {
                let path = entry.path();
                tracing::debug!(path = %path.display(), "removing stale staging entry");
                let _ = if path.is_dir() { fs::remove_dir_all(&path) } else { fs::remove_file(&path) };
            }
        }
    }

    /// Sets the per-layer unpack limits used by [`prepare_layers`](Self::prepare_layers) and imports.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The blob store, for callers that need raw content (signature checks, SBOMs).
    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// Every named image, sorted by name.
    pub fn list(&self) -> Result<Vec<ImageRecord>, ImageError> {
        Ok(self.refs.load()?.into_values().collect())
    }

    /// Finds an image by name (`busybox`, normalized first), by `name@digest`, by manifest or
    /// config digest (`sha256:...`), or by a unique hex prefix of at least 12 characters of either.
    pub fn resolve(&self, reference: &str) -> Result<Option<ImageRecord>, ImageError> {
        let images = self.refs.load()?;
        let by_digest = |want: &dyn Fn(&str) -> bool| images.values().find(|r| want(&r.digest) || want(&r.config_digest)).cloned();
        if let Ok(digest) = Digest::parse(reference) {
            return Ok(by_digest(&|d| d == digest.as_str()));
        }
        let is_hex_prefix = reference.len() >= 12 && reference.bytes().all(|b| b.is_ascii_hexdigit());
        if is_hex_prefix {
            let prefix = format!("sha256:{}", reference.to_ascii_lowercase());
            let matches: BTreeSet<_> =
                images.values().filter(|r| r.digest.starts_with(&prefix) || r.config_digest.starts_with(&prefix)).map(|r| r.digest.clone()).collect();
            if matches.len() == 1 {
                return Ok(by_digest(&|d| matches.contains(d)));
            }
        }
        let r = normalize_reference(reference)?;
        if let Some(record) = images.get(&r.to_string()) {
            return Ok(Some(record.clone()));
        }
        Ok(r.digest.as_ref().and_then(|digest| {
            let repo = r.repository_name();
            images.values().find(|rec| rec.digest == digest.as_str() && rec.name.starts_with(&repo)).cloned()
        }))
    }

    /// The runtime configuration of an image (entrypoint, cmd, env, ...).
    pub fn config(&self, image: &ImageRecord) -> Result<ImageConfig, ImageError> {
        let (_, config) = self.load_image(image)?;
        Ok(config.image_config())
    }

    /// The verified manifest of an image.
    pub fn manifest(&self, image: &ImageRecord) -> Result<Manifest, ImageError> {
        Ok(self.load_image(image)?.0)
    }

    /// Unpacks (once per chain id) every layer of the image and returns the overlay lower
    /// directories, top layer first. Each layer's compressed digest and size, and its
    /// uncompressed diff id, are verified before its snapshot becomes visible.
    pub fn prepare_layers(&self, image: &ImageRecord) -> Result<Vec<PathBuf>, ImageError> {
        let _gc = self.gc_shared()?;
        let (manifest, config) = self.load_image(image)?;
        let chains = chain_ids(&config.rootfs.diff_ids);
        let mut dirs = Vec::with_capacity(chains.len());
        for ((layer, diff_id), chain_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids).zip(&chains) {
            let lowers: Vec<PathBuf> = dirs.iter().rev().cloned().collect();
            let dir = self.snapshots.ensure(chain_id, |staging| self.unpack_verified(layer, diff_id, staging, &lowers))?;
            dirs.push(dir);
        }
        dirs.reverse();
        Ok(dirs)
    }

    /// Removes a name (or, for a digest, every name of that image), then deletes blobs and
    /// snapshots no remaining image uses. Callers must not remove images whose layers are mounted.
    pub fn remove(&self, reference: &str) -> Result<(), ImageError> {
        let target = self.resolve(reference)?.ok_or_else(|| StoreError::NotFound { reference: reference.to_string() })?;
        // Removing by exact name drops that name; by digest (or prefix, or name@digest) drops the image.
        let by_name = normalize_reference(reference).is_ok_and(|r| r.to_string() == target.name);
        let _gc = FileLock::exclusive(&self.root.join("gc.lock"))?;
        let remaining = self.refs.update(|images| {
            images.retain(|name, rec| if by_name { *name != target.name } else { rec.digest != target.digest });
            images.clone()
        })?;
        self.collect_garbage(&remaining)
    }

    /// Records `name` → the image manifest `manifest` (whose blobs must all be stored already).
    pub(crate) fn commit_image(&self, name: &str, manifest: &Descriptor) -> Result<ImageRecord, ImageError> {
        let name = normalize_reference(name)?.to_string();
        let probe = ImageRecord { name: name.clone(), digest: manifest.digest.to_string(), config_digest: String::new(), size: manifest.size, created: None };
        let (m, config) = self.load_image(&probe)?;
        for layer in &m.layers {
            if !self.blobs.contains(layer) {
                return Err(crate::BlobError::Missing { digest: layer.digest.clone() }.into());
            }
        }
        let size = manifest.size + m.config.size + m.layers.iter().map(|l| l.size).sum::<u64>();
        let record = ImageRecord { config_digest: m.config.digest.to_string(), size, created: config.created, ..probe };
        self.refs.update(|images| images.insert(name, record.clone()))?;
        Ok(record)
    }

    /// Held (shared) while content is added or used, so garbage collection never deletes it midway.
    pub(crate) fn gc_shared(&self) -> Result<FileLock, ImageError> {
        Ok(FileLock::shared(&self.root.join("gc.lock"))?)
    }

    fn load_image(&self, image: &ImageRecord) -> Result<(Manifest, ConfigFile), ImageError> {
        let digest = Digest::parse(&image.digest)?;
        let desc = Descriptor::new(OCI_MANIFEST, digest.clone(), self.blob_size(&digest)?);
        let bytes = self.blobs.read_verified(&desc, MAX_DOCUMENT_SIZE)?;
        let manifest = match parse_document(&bytes, &digest, "")? {
            Document::Image(m) => *m,
            Document::Index(_) => return Err(StoreError::NotAnImage { digest }.into()),
        };
        let config_bytes = self.blobs.read_verified(&manifest.config, MAX_DOCUMENT_SIZE)?;
        let config = ConfigFile::parse(&config_bytes, &manifest.config.digest)?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(StoreError::LayerCountMismatch {
                manifest: digest,
                config: manifest.config.digest.clone(),
                layers: manifest.layers.len(),
                diff_ids: config.rootfs.diff_ids.len(),
            }
            .into());
        }
        Ok((manifest, config))
    }

    /// A manifest's size is not in the record's digest, so it is taken from the stored file; the
    /// digest check that follows is what makes the content trustworthy.
    fn blob_size(&self, digest: &Digest) -> Result<u64, ImageError> {
        match fs::metadata(self.blobs.path(digest)) {
            Ok(m) => Ok(m.len().min(MAX_DOCUMENT_SIZE + 1)),
            Err(_) => Err(crate::BlobError::Missing { digest: digest.clone() }.into()),
        }
    }

    fn unpack_verified(&self, layer: &Descriptor, diff_id: &Digest, staging: &Path, lowers: &[PathBuf]) -> Result<(), ImageError> {
        let mut blob = self.blobs.open_verified(layer)?;
        let unpacked = (|| {
            let tar = decompress(&mut blob).map_err(|source| UnpackError::Stream { source })?;
            let mut hashing = HashingReader::new(tar);
            unpack_tar(&mut hashing, staging, lowers, &self.limits, Whiteouts::Overlay)?;
            hashing.drain().map_err(|source| UnpackError::Stream { source })?;
            Ok::<_, UnpackError>(hashing.digest())
        })();
        // A corrupt blob explains any unpack failure better than the failure itself.
        blob.finish()?;
        let actual = unpacked.map_err(|source| StoreError::Layer { layer: layer.digest.clone(), source })?;
        if actual != *diff_id {
            return Err(StoreError::DiffIdMismatch { layer: layer.digest.clone(), expected: diff_id.clone(), actual }.into());
        }
        Ok(())
    }

    fn collect_garbage(&self, remaining: &BTreeMap<String, ImageRecord>) -> Result<(), ImageError> {
        let mut blobs = BTreeSet::new();
        let mut chains = BTreeSet::new();
        for record in remaining.values() {
            let (manifest, config) = match self.load_image(record) {
                Ok(loaded) => loaded,
                Err(error) => {
                    // Without knowing everything a remaining image uses, deleting anything is unsafe.
                    tracing::warn!(image = %record.name, %error, "skipping garbage collection");
                    return Ok(());
                }
            };
            blobs.insert(Digest::parse(&record.digest)?);
            blobs.insert(manifest.config.digest.clone());
            blobs.extend(manifest.layers.iter().map(|l| l.digest.clone()));
            chains.extend(chain_ids(&config.rootfs.diff_ids));
        }
        for digest in self.blobs.list()?.into_iter().filter(|d| !blobs.contains(d)) {
            tracing::debug!(%digest, "removing unreferenced blob");
            self.blobs.remove(&digest)?;
        }
        for chain in self.snapshots.list()?.into_iter().filter(|c| !chains.contains(c)) {
            tracing::debug!(%chain, "removing unreferenced snapshot");
            self.snapshots.remove(&chain)?;
        }
        Ok(())
    }
}
