//! Python distributions from their installed metadata: `*.dist-info/METADATA` and
//! `*.egg-info/PKG-INFO`.

use std::path::Path;

use super::{purl_escape, Kind, Package};
use crate::osv::normalize_name;

/// Whether `path` is the metadata file of an installed distribution (an `.egg-info` may also
/// be a single file holding what PKG-INFO would).
pub(super) fn is_metadata(path: &Path) -> bool {
    let parent = path.parent().and_then(Path::file_name).and_then(|n| n.to_str()).unwrap_or("");
    match path.file_name().and_then(|n| n.to_str()) {
        Some("METADATA") => parent.ends_with(".dist-info"),
        Some("PKG-INFO") => parent.ends_with(".egg-info"),
        Some(name) => name.ends_with(".egg-info"),
        None => false,
    }
}

pub(super) fn parse(bytes: &[u8], location: &str) -> Option<Package> {
    let text = String::from_utf8_lossy(bytes);
    let header = |key: &str| text.lines().take_while(|l| !l.is_empty()).find_map(|l| l.strip_prefix(key)?.strip_prefix(':')).map(|v| v.trim().to_string());
    let name = header("Name").filter(|n| !n.is_empty())?;
    let version = header("Version").filter(|v| !v.is_empty())?;
    Some(Package {
        kind: Kind::Python,
        purl: format!("pkg:pypi/{}@{}", purl_escape(&normalize_name("PyPI", &name)), purl_escape(&version)),
        name,
        version,
        ecosystem: "PyPI".into(),
        source: None,
        location: location.to_string(),
    })
}
