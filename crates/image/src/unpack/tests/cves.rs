//! One crafted layer per published unpacking vulnerability class, each proving the host outside
//! the layer root is untouched: a victim directory beside the root keeps its file, content and
//! mode, and nothing new appears beside the root.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;

use super::{Limits, Sandbox, SetIdPolicy, Tar};
use crate::unpack::unpack_layer;

/// A sandbox with a victim beside the layer root: `victim/secret` (0600, "host data").
struct Host {
    sandbox: Sandbox,
}

impl Host {
    fn new() -> Host {
        let sandbox = Sandbox::new();
        let victim = sandbox.dir.path().join("victim");
        fs::create_dir(&victim).unwrap();
        fs::write(victim.join("secret"), "host data").unwrap();
        fs::set_permissions(victim.join("secret"), fs::Permissions::from_mode(0o600)).unwrap();
        Host { sandbox }
    }

    fn victim(&self) -> PathBuf {
        self.sandbox.dir.path().join("victim")
    }

    /// The victim as an absolute path, for symlink targets.
    fn victim_abs(&self) -> String {
        self.victim().display().to_string()
    }

    /// Asserts the host is exactly as `new` left it.
    fn assert_untouched(&self) {
        let mut beside: Vec<String> = self.sandbox.outside();
        beside.sort();
        assert_eq!(beside, ["victim"], "something was created beside the layer root");
        let names: Vec<String> = fs::read_dir(self.victim()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["secret"], "the victim directory changed");
        let secret = self.victim().join("secret");
        assert_eq!(fs::read_to_string(&secret).unwrap(), "host data");
        let meta = fs::metadata(&secret).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o600, "the victim's mode changed");
        assert_eq!(meta.nlink(), 1, "the victim was hardlinked into the layer");
    }
}

/// CVE-2014-6407 (Docker before 1.3.2): a symlink, then an entry written through it, and a
/// hardlink to a host file that is then overwritten.
#[test]
fn cve_2014_6407_symlink_and_hardlink_writes_stay_inside() {
    let host = Host::new();
    let tar = Tar::default().symlink("escape", &host.victim_abs()).file("escape/secret", b"pwned").bytes();
    let err = host.sandbox.unpack(tar).unwrap_err().to_string();
    assert!(err.contains("escape/secret") && err.contains("symlink"), "{err}");
    host.assert_untouched();

    let host = Host::new();
    let tar = Tar::default().hardlink("link", "../victim/secret").file("link", b"pwned").bytes();
    let err = host.sandbox.unpack(tar).unwrap_err().to_string();
    assert!(err.contains("'..'"), "{err}");
    host.assert_untouched();

    let host = Host::new();
    let tar = Tar::default().hardlink("link", &format!("{}/secret", host.victim_abs())).bytes();
    let err = host.sandbox.unpack(tar).unwrap_err().to_string();
    assert!(err.contains("not in this layer"), "an absolute hardlink target is read inside the layer: {err}");
    host.assert_untouched();
}

/// CVE-2014-9356 (Docker before 1.3.3): absolute symlinks, and symlinks climbing with `..`,
/// followed while later entries are written.
#[test]
fn cve_2014_9356_absolute_and_climbing_symlinks_are_not_followed() {
    for target in ["/", "../../..", "/../../../.."] {
        let host = Host::new();
        let path = host.victim().strip_prefix("/").unwrap().join("secret").display().to_string();
        let tar = Tar::default().symlink("up", target).file(&format!("up/{path}"), b"pwned").bytes();
        let err = host.sandbox.unpack(tar).unwrap_err().to_string();
        assert!(err.contains("refusing to write through"), "{target}: {err}");
        host.assert_untouched();
    }
}

/// CVE-2021-32760 (containerd before 1.4.8): a symlink to a host file, then an entry of the same
/// name whose mode was applied through the link (chmod follows symlinks).
#[test]
fn cve_2021_32760_modes_are_never_applied_through_a_symlink() {
    let host = Host::new();
    let secret = format!("{}/secret", host.victim_abs());
    let tar = Tar::default().symlink("mode", &secret).dir("mode").symlink("other", &secret).file("other", b"replaced").bytes();
    host.sandbox.unpack(tar).unwrap();
    // The later entries replaced the links inside the layer; the host file kept its 0600.
    assert!(host.sandbox.root().join("mode").is_dir());
    assert_eq!(fs::read_to_string(host.sandbox.root().join("other")).unwrap(), "replaced");
    host.assert_untouched();
}

/// RUSTSEC-2021-0080 (the `tar` crate before 0.4.36): a symlink to a directory outside, then
/// directory entries beneath it, created outside the destination.
#[test]
fn rustsec_2021_0080_directories_are_not_created_through_links() {
    let host = Host::new();
    let tar = Tar::default().symlink("d", &host.victim_abs()).dir("d/created").dir("d/created/deeper").bytes();
    let err = host.sandbox.unpack(tar).unwrap_err().to_string();
    assert!(err.contains("refusing to write through"), "{err}");
    host.assert_untouched();
    assert!(!host.victim().join("created").exists());
}

/// A symlink planted by an earlier layer, written through by a later one unpacked into the
/// same directory (the store gives each layer its own, but the unpacker must not rely on it).
#[test]
fn a_symlink_from_an_earlier_layer_is_not_written_through() {
    let host = Host::new();
    host.sandbox.unpack(Tar::default().symlink("etc", &host.victim_abs()).bytes()).unwrap();
    let err = host.sandbox.unpack(Tar::default().file("etc/secret", b"pwned").bytes()).unwrap_err().to_string();
    assert!(err.contains("refusing to write through"), "{err}");
    host.assert_untouched();
}

#[test]
fn long_paths_are_refused_by_limit() {
    let sandbox = Sandbox::new();
    let limits = Limits { max_path_bytes: 64, ..Limits::default() };
    let long = "a/".repeat(40) + "f";
    let err = unpack_layer(&Tar::default().file(&long, b"x").bytes()[..], &sandbox.root(), &limits).unwrap_err().to_string();
    assert!(err.contains("longer than 64 bytes"), "{err}");
    let err = unpack_layer(&Tar::default().symlink("l", &"b".repeat(80)).bytes()[..], &sandbox.root(), &limits).unwrap_err().to_string();
    assert!(err.contains("longer than 64 bytes"), "{err}");
}

#[test]
fn setid_bits_follow_the_policy() {
    let setuid = || {
        let mut tar = Tar::default().file("bin/su", b"#!");
        // Patch the mode of the entry just written to 4755.
        let header = tar.0.len() - 1024;
        let mut h = tar::Header::from_byte_slice(&tar.0[header..header + 512]).clone();
        h.set_mode(0o4755);
        h.set_cksum();
        tar.0[header..header + 512].copy_from_slice(h.as_bytes());
        tar.bytes()
    };
    let mode = |policy: SetIdPolicy| {
        let sandbox = Sandbox::new();
        let result = unpack_layer(&setuid()[..], &sandbox.root(), &Limits { setid: policy, ..Limits::default() });
        result.map(|_| fs::metadata(sandbox.root().join("bin/su")).unwrap().mode() & 0o7777).map_err(|e| e.to_string())
    };
    assert_eq!(mode(SetIdPolicy::Keep), Ok(0o4755));
    assert_eq!(mode(SetIdPolicy::Strip), Ok(0o0755));
    let err = mode(SetIdPolicy::Refuse).unwrap_err();
    assert!(err.contains("bin/su") && err.contains("setuid"), "{err}");
}
