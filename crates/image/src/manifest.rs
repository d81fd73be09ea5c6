//! OCI and Docker schema2 manifest, index and descriptor documents, and platform selection.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI uncompressed layer.
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// OCI gzip layer.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Docker schema2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// Layer media types this store can unpack (the content is sniffed; these only gate what is accepted).
const LAYER_TYPES: &[&str] = &[
    OCI_LAYER_TAR,
    OCI_LAYER_GZIP,
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
];

/// Largest manifest, index or config document read into memory.
pub const MAX_DOCUMENT_SIZE: u64 = 8 << 20;

/// Why a manifest-like document was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Not valid JSON for the expected document.
    #[error("{what} {digest}: malformed JSON: {source}")]
    Malformed {
        /// Which document (manifest, index, config).
        what: &'static str,
        /// Its digest.
        digest: String,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A media type this store does not handle (schema1, artifacts, encrypted layers...).
    #[error("{digest}: unsupported media type {media_type:?}")]
    UnsupportedMediaType {
        /// The document or layer digest.
        digest: String,
        /// Its media type.
        media_type: String,
    },
    /// An index listed no image for the wanted platform.
    #[error("index {digest} has no image for {platform} (it has: {available})")]
    NoMatchingPlatform {
        /// The index digest.
        digest: String,
        /// The wanted platform.
        platform: String,
        /// The platforms it does list.
        available: String,
    },
    /// Indexes nested deeper than this store follows.
    #[error("index {digest}: indexes nested too deeply")]
    TooDeep {
        /// The index digest.
        digest: String,
    },
}

/// A content descriptor: what a blob is, its digest and size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the referenced content.
    #[serde(default)]
    pub media_type: String,
    /// Digest of the content.
    pub digest: Digest,
    /// Exact size in bytes.
    pub size: u64,
    /// Platform, in index entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Annotations (`org.opencontainers.image.ref.name`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// The artifact type of the manifest described, in referrers indexes (OCI 1.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

impl Descriptor {
    /// A descriptor with no platform or annotations.
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Self {
        Descriptor { media_type: media_type.to_string(), digest, size, platform: None, annotations: BTreeMap::new(), artifact_type: None }
    }
}

/// An OS/architecture pair as used in indexes and configs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// CPU architecture in Go's naming (`amd64`, `arm64`).
    pub architecture: String,
    /// Operating system (`linux`).
    pub os: String,
    /// Architecture variant (`v8`), when relevant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// `linux` on this host's architecture.
    pub fn host() -> Self {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        Platform { architecture: architecture.to_string(), os: "linux".to_string(), variant: None }
    }

    fn matches(&self, other: &Platform) -> bool {
        self.os == other.os && self.architecture == other.architecture && (self.variant.is_none() || self.variant == other.variant)
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// An image manifest (OCI or Docker schema2: the shapes agree).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always 2.
    pub schema_version: u32,
    /// Media type, when the document states it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The image config blob.
    pub config: Descriptor,
    /// Layers, bottom first.
    pub layers: Vec<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// What kind of artifact this manifest is, when it is not an image (OCI 1.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The manifest this one refers to (OCI 1.1 referrers: signatures, SBOMs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
}

/// An image index or Docker manifest list.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// Always 2.
    pub schema_version: u32,
    /// Media type, when the document states it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The manifests (or nested indexes) it lists.
    pub manifests: Vec<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A parsed manifest-like document.
#[derive(Debug, Clone)]
pub enum Document {
    /// A single-platform image manifest.
    Image(Box<Manifest>),
    /// An index pointing at manifests.
    Index(Index),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    schema_version: Option<u32>,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
}

