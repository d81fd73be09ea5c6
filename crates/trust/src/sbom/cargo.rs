//! Rust crates from a `Cargo.lock`: the registry packages (path and git dependencies are not
//! crates.io releases, so no advisory names them).

use serde::Deserialize;

use super::{purl_escape, Kind, Package};

#[derive(Deserialize)]
struct Lock {
    #[serde(default)]
    package: Vec<Locked>,
}

#[derive(Deserialize)]
struct Locked {
    name: String,
    version: String,
    source: Option<String>,
}

pub(super) fn parse(bytes: &[u8], location: &str) -> Vec<Package> {
    let Ok(lock) = toml::from_str::<Lock>(&String::from_utf8_lossy(bytes)) else {
        tracing::debug!(location, "not a readable Cargo.lock");
        return Vec::new();
    };
    lock.package
        .into_iter()
        .filter(|p| p.source.as_deref().is_some_and(|s| s.starts_with("registry+") || s.starts_with("sparse+")))
        .map(|p| Package {
            kind: Kind::Cargo,
            purl: format!("pkg:cargo/{}@{}", purl_escape(&p.name), purl_escape(&p.version)),
            name: p.name,
            version: p.version,
            ecosystem: "crates.io".into(),
            source: None,
            location: location.to_string(),
        })
        .collect()
}
