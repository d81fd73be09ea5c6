//! Where pod containers live in the cgroup tree (`/flotilla/pod<uid>/<container>`) and removing
//! the pod level once the runtime has deleted the containers, on cgroup v1, v2 and hybrid hosts.

use std::path::{Path, PathBuf};

use super::{validate_name, RuntimeError};

use crate::PathError;

/// The cgroup directory, below each hierarchy root, that holds all of Flotilla's pods.
pub const CGROUP_PARENT: &str = "/flotilla";

/// The cgroup path of a pod (`/flotilla/pod<uid>`), relative to each hierarchy root.
pub fn pod_cgroups_path(pod_uid: &str) -> Result<String, RuntimeError> {
    validate_name("pod uid", pod_uid)?;
    Ok(format!("{CGROUP_PARENT}/pod{pod_uid}"))
}

/// The `cgroupsPath` of a container in a pod: `/flotilla/pod<uid>/<container>`.
pub fn container_cgroups_path(pod_uid: &str, container: &str) -> Result<String, RuntimeError> {
    validate_name("container name", container)?;
    Ok(format!("{}/{container}", pod_cgroups_path(pod_uid)?))
}

/// Removes the pod's cgroup directory (and any empty leaves left below it) in every mounted v1
/// hierarchy and in the v2 one. Run it after the runtime deleted the pod's containers; a pod
/// with no directories left is not an error.
pub fn remove_pod_cgroups(pod_uid: &str) -> Result<(), RuntimeError> {
    let relative = pod_cgroups_path(pod_uid)?;
    for root in cgroup_mount_points()? {
        remove_tree(&root.join(relative.trim_start_matches('/')))?;
    }
    Ok(())
}

/// The mount points of every cgroup (v1) and cgroup2 filesystem visible to this process.
pub(crate) fn cgroup_mount_points() -> Result<Vec<PathBuf>, RuntimeError> {
    let mountinfo_path = Path::new("/proc/self/mountinfo");
    let mountinfo =
        std::fs::read_to_string(mountinfo_path).map_err(|source| RuntimeError::Io(PathError { action: "read", path: mountinfo_path.into(), source }))?;
    Ok(parse_cgroup_mounts(&mountinfo))
}

/// Picks cgroup mount points out of /proc/self/mountinfo. Fields: id parent major:minor root
/// mount-point options [optional fields…] - fstype source super-options.
fn parse_cgroup_mounts(mountinfo: &str) -> Vec<PathBuf> {
    let mut points: Vec<PathBuf> = Vec::new();
    for line in mountinfo.lines() {
        let Some((before, after)) = line.split_once(" - ") else {
            continue;
        };
        let fstype = after.split(' ').next().unwrap_or_default();
        if fstype != "cgroup" && fstype != "cgroup2" {
            continue;
        }
        if let Some(point) = before.split(' ').nth(4) {
            let point = PathBuf::from(unescape_octal(point));
            if !points.contains(&point) {
                points.push(point);
            }
        }
    }
    points
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_octal(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = bytes.get(i + 1..i + 4).filter(|_| bytes[i] == b'\\');
        let value = escaped.and_then(|digits| std::str::from_utf8(digits).ok()).and_then(|digits| u8::from_str_radix(digits, 8).ok());
        if let Some(value) = value {
            out.push(value);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Removes a cgroup directory and its sub-cgroups, deepest first. Only `rmdir` works on
/// cgroup directories: their control files vanish with them.
fn remove_tree(dir: &Path) -> Result<(), RuntimeError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(RuntimeError::Cgroup { path: dir.into(), source }),
    };
    for entry in entries {
        let entry = entry.map_err(|source| RuntimeError::Cgroup { path: dir.into(), source })?;
        let is_dir = entry.file_type().is_ok_and(|kind| kind.is_dir());
        if is_dir {
            remove_tree(&entry.path())?;
        }
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(RuntimeError::Cgroup { path: dir.into(), source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_validated() {
        assert_eq!(container_cgroups_path("abc-1", "web").expect("valid"), "/flotilla/podabc-1/web");
        assert!(pod_cgroups_path("../etc").is_err());
        assert!(container_cgroups_path("abc", "a/b").is_err());
    }

    #[test]
    fn finds_v1_and_v2_mounts() {
        let mountinfo = "\
25 1 0:22 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
26 25 0:23 / /sys/fs/cgroup/cpu rw,relatime shared:9 - cgroup cgroup rw,cpu
27 25 0:24 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
28 1 0:25 / /mnt/with\\040space rw - cgroup cgroup rw,pids
29 1 0:23 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
";
        let points = parse_cgroup_mounts(mountinfo);
        assert_eq!(points, vec![PathBuf::from("/sys/fs/cgroup/cpu"), PathBuf::from("/sys/fs/cgroup/unified"), PathBuf::from("/mnt/with space"),]);
    }
}
