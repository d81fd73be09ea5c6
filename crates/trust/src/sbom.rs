//! The package inventory of an image: OS packages (dpkg, apk) and language artefacts
//! (Cargo.lock, npm, Python distributions, Go build info), each with the OSV ecosystem its
//! advisories are filed under and a package URL.

mod apk;
mod cargo;
mod cyclonedx;
mod dpkg;
mod golang;
mod npm;
mod os;
mod python;
mod spdx;

use std::collections::BTreeSet;
use std::io;
use std::path::Path;

use serde::Serialize;

pub use cyclonedx::to_cyclonedx;
pub use os::OsRelease;
pub use spdx::to_spdx;

use crate::rootfs::Rootfs;

/// Why an inventory could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum SbomError {
    /// Reading the image's files failed.
    #[error("reading {path}: {source}")]
    Io {
        /// The path inside the image.
        path: String,
        /// The error.
        source: io::Error,
    },
}

/// Where a package was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A Debian/Ubuntu package (dpkg database).
    Deb,
    /// An Alpine package (apk database).
    Apk,
    /// A Rust crate in a Cargo.lock.
    Cargo,
    /// An npm package (package-lock.json or node_modules).
    Npm,
    /// A Python distribution (dist-info or egg-info).
    Python,
    /// A Go module compiled into a binary.
    Go,
}

/// One package in the image.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Package {
    /// What found it.
    pub kind: Kind,
    /// The package name.
    pub name: String,
    /// The installed version.
    pub version: String,
    /// The OSV ecosystem advisories for it are filed under (`Debian:12`, `PyPI`); empty when
    /// unknown (an OS package in an image whose release could not be read).
    pub ecosystem: String,
    /// The name and version advisories use when they differ from the package's own: the
    /// source package for dpkg, the origin for apk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<(String, String)>,
    /// The package URL (purl).
    pub purl: String,
    /// The file it was read from, inside the image.
    pub location: String,
}

impl Package {
    /// The name and version to match advisories against.
    pub fn advisory_key(&self) -> (&str, &str) {
        match &self.source {
            Some((name, version)) => (name, version),
            None => (&self.name, &self.version),
        }
    }
}

/// The image an inventory describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// Its name (`registry/repo:tag`).
    pub name: String,
    /// Its manifest digest.
    pub digest: String,
}

/// An image's inventory.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sbom {
    /// The operating system, when `/etc/os-release` says.
    pub os: Option<OsRelease>,
    /// Packages, sorted and without duplicates.
    pub packages: Vec<Package>,
}

/// Directories never searched for language artefacts: kernel and runtime trees with nothing
/// installed in them.
const PRUNED: [&str; 3] = ["proc", "sys", "dev"];

/// Takes the inventory of an image filesystem.
pub fn catalog(rootfs: &Rootfs) -> Result<Sbom, SbomError> {
    let os = os::detect(rootfs)?;
    let ecosystem = os.as_ref().and_then(OsRelease::ecosystem).unwrap_or_default();
    let mut packages = BTreeSet::new();
    packages.extend(dpkg::catalog(rootfs, &ecosystem, os.as_ref())?);
    packages.extend(apk::catalog(rootfs, &ecosystem, os.as_ref())?);
    // Every file: Go programs can have any name, and are recognised by their ELF sections.
    let files = rootfs.files(&|_, _| true, &|name| PRUNED.contains(&name)).map_err(|source| SbomError::Io { path: "/".into(), source })?;
    for file in files {
        let read = || std::fs::read(&file.host).map_err(|source| SbomError::Io { path: file.path.display().to_string(), source });
        let location = format!("/{}", file.path.display());
        match file.path.file_name().and_then(|n| n.to_str()).unwrap_or("") {
            _ if file.path.parent() == Some(Path::new(dpkg::STATUS_D)) => {
                packages.extend(dpkg::parse(&String::from_utf8_lossy(&read()?), &location, &ecosystem, os.as_ref()))
            }
            "Cargo.lock" => packages.extend(cargo::parse(&read()?, &location)),
            "package-lock.json" => packages.extend(npm::parse_lock(&read()?, &location)),
            "package.json" if in_node_modules(&file.path) => packages.extend(npm::parse_manifest(&read()?, &location)),
            _ if python::is_metadata(&file.path) => packages.extend(python::parse(&read()?, &location)),
            _ if file.executable => packages.extend(golang::parse(&file.host, &location)),
            _ => {}
        }
    }
    Ok(Sbom { os, packages: packages.into_iter().collect() })
}

/// `node_modules/<name>/package.json` or `node_modules/@scope/<name>/package.json`.
fn in_node_modules(path: &Path) -> bool {
    let package_dir = path.parent();
    let above = package_dir.and_then(Path::parent);
    above.is_some_and(|p| p.ends_with("node_modules"))
        || above
            .and_then(Path::parent)
            .is_some_and(|p| p.ends_with("node_modules") && above.and_then(Path::file_name).is_some_and(|s| s.to_string_lossy().starts_with('@')))
}

/// Percent-encodes a purl name or version segment.
fn purl_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Splits RFC 822-style paragraphs (dpkg status, apk installed) into `(field, value)` lists;
/// continuation lines are appended to the previous value.
fn paragraphs(text: &str, separator: char) -> Vec<Vec<(&str, String)>> {
    let mut out = Vec::new();
    let mut current: Vec<(&str, String)> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
        } else if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = current.last_mut() {
                value.push('\n');
                value.push_str(line.trim());
            }
        } else if let Some((key, value)) = line.split_once(separator) {
            current.push((key.trim(), value.trim().to_string()));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

fn field<'a>(paragraph: &'a [(&str, String)], name: &str) -> Option<&'a str> {
    paragraph.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests;
