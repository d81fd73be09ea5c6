//! npm packages from `package-lock.json` (lockfile versions 1 to 3) and from the
//! `package.json` of installed packages under `node_modules`.

use serde_json::Value;

use super::{purl_escape, Kind, Package};

fn package(name: &str, version: &str, location: &str) -> Option<Package> {
    if name.is_empty() || version.is_empty() {
        return None;
    }
    let purl = match name.strip_prefix('@').and_then(|n| n.split_once('/')) {
        Some((scope, base)) => format!("pkg:npm/%40{}/{}@{}", purl_escape(scope), purl_escape(base), purl_escape(version)),
        None => format!("pkg:npm/{}@{}", purl_escape(name), purl_escape(version)),
    };
    Some(Package {
        kind: Kind::Npm,
        name: name.to_string(),
        version: version.to_string(),
        ecosystem: "npm".into(),
        source: None,
        purl,
        location: location.to_string(),
    })
}

pub(super) fn parse_lock(bytes: &[u8], location: &str) -> Vec<Package> {
    let Ok(lock) = serde_json::from_slice::<Value>(bytes) else {
        tracing::debug!(location, "not a readable package-lock.json");
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Some(packages) = lock.get("packages").and_then(Value::as_object) {
        for (path, meta) in packages {
            let Some(installed) = path.rsplit_once("node_modules/").map(|(_, n)| n) else {
                continue;
            };
            if meta.get("link").and_then(Value::as_bool) == Some(true) {
                continue;
            }
            let name = meta.get("name").and_then(Value::as_str).unwrap_or(installed);
            out.extend(package(name, meta.get("version").and_then(Value::as_str).unwrap_or(""), location));
        }
    } else if let Some(deps) = lock.get("dependencies") {
        v1(deps, location, &mut out);
    }
    out
}

/// Lockfile version 1: nested `dependencies` maps.
fn v1(deps: &Value, location: &str, out: &mut Vec<Package>) {
    let Some(deps) = deps.as_object() else {
        return;
    };
    for (name, meta) in deps {
        out.extend(package(name, meta.get("version").and_then(Value::as_str).unwrap_or(""), location));
        if let Some(nested) = meta.get("dependencies") {
            v1(nested, location, out);
        }
    }
}

pub(super) fn parse_manifest(bytes: &[u8], location: &str) -> Option<Package> {
    let manifest: Value = serde_json::from_slice(bytes).ok()?;
    package(manifest.get("name")?.as_str()?, manifest.get("version")?.as_str()?, location)
}
