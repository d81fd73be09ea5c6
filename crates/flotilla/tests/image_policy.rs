//! Signing images with the binary and enforcing a ClusterImagePolicy at admission, against a real
//! registry (Debian's `docker-registry`) and a real one-node cluster: signed images run pinned to
//! their digest; unsigned, tampered, wrongly keyed and borrowed signatures are refused with the
//! rule and the fix, and nothing of the refused workload is stored or started; `warn` and `audit`
//! modes admit and record.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Cluster, FLOTILLA};
use image::testing::{busybox_layout, write_layout, Registry};
use serde_json::Value;

fn flotilla(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(FLOTILLA).current_dir(dir).env("COSIGN_PASSWORD", "correct horse").args(args).output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn pod(name: &str, image: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{test: {name}}}\nspec:\n  containers:\n  - name: main\n    image: {image}\n    command: [\"sleep\", \"3600\"]\n"
    )
}

fn policy(mode: &str, key: &Path) -> String {
    let pem = std::fs::read_to_string(key).unwrap();
    let indented: String = pem.lines().map(|l| format!("        {l}\n")).collect();
    format!(
        "apiVersion: flotilla.dev/v1alpha1\nkind: ClusterImagePolicy\nmetadata:\n  name: trusted\nspec:\n  mode: {mode}\n  images: [\"127.0.0.1:*/**\"]\n  signatures:\n    keys:\n    - name: release\n      publicKey: |\n{indented}"
    )
}

fn events(cluster: &Cluster, reason: &str) -> Vec<String> {
    let list: Value = serde_json::from_str(&cluster.run_ok(&["get", "events", "-o", "json"])).unwrap();
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["reason"] == reason)
        .map(|e| format!("{} {}", e["involvedObject"]["name"].as_str().unwrap_or(""), e["message"].as_str().unwrap_or("")))
        .collect()
}

fn absent(cluster: &Cluster, kind: &str, name: &str) -> bool {
    cluster.try_run(&["get", kind, name]).is_err_and(|e| e.contains("not found"))
}

