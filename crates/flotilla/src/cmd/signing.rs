//! `flotilla image keygen|sign|verify`: cosign-compatible keys and image signatures in a registry.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use image::{normalize_reference, PullOptions, Remote};
use trust::cosign::{PrivateKey, PublicKey};
use trust::signatures::{self, Format};

/// The environment variable cosign (and Flotilla) read a private key's password from.
const PASSWORD_ENV: &str = "COSIGN_PASSWORD";

/// Writes `<prefix>.key` (encrypted, mode 0600) and `<prefix>.pub`, refusing to overwrite.
pub fn keygen(prefix: &Path) -> Result<()> {
    let key_path = prefix.with_extension("key");
    let pub_path = prefix.with_extension("pub");
    for path in [&key_path, &pub_path] {
        if path.exists() {
            bail!("{} exists; remove it or choose another --output-key-prefix", path.display());
        }
    }
    let password = new_password()?;
    let key = PrivateKey::generate();
    let mut file =
        fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&key_path).with_context(|| format!("creating {}", key_path.display()))?;
    file.write_all(key.to_encrypted_pem(password.as_bytes()).as_bytes())?;
    fs::write(&pub_path, key.public_key().to_pem()).with_context(|| format!("writing {}", pub_path.display()))?;
    println!("Private key written to {}", key_path.display());
    println!("Public key written to {}", pub_path.display());
    Ok(())
}

/// Reads the private key at `path`, with the password from `COSIGN_PASSWORD` or the terminal.
pub fn read_private_key(path: &Path) -> Result<PrivateKey> {
    let pem = fs::read_to_string(path).with_context(|| format!("reading the private key {}", path.display()))?;
    let password = match std::env::var(PASSWORD_ENV) {
        Ok(p) => p,
        Err(_) => rpassword::prompt_password("Enter password for private key: ").with_context(|| format!("reading the password (or set {PASSWORD_ENV})"))?,
    };
    Ok(PrivateKey::from_pem(&pem, password.as_bytes(), &path.display().to_string())?)
}

/// Reads public keys from PEM files.
pub fn read_public_keys(paths: &[PathBuf]) -> Result<Vec<PublicKey>> {
    paths
        .iter()
        .map(|path| {
            let pem = fs::read_to_string(path).with_context(|| format!("reading the public key {}", path.display()))?;
            Ok(PublicKey::from_pem(&pem, &path.display().to_string())?)
        })
        .collect()
}

fn new_password() -> Result<String> {
    if let Ok(p) = std::env::var(PASSWORD_ENV) {
        return Ok(p);
    }
    let first = rpassword::prompt_password("Enter password for private key: ").with_context(|| format!("reading the password (or set {PASSWORD_ENV})"))?;
    let again = rpassword::prompt_password("Enter password for private key again: ")?;
    if first != again {
        bail!("the passwords do not match");
    }
    Ok(first)
}

/// Signs `reference` (a tag is resolved to its digest first) and stores the signature.
pub async fn sign(reference: &str, key: &Path, annotations: &[String], bundle: bool, insecure: &[String]) -> Result<()> {
    let key = read_private_key(key)?;
    let mut optional = BTreeMap::new();
    for a in annotations {
        let (k, v) = a.split_once('=').with_context(|| format!("--annotation {a:?}: want KEY=VALUE"))?;
        optional.insert(k.to_string(), serde_json::Value::String(v.to_string()));
    }
    let reference = normalize_reference(reference)?;
    let opts = PullOptions { insecure_registries: insecure.to_vec(), ..Default::default() };
    let mut remote = Remote::for_push(&reference, &opts)?;
    let resolved = signatures::resolve(&mut remote, &reference).await.with_context(|| format!("resolving {reference}"))?;
    let format = if bundle { Format::Bundle } else { Format::SignatureTag };
    let stored = signatures::sign(&mut remote, &resolved, &key, optional, format).await.with_context(|| format!("storing the signature of {reference}"))?;
    let pinned = reference.with_digest(resolved.descriptor.digest.clone());
    match format {
        Format::SignatureTag => println!("Pushing signature to: {}:{stored}", reference.repository_name()),
        Format::Bundle => println!("Attached Sigstore bundle {stored} as a referrer of {pinned}"),
    }
    Ok(())
}

/// Verifies `reference` against `keys`; prints what verified, or fails with every reason.
pub async fn verify(reference: &str, keys: &[PathBuf], insecure: &[String]) -> Result<()> {
    let keys = read_public_keys(keys)?;
    let reference = normalize_reference(reference)?;
    let opts = PullOptions { insecure_registries: insecure.to_vec(), ..Default::default() };
    let mut remote = Remote::new(&reference, &opts)?;
    let resolved = signatures::resolve(&mut remote, &reference).await.with_context(|| format!("resolving {reference}"))?;
    let verified = signatures::verify(&mut remote, &resolved, &keys).await?;
    println!(
        "Verified {}: signed by key {} ({}); the claims name this repository and digest",
        reference.with_digest(verified.digest.clone()),
        verified.key,
        verified.storage
    );
    Ok(())
}
