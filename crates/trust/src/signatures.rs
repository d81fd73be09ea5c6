//! Signing images and verifying their signatures in a registry, where cosign keeps them: a
//! simple-signing payload per signature in the manifest at tag `sha256-<hex>.sig`, and Sigstore
//! bundles attached as OCI 1.1 referrers (the registry's referrers API, or the `sha256-<hex>`
//! fallback tag where the registry has none).

use std::collections::BTreeMap;
use std::fmt;

use image::{normalize_reference, referrers_tag, Descriptor, Digest, ImageError, Index, Manifest, Reference, Remote, OCI_INDEX, OCI_MANIFEST};

use crate::cosign::{self, BundleError, Claims, PrivateKey, PublicKey, BUNDLE_MEDIA_TYPE, SIGNATURE_ANNOTATION, SIMPLE_SIGNING_MEDIA_TYPE};

const MAX_PAYLOAD: u64 = 1 << 20;
const EMPTY_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";

/// The manifest a reference names, as the registry serves it.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The reference with its repository normalized.
    pub reference: Reference,
    /// The manifest's (or index's) descriptor: digest, size and media type.
    pub descriptor: Descriptor,
}

/// Resolves `reference` to the digest of what its tag names now (or checks a pinned digest).
pub async fn resolve(remote: &mut Remote, reference: &Reference) -> Result<Resolved, ImageError> {
    let (bytes, media_type) = remote.manifest(&reference.manifest_selector(), reference.digest.as_ref()).await?;
    let descriptor = Descriptor::new(&media_type, Digest::of(&bytes), bytes.len() as u64);
    Ok(Resolved { reference: reference.clone(), descriptor })
}

/// Where a signature was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// A layer of the `sha256-<hex>.sig` manifest.
    SignatureTag,
    /// A Sigstore bundle attached as a referrer.
    Referrer,
}

impl fmt::Display for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Storage::SignatureTag => "signature tag",
            Storage::Referrer => "Sigstore bundle referrer",
        })
    }
}

/// A signature that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The digest it covers.
    pub digest: Digest,
    /// The id of the key that made it.
    pub key: String,
    /// Where it was stored.
    pub storage: Storage,
}

/// Why an image is not verified.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The registry could not be read.
    #[error(transparent)]
    Registry(#[from] ImageError),
    /// No signature of any kind is stored for the digest.
    #[error("{image} has no signature (looked for tag {tag} and for OCI referrers); sign it with `flotilla image sign --key cosign.key {image}`")]
    Unsigned {
        /// The image, pinned to its digest.
        image: String,
        /// The signature tag looked at.
        tag: String,
    },
    /// Signatures exist, but none verifies with a trusted key for this image.
    #[error("{image}: no signature verifies with the trusted keys ({keys}): {}", reasons.join("; "))]
    NotVerified {
        /// The image, pinned to its digest.
        image: String,
        /// The ids of the keys tried.
        keys: String,
        /// Why each signature was refused.
        reasons: Vec<String>,
    },
}

