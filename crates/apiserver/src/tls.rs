//! The cluster's certificate authority and the API server's serving certificate, generated at
//! first start and kept under the data directory (keys with mode 0600).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose};

/// Why the PKI could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// Certificate generation failed.
    #[error("generating certificates: {0}")]
    Generate(#[from] rcgen::Error),
    /// A stored certificate or key is unreadable.
    #[error("{path}: {message}; delete the pki directory to regenerate it")]
    Invalid { path: PathBuf, message: String },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Paths and contents of the cluster PKI.
#[derive(Clone, Debug)]
pub struct Pki {
    /// The CA certificate (PEM), given to clients in the kubeconfig.
    pub ca_pem: String,
    /// The serving certificate chain file.
    pub cert_path: PathBuf,
    /// The serving key file.
    pub key_path: PathBuf,
}

pub(crate) fn read(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|source| TlsError::Io { path: path.to_path_buf(), source })
}

pub(crate) fn write(path: &Path, text: &str, secret: bool) -> Result<(), TlsError> {
    let io = |source| TlsError::Io { path: path.to_path_buf(), source };
    if secret {
        crate::auth::write_secret(path, text).map_err(io)
    } else {
        std::fs::write(path, text).map_err(io)
    }
}

/// The parameters of a CA named `name`.
pub(crate) fn ca_params(name: &str) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    Ok(params)
}

/// The private key at `path`, generated (and kept with mode 0600) on first use.
pub(crate) fn load_or_create_key(path: &Path) -> Result<KeyPair, TlsError> {
    if path.exists() {
        let pem = read(path)?;
        return KeyPair::from_pem(&pem).map_err(|e| TlsError::Invalid { path: path.to_path_buf(), message: e.to_string() });
    }
    let key = KeyPair::generate()?;
    write(path, &key.serialize_pem(), true)?;
    Ok(key)
}

/// Loads the PKI in `dir`, creating the CA on first use and (re)issuing the serving certificate
/// whenever the wanted names (`sans`: DNS names and IPs) change.
pub fn ensure_pki(dir: &Path, sans: &[String]) -> Result<Pki, TlsError> {
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Io { path: dir.to_path_buf(), source })?;
    let (ca_cert_path, ca_key_path) = (dir.join("ca.crt"), dir.join("ca.key"));
    let (cert_path, key_path, sans_path) = (dir.join("server.crt"), dir.join("server.key"), dir.join("server.sans"));
    let ca_key = load_or_create_key(&ca_key_path)?;
    // The CA certificate is re-derived from its key and fixed name, so a re-issued CA cert
    // verifies every certificate the old one did.
    let ca_cert = ca_params("flotilla-ca")?.self_signed(&ca_key)?;
    if !ca_cert_path.exists() {
        write(&ca_cert_path, &ca_cert.pem(), false)?;
    }
    let wanted = sans.join(",");
    let current = std::fs::read_to_string(&sans_path).unwrap_or_default();
    if current != wanted || !cert_path.exists() || !key_path.exists() {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(sans.to_vec())?;
        params.distinguished_name.push(DnType::CommonName, "flotilla-apiserver");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &ca_cert, &ca_key)?;
        write(&key_path, &key.serialize_pem(), true)?;
        write(&cert_path, &cert.pem(), false)?;
        write(&sans_path, &wanted, false)?;
    }
    Ok(Pki { ca_pem: read(&ca_cert_path)?, cert_path, key_path })
}

/// A rustls server configuration (ring, TLS 1.2 and 1.3, h2 and http/1.1) for a cert and key.
pub fn server_config(cert_path: &Path, key_path: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let invalid = |path: &Path, message: String| TlsError::Invalid { path: path.to_path_buf(), message };
    let cert_pem = read(cert_path)?;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>().map_err(|e| invalid(cert_path, e.to_string()))?;
    let key_pem = read(key_path)?;
    let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .map_err(|e| invalid(key_path, e.to_string()))?
        .ok_or_else(|| invalid(key_path, "no private key found".into()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
