//! Cosign's formats, so that keys and signatures pass between Flotilla and cosign both ways:
//! ECDSA P-256 keys (the private key as cosign's scrypt + NaCl secretbox encrypted PEM, the
//! public key as a PKIX PEM), the "simple signing" payload, ASN.1 DER signatures over its SHA-256,
//! and DSSE envelopes inside Sigstore bundles.

use std::collections::BTreeMap;
use std::fmt;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use crypto_secretbox::aead::{Aead, KeyInit};
use crypto_secretbox::XSalsa20Poly1305;
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{DerSignature, Signature, SigningKey, VerifyingKey};
use p256::pkcs8::der::pem::LineEnding;
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// Media type of the simple-signing payload blob.
pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// Layer annotation that carries the base64 signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// `critical.type` of a cosign container image signature.
pub const SIMPLE_SIGNING_TYPE: &str = "cosign container image signature";
/// Media type (and artifact type) of a Sigstore bundle, v0.3.
pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// Older bundle media types still read.
const OLD_BUNDLE_MEDIA_TYPES: [&str; 2] = ["application/vnd.dev.sigstore.bundle+json;version=0.1", "application/vnd.dev.sigstore.bundle+json;version=0.2"];
/// DSSE payload type of an in-toto statement.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// The predicate type cosign's bundle-format image signatures use.
pub const SIGN_PREDICATE_TYPE: &str = "https://sigstore.dev/cosign/sign/v1";

const ENCRYPTED_LABELS: [&str; 2] = ["ENCRYPTED SIGSTORE PRIVATE KEY", "ENCRYPTED COSIGN PRIVATE KEY"];
const SCRYPT_LOG_N: u8 = 16;
const SCRYPT_MAX_LOG_N: u8 = 20;
const SALT_LEN: usize = 32;
const NONCE_LEN: usize = 24;

/// Why a key could not be read, decrypted or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Not PEM, or PEM of a kind this does not read.
    #[error("{what}: {reason}")]
    Format {
        /// Which key (file name or role).
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// The password does not open the private key.
    #[error("{what}: wrong password (or the key file is damaged)")]
    Decrypt {
        /// Which key.
        what: String,
    },
}

/// Why a signature did not verify.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    /// The signature is not base64 or not an ASN.1 DER ECDSA signature.
    #[error("malformed signature: {0}")]
    Malformed(String),
    /// The signature is well formed but not made by this key over this content.
    #[error("signature does not verify with key {key}")]
    Invalid {
        /// The key's id.
        key: String,
    },
}

/// An ECDSA P-256 private key.
pub struct PrivateKey(SigningKey);

/// An ECDSA P-256 public key.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

#[derive(Serialize, Deserialize)]
struct EncryptedKey {
    kdf: Kdf,
    cipher: Cipher,
    #[serde(with = "b64")]
    ciphertext: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct Kdf {
    name: String,
    params: ScryptParams,
    #[serde(with = "b64")]
    salt: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
#[allow(non_snake_case)]
struct ScryptParams {
    N: u64,
    r: u32,
    p: u32,
}

#[derive(Serialize, Deserialize)]
struct Cipher {
    name: String,
    #[serde(with = "b64")]
    nonce: Vec<u8>,
}

mod b64 {
    use base64::Engine as _;

    use super::B64;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        B64.decode(text.as_bytes()).map_err(serde::de::Error::custom)
    }
}

impl PrivateKey {
    /// A new random key.
    pub fn generate() -> PrivateKey {
        PrivateKey(SigningKey::random(&mut OsRng))
    }