/// Checks that `resolved` carries a signature made by one of `keys` for exactly its digest and its
/// repository. Signatures by other keys, for other digests, or naming another repository are
/// refused and the reasons returned.
pub async fn verify(remote: &mut Remote, resolved: &Resolved, keys: &[PublicKey]) -> Result<Verified, VerifyError> {
    let digest = &resolved.descriptor.digest;
    let image = resolved.reference.with_digest(digest.clone()).to_string();
    let repository = resolved.reference.repository_name();
    let mut reasons = Vec::new();
    let mut found = false;

    let tag = signature_tag(digest);
    if let Some(manifest) = fetch_manifest(remote, &tag).await? {
        for (i, layer) in manifest.layers.iter().enumerate() {
            let Some(signature) = layer.annotations.get(SIGNATURE_ANNOTATION) else {
                continue;
            };
            found = true;
            if layer.media_type != SIMPLE_SIGNING_MEDIA_TYPE {
                reasons.push(format!("{tag} layer {i}: media type {:?} is not a simple-signing payload", layer.media_type));
                continue;
            }
            let payload = remote.blob(layer, MAX_PAYLOAD).await?;
            let Some(key) = keys.iter().find(|k| k.verify_base64(&payload, signature).is_ok()) else {
                reasons.push(format!("{tag} layer {i}: signed by none of the trusted keys"));
                continue;
            };
            match Claims::from_payload(&payload) {
                Err(e) => reasons.push(format!("{tag} layer {i}: payload {e}")),
                Ok(claims) if claims.manifest_digest != digest.as_str() => {
                    reasons.push(format!("{tag} layer {i}: signature by {} is for {}, not {digest}", key.id(), claims.manifest_digest))
                }
                Ok(claims) if !same_repository(&claims.docker_reference, &repository) => {
                    reasons.push(format!("{tag} layer {i}: signature by {} names {}, not {repository}", key.id(), claims.docker_reference))
                }
                Ok(_) => return Ok(Verified { digest: digest.clone(), key: key.id(), storage: Storage::SignatureTag }),
            }
        }
    }

    for entry in remote.referrers(digest).await?.map(|i| i.manifests).unwrap_or_default() {
        if entry.artifact_type.as_deref() != Some(BUNDLE_MEDIA_TYPE) {
            continue;
        }
        found = true;
        let name = format!("referrer {}", entry.digest);
        let Some(manifest) = fetch_manifest(remote, entry.digest.as_str()).await? else {
            reasons.push(format!("{name}: listed but missing"));
            continue;
        };
        if manifest.subject.as_ref().map(|s| &s.digest) != Some(digest) {
            reasons.push(format!("{name}: its subject is not {digest}"));
            continue;
        }
        let Some(layer) = manifest.layers.iter().find(|l| l.media_type == BUNDLE_MEDIA_TYPE) else {
            reasons.push(format!("{name}: no bundle layer"));
            continue;
        };
        let bundle = remote.blob(layer, MAX_PAYLOAD).await?;
        let mut last = format!("{name}: signed by none of the trusted keys");
        for key in keys {
            match cosign::verify_bundle(&bundle, key) {
                Err(BundleError::Signature(_)) => {}
                Err(e) => last = format!("{name}: {e}"),
                Ok(claims) if !claims.digests.iter().any(|d| d == digest.as_str()) => {
                    last = format!("{name}: bundle by {} is for {}, not {digest}", key.id(), claims.digests.join(", "))
                }
                Ok(claims) if !claims.names.iter().any(|n| same_repository(n, &repository)) => {
                    last = format!("{name}: bundle by {} names {}, not {repository}", key.id(), claims.names.join(", "))
                }
                Ok(_) => return Ok(Verified { digest: digest.clone(), key: key.id(), storage: Storage::Referrer }),
            }
        }
        reasons.push(last);
    }

    if !found {
        return Err(VerifyError::Unsigned { image, tag });
    }
    let keys = keys.iter().map(PublicKey::id).collect::<Vec<_>>().join(", ");
    Err(VerifyError::NotVerified { image, keys, reasons })
}

/// Whether a signed identity names `repository` (both normalized: `busybox` and
/// `index.docker.io/library/busybox` are the same). A tag or digest in the identity is ignored.
fn same_repository(identity: &str, repository: &str) -> bool {
    normalize_reference(identity).is_ok_and(|r| r.repository_name() == repository)
}

/// The tag cosign stores `digest`'s signatures under.
pub fn signature_tag(digest: &Digest) -> String {
    format!("sha256-{}.sig", digest.hex())
}

async fn fetch_manifest(remote: &mut Remote, selector: &str) -> Result<Option<Manifest>, ImageError> {
    match remote.manifest(selector, None).await {
        Ok((bytes, _)) => {
            let digest = Digest::of(&bytes);
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| image::ManifestError::Malformed { what: "signature manifest", digest: digest.to_string(), source }.into())
        }
        Err(ImageError::Registry(e)) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// How to store a new signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// cosign's classic layout: a layer added to the `sha256-<hex>.sig` manifest.
    SignatureTag,
    /// A Sigstore bundle attached as an OCI 1.1 referrer.
    Bundle,
}

