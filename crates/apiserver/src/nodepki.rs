//! The node CA: it signs each agent's serving certificate (for its own node name only) and the
//! API server's client certificate for calling agents. It is kept apart from the cluster CA, so
//! no certificate a node obtains is one that clients of the API server would trust.

use std::path::Path;

use rcgen::{Certificate, CertificateParams, CertificateSigningRequestParams, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose};

use crate::tls::{ca_params, load_or_create_key, read, write, TlsError};

/// The Common Name of the API server's client certificate, which agents require of callers.
pub const APISERVER_CLIENT_NAME: &str = "flotilla-apiserver";

/// The node CA, and the API server's client identity signed by it.
pub struct NodePki {
    /// The node CA certificate (PEM), handed to agents when they join.
    pub ca_pem: String,
    ca_cert: Certificate,
    ca_key: KeyPair,
    /// The API server's client certificate (PEM) for agent endpoints.
    pub client_cert_pem: String,
    /// Its private key (PEM).
    pub client_key_pem: String,
}

/// Why a node's certificate request was refused.
#[derive(Debug, thiserror::Error)]
pub enum CsrError {
    /// Not a PEM `CERTIFICATE REQUEST`, or its signature does not verify.
    #[error("servingCsr is not a valid PEM certificate request signed by its own key: {0}")]
    Invalid(String),
    /// Signing failed.
    #[error("signing the serving certificate: {0}")]
    Sign(#[from] rcgen::Error),
}

/// Loads the node CA in `dir` (the PKI directory), creating it and the API server's client
/// certificate on first use.
pub fn ensure_node_pki(dir: &Path) -> Result<NodePki, TlsError> {
    let ca_key = load_or_create_key(&dir.join("node-ca.key"))?;
    // Re-derived from its key and fixed name, like the cluster CA, so it always verifies what
    // it signed before.
    let ca_cert = ca_params("flotilla-node-ca")?.self_signed(&ca_key)?;
    let ca_path = dir.join("node-ca.crt");
    if !ca_path.exists() {
        write(&ca_path, &ca_cert.pem(), false)?;
    }
    let (client_cert_path, client_key_path) = (dir.join("apiserver-node-client.crt"), dir.join("apiserver-node-client.key"));
    if !client_cert_path.exists() || !client_key_path.exists() {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, APISERVER_CLIENT_NAME);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &ca_cert, &ca_key)?;
        write(&client_key_path, &key.serialize_pem(), true)?;
        write(&client_cert_path, &cert.pem(), false)?;
    }
    Ok(NodePki { ca_pem: read(&ca_path)?, ca_cert, ca_key, client_cert_pem: read(&client_cert_path)?, client_key_pem: read(&client_key_path)? })
}

impl NodePki {
    /// Signs the public key of `csr_pem` (whose signature proves the requester holds the
    /// private key) into a serving certificate for node `node`: Common Name
    /// `system:node:<node>`, the node name as its only DNS name, server authentication only.
    /// Whatever names or extensions the request asks for are ignored.
    pub fn sign_serving(&self, csr_pem: &str, node: &str) -> Result<String, CsrError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| CsrError::Invalid(e.to_string()))?;
        let mut params = CertificateParams::new(vec![node.to_string()])?;
        params.distinguished_name.push(DnType::CommonName, format!("system:node:{node}"));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        Ok(params.signed_by(&csr.public_key, &self.ca_cert, &self.ca_key)?.pem())
    }
}

/// A private key and a certificate request for a node's serving certificate, made on the node.
pub fn serving_request(node: &str) -> Result<(String, String), rcgen::Error> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec![node.to_string()])?;
    params.distinguished_name.push(DnType::CommonName, format!("system:node:{node}"));
    let csr = params.serialize_request(&key)?;
    Ok((key.serialize_pem(), csr.pem()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_serving_certificate_names_only_the_node_and_chains_to_the_node_ca() {
        let dir = tempfile::tempdir().unwrap();
        let pki = ensure_node_pki(dir.path()).unwrap();
        let (_key, csr) = serving_request("edge-1").unwrap();
        // A request for more names than its own gets only its own.
        let greedy = {
            let key = KeyPair::generate().unwrap();
            let params = CertificateParams::new(vec!["edge-1".to_string(), "kubernetes.default".to_string(), "127.0.0.1".to_string()]).unwrap();
            params.serialize_request(&key).unwrap().pem().unwrap()
        };
        for request in [csr, greedy] {
            let pem = pki.sign_serving(&request, "edge-1").unwrap();
            let der = rustls_pemfile::certs(&mut pem.as_bytes()).next().unwrap().unwrap();
            let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
            let names: Vec<String> = cert.subject_alternative_name().unwrap().unwrap().value.general_names.iter().map(|n| n.to_string()).collect();
            assert_eq!(names, ["DNSName(edge-1)"]);
            assert_eq!(cert.subject().iter_common_name().next().unwrap().as_str().unwrap(), "system:node:edge-1");
            assert_eq!(cert.issuer().iter_common_name().next().unwrap().as_str().unwrap(), "flotilla-node-ca");
            let eku = cert.extended_key_usage().unwrap().unwrap().value;
            assert!(eku.server_auth && !eku.client_auth);
        }
        assert!(matches!(pki.sign_serving("not a csr", "edge-1"), Err(CsrError::Invalid(_))));
        // The CA and the client identity survive a restart unchanged.
        let again = ensure_node_pki(dir.path()).unwrap();
        assert_eq!((again.ca_pem, again.client_cert_pem), (pki.ca_pem, pki.client_cert_pem));
    }
}
