//! Test support for this and other crates (feature `testing`): a real `docker-registry` on a free
//! loopback port, and an offline single-layer busybox OCI layout.
//!
//! These helpers panic instead of returning errors: a missing tool is a broken test machine, and
//! the panic says which Debian package to install.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::digest::Digest;
use crate::layout::REF_NAME;
use crate::manifest::{Descriptor, Index, Manifest, Platform, OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP, OCI_MANIFEST};

/// Busybox applets linked in the test image's `/bin`.
pub const BUSYBOX_APPLETS: &[&str] = &[
    "sh", "ash", "httpd", "echo", "sleep", "cat", "ls", "wget", "nc", "true", "false", "env", "id", "ps", "kill", "mkdir", "rm", "touch", "test", "[", "grep",
    "hostname", "ip", "ifconfig", "printf", "pwd", "uname", "date",
];
const BUSYBOX: &str = "/bin/busybox";
const MTIME: u64 = 1_700_000_000;

/// Returns the path of `binary` on `PATH`, or panics naming the Debian package that provides it.
pub fn require_tool(binary: &str, apt_package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(binary))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("`{binary}` is not installed: run `apt-get install {apt_package}`"))
}

/// A Debian `docker-registry` serving plain HTTP on loopback, with storage in a temp dir; killed
/// when dropped.
pub struct Registry {
    /// `127.0.0.1:PORT`, usable as the registry part of references.
    pub addr: String,
    /// The registry's storage root (filesystem driver), for tests that tamper with blobs.
    pub storage: PathBuf,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry and waits until `/v2/` answers.
    ///
    /// # Panics
    /// If `docker-registry` is missing or does not come up within 20 seconds.
    pub fn start() -> Registry {
        Self::start_with_config("")
    }

