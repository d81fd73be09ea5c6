//! Fuzz bodies for the API server's own parsers of untrusted input, shared by the cargo-fuzz
//! targets in `fuzz/` and the stable corpus tests.

/// A `POST /join` body from anyone holding the join token: the request and its certificate
/// request must be refused with an error or accepted with the invariants the join relies on.
pub fn join_request(data: &[u8]) {
    let Ok(request) = crate::join::parse_request(data) else { return };
    assert!(api::validation::is_dns_subdomain(&request.node_name), "accepted node name {:?}", request.node_name);
    assert!((32..=256).contains(&request.node_secret.len()));
    if let Some(csr) = request.serving_csr {
        let _ = rcgen::CertificateSigningRequestParams::from_pem(&csr);
    }
}