#[test]
fn image_policy_admits_signed_images_pinned_and_refuses_the_rest() {
    let registry = Registry::start();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    busybox_layout(&dir.join("busybox"), "t");
    let signed = registry.push(&dir.join("busybox"), "t", "demo", "signed");
    let other_image = |variant: &str, tag: &str| {
        let layout = dir.join(variant);
        write_layout(&layout, "t", &[vec![0u8; 1024]], &["echo", variant]);
        registry.push(&layout, "t", "demo", tag)
    };
    let unsigned = other_image("unsigned", "unsigned");

    // Keys, signing and verifying through the CLI.
    let (ok, out) = flotilla(dir, &["image", "keygen"]);
    assert!(ok, "{out}");
    assert!(std::fs::read_to_string(dir.join("cosign.key")).unwrap().starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----"));
    let (ok, out) = flotilla(dir, &["image", "keygen", "--output-key-prefix", "other"]);
    assert!(ok, "{out}");
    let (ok, out) = flotilla(dir, &["image", "keygen"]);
    assert!(!ok && out.contains("cosign.key exists"), "keygen must not overwrite: {out}");
    let (ok, out) = flotilla(dir, &["image", "sign", "--key", "cosign.key", &signed]);
    assert!(ok && out.contains("Pushing signature to: "), "{out}");
    let (ok, out) = flotilla(dir, &["image", "verify", "--key", "cosign.pub", &signed]);
    assert!(ok && out.contains("Verified") && out.contains("signature tag"), "{out}");
    let (ok, out) = flotilla(dir, &["image", "verify", "--key", "other.pub", &signed]);
    assert!(!ok && out.contains("signed by none of the trusted keys"), "{out}");
    let (ok, out) = flotilla(dir, &["image", "verify", "--key", "cosign.pub", &unsigned]);
    assert!(!ok && out.contains("has no signature"), "{out}");
    let wrong_password =
        Command::new(FLOTILLA).current_dir(dir).env("COSIGN_PASSWORD", "wrong").args(["image", "sign", "--key", "cosign.key", &unsigned]).output().unwrap();
    assert!(!wrong_password.status.success() && String::from_utf8_lossy(&wrong_password.stderr).contains("wrong password"));
    // A bundle attached as a referrer verifies too.
    let bundled = other_image("bundled", "bundled");
    let (ok, out) = flotilla(dir, &["image", "sign", "--bundle", "--key", "cosign.key", &bundled]);
    assert!(ok, "{out}");
    let (ok, out) = flotilla(dir, &["image", "verify", "--key", "cosign.pub", &bundled]);
    assert!(ok && out.contains("Sigstore bundle referrer"), "{out}");

    let mut cluster = Cluster::up("imgpolicy");
    let (ok, _, err) = cluster.try_apply(&policy("enforce", &dir.join("cosign.pub")));
    assert!(ok, "{err}");

    // Signed: admitted, pinned to the verified digest, and running.
    let (ok, _, err) = cluster.try_apply(&pod("signed", &signed));
    assert!(ok, "{err}");
    let image = cluster.get("pod", "signed")["spec"]["containers"][0]["image"].as_str().unwrap().to_string();
    assert!(image.starts_with(&format!("{signed}@sha256:")), "the tag is pinned to its digest: {image}");
    cluster.wait_ready("test=signed", 1, Duration::from_secs(60));

    // Unsigned: refused with the policy, the rule and the fix; nothing stored.
    let (ok, _, err) = cluster.try_apply(&pod("unsigned", &unsigned));
    assert!(!ok, "an unsigned image was admitted");
    for part in ["forbidden by image policy", "ClusterImagePolicy trusted rule signatures", "has no signature", "to fix: sign", "flotilla image sign --key"] {
        assert!(err.contains(part), "{part:?} missing from: {err}");
    }
    assert!(absent(&cluster, "pod", "unsigned"));

    // A signature for another digest, copied to the unsigned image's signature tag.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let opts = image::PullOptions::default();
        let signed_ref = image::normalize_reference(&signed).unwrap();
        let unsigned_ref = image::normalize_reference(&unsigned).unwrap();
        let mut remote = image::Remote::for_push(&signed_ref, &opts).unwrap();
        let signed_digest = trust::signatures::resolve(&mut remote, &signed_ref).await.unwrap().descriptor.digest;
        let unsigned_digest = trust::signatures::resolve(&mut remote, &unsigned_ref).await.unwrap().descriptor.digest;
        let (sig, _) = remote.manifest(&trust::signatures::signature_tag(&signed_digest), None).await.unwrap();
        remote.push_manifest(&trust::signatures::signature_tag(&unsigned_digest), image::OCI_MANIFEST, &sig).await.unwrap();
    });
    let (ok, _, err) = cluster.try_apply(&pod("borrowed", &unsigned));
    assert!(!ok && err.contains("is for sha256:") && err.contains("rule signatures"), "a borrowed signature was accepted: {err}");
    assert!(absent(&cluster, "pod", "borrowed"));

    // Tampered: the tag was signed, then re-pushed with other content.
    let release = registry.push(&dir.join("busybox"), "t", "demo", "release");
    let (ok, out) = flotilla(dir, &["image", "sign", "--key", "cosign.key", &release]);
    assert!(ok, "{out}");
    other_image("tampered", "release");
    let (ok, _, err) = cluster.try_apply(&pod("tampered", &release));
    assert!(!ok && err.contains("has no signature"), "a tampered image was admitted: {err}");
    assert!(absent(&cluster, "pod", "tampered"));

    // A Deployment of an unsigned image is refused whole: no Deployment, no pods.
    let deployment = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: unsigned-web\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {{app: unsigned-web}}\n  template:\n    metadata:\n      labels: {{app: unsigned-web}}\n    spec:\n      containers:\n      - name: main\n        image: {unsigned}\n"
    );
    let (ok, _, err) = cluster.try_apply(&deployment);
    assert!(!ok && err.contains("deployments \"unsigned-web\" is forbidden") && err.contains("containers[0]"), "{err}");
    assert!(absent(&cluster, "deployment", "unsigned-web"));
    assert!(cluster.pods(Some("app=unsigned-web")).is_empty());
    assert!(!events(&cluster, "ImagePolicyDenied").is_empty());

    // The wrong key: the policy trusts only the other key now.
    let (ok, _, err) = cluster.try_apply(&policy("enforce", &dir.join("other.pub")));
    assert!(ok, "{err}");
    let (ok, _, err) = cluster.try_apply(&pod("wrong-key", &signed));
    assert!(!ok && err.contains("signed by none of the trusted keys"), "{err}");
    assert!(absent(&cluster, "pod", "wrong-key"));

    // warn: admitted, with a warning in the response and an Event.
    let (ok, _, err) = cluster.try_apply(&policy("warn", &dir.join("cosign.pub")));
    assert!(ok, "{err}");
    let (ok, _, err) = cluster.try_apply(&pod("warned", &unsigned));
    assert!(ok, "warn mode refused: {err}");
    assert!(err.contains("Warning: image ") && err.contains("rule signatures"), "no warning printed: {err}");
    assert!(events(&cluster, "ImagePolicyWarning").iter().any(|e| e.starts_with("warned ")));

    // audit: admitted silently, recorded as an Event.
    let (ok, _, err) = cluster.try_apply(&policy("audit", &dir.join("cosign.pub")));
    assert!(ok, "{err}");
    let (ok, _, err) = cluster.try_apply(&pod("audited", &unsigned));
    assert!(ok && !err.contains("Warning"), "audit mode must admit without warnings: {err}");
    assert!(events(&cluster, "ImagePolicyAudit").iter().any(|e| e.starts_with("audited ")));

    // The node re-checks before every (re)start: a crashing container admitted under audit is
    // refused its restart once the policy enforces.
    let crasher = registry.push(&dir.join("busybox"), "t", "other", "crash");
    let (ok, _, err) = cluster.try_apply(&pod("crasher", &crasher).replace("[\"sleep\", \"3600\"]", "[\"sh\", \"-c\", \"sleep 1; exit 1\"]"));
    assert!(ok, "{err}");
    common::wait_for(Duration::from_secs(60), "the crasher to have run", || {
        let pod = cluster.get("pod", "crasher");
        (pod["status"]["containerStatuses"][0]["restartCount"].as_i64().unwrap_or(0) >= 1).then_some(())
    });
    let (ok, _, err) = cluster.try_apply(&policy("enforce", &dir.join("cosign.pub")));
    assert!(ok, "{err}");
    let waiting = common::wait_for(Duration::from_secs(60), "the node to refuse the restart", || {
        let pod = cluster.get("pod", "crasher");
        let waiting = &pod["status"]["containerStatuses"][0]["state"]["waiting"];
        (waiting["reason"] == "ImagePolicyDenied").then(|| waiting["message"].as_str().unwrap_or("").to_string())
    });
    assert!(waiting.contains("has no signature") && waiting.contains("node"), "{waiting}");

    let metrics = cluster.metrics();
    assert!(
        metrics.contains("flotilla_image_policy_violations_total{policy=\"ClusterImagePolicy trusted\",rule=\"signatures\",mode=\"enforce\"}"),
        "{metrics}"
    );

    cluster.delete_everything();
    cluster.assert_host_clean();
}