    /// Starts a registry whose config also has the top-level YAML sections in `extra` (an
    /// `auth:` section, for instance).
    ///
    /// # Panics
    /// If `docker-registry` is missing or does not come up within 20 seconds.
    pub fn start_with_config(extra: &str) -> Registry {
        let binary = require_tool("docker-registry", "docker-registry");
        let mut last_log = String::new();
        for _ in 0..5 {
            let dir = tempfile::tempdir().expect("temp dir for the registry");
            let storage = dir.path().join("storage");
            let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
            let addr = format!("127.0.0.1:{port}");
            let config = format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{extra}\n",
                storage.display()
            );
            let config_path = dir.path().join("config.yml");
            fs::write(&config_path, config).expect("write registry config");
            let log_path = dir.path().join("registry.log");
            let log = fs::File::create(&log_path).expect("registry log");
            let child = Command::new(&binary)
                .arg("serve")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log handle"))
                .stderr(log)
                .spawn()
                .expect("spawn docker-registry");
            let mut registry = Registry { addr, storage, child, _dir: dir };
            if registry.wait_ready(Duration::from_secs(20)) {
                return registry;
            }
            last_log = fs::read_to_string(&log_path).unwrap_or_default();
            // Usually another process took the port between our probe and the registry's bind.
        }
        panic!("docker-registry did not start; last log:\n{last_log}");
    }

    fn wait_ready(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return false;
            }
            if let Ok(mut stream) = TcpStream::connect(&self.addr) {
                let request = format!("GET /v2/ HTTP/1.0\r\nHost: {}\r\n\r\n", self.addr);
                let mut answer = [0u8; 16];
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                // Any HTTP answer will do: a registry with auth answers 401.
                if stream.write_all(request.as_bytes()).is_ok() && stream.read_exact(&mut answer).is_ok() && answer.starts_with(b"HTTP/1.") {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Pushes `layout:tag` to `repository:push_tag` on this registry with skopeo; returns the
    /// pushed reference (`127.0.0.1:PORT/repository:push_tag`).
    ///
    /// # Panics
    /// If skopeo is missing or the push fails.
    pub fn push(&self, layout: &Path, tag: &str, repository: &str, push_tag: &str) -> String {
        let skopeo = require_tool("skopeo", "skopeo");
        let reference = format!("{}/{repository}:{push_tag}", self.addr);
        let out = Command::new(skopeo)
            .args(["copy", "--quiet", "--dest-tls-verify=false", "--insecure-policy"])
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{reference}"))
            .output()
            .expect("run skopeo");
        assert!(out.status.success(), "skopeo push failed: {}", String::from_utf8_lossy(&out.stderr));
        reference
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes (or adds `tag` to) an OCI layout at `dir` holding a single-layer image with
/// `/bin/busybox`, its applet symlinks, `/tmp` and `/etc/passwd`, and `Cmd ["sh"]`. The content
/// is deterministic, so the same busybox gives the same digests. Returns the manifest descriptor.
///
/// # Panics
/// If `/bin/busybox` is missing (Debian `busybox-static`) or the layout cannot be written.
pub fn busybox_layout(dir: &Path, tag: &str) -> Descriptor {
    let busybox = fs::read(BUSYBOX).unwrap_or_else(|_| panic!("{BUSYBOX} is missing: run `apt-get install busybox-static`"));
    write_layout(dir, tag, &[busybox_layer_tar(&busybox)], &["sh"])
}

/// Writes (or adds `tag` to) an OCI layout at `dir` with an image made of `layers` (uncompressed
/// tars, bottom first, stored gzip-compressed) and `Cmd` `cmd`. Returns the manifest descriptor.
///
/// # Panics
/// If the layout cannot be written.
pub fn write_layout(dir: &Path, tag: &str, layers: &[Vec<u8>], cmd: &[&str]) -> Descriptor {
    let platform = Platform::host();
    let diff_ids: Vec<Digest> = layers.iter().map(|t| Digest::of(t)).collect();
    let config = serde_json::json!({
        "architecture": platform.architecture, "os": platform.os, "created": "2023-11-14T22:13:20Z",
        "config": {"Cmd": cmd, "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let config = serde_json::to_vec(&config).expect("config json");
    let mut layer_descs = Vec::new();
    for tar in layers {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(tar).expect("gzip in memory");
        layer_descs.push(put_blob(dir, OCI_LAYER_GZIP, &gz.finish().expect("gzip in memory")));
    }
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST.to_string()),
        config: put_blob(dir, OCI_CONFIG, &config),
        layers: layer_descs,
        annotations: BTreeMap::new(),
        artifact_type: None,
        subject: None,
    };
    let desc = put_blob(dir, OCI_MANIFEST, &serde_json::to_vec(&manifest).expect("manifest json"));
    tag_layout(dir, tag, &desc);
    desc
}

/// Writes `bytes` as a blob of the OCI layout at `dir`.
///
/// # Panics
/// If the blob cannot be written.
pub fn put_blob(dir: &Path, media_type: &str, bytes: &[u8]) -> Descriptor {
    let blobs = dir.join("blobs").join("sha256");
    fs::create_dir_all(&blobs).expect("layout blobs dir");
    let desc = Descriptor::new(media_type, Digest::of(bytes), bytes.len() as u64);
    fs::write(blobs.join(desc.digest.hex()), bytes).expect("write layout blob");
    desc
}

/// Points `tag` of the OCI layout at `dir` to `desc` in its `index.json`.
///
/// # Panics
/// If the index cannot be written.
pub fn tag_layout(dir: &Path, tag: &str, desc: &Descriptor) {
    let index_path = dir.join("index.json");
    let mut index: Index = fs::read(&index_path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or(Index {
        schema_version: 2,
        media_type: Some(OCI_INDEX.to_string()),
        manifests: vec![],
        annotations: BTreeMap::new(),
    });
    index.manifests.retain(|d| d.annotations.get(REF_NAME).map(String::as_str) != Some(tag));
    let mut entry = desc.clone();
    entry.annotations.insert(REF_NAME.to_string(), tag.to_string());
    index.manifests.push(entry);
    fs::write(&index_path, serde_json::to_vec(&index).expect("index json")).expect("write index.json");
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).expect("write oci-layout");
}

fn busybox_layer_tar(busybox: &[u8]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let header = |kind: tar::EntryType, mode: u32, size: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(MTIME);
        h.set_uid(0);
        h.set_gid(0);
        h
    };
    let mut add = |path: &str, mut h: tar::Header, data: &[u8]| {
        builder.append_data(&mut h, path, data).expect("tar in memory");
    };
    add("bin/", header(tar::EntryType::Directory, 0o755, 0), b"");
    add("bin/busybox", header(tar::EntryType::Regular, 0o755, busybox.len() as u64), busybox);
    for applet in BUSYBOX_APPLETS {
        let mut h = header(tar::EntryType::Symlink, 0o777, 0);
        h.set_link_name("busybox").expect("short link name");
        add(&format!("bin/{applet}"), h, b"");
    }
    add("etc/", header(tar::EntryType::Directory, 0o755, 0), b"");
    let passwd = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
    add("etc/passwd", header(tar::EntryType::Regular, 0o644, passwd.len() as u64), passwd);
    let group = b"root:x:0:\nnogroup:x:65534:\n";
    add("etc/group", header(tar::EntryType::Regular, 0o644, group.len() as u64), group);
    add("root/", header(tar::EntryType::Directory, 0o700, 0), b"");
    add("tmp/", header(tar::EntryType::Directory, 0o1777, 0), b"");
    builder.into_inner().expect("tar in memory")
}