/// Signs `resolved` with `key` and stores the signature in its repository. Returns where it went
/// (a tag, or the referrer manifest's digest).
pub async fn sign(
    remote: &mut Remote,
    resolved: &Resolved,
    key: &PrivateKey,
    annotations: BTreeMap<String, serde_json::Value>,
    format: Format,
) -> Result<String, ImageError> {
    let digest = &resolved.descriptor.digest;
    let repository = resolved.reference.repository_name();
    match format {
        Format::SignatureTag => {
            let claims = Claims { docker_reference: repository, manifest_digest: digest.to_string(), annotations };
            let payload = claims.to_payload();
            let mut layer = remote.push_blob(SIMPLE_SIGNING_MEDIA_TYPE, &payload).await?;
            layer.annotations.insert(SIGNATURE_ANNOTATION.to_string(), cosign::base64(&key.sign(&payload)));
            let tag = signature_tag(digest);
            let mut layers = fetch_manifest(remote, &tag).await?.map(|m| m.layers).unwrap_or_default();
            if layers.contains(&layer) {
                return Ok(tag);
            }
            layers.push(layer);
            let diff_ids: Vec<String> = layers.iter().map(|l| l.digest.to_string()).collect();
            let config = serde_json::json!({"architecture": "", "os": "", "config": {}, "rootfs": {"type": "layers", "diff_ids": diff_ids}});
            let config = remote.push_blob(image::OCI_CONFIG, &serde_json::to_vec(&config).expect("config serializes")).await?;
            let manifest = Manifest {
                schema_version: 2,
                media_type: Some(OCI_MANIFEST.to_string()),
                config,
                layers,
                annotations: BTreeMap::new(),
                artifact_type: None,
                subject: None,
            };
            remote.push_manifest(&tag, OCI_MANIFEST, &serde_json::to_vec(&manifest).expect("manifest serializes")).await?;
            Ok(tag)
        }
        Format::Bundle => {
            let bundle = cosign::bundle_for(key, &repository, digest.as_str());
            let layer = remote.push_blob(BUNDLE_MEDIA_TYPE, &bundle).await?;
            let config = remote.push_blob(EMPTY_CONFIG_MEDIA_TYPE, b"{}").await?;
            let mut subject = resolved.descriptor.clone();
            subject.annotations.clear();
            let manifest = Manifest {
                schema_version: 2,
                media_type: Some(OCI_MANIFEST.to_string()),
                config,
                layers: vec![layer],
                annotations: BTreeMap::from([
                    ("dev.sigstore.bundle.content".to_string(), "dsse-envelope".to_string()),
                    ("dev.sigstore.bundle.predicateType".to_string(), cosign::SIGN_PREDICATE_TYPE.to_string()),
                ]),
                artifact_type: Some(BUNDLE_MEDIA_TYPE.to_string()),
                subject: Some(subject),
            };
            let bytes = serde_json::to_vec(&manifest).expect("manifest serializes");
            let (referrer, indexed) = remote.push_manifest(&Digest::of(&bytes).to_string(), OCI_MANIFEST, &bytes).await?;
            if !indexed {
                add_to_fallback_index(
                    remote,
                    digest,
                    Descriptor { artifact_type: Some(BUNDLE_MEDIA_TYPE.to_string()), ..Descriptor::new(OCI_MANIFEST, referrer.clone(), bytes.len() as u64) },
                )
                .await?;
            }
            Ok(referrer.to_string())
        }
    }
}

/// Adds `entry` to the referrers index kept at the fallback tag, for registries without the
/// referrers API.
async fn add_to_fallback_index(remote: &mut Remote, subject: &Digest, entry: Descriptor) -> Result<(), ImageError> {
    let tag = referrers_tag(subject);
    let mut index = match remote.manifest(&tag, None).await {
        Ok((bytes, _)) => serde_json::from_slice::<Index>(&bytes).map_err(|source| image::ManifestError::Malformed {
            what: "referrers index",
            digest: Digest::of(&bytes).to_string(),
            source,
        })?,
        Err(ImageError::Registry(e)) if e.is_not_found() => {
            Index { schema_version: 2, media_type: Some(OCI_INDEX.to_string()), manifests: Vec::new(), annotations: BTreeMap::new() }
        }
        Err(e) => return Err(e),
    };
    if !index.manifests.iter().any(|m| m.digest == entry.digest) {
        index.manifests.push(entry);
    }
    remote.push_manifest(&tag, OCI_INDEX, &serde_json::to_vec(&index).expect("index serializes")).await?;
    Ok(())
}

#[cfg(test)]
mod tests;