#[test]
fn the_example_image_policy_admits_the_quickstart_and_refuses_other_registries() {
    let mut cluster = Cluster::up("policyexample");
    let example = common::repo_root().join("examples/image-policy.yaml");
    let applied = cluster.run_ok(&["apply", "-f", example.to_str().unwrap()]);
    assert!(applied.contains("local-sources") && applied.contains("team-repositories"), "{applied}");

    // The quickstart runs unchanged under it, without a warning.
    let web = common::repo_root().join("examples/web.yaml");
    let out = cluster.command(&["apply", "-f", web.to_str().unwrap()]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !stderr.contains("Warning"), "{stderr}");
    cluster.wait_ready("app=web", 3, Duration::from_secs(60));

    // An image from the internet is refused before anything is stored.
    let (admitted, _, err) = cluster.try_apply(&pod("probe", "docker.io/library/nginx:1.25"));
    assert!(!admitted, "a docker.io image was admitted");
    for part in ["ClusterImagePolicy local-sources", "allowedRegistries", "registry docker.io is not allowed", "add its registry to spec.allowedRegistries"] {
        assert!(err.contains(part), "{part:?} missing from: {err}");
    }
    assert!(absent(&cluster, "pod", "probe"));

    // A local image outside the team's repositories is admitted, with the warning and an Event.
    let (admitted, _, err) = cluster.try_apply(&pod("stray", "localhost/tools/busybox:1"));
    assert!(admitted, "{err}");
    assert!(err.contains("Warning:") && err.contains("ImagePolicy default/team-repositories") && err.contains("allowedRepositories"), "{err}");
    let warned = common::wait_for(Duration::from_secs(10), "an ImagePolicyWarning Event", || {
        events(&cluster, "ImagePolicyWarning").into_iter().find(|e| e.starts_with("stray "))
    });
    assert!(warned.contains("localhost/tools/busybox is not allowed"), "{warned}");

    cluster.delete_everything();
    cluster.assert_host_clean();
}
