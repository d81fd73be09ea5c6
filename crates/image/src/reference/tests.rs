use super::*;

fn norm(r: &str) -> String {
    normalize_reference(r).unwrap().to_string()
}

#[test]
fn short_names_get_docker_hub_library_and_latest() {
    assert_eq!(norm("busybox"), "docker.io/library/busybox:latest");
    assert_eq!(norm("busybox:1.36"), "docker.io/library/busybox:1.36");
    assert_eq!(norm("user/app"), "docker.io/user/app:latest");
    assert_eq!(norm("index.docker.io/library/busybox"), "docker.io/library/busybox:latest");
    assert_eq!(norm("docker.io/busybox"), "docker.io/library/busybox:latest");
}

#[test]
fn registries_with_ports_and_nested_paths() {
    let r = normalize_reference("localhost:5000/a/b:t").unwrap();
    assert_eq!(r.registry, "localhost:5000");
    assert_eq!(r.repository, "a/b");
    assert_eq!(r.tag.as_deref(), Some("t"));
    assert_eq!(r.api_host(), "localhost:5000");
    assert_eq!(norm("127.0.0.1:5000/test/busybox:1"), "127.0.0.1:5000/test/busybox:1");
    assert_eq!(norm("[::1]:5000/x"), "[::1]:5000/x:latest");
    assert_eq!(norm("localhost/x"), "localhost/x:latest");
    assert_eq!(norm("ghcr.io/o/r/s:v1.2-rc_3"), "ghcr.io/o/r/s:v1.2-rc_3");
    assert_eq!(normalize_reference("busybox").unwrap().api_host(), "registry-1.docker.io");
}

#[test]
fn digests_pin_without_defaulting_the_tag() {
    let d = format!("sha256:{}", "a".repeat(64));
    let r = normalize_reference(&format!("x@{d}")).unwrap();
    assert_eq!(r.tag, None);
    assert_eq!(r.digest.as_ref().map(|d| d.as_str()), Some(d.as_str()));
    assert_eq!(r.to_string(), format!("docker.io/library/x@{d}"));
    assert_eq!(r.manifest_selector(), d);
    assert_eq!(norm(&format!("x:1@{d}")), format!("docker.io/library/x:1@{d}"));
}

#[test]
fn rejects_malformed_references() {
    for bad in [
        "",
        "UPPER",
        "a//b",
        "a/-b",
        "a:",
        "a:-tag",
        "x@sha256:short",
        "x@md5:abcd",
        "localhost:port/x",
        "a/b..c",
        "host:/x",
        "a b",
        &format!("x:{}", "t".repeat(129)),
    ] {
        let err = normalize_reference(bad);
        assert!(err.is_err(), "{bad:?} should be rejected, got {err:?}");
    }
    let err = normalize_reference("Busybox").unwrap_err().to_string();
    assert!(err.contains("Busybox"), "{err}");
}
