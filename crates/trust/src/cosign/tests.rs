use std::process::Command;

use super::*;

fn spki_from_certificate(der: &[u8]) -> &[u8] {
    // A P-256 SubjectPublicKeyInfo always starts with these 26 bytes and is 91 bytes long.
    const PREFIX: [u8; 26] = [
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42,
        0x00,
    ];
    let at = der.windows(PREFIX.len()).position(|w| w == PREFIX).expect("the certificate holds a P-256 key");
    &der[at..at + 91]
}

#[test]
fn verifies_the_signature_published_in_the_cosign_specification() {
    let bundle: serde_json::Value = serde_json::from_str(include_str!("../../tests/data/cosign/spec-bundle.json")).unwrap();
    let body = B64.decode(bundle["Payload"]["body"].as_str().unwrap()).unwrap();
    let entry: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let hash: [u8; 32] = hex_decode(entry["spec"]["data"]["hash"]["value"].as_str().unwrap()).try_into().unwrap();
    let signature = B64.decode(entry["spec"]["signature"]["content"].as_str().unwrap()).unwrap();
    let cert_pem = String::from_utf8(B64.decode(entry["spec"]["signature"]["publicKey"]["content"].as_str().unwrap()).unwrap()).unwrap();
    let (label, cert) = p256::pkcs8::der::pem::decode_vec(cert_pem.trim().as_bytes()).unwrap();
    assert_eq!(label, "CERTIFICATE");
    let key = PublicKey::from_der(spki_from_certificate(&cert), "spec certificate").unwrap();
    key.verify_prehashed(&hash, &signature).expect("cosign's published signature verifies");
    let mut other = hash;
    other[0] ^= 1;
    assert_eq!(key.verify_prehashed(&other, &signature), Err(SignatureError::Invalid { key: key.id() }));
    assert!(matches!(key.verify_prehashed(&hash, &signature[1..]), Err(SignatureError::Malformed(_))));
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

#[test]
fn encrypted_key_round_trips_and_refuses_a_wrong_password() {
    let key = PrivateKey::generate();
    let pem = key.to_encrypted_pem(b"hunter2");
    assert!(pem.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"), "{pem}");
    let back = PrivateKey::from_pem(&pem, b"hunter2", "cosign.key").unwrap();
    assert_eq!(back.public_key(), key.public_key());
    let err = PrivateKey::from_pem(&pem, b"hunter3", "cosign.key").unwrap_err();
    assert_eq!(err.to_string(), "cosign.key: wrong password (or the key file is damaged)");
    let public = PublicKey::from_pem(&key.public_key().to_pem(), "cosign.pub").unwrap();
    assert_eq!(public, key.public_key());
}

#[test]
fn bad_keys_are_named_with_the_reason() {
    let err = PrivateKey::from_pem("not pem", b"", "k.key").unwrap_err().to_string();
    assert!(err.starts_with("k.key: not a PEM key"), "{err}");
    let public_pem = PrivateKey::generate().public_key().to_pem();
    let err = PrivateKey::from_pem(&public_pem, b"", "k.key").unwrap_err().to_string();
    assert!(err.contains("\"PUBLIC KEY\" is not a private key"), "{err}");
    let body = br#"{"kdf":{"name":"argon2","params":{"N":2,"r":8,"p":1},"salt":""},"cipher":{"name":"nacl/secretbox","nonce":""},"ciphertext":""}"#;
    let pem = p256::pkcs8::der::pem::encode_string(ENCRYPTED_LABELS[0], LineEnding::LF, body).unwrap();
    let err = PrivateKey::from_pem(&pem, b"", "k.key").unwrap_err().to_string();
    assert_eq!(err, "k.key: kdf.name: \"argon2\" is not supported (want \"scrypt\")");
    let huge = String::from_utf8_lossy(body).replace("argon2", "scrypt").replace("\"N\":2", "\"N\":4294967296");
    let pem = p256::pkcs8::der::pem::encode_string(ENCRYPTED_LABELS[0], LineEnding::LF, huge.as_bytes()).unwrap();
    let err = PrivateKey::from_pem(&pem, b"", "k.key").unwrap_err().to_string();
    assert!(err.contains("kdf.params.N: 4294967296 must be a power of two up to 2^20"), "{err}");
    let err = PublicKey::from_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "k.pub").unwrap_err().to_string();
    assert!(err.starts_with("k.pub: not an ECDSA P-256 PKIX public key PEM"), "{err}");
}

#[test]
fn signatures_bind_the_payload_and_the_key() {
    let key = PrivateKey::generate();
    let claims = Claims { docker_reference: "127.0.0.1:5000/demo".into(), manifest_digest: format!("sha256:{}", "a".repeat(64)), annotations: BTreeMap::new() };
    let payload = claims.to_payload();
    let signature = base64(&key.sign(&payload));
    key.public_key().verify_base64(&payload, &signature).unwrap();
    let other = PrivateKey::generate().public_key();
    assert_eq!(other.verify_base64(&payload, &signature), Err(SignatureError::Invalid { key: other.id() }));
    let mut tampered = payload.clone();
    tampered[20] ^= 1;
    assert!(key.public_key().verify_base64(&tampered, &signature).is_err());
    assert!(matches!(key.public_key().verify_base64(&payload, "***"), Err(SignatureError::Malformed(_))));
    assert_eq!(Claims::from_payload(&payload).unwrap(), claims);
}

#[test]
fn payload_has_cosigns_shape_and_reads_the_spec_example() {
    let claims = Claims {
        docker_reference: "r/x".into(),
        manifest_digest: "sha256:00".into(),
        annotations: BTreeMap::from([("a".to_string(), serde_json::json!("b"))]),
    };
    let text = String::from_utf8(claims.to_payload()).unwrap();
    assert_eq!(
        text,
        r#"{"critical":{"identity":{"docker-reference":"r/x"},"image":{"docker-manifest-digest":"sha256:00"},"type":"cosign container image signature"},"optional":{"a":"b"}}"#
    );
    // The specification's example spells the digest key with a capital D and carries optional claims.
    let example = br#"{"critical":{"identity":{"docker-reference":"testing/manifest"},"image":{"Docker-manifest-digest":"sha256:20be...fe55"},"type":"cosign container image signature"},"optional":{"creator":"atomic","timestamp":1458239713}}"#;
    let read = Claims::from_payload(example).unwrap();
    assert_eq!(read.docker_reference, "testing/manifest");
    assert_eq!(read.manifest_digest, "sha256:20be...fe55");
    assert_eq!(read.annotations["timestamp"], serde_json::json!(1458239713));
    let err = Claims::from_payload(br#"{"critical":{"identity":{"docker-reference":"x"},"image":{},"type":"cosign container image signature"}}"#).unwrap_err();
    assert_eq!(err.to_string(), "critical.image.docker-manifest-digest: required string");
    let err = Claims::from_payload(
        br#"{"critical":{"identity":{"docker-reference":"x"},"image":{"docker-manifest-digest":"d"},"type":"https://example/attestation"}}"#,
    )
    .unwrap_err();
    assert_eq!(err.field, "critical.type");
}

#[test]
fn bundles_verify_with_their_key_and_name_the_image() {
    let key = PrivateKey::generate();
    let digest = format!("sha256:{}", "b".repeat(64));
    let bundle = bundle_for(&key, "127.0.0.1:5000/demo", &digest);
    let claims = verify_bundle(&bundle, &key.public_key()).unwrap();
    assert_eq!(claims, BundleClaims { names: vec!["127.0.0.1:5000/demo".into()], digests: vec![digest.clone()] });
    let other = PrivateKey::generate().public_key();
    assert!(matches!(verify_bundle(&bundle, &other), Err(BundleError::Signature(SignatureError::Invalid { .. }))));
    let mut doc: serde_json::Value = serde_json::from_slice(&bundle).unwrap();
    let statement = String::from_utf8(B64.decode(doc["dsseEnvelope"]["payload"].as_str().unwrap()).unwrap()).unwrap();
    doc["dsseEnvelope"]["payload"] = B64.encode(statement.replace(&"b".repeat(64), &"c".repeat(64))).into();
    assert!(matches!(verify_bundle(&serde_json::to_vec(&doc).unwrap(), &key.public_key()), Err(BundleError::Signature(_))));
    let blob = br#"{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","messageSignature":{"messageDigest":{"algorithm":"SHA2_256","digest":""},"signature":""}}"#;
    let err = verify_bundle(blob, &key.public_key()).unwrap_err().to_string();
    assert!(err.starts_with("dsseEnvelope: required"), "{err}");
}

const PYTHON_CROSS_CHECK: &str = r#"
import base64, hashlib, json, sys
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
import nacl.secret, nacl.utils

def unpem(text):
    lines = [l for l in text.strip().splitlines() if not l.startswith('-----')]
    return base64.b64decode(''.join(lines))

def open_key(pem, password):
    sealed = json.loads(unpem(pem))
    params = sealed['kdf']['params']
    key = hashlib.scrypt(password, salt=base64.b64decode(sealed['kdf']['salt']), n=params['N'], r=params['r'], p=params['p'], dklen=32, maxmem=256 << 20)
    der = nacl.secret.SecretBox(key).decrypt(base64.b64decode(sealed['ciphertext']), base64.b64decode(sealed['cipher']['nonce']))
    return serialization.load_der_private_key(der, password=None)

mode = sys.argv[1]
if mode == 'check':
    pem, pub, message, signature = [open(p).read() for p in sys.argv[2:6]]
    private = open_key(pem, b'pw')
    public = serialization.load_pem_public_key(pub.encode())
    assert private.public_key().public_numbers() == public.public_numbers(), 'public key does not match the private key'
    public.verify(base64.b64decode(signature), message.encode(), ec.ECDSA(hashes.SHA256()))
    print('ok')
else:
    private = ec.generate_private_key(ec.SECP256R1())
    der = private.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    salt, nonce = nacl.utils.random(32), nacl.utils.random(24)
    key = hashlib.scrypt(b'pw', salt=salt, n=32768, r=8, p=1, dklen=32, maxmem=256 << 20)
    ciphertext = nacl.secret.SecretBox(key).encrypt(der, nonce).ciphertext
    body = json.dumps({'kdf': {'name': 'scrypt', 'params': {'N': 32768, 'r': 8, 'p': 1}, 'salt': base64.b64encode(salt).decode()},
                       'cipher': {'name': 'nacl/secretbox', 'nonce': base64.b64encode(nonce).decode()},
                       'ciphertext': base64.b64encode(ciphertext).decode()}).encode()
    b64 = base64.b64encode(body).decode()
    pem = '-----BEGIN ENCRYPTED COSIGN PRIVATE KEY-----\n' + '\n'.join(b64[i:i+64] for i in range(0, len(b64), 64)) + '\n-----END ENCRYPTED COSIGN PRIVATE KEY-----\n'
    pub = private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    signature = base64.b64encode(private.sign(b'made in python', ec.ECDSA(hashes.SHA256()))).decode()
    print(json.dumps({'key': pem, 'pub': pub, 'signature': signature}))
"#;

fn python(args: &[&str]) -> String {
    let out = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(PYTHON_CROSS_CHECK)
        .args(args)
        .output()
        .expect("python3 runs (apt-get install python3-cryptography python3-nacl)");
    assert!(out.status.success(), "python cross-check failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Keys and signatures cross-checked with independent implementations of cosign's primitives
/// (OpenSSL through python3-cryptography, libsodium through python3-nacl, and Python's scrypt).
#[test]
fn keys_and_signatures_interoperate_with_openssl_and_libsodium() {
    let dir = tempfile::tempdir().unwrap();
    let key = PrivateKey::generate();
    let message = "signed in rust";
    let files = [
        ("cosign.key", key.to_encrypted_pem(b"pw")),
        ("cosign.pub", key.public_key().to_pem()),
        ("message", message.to_string()),
        ("signature", base64(&key.sign(message.as_bytes()))),
    ];
    let paths: Vec<String> = files
        .iter()
        .map(|(name, body)| {
            let path = dir.path().join(name);
            std::fs::write(&path, body).unwrap();
            path.display().to_string()
        })
        .collect();
    let mut args = vec!["check"];
    args.extend(paths.iter().map(String::as_str));
    assert_eq!(python(&args).trim(), "ok");

    let made: serde_json::Value = serde_json::from_str(&python(&["make"])).unwrap();
    let private = PrivateKey::from_pem(made["key"].as_str().unwrap(), b"pw", "python key").unwrap();
    let public = PublicKey::from_pem(made["pub"].as_str().unwrap(), "python pub").unwrap();
    assert_eq!(private.public_key(), public);
    public.verify_base64(b"made in python", made["signature"].as_str().unwrap()).unwrap();
    assert!(PrivateKey::from_pem(made["key"].as_str().unwrap(), b"wrong", "python key").is_err());
}
