//! Which operating system an image is, from `/etc/os-release` (or `/usr/lib/os-release`).

use serde::Serialize;

use super::SbomError;
use crate::rootfs::Rootfs;

/// The fields of os-release that decide which advisories apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OsRelease {
    /// `ID` (`debian`, `alpine`, `ubuntu`).
    pub id: String,
    /// `VERSION_ID` (`12`, `3.18.4`), or Debian's `/etc/debian_version` where os-release has none.
    pub version_id: String,
    /// `PRETTY_NAME`.
    pub pretty_name: String,
}

impl OsRelease {
    /// The OSV ecosystem of this release's packages (`Debian:12`, `Alpine:v3.18`, `Ubuntu:22.04`).
    pub fn ecosystem(&self) -> Option<String> {
        let mut parts = self.version_id.split('.');
        let major = parts.next().filter(|m| !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit()))?;
        match self.id.as_str() {
            "debian" => Some(format!("Debian:{major}")),
            "alpine" => Some(format!("Alpine:v{major}.{}", parts.next()?)),
            "ubuntu" => Some(format!("Ubuntu:{}", self.version_id)),
            _ => None,
        }
    }
}

pub(super) fn detect(rootfs: &Rootfs) -> Result<Option<OsRelease>, SbomError> {
    let read = |path: &str| rootfs.read(path).map_err(|source| SbomError::Io { path: path.to_string(), source });
    let Some(bytes) = read("/etc/os-release")?.or(read("/usr/lib/os-release")?) else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&bytes);
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(|v| v.trim().trim_matches(|c| c == '"' || c == '\'').to_string())
            .unwrap_or_default()
    };
    let mut release = OsRelease { id: value("ID"), version_id: value("VERSION_ID"), pretty_name: value("PRETTY_NAME") };
    if release.id == "debian" && release.version_id.is_empty() {
        if let Some(v) = read("/etc/debian_version")? {
            release.version_id = String::from_utf8_lossy(&v).trim().to_string();
        }
    }
    Ok(Some(release))
}
