//! Pulling images over the OCI distribution API (v2): manifests (OCI, Docker schema2, indexes and
//! manifest lists), configs and layers, with anonymous, bearer-token and basic authentication.

mod auth;
mod client;

use std::net::IpAddr;

use crate::digest::Digest;
use crate::manifest::{parse_document, select_platform, Descriptor, Document, ManifestError, Platform};
use crate::reference::normalize_reference;
use crate::refs::ImageRecord;
use crate::store::ImageStore;
use crate::ImageError;
pub use client::{referrers_tag, Remote};

const MAX_INDEX_DEPTH: usize = 2;

/// How to pull.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// Platform to choose from image indexes; defaults to linux on the host's architecture.
    pub platform: Platform,
    /// Registries (`host` or `host:port`) reached over plain HTTP; loopback ones always are.
    pub insecure_registries: Vec<String>,
    /// Credentials for basic auth or for the token endpoint; anonymous when `None`.
    pub credentials: Option<Credentials>,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions { platform: Platform::host(), insecure_registries: Vec::new(), credentials: None }
    }
}

/// A registry username and password (or token).
#[derive(Clone)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password or access token.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("username", &self.username).field("password", &"<redacted>").finish()
    }
}

/// Why talking to a registry failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The HTTP exchange failed (connection, TLS, protocol).
    #[error("{method} {url}: {source}")]
    Http {
        /// The HTTP method.
        method: String,
        /// The URL requested.
        url: String,
        /// The client's error.
        source: reqwest::Error,
    },
    /// The registry answered with an error status.
    #[error("{method} {url}: HTTP {status}: {body}")]
    Status {
        /// The HTTP method.
        method: String,
        /// The URL requested.
        url: String,
        /// The status code.
        status: u16,
        /// The start of the response body.
        body: String,
    },
    /// Authentication was required and did not succeed.
    #[error("registry {registry}: authentication failed: {reason}")]
    Unauthorized {
        /// The registry.
        registry: String,
        /// Why.
        reason: String,
    },
    /// A manifest whose digest differs from the one asked for.
    #[error("manifest from {url} hashes to {actual}, not the requested {expected}")]
    DigestMismatch {
        /// The URL requested.
        url: String,
        /// The digest asked for.
        expected: Digest,
        /// What the body hashes to.
        actual: Digest,
    },
    /// A manifest or blob larger than this store reads.
    #[error("{url} is larger than {limit} bytes")]
    TooLarge {
        /// The URL requested.
        url: String,
        /// The limit.
        limit: u64,
    },
}

impl RegistryError {
    /// Whether the registry said the manifest, blob or endpoint does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, RegistryError::Status { status: 404, .. })
    }
}

impl ImageStore {
    /// Pulls `reference` (normalized: `busybox` means `docker.io/library/busybox:latest`) and
    /// records it under its normalized name. Every blob is verified before it is stored.
    pub async fn pull(&self, reference: &str, opts: &PullOptions) -> Result<ImageRecord, ImageError> {
        let reference = normalize_reference(reference)?;
        let _gc = self.gc_shared()?;
        let mut client = Remote::new(&reference, opts)?;
        let mut selector = reference.manifest_selector();
        let mut expected: Option<Descriptor> = None;
        for _ in 0..=MAX_INDEX_DEPTH {
            let (bytes, media_type) = client.manifest(&selector, reference.digest.as_ref().filter(|_| expected.is_none())).await?;
            let desc = match expected.take() {
                Some(desc) => desc,
                None => Descriptor::new(&media_type, Digest::of(&bytes), bytes.len() as u64),
            };
            self.blobs.put_reader(&desc, &bytes[..])?;
            match parse_document(&bytes, &desc.digest, &media_type)? {
                Document::Index(index) => {
                    let chosen = select_platform(&index, &desc.digest, &opts.platform)?.clone();
                    selector = chosen.digest.to_string();
                    expected = Some(chosen);
                }
                Document::Image(manifest) => {
                    client.fetch_blob(self, &manifest.config).await?;
                    for layer in &manifest.layers {
                        client.fetch_blob(self, layer).await?;
                    }
                    return self.commit_image(&reference.to_string(), &desc);
                }
            }
        }
        Err(ManifestError::TooDeep { digest: selector }.into())
    }
}

/// Whether `registry` may be reached over plain HTTP: loopback hosts and explicitly insecure ones.
pub fn plain_http_allowed(registry: &str, insecure: &[String]) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => registry.rsplit_once(':').map_or(registry, |(h, _)| h),
    };
    insecure.iter().any(|i| i == registry || i == host) || host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_for_loopback_or_listed_registries() {
        assert!(plain_http_allowed("127.0.0.1:5000", &[]));
        assert!(plain_http_allowed("127.8.9.10", &[]));
        assert!(plain_http_allowed("localhost:5000", &[]));
        assert!(plain_http_allowed("[::1]:5000", &[]));
        assert!(!plain_http_allowed("docker.io", &[]));
        assert!(!plain_http_allowed("10.0.0.1:5000", &[]));
        assert!(!plain_http_allowed("localhost.evil.com", &[]));
        assert!(plain_http_allowed("10.0.0.1:5000", &["10.0.0.1:5000".to_string()]));
        assert!(plain_http_allowed("registry.lan:5000", &["registry.lan".to_string()]));
    }
}
