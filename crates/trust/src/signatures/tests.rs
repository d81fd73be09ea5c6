//! Signing and verifying against a real registry (Debian's `docker-registry` on loopback).

use image::testing::{write_layout, Registry};
use image::PullOptions;

use super::*;

struct Fixture {
    registry: Registry,
    layouts: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture { registry: Registry::start(), layouts: tempfile::tempdir().unwrap() }
    }

    /// Pushes a small image whose content depends on `variant` to `repository:tag`.
    fn push(&self, variant: &str, repository: &str, tag: &str) -> Reference {
        let dir = self.layouts.path().join(variant);
        write_layout(&dir, "t", &[vec![0u8; 1024]], &["echo", variant]);
        normalize_reference(&self.registry.push(&dir, "t", repository, tag)).unwrap()
    }
}

async fn resolved(reference: &Reference) -> (Remote, Resolved) {
    let mut remote = Remote::for_push(reference, &PullOptions::default()).unwrap();
    let resolved = resolve(&mut remote, reference).await.unwrap();
    (remote, resolved)
}

#[tokio::test]
async fn sign_then_verify_round_trips_through_the_signature_tag() {
    let fx = Fixture::new();
    let reference = fx.push("a", "demo", "v1");
    let key = PrivateKey::generate();
    let (mut remote, image) = resolved(&reference).await;
    let stored = sign(&mut remote, &image, &key, BTreeMap::new(), Format::SignatureTag).await.unwrap();
    assert_eq!(stored, format!("sha256-{}.sig", image.descriptor.digest.hex()));

    let verified = verify(&mut remote, &image, &[key.public_key()]).await.unwrap();
    assert_eq!(verified, Verified { digest: image.descriptor.digest.clone(), key: key.public_key().id(), storage: Storage::SignatureTag });

    // The payload is what cosign writes: the repository as identity, the digest, cosign's type.
    let (bytes, _) = remote.manifest(&stored, None).await.unwrap();
    let manifest: Manifest = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(manifest.layers.len(), 1);
    assert_eq!(manifest.layers[0].media_type, SIMPLE_SIGNING_MEDIA_TYPE);
    let payload = remote.blob(&manifest.layers[0], MAX_PAYLOAD).await.unwrap();
    let claims = Claims::from_payload(&payload).unwrap();
    assert_eq!(claims.docker_reference, format!("{}/demo", fx.registry.addr));
    assert_eq!(claims.manifest_digest, image.descriptor.digest.as_str());

    // A second key adds a second layer; either key then verifies; signing again changes nothing.
    let second = PrivateKey::generate();
    sign(&mut remote, &image, &second, BTreeMap::new(), Format::SignatureTag).await.unwrap();
    sign(&mut remote, &image, &second, BTreeMap::new(), Format::SignatureTag).await.unwrap();
    let (bytes, _) = remote.manifest(&stored, None).await.unwrap();
    assert_eq!(serde_json::from_slice::<Manifest>(&bytes).unwrap().layers.len(), 2, "one layer per distinct signature");
    assert_eq!(verify(&mut remote, &image, &[second.public_key()]).await.unwrap().key, second.public_key().id());
}

#[tokio::test]
async fn unsigned_wrong_key_other_digest_and_other_repository_are_refused() {
    let fx = Fixture::new();
    let key = PrivateKey::generate();
    let signed = fx.push("signed", "demo", "v1");
    let (mut remote, signed_image) = resolved(&signed).await;
    sign(&mut remote, &signed_image, &key, BTreeMap::new(), Format::SignatureTag).await.unwrap();

    // Unsigned.
    let unsigned = fx.push("unsigned", "demo", "v2");
    let (mut remote2, unsigned_image) = resolved(&unsigned).await;
    let err = verify(&mut remote2, &unsigned_image, &[key.public_key()]).await.unwrap_err();
    assert!(matches!(err, VerifyError::Unsigned { .. }), "{err}");
    assert!(err.to_string().contains("has no signature") && err.to_string().contains("flotilla image sign"), "{err}");

    // Wrong key.
    let stranger = PrivateKey::generate().public_key();
    let err = verify(&mut remote, &signed_image, std::slice::from_ref(&stranger)).await.unwrap_err().to_string();
    assert!(err.contains("signed by none of the trusted keys") && err.contains(&stranger.id()), "{err}");

    // The signature manifest of one digest copied to another digest's signature tag.
    let (sig_bytes, _) = remote.manifest(&signature_tag(&signed_image.descriptor.digest), None).await.unwrap();
    remote2.push_manifest(&signature_tag(&unsigned_image.descriptor.digest), OCI_MANIFEST, &sig_bytes).await.unwrap();
    let err = verify(&mut remote2, &unsigned_image, &[key.public_key()]).await.unwrap_err().to_string();
    assert!(err.contains(&format!("is for {}, not {}", signed_image.descriptor.digest, unsigned_image.descriptor.digest)), "{err}");

    // The same image and its signature copied into another repository: the identity differs.
    let copy = fx.push("signed", "elsewhere", "v1");
    let (mut remote3, copy_image) = resolved(&copy).await;
    assert_eq!(copy_image.descriptor.digest, signed_image.descriptor.digest);
    let sig_manifest = serde_json::from_slice::<Manifest>(&sig_bytes).unwrap();
    for blob in sig_manifest.layers.iter().chain([&sig_manifest.config]) {
        let bytes = remote.blob(blob, MAX_PAYLOAD).await.unwrap();
        remote3.push_blob(&blob.media_type, &bytes).await.unwrap();
    }
    remote3.push_manifest(&signature_tag(&copy_image.descriptor.digest), OCI_MANIFEST, &sig_bytes).await.unwrap();
    let err = verify(&mut remote3, &copy_image, &[key.public_key()]).await.unwrap_err().to_string();
    assert!(err.contains(&format!("names {}/demo, not {}/elsewhere", fx.registry.addr, fx.registry.addr)), "{err}");

    // Re-pushing the tag with other content (a tampered image) moves it to an unsigned digest.
    let tampered = fx.push("tampered", "demo", "v1");
    let (mut remote4, tampered_image) = resolved(&tampered).await;
    assert_ne!(tampered_image.descriptor.digest, signed_image.descriptor.digest);
    assert!(matches!(verify(&mut remote4, &tampered_image, &[key.public_key()]).await, Err(VerifyError::Unsigned { .. })));
}

#[tokio::test]
async fn bundles_attached_as_referrers_verify() {
    let fx = Fixture::new();
    let key = PrivateKey::generate();
    let reference = fx.push("bundled", "demo", "v1");
    let (mut remote, image) = resolved(&reference).await;
    let referrer = sign(&mut remote, &image, &key, BTreeMap::new(), Format::Bundle).await.unwrap();
    // Debian's registry has no referrers API, so the fallback tag index lists the bundle.
    let index = remote.referrers(&image.descriptor.digest).await.unwrap().expect("a referrers index");
    assert_eq!(index.manifests.len(), 1);
    assert_eq!(index.manifests[0].digest.as_str(), referrer);
    assert_eq!(index.manifests[0].artifact_type.as_deref(), Some(BUNDLE_MEDIA_TYPE));

    let verified = verify(&mut remote, &image, &[PrivateKey::generate().public_key(), key.public_key()]).await.unwrap();
    assert_eq!(verified.storage, Storage::Referrer);
    assert_eq!(verified.key, key.public_key().id());
    let err = verify(&mut remote, &image, &[PrivateKey::generate().public_key()]).await.unwrap_err().to_string();
    assert!(err.contains("signed by none of the trusted keys"), "{err}");
}
