//! Which OCI runtime binary to drive: runc, crun or youki by name, or any binary by path.

use std::path::{Path, PathBuf};

use super::RuntimeError;

/// The OCI runtimes Flotilla knows by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuntimeKind {
    /// runc, the default: works on hybrid cgroup v1/v2 hosts.
    Runc,
    /// crun (1.8 refuses hybrid cgroup hosts).
    Crun,
    /// youki.
    Youki,
}

impl RuntimeKind {
    /// Parses `runc`, `crun` or `youki`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "runc" => Some(RuntimeKind::Runc),
            "crun" => Some(RuntimeKind::Crun),
            "youki" => Some(RuntimeKind::Youki),
            _ => None,
        }
    }

    /// The binary's usual name.
    pub fn binary_name(self) -> &'static str {
        match self {
            RuntimeKind::Runc => "runc",
            RuntimeKind::Crun => "crun",
            RuntimeKind::Youki => "youki",
        }
    }

    fn package(self) -> &'static str {
        match self {
            RuntimeKind::Runc => "runc",
            RuntimeKind::Crun => "crun",
            RuntimeKind::Youki => "youki (from its GitHub releases)",
        }
    }
}

/// Directories searched besides `PATH` (the agent may run with a minimal environment).
const SEARCH_DIRS: &[&str] = &["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];

/// Resolves a runtime name or path to an executable.
pub(super) fn find_binary(kind_or_path: &str) -> Result<PathBuf, RuntimeError> {
    if kind_or_path.contains('/') {
        let binary = PathBuf::from(kind_or_path);
        if !is_executable(&binary) {
            return Err(RuntimeError::BinaryNotFound {
                name: kind_or_path.to_string(),
                searched: kind_or_path.to_string(),
                package: "runc, crun or youki".to_string(),
            });
        }
        return Ok(binary);
    }
    let kind = RuntimeKind::from_name(kind_or_path).ok_or_else(|| RuntimeError::InvalidName {
        what: "OCI runtime",
        value: kind_or_path.to_string(),
        reason: "expected runc, crun, youki or a path to the binary",
    })?;
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path_var)
        .chain(SEARCH_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(kind.binary_name()))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| RuntimeError::BinaryNotFound { name: kind_or_path.to_string(), searched: SEARCH_DIRS.join(", "), package: kind.package().to_string() })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}