    /// Reads a private key: cosign's encrypted PEM (opened with `password`), or an unencrypted
    /// PKCS#8 `PRIVATE KEY` PEM. `what` names the key in errors.
    pub fn from_pem(pem: &str, password: &[u8], what: &str) -> Result<PrivateKey, KeyError> {
        let format = |reason: String| KeyError::Format { what: what.to_string(), reason };
        let (label, der) = p256::pkcs8::der::pem::decode_vec(pem.trim().as_bytes()).map_err(|e| format(format!("not a PEM key: {e}")))?;
        let pkcs8 = if ENCRYPTED_LABELS.contains(&label) {
            decrypt(&der, password, what)?
        } else if label == "PRIVATE KEY" {
            der
        } else {
            return Err(format(format!("PEM type {label:?} is not a private key this reads (want {:?} or \"PRIVATE KEY\")", ENCRYPTED_LABELS[0])));
        };
        SigningKey::from_pkcs8_der(&pkcs8).map(PrivateKey).map_err(|e| format(format!("not an ECDSA P-256 PKCS#8 key: {e}")))
    }

    /// The key as cosign writes it: PKCS#8 sealed with NaCl secretbox under an scrypt-derived
    /// key, in a PEM block labelled `ENCRYPTED SIGSTORE PRIVATE KEY`.
    pub fn to_encrypted_pem(&self, password: &[u8]) -> String {
        let pkcs8 = self.0.to_pkcs8_der().expect("a P-256 key encodes as PKCS#8");
        let mut salt = [0u8; SALT_LEN];
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut salt);
        OsRng.fill_bytes(&mut nonce);
        let key = derive(password, &salt, SCRYPT_LOG_N, 8, 1).expect("fixed scrypt parameters are valid");
        let ciphertext = XSalsa20Poly1305::new(&key.into()).encrypt(&nonce.into(), pkcs8.as_bytes()).expect("secretbox sealing cannot fail");
        let sealed = EncryptedKey {
            kdf: Kdf { name: "scrypt".into(), params: ScryptParams { N: 1 << SCRYPT_LOG_N, r: 8, p: 1 }, salt: salt.to_vec() },
            cipher: Cipher { name: "nacl/secretbox".into(), nonce: nonce.to_vec() },
            ciphertext,
        };
        let json = serde_json::to_vec(&sealed).expect("the sealed key serializes");
        p256::pkcs8::der::pem::encode_string(ENCRYPTED_LABELS[0], LineEnding::LF, &json).expect("PEM encoding of bytes cannot fail")
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(*self.0.verifying_key())
    }

    /// Signs `message` (ECDSA over its SHA-256), returning the ASN.1 DER signature.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let signature: DerSignature = self.0.sign(message);
        signature.as_bytes().to_vec()
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey({})", self.public_key().id())
    }
}

fn derive(password: &[u8], salt: &[u8], log_n: u8, r: u32, p: u32) -> Result<[u8; 32], String> {
    let params = scrypt::Params::new(log_n, r, p, 32).map_err(|e| format!("scrypt parameters: {e}"))?;
    let mut key = [0u8; 32];
    scrypt::scrypt(password, salt, &params, &mut key).map_err(|e| format!("scrypt: {e}"))?;
    Ok(key)
}

fn decrypt(sealed: &[u8], password: &[u8], what: &str) -> Result<Vec<u8>, KeyError> {
    let format = |reason: String| KeyError::Format { what: what.to_string(), reason };
    let sealed: EncryptedKey = serde_json::from_slice(sealed).map_err(|e| format(format!("encrypted key body: {e}")))?;
    if sealed.kdf.name != "scrypt" {
        return Err(format(format!("kdf.name: {:?} is not supported (want \"scrypt\")", sealed.kdf.name)));
    }
    if sealed.cipher.name != "nacl/secretbox" {
        return Err(format(format!("cipher.name: {:?} is not supported (want \"nacl/secretbox\")", sealed.cipher.name)));
    }
    let n = sealed.kdf.params.N;
    if !n.is_power_of_two() || !(2..=1 << SCRYPT_MAX_LOG_N).contains(&n) {
        return Err(format(format!("kdf.params.N: {n} must be a power of two up to 2^{SCRYPT_MAX_LOG_N}")));
    }
    let (r, p) = (sealed.kdf.params.r, sealed.kdf.params.p);
    if !(1..=32).contains(&r) || !(1..=16).contains(&p) {
        return Err(format(format!("kdf.params: r={r}, p={p} out of range (r 1..32, p 1..16)")));
    }
    let nonce: [u8; NONCE_LEN] =
        sealed.cipher.nonce.as_slice().try_into().map_err(|_| format(format!("cipher.nonce: {} bytes, want {NONCE_LEN}", sealed.cipher.nonce.len())))?;
    let key = derive(password, &sealed.kdf.salt, n.trailing_zeros() as u8, r, p).map_err(format)?;
    XSalsa20Poly1305::new(&key.into()).decrypt(&nonce.into(), sealed.ciphertext.as_slice()).map_err(|_| KeyError::Decrypt { what: what.to_string() })
}