/// Parses a manifest or index; `hint` is the media type from the descriptor or HTTP header.
pub fn parse_document(bytes: &[u8], digest: &Digest, hint: &str) -> Result<Document, ManifestError> {
    let malformed = |what, source| ManifestError::Malformed { what, digest: digest.to_string(), source };
    let probe: Probe = serde_json::from_slice(bytes).map_err(|e| malformed("manifest", e))?;
    let media_type = probe.media_type.clone().unwrap_or_else(|| hint.to_string());
    let unsupported = |media_type: String| ManifestError::UnsupportedMediaType { digest: digest.to_string(), media_type };
    let is_index = match media_type.as_str() {
        OCI_INDEX | DOCKER_MANIFEST_LIST => true,
        OCI_MANIFEST | DOCKER_MANIFEST => false,
        "" | "application/json" => probe.manifests.is_some(),
        other => return Err(unsupported(other.to_string())),
    };
    if probe.schema_version != Some(2) {
        return Err(unsupported(format!("{media_type} (schemaVersion {:?})", probe.schema_version)));
    }
    if is_index {
        serde_json::from_slice(bytes).map(Document::Index).map_err(|e| malformed("index", e))
    } else {
        let manifest: Manifest = serde_json::from_slice(bytes).map_err(|e| malformed("manifest", e))?;
        if let Some(layer) = manifest.layers.iter().find(|l| !LAYER_TYPES.contains(&l.media_type.as_str())) {
            return Err(ManifestError::UnsupportedMediaType { digest: layer.digest.to_string(), media_type: layer.media_type.clone() });
        }
        Ok(Document::Image(Box::new(manifest)))
    }
}

/// Picks the entry of `index` for `platform`.
pub fn select_platform<'a>(index: &'a Index, index_digest: &Digest, platform: &Platform) -> Result<&'a Descriptor, ManifestError> {
    index.manifests.iter().find(|d| d.platform.as_ref().is_some_and(|p| platform.matches(p))).ok_or_else(|| ManifestError::NoMatchingPlatform {
        digest: index_digest.to_string(),
        platform: platform.to_string(),
        available: index.manifests.iter().map(|d| d.platform.as_ref().map_or_else(|| "unknown".to_string(), |p| p.to_string())).collect::<Vec<_>>().join(", "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> Digest {
        Digest::of(&[n])
    }

    #[test]
    fn detects_index_and_manifest_and_refuses_schema1() {
        let manifest = serde_json::json!({"schemaVersion": 2, "config": {"mediaType": OCI_CONFIG, "digest": d(1), "size": 3}, "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": d(2), "size": 5}]});
        let bytes = serde_json::to_vec(&manifest).unwrap();
        assert!(matches!(parse_document(&bytes, &d(0), OCI_MANIFEST), Ok(Document::Image(m)) if m.layers.len() == 1));
        assert!(matches!(parse_document(&bytes, &d(0), ""), Ok(Document::Image(_))));
        let index = serde_json::json!({"schemaVersion": 2, "manifests": []});
        assert!(matches!(parse_document(&serde_json::to_vec(&index).unwrap(), &d(0), ""), Ok(Document::Index(_))));
        let schema1 = br#"{"schemaVersion": 1, "name": "x", "fsLayers": []}"#;
        assert!(matches!(parse_document(schema1, &d(0), ""), Err(ManifestError::UnsupportedMediaType { .. })));
        let helm = serde_json::json!({"schemaVersion": 2, "config": {"mediaType": "application/vnd.cncf.helm.config.v1+json", "digest": d(1), "size": 3}, "layers": [{"mediaType": "application/vnd.cncf.helm.chart.content.v1.tar+gzip", "digest": d(2), "size": 5}]});
        let err = parse_document(&serde_json::to_vec(&helm).unwrap(), &d(0), OCI_MANIFEST).unwrap_err();
        assert!(err.to_string().contains("helm.chart"), "{err}");
    }

    #[test]
    fn selects_linux_for_the_host_arch() {
        let entry = |arch: &str, n| Descriptor {
            platform: Some(Platform { architecture: arch.into(), os: "linux".into(), variant: None }),
            ..Descriptor::new(OCI_MANIFEST, d(n), 1)
        };
        let index = Index {
            schema_version: 2,
            media_type: None,
            manifests: vec![entry("s390x", 1), entry("arm64", 2), entry("amd64", 3)],
            annotations: BTreeMap::new(),
        };
        let amd64 = Platform { architecture: "amd64".into(), os: "linux".into(), variant: None };
        assert_eq!(select_platform(&index, &d(0), &amd64).unwrap().digest, d(3));
        let riscv = Platform { architecture: "riscv64".into(), ..amd64 };
        let err = select_platform(&index, &d(0), &riscv).unwrap_err().to_string();
        assert!(err.contains("linux/riscv64") && err.contains("linux/s390x"), "{err}");
    }
}
