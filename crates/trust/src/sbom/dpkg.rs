//! Debian packages from the dpkg database: `/var/lib/dpkg/status` and the one-file-per-package
//! `/var/lib/dpkg/status.d/` that distroless images use.

use super::{field, paragraphs, purl_escape, Kind, OsRelease, Package, SbomError};
use crate::rootfs::Rootfs;

const STATUS: &str = "/var/lib/dpkg/status";
/// The one-file-per-package directory; the inventory's walk of the image finds its files.
pub(super) const STATUS_D: &str = "var/lib/dpkg/status.d";

pub(super) fn catalog(rootfs: &Rootfs, ecosystem: &str, os: Option<&OsRelease>) -> Result<Vec<Package>, SbomError> {
    match rootfs.read(STATUS).map_err(|source| SbomError::Io { path: STATUS.into(), source })? {
        Some(bytes) => Ok(parse(&String::from_utf8_lossy(&bytes), STATUS, ecosystem, os)),
        None => Ok(Vec::new()),
    }
}

/// Packages in a status file that are installed (or, in status.d files, simply listed).
pub(super) fn parse(text: &str, location: &str, ecosystem: &str, os: Option<&OsRelease>) -> Vec<Package> {
    let distro = os.map(|o| format!("&distro={}-{}", o.id, o.version_id)).unwrap_or_default();
    let namespace = os.map(|o| o.id.as_str()).filter(|id| !id.is_empty()).unwrap_or("debian");
    paragraphs(text, ':')
        .iter()
        .filter_map(|p| {
            if let Some(status) = field(p, "Status") {
                if status.split_whitespace().last() != Some("installed") {
                    return None;
                }
            }
            let name = field(p, "Package")?.to_string();
            let version = field(p, "Version")?.to_string();
            let arch = field(p, "Architecture").unwrap_or("all");
            let source = field(p, "Source").map(|s| match s.split_once(' ') {
                Some((name, version)) => (name.to_string(), version.trim().trim_start_matches('(').trim_end_matches(')').to_string()),
                None => (s.to_string(), version.clone()),
            });
            let purl = format!("pkg:deb/{namespace}/{}@{}?arch={arch}{distro}", purl_escape(&name), purl_escape(&version));
            Some(Package { kind: Kind::Deb, name, version, ecosystem: ecosystem.to_string(), source, purl, location: location.to_string() })
        })
        .collect()
}