impl PublicKey {
    /// Reads a PKIX `PUBLIC KEY` PEM (what `cosign generate-key-pair` writes to cosign.pub).
    pub fn from_pem(pem: &str, what: &str) -> Result<PublicKey, KeyError> {
        VerifyingKey::from_public_key_pem(pem.trim())
            .map(PublicKey)
            .map_err(|e| KeyError::Format { what: what.to_string(), reason: format!("not an ECDSA P-256 PKIX public key PEM: {e}") })
    }

    /// Reads a DER SubjectPublicKeyInfo.
    pub fn from_der(der: &[u8], what: &str) -> Result<PublicKey, KeyError> {
        VerifyingKey::from_public_key_der(der)
            .map(PublicKey)
            .map_err(|e| KeyError::Format { what: what.to_string(), reason: format!("not an ECDSA P-256 SubjectPublicKeyInfo: {e}") })
    }

    /// The PKIX PEM form.
    pub fn to_pem(&self) -> String {
        self.0.to_public_key_pem(LineEnding::LF).expect("a P-256 key encodes as PKIX")
    }

    /// A short stable name: `sha256:` and the first 16 hex digits of the SubjectPublicKeyInfo's
    /// SHA-256.
    pub fn id(&self) -> String {
        let der = self.0.to_public_key_der().expect("a P-256 key encodes as PKIX");
        let hash = Sha256::digest(der.as_bytes());
        format!("sha256:{}", hex_prefix(&hash, 8))
    }

    /// Checks a DER signature over `message` (ECDSA with SHA-256).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), SignatureError> {
        let signature = Signature::from_der(signature).map_err(|e| SignatureError::Malformed(e.to_string()))?;
        self.0.verify(message, &signature).map_err(|_| SignatureError::Invalid { key: self.id() })
    }

    /// Checks a DER signature over a message known only by its SHA-256 (what a transparency log
    /// entry records).
    pub fn verify_prehashed(&self, sha256: &[u8; 32], signature: &[u8]) -> Result<(), SignatureError> {
        let signature = Signature::from_der(signature).map_err(|e| SignatureError::Malformed(e.to_string()))?;
        self.0.verify_prehash(sha256, &signature).map_err(|_| SignatureError::Invalid { key: self.id() })
    }

    /// Checks a base64 DER signature, as stored in the signature annotation and in bundles.
    pub fn verify_base64(&self, message: &[u8], signature: &str) -> Result<(), SignatureError> {
        let der = B64.decode(signature.trim()).map_err(|e| SignatureError::Malformed(format!("not base64: {e}")))?;
        self.verify(message, &der)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.id())
    }
}

fn hex_prefix(bytes: &[u8], n: usize) -> String {
    bytes.iter().take(n).map(|b| format!("{b:02x}")).collect()
}

/// Base64 (standard, padded), as cosign stores signatures.
pub fn base64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// Why a payload or bundle is not what a signature must cover.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{field}: {reason}")]
pub struct PayloadError {
    /// The JSON path at fault.
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

fn payload_err(field: &str, reason: impl Into<String>) -> PayloadError {
    PayloadError { field: field.to_string(), reason: reason.into() }
}

/// The claims of a simple-signing payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// `critical.identity.docker-reference`: the repository the signer named.
    pub docker_reference: String,
    /// `critical.image.docker-manifest-digest`: the manifest signed.
    pub manifest_digest: String,
    /// `optional`: the signer's annotations.
    pub annotations: BTreeMap<String, serde_json::Value>,
}

