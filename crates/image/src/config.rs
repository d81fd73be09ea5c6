//! The image configuration blob: what a container of the image runs, and its layer diff ids.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::manifest::ManifestError;

/// What a container started from an image runs by default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `Cmd`, the default arguments.
    pub cmd: Vec<String>,
    /// `Env`, as `KEY=value` strings.
    pub env: Vec<String>,
    /// `WorkingDir`, when set.
    pub working_dir: Option<String>,
    /// `User` (`name`, `uid`, `uid:gid`), when set.
    pub user: Option<String>,
    /// `ExposedPorts` keys (`80/tcp`), sorted.
    pub exposed_ports: Vec<String>,
    /// `Labels`.
    pub labels: BTreeMap<String, String>,
    /// `StopSignal`, when set.
    pub stop_signal: Option<String>,
    /// `Volumes` keys, sorted.
    pub volumes: Vec<String>,
    /// Architecture the image was built for.
    pub architecture: String,
    /// Operating system the image was built for.
    pub os: String,
}

/// The parts of the OCI config document this store reads.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ConfigFile {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub created: Option<String>,
    #[serde(default)]
    pub config: Option<RuntimeConfig>,
    pub rootfs: RootFs,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RuntimeConfig {
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    stop_signal: Option<String>,
    #[serde(default)]
    volumes: Option<BTreeMap<String, serde_json::Value>>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<Digest>,
}

impl ConfigFile {
    /// Parses a config blob (already verified against its descriptor).
    pub(crate) fn parse(bytes: &[u8], digest: &Digest) -> Result<Self, ManifestError> {
        let file: ConfigFile =
            serde_json::from_slice(bytes).map_err(|source| ManifestError::Malformed { what: "config", digest: digest.to_string(), source })?;
        if file.rootfs.kind != "layers" {
            return Err(ManifestError::UnsupportedMediaType {
                digest: digest.to_string(),
                media_type: format!("config with rootfs.type {:?}", file.rootfs.kind),
            });
        }
        Ok(file)
    }

    /// The runtime part, flattened.
    pub(crate) fn image_config(&self) -> ImageConfig {
        let c = self.config.clone().unwrap_or_default();
        let non_empty = |s: Option<String>| s.filter(|s| !s.is_empty());
        ImageConfig {
            entrypoint: c.entrypoint.unwrap_or_default(),
            cmd: c.cmd.unwrap_or_default(),
            env: c.env.unwrap_or_default(),
            working_dir: non_empty(c.working_dir),
            user: non_empty(c.user),
            exposed_ports: c.exposed_ports.unwrap_or_default().into_keys().collect(),
            labels: c.labels.unwrap_or_default(),
            stop_signal: non_empty(c.stop_signal),
            volumes: c.volumes.unwrap_or_default().into_keys().collect(),
            architecture: self.architecture.clone(),
            os: self.os.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flattens_docker_style_config() {
        let diff = Digest::of(b"layer");
        let doc = serde_json::json!({
            "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
            "config": {"Entrypoint": ["/bin/sh", "-c"], "Cmd": null, "Env": ["PATH=/bin"],
                       "WorkingDir": "", "User": "1000:1000",
                       "ExposedPorts": {"8080/tcp": {}, "53/udp": {}}, "StopSignal": "SIGTERM"},
            "rootfs": {"type": "layers", "diff_ids": [diff]}
        });
        let file = ConfigFile::parse(&serde_json::to_vec(&doc).unwrap(), &Digest::of(b"c")).unwrap();
        let c = file.image_config();
        assert_eq!(c.entrypoint, ["/bin/sh", "-c"]);
        assert!(c.cmd.is_empty());
        assert_eq!(c.working_dir, None);
        assert_eq!(c.user.as_deref(), Some("1000:1000"));
        assert_eq!(c.exposed_ports, ["53/udp", "8080/tcp"]);
        assert_eq!(file.rootfs.diff_ids, [diff]);
        assert_eq!(file.created.as_deref(), Some("2024-01-01T00:00:00Z"));
    }
}
