//! Alpine packages from the apk database (`/lib/apk/db/installed`).

use super::{field, paragraphs, purl_escape, Kind, OsRelease, Package, SbomError};
use crate::rootfs::Rootfs;

const INSTALLED: &str = "/lib/apk/db/installed";

pub(super) fn catalog(rootfs: &Rootfs, ecosystem: &str, os: Option<&OsRelease>) -> Result<Vec<Package>, SbomError> {
    let Some(bytes) = rootfs.read(INSTALLED).map_err(|source| SbomError::Io { path: INSTALLED.into(), source })? else {
        return Ok(Vec::new());
    };
    Ok(parse(&String::from_utf8_lossy(&bytes), ecosystem, os))
}

/// Packages in an apk `installed` file; advisories name the origin (source) package.
pub(super) fn parse(text: &str, ecosystem: &str, os: Option<&OsRelease>) -> Vec<Package> {
    let distro = os.map(|o| format!("&distro={}", o.version_id)).unwrap_or_default();
    paragraphs(text, ':')
        .iter()
        .filter_map(|p| {
            let name = field(p, "P")?.to_string();
            let version = field(p, "V")?.to_string();
            let arch = field(p, "A").unwrap_or("noarch");
            let source = field(p, "o").filter(|origin| *origin != name).map(|origin| (origin.to_string(), version.clone()));
            let purl = format!("pkg:apk/alpine/{}@{}?arch={arch}{distro}", purl_escape(&name), purl_escape(&version));
            Some(Package { kind: Kind::Apk, name, version, ecosystem: ecosystem.to_string(), source, purl, location: INSTALLED.to_string() })
        })
        .collect()
}
