//! Bearer-token authentication against a real docker-registry configured with `auth: token`,
//! fed by a token endpoint that signs JWTs with a throwaway key (openssl does the crypto).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use common::{run, store};
use image::testing::{busybox_layout, Registry};
use image::{Credentials, ImageError, PullOptions, RegistryError};

const SERVICE: &str = "flotilla-registry";
const ISSUER: &str = "flotilla-test-issuer";
const USER: &str = "tester";
const PASSWORD: &str = "s3cret";

fn base64(bytes: &[u8], url: bool) -> String {
    let alphabet: &[u8] = if url {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    } else {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    };
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(alphabet[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
        if !url {
            out.push_str(&"=".repeat(3 - chunk.len()));
        }
    }
    out
}

/// A JWT the registry accepts: RS256, certificate chain in `x5c`, pull+push on test/busybox.
fn signed_token(dir: &Path) -> String {
    let key = dir.join("key.pem");
    let cert = dir.join("cert.pem");
    let der = dir.join("cert.der");
    run(
        "openssl",
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=flotilla-test-token",
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
        ],
    );
    run("openssl", "openssl", &["x509", "-in", cert.to_str().unwrap(), "-outform", "DER", "-out", der.to_str().unwrap()]);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [base64(&std::fs::read(&der).unwrap(), false)]});
    let claims = serde_json::json!({
        "iss": ISSUER, "sub": USER, "aud": SERVICE, "exp": now + 3600, "nbf": now - 60, "iat": now - 60, "jti": "1",
        "access": [{"type": "repository", "name": "test/busybox", "actions": ["pull", "push"]}],
    });
    let signing_input = format!("{}.{}", base64(&serde_json::to_vec(&header).unwrap(), true), base64(&serde_json::to_vec(&claims).unwrap(), true));
    let input = dir.join("jwt-input");
    let signature = dir.join("jwt-signature");
    std::fs::write(&input, &signing_input).unwrap();
    run("openssl", "openssl", &["dgst", "-sha256", "-sign", key.to_str().unwrap(), "-out", signature.to_str().unwrap(), input.to_str().unwrap()]);
    format!("{signing_input}.{}", base64(&std::fs::read(&signature).unwrap(), true))
}

/// Serves `token` to clients that present the test user's basic credentials, 401 to others.
fn token_endpoint(token: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let expected = format!("authorization: basic {}", base64(format!("{USER}:{PASSWORD}").as_bytes(), false)).to_lowercase();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut authorized = false;
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                authorized |= line.trim().to_lowercase() == expected;
                line.clear();
            }
            let (status, body) = if authorized { ("200 OK", serde_json::json!({"token": token}).to_string()) } else { ("401 Unauthorized", "{}".to_string()) };
            let _ = write!(stream, "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        }
    });
    format!("http://{addr}/token")
}

#[tokio::test]
async fn pulls_with_a_bearer_token_from_the_challenged_realm() {
    let dir = tempfile::tempdir().unwrap();
    let realm = token_endpoint(signed_token(dir.path()));
    let registry = Registry::start_with_config(&format!(
        "auth:\n  token:\n    realm: {realm}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
        dir.path().join("cert.pem").display()
    ));
    let layout = dir.path().join("layout");
    let manifest = busybox_layout(&layout, "1");
    let reference = format!("{}/test/busybox:1", registry.addr);
    common::skopeo(&[
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        "--dest-creds",
        &format!("{USER}:{PASSWORD}"),
        &format!("oci:{}:1", layout.display()),
        &format!("docker://{reference}"),
    ]);

    let (_tmp, store) = store();
    let err = store.pull(&reference, &PullOptions::default()).await.unwrap_err();
    assert!(matches!(err, ImageError::Registry(RegistryError::Unauthorized { .. })), "{err}");
    assert!(err.to_string().contains("token endpoint"), "{err}");

    let opts = PullOptions { credentials: Some(Credentials { username: USER.into(), password: PASSWORD.into() }), ..PullOptions::default() };
    let record = store.pull(&reference, &opts).await.unwrap();
    assert_eq!(record.digest, manifest.digest.as_str());
    common::assert_busybox_rootfs(&store.prepare_layers(&record).unwrap()[0]);
}
