//! The node's OCI image store: import image layouts and archives, pull from registries, verify
//! every blob, unpack layers into overlay lower directories, and mount overlay root filesystems.
//!
//! ```no_run
//! # async fn demo() -> Result<(), image::ImageError> {
//! use std::path::Path;
//! let store = image::ImageStore::open(Path::new("/var/lib/flotilla/images"))?;
//! let busybox = store.pull("busybox", &image::PullOptions::default()).await?;
//! let lower = store.prepare_layers(&busybox)?;
//! image::mount_overlay(&lower, Path::new("/run/c1/upper"), Path::new("/run/c1/work"), Path::new("/run/c1/rootfs"))?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod blobs;
mod config;
mod digest;
mod docker_archive;
mod durable;
#[doc(hidden)]
pub mod fuzzing;
mod import;
mod layout;
mod manifest;
mod overlay;
mod reference;
mod refs;
mod registry;
mod snapshots;
mod store;
mod unpack;

#[cfg(feature = "testing")]
pub mod testing;

pub use blobs::{BlobError, BlobStore, BlobWriter, VerifyingReader};
pub use config::ImageConfig;
pub use digest::{Digest, DigestError};
pub use import::ImportError;
pub use layout::{CONTAINERD_NAME, REF_NAME};
pub use manifest::{
    Descriptor, Document, Index, Manifest, ManifestError, Platform, DOCKER_CONFIG, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_CONFIG, OCI_INDEX,
    OCI_LAYER_GZIP, OCI_LAYER_TAR, OCI_MANIFEST,
};
pub use overlay::{mount_overlay, overlay_options, unmount, KernelMounter, Mounter, OverlayError};
pub use reference::{normalize_reference, Reference, ReferenceError, DEFAULT_REGISTRY};
pub use refs::{ImageRecord, RefsError};
pub use registry::referrers_tag;
pub use registry::{plain_http_allowed, Credentials, PullOptions, RegistryError, Remote};
pub use snapshots::{chain_ids, SnapshotError};
pub use store::{ImageStore, StoreError};
pub use unpack::{unpack_layer, Limits, SetIdPolicy, UnpackError, UnpackStats};

/// Every way an image store operation can fail.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A malformed or unsupported digest.
    #[error(transparent)]
    Digest(#[from] DigestError),
    /// A malformed image reference.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// A blob failed verification or storage.
    #[error(transparent)]
    Blob(#[from] BlobError),
    /// A manifest, index or config was refused.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A layer could not be unpacked.
    #[error(transparent)]
    Unpack(#[from] UnpackError),
    /// The refs index could not be read or written.
    #[error(transparent)]
    Refs(#[from] RefsError),
    /// A snapshot directory could not be managed.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// An operation on a named image failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A local image could not be imported.
    #[error(transparent)]
    Import(#[from] ImportError),
    /// A registry pull failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// An overlay mount failed.
    #[error(transparent)]
    Overlay(#[from] OverlayError),
}
