//! What is in an image and whether to trust it: package inventories (SBOMs), vulnerability
//! matching against OSV advisories, and (with the image crate) signatures and image policy.
#![forbid(unsafe_code)]

pub mod cosign;
pub mod enforce;
pub mod fuzzing;
pub mod osv;
pub mod policy;
pub mod rootfs;
pub mod sbom;
pub mod scan;
pub mod severity;
pub mod signatures;
pub mod version;
pub mod vulndb;
