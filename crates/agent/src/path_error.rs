//! The I/O failure every part of the agent reports the same way: what was being done, to which
//! file, and why ("write bundle config /var/lib/…/config.json: No space left on device").

use std::path::PathBuf;

/// An I/O error on a named file or directory.
#[derive(Debug, thiserror::Error)]
#[error("{action} {path}: {source}")]
pub struct PathError {
    /// What was being done ("write bundle config", "open log", …).
    pub action: &'static str,
    /// The file or directory involved.
    pub path: PathBuf,
    /// The underlying error.
    #[source]
    pub source: std::io::Error,
}