#[derive(Serialize, Deserialize)]
struct SimpleSigning {
    critical: Critical,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    optional: Option<BTreeMap<String, serde_json::Value>>,
}

#[derive(Serialize, Deserialize)]
struct Critical {
    identity: Identity,
    image: ImageClaim,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Serialize, Deserialize)]
struct Identity {
    #[serde(rename = "docker-reference")]
    docker_reference: String,
}

#[derive(Serialize, Deserialize)]
struct ImageClaim {
    #[serde(rename = "docker-manifest-digest")]
    docker_manifest_digest: String,
}

impl Claims {
    /// The payload bytes to sign (cosign's field order and spelling).
    pub fn to_payload(&self) -> Vec<u8> {
        let doc = SimpleSigning {
            critical: Critical {
                identity: Identity { docker_reference: self.docker_reference.clone() },
                image: ImageClaim { docker_manifest_digest: self.manifest_digest.clone() },
                kind: SIMPLE_SIGNING_TYPE.to_string(),
            },
            optional: if self.annotations.is_empty() { None } else { Some(self.annotations.clone()) },
        };
        serde_json::to_vec(&doc).expect("the payload serializes")
    }

    /// Reads a simple-signing payload. The `docker-manifest-digest` key is matched without regard
    /// to case, as the containers/image format and older cosign releases spell it differently.
    pub fn from_payload(bytes: &[u8]) -> Result<Claims, PayloadError> {
        let doc: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| payload_err("payload", e.to_string()))?;
        let critical = doc.get("critical").and_then(|c| c.as_object()).ok_or_else(|| payload_err("critical", "required object"))?;
        let kind = critical.get("type").and_then(|t| t.as_str()).ok_or_else(|| payload_err("critical.type", "required string"))?;
        if kind != SIMPLE_SIGNING_TYPE && kind != "atomic container signature" {
            return Err(payload_err("critical.type", format!("{kind:?} is not a container image signature")));
        }
        let docker_reference = critical
            .get("identity")
            .and_then(|i| i.get("docker-reference"))
            .and_then(|r| r.as_str())
            .ok_or_else(|| payload_err("critical.identity.docker-reference", "required string"))?;
        let image = critical.get("image").and_then(|i| i.as_object()).ok_or_else(|| payload_err("critical.image", "required object"))?;
        let manifest_digest = image
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("docker-manifest-digest"))
            .and_then(|(_, v)| v.as_str())
            .ok_or_else(|| payload_err("critical.image.docker-manifest-digest", "required string"))?;
        let annotations = match doc.get("optional") {
            Some(serde_json::Value::Object(map)) => map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            Some(serde_json::Value::Null) | None => BTreeMap::new(),
            Some(_) => return Err(payload_err("optional", "must be an object")),
        };
        Ok(Claims { docker_reference: docker_reference.to_string(), manifest_digest: manifest_digest.to_string(), annotations })
    }
}

/// DSSE's pre-authentication encoding: what a DSSE signature is computed over.
pub fn dsse_pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!("DSSEv1 {} {payload_type} {} ", payload_type.len(), payload.len()).into_bytes();
    out.extend_from_slice(payload);
    out
}

/// A Sigstore bundle whose signature is made by a key (no certificate), over an in-toto statement
/// naming the image: what `cosign sign --new-bundle-format --key` attaches as a referrer.
pub fn bundle_for(key: &PrivateKey, repository: &str, manifest_digest: &str) -> Vec<u8> {
    let hex = manifest_digest.strip_prefix("sha256:").unwrap_or(manifest_digest);
    let statement = serde_json::json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": repository, "digest": {"sha256": hex}}],
        "predicateType": SIGN_PREDICATE_TYPE,
        "predicate": {},
    });
    let payload = serde_json::to_vec(&statement).expect("the statement serializes");
    let signature = key.sign(&dsse_pae(IN_TOTO_PAYLOAD_TYPE, &payload));
    let bundle = serde_json::json!({
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {"publicKey": {"hint": key.public_key().id()}},
        "dsseEnvelope": {
            "payload": B64.encode(&payload),
            "payloadType": IN_TOTO_PAYLOAD_TYPE,
            "signatures": [{"sig": B64.encode(signature), "keyid": ""}],
        },
    });
    serde_json::to_vec(&bundle).expect("the bundle serializes")
}

/// What a verified bundle says about the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleClaims {
    /// The subjects' names (repositories).
    pub names: Vec<String>,
    /// The subjects' sha256 digests, as `sha256:<hex>`.
    pub digests: Vec<String>,
}

/// Reads a key-signed Sigstore bundle holding a DSSE envelope, checks its signature with `key`,
/// and returns the statement's subjects. Transparency-log entries are not consulted: a key-based
/// bundle is trusted through the key alone.
pub fn verify_bundle(bytes: &[u8], key: &PublicKey) -> Result<BundleClaims, BundleError> {
    let doc: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| BundleError::Payload(payload_err("bundle", e.to_string())))?;
    let media_type = doc.get("mediaType").and_then(|m| m.as_str()).unwrap_or("");
    if media_type != BUNDLE_MEDIA_TYPE && !OLD_BUNDLE_MEDIA_TYPES.contains(&media_type) {
        return Err(BundleError::Payload(payload_err("mediaType", format!("{media_type:?} is not a Sigstore bundle"))));
    }
    let envelope = doc
        .get("dsseEnvelope")
        .ok_or_else(|| BundleError::Payload(payload_err("dsseEnvelope", "required: a message-signature bundle signs a blob, not an image")))?;
    let field = |name: &str| {
        envelope.get(name).and_then(|v| v.as_str()).ok_or_else(|| BundleError::Payload(payload_err(&format!("dsseEnvelope.{name}"), "required string")))
    };
    let payload_type = field("payloadType")?;
    let payload = B64.decode(field("payload")?).map_err(|e| BundleError::Payload(payload_err("dsseEnvelope.payload", format!("not base64: {e}"))))?;
    let signatures =
        envelope.get("signatures").and_then(|s| s.as_array()).ok_or_else(|| BundleError::Payload(payload_err("dsseEnvelope.signatures", "required array")))?;
    let pae = dsse_pae(payload_type, &payload);
    let mut last = SignatureError::Malformed("dsseEnvelope.signatures is empty".to_string());
    let verified = signatures.iter().any(|s| match s.get("sig").and_then(|v| v.as_str()) {
        Some(sig) => key.verify_base64(&pae, sig).map_err(|e| last = e).is_ok(),
        None => false,
    });
    if !verified {
        return Err(BundleError::Signature(last));
    }
    if payload_type != IN_TOTO_PAYLOAD_TYPE {
        return Err(BundleError::Payload(payload_err("dsseEnvelope.payloadType", format!("{payload_type:?} is not an in-toto statement"))));
    }
    let statement: serde_json::Value = serde_json::from_slice(&payload).map_err(|e| BundleError::Payload(payload_err("statement", e.to_string())))?;
    let subjects =
        statement.get("subject").and_then(|s| s.as_array()).ok_or_else(|| BundleError::Payload(payload_err("statement.subject", "required array")))?;
    let mut claims = BundleClaims { names: Vec::new(), digests: Vec::new() };
    for s in subjects {
        if let Some(name) = s.get("name").and_then(|n| n.as_str()) {
            claims.names.push(name.to_string());
        }
        if let Some(hex) = s.get("digest").and_then(|d| d.get("sha256")).and_then(|h| h.as_str()) {
            claims.digests.push(format!("sha256:{hex}"));
        }
    }
    Ok(claims)
}

/// Why a bundle was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BundleError {
    /// The bundle or its statement is malformed.
    #[error(transparent)]
    Payload(#[from] PayloadError),
    /// The envelope's signature does not verify.
    #[error(transparent)]
    Signature(#[from] SignatureError),
}

#[cfg(test)]
mod tests;
