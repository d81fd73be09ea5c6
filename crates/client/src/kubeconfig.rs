//! Kubeconfig files: the client's server URL, CA and token, in the format kubectl reads.

use std::path::{Path, PathBuf};

use base64::Engine;
use serde::{Deserialize, Serialize};

/// A kubeconfig document (the subset flotilla writes and reads).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Kubeconfig {
    /// Always `v1`.
    #[serde(rename = "apiVersion", default)]
    pub api_version: String,
    /// Always `Config`.
    #[serde(default)]
    pub kind: String,
    /// Named clusters.
    #[serde(default)]
    pub clusters: Vec<NamedCluster>,
    /// Named users.
    #[serde(default)]
    pub users: Vec<NamedUser>,
    /// Named contexts.
    #[serde(default)]
    pub contexts: Vec<NamedContext>,
    /// The context in use.
    #[serde(default)]
    pub current_context: String,
}

/// A cluster entry.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct NamedCluster {
    /// Its name.
    pub name: String,
    /// Its settings.
    pub cluster: Cluster,
}

/// Where a cluster is and how to trust it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Cluster {
    /// `https://host:port`.
    pub server: String,
    /// The CA certificate, PEM, base64-encoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_authority_data: Option<String>,
}

/// A user entry.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct NamedUser {
    /// Its name.
    pub name: String,
    /// Its credentials.
    pub user: User,
}

/// Credentials.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct User {
    /// A bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// A context entry.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct NamedContext {
    /// Its name.
    pub name: String,
    /// Which cluster and user.
    pub context: Context,
}

/// A cluster and user pair, with a default namespace.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Context {
    /// Cluster name.
    pub cluster: String,
    /// User name.
    pub user: String,
    /// Default namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

impl Kubeconfig {
    /// A single-context config for `server`, trusting `ca_pem`, with `token`.
    pub fn single(name: &str, server: &str, ca_pem: &str, token: &str) -> Kubeconfig {
        Kubeconfig {
            api_version: "v1".into(),
            kind: "Config".into(),
            clusters: vec![NamedCluster {
                name: name.into(),
                cluster: Cluster { server: server.into(), certificate_authority_data: Some(base64::engine::general_purpose::STANDARD.encode(ca_pem)) },
            }],
            users: vec![NamedUser { name: format!("{name}-admin"), user: User { token: Some(token.into()) } }],
            contexts: vec![NamedContext { name: name.into(), context: Context { cluster: name.into(), user: format!("{name}-admin"), namespace: None } }],
            current_context: name.into(),
        }
    }

    /// Reads a kubeconfig file.
    pub fn load(path: &Path) -> Result<Kubeconfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read kubeconfig {}: {e}; start a cluster with `flotilla up` or pass --kubeconfig", path.display()))?;
        serde_yaml::from_str(&text).map_err(|e| format!("kubeconfig {} is not valid: {e}", path.display()))
    }

    /// Writes the file with mode 0600 (it holds a token).
    pub fn save(&self, path: &Path) -> Result<(), String> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let text = serde_yaml::to_string(self).map_err(|e| e.to_string())?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let tmp = path.with_extension("tmp");
        let mut f =
            std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
        f.write_all(text.as_bytes()).map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The current context's server, CA PEM and token.
    pub fn current(&self) -> Result<(String, Option<String>, String), String> {
        let context = self
            .contexts
            .iter()
            .find(|c| c.name == self.current_context)
            .ok_or_else(|| format!("context \"{}\" is not in the kubeconfig", self.current_context))?;
        let cluster = self
            .clusters
            .iter()
            .find(|c| c.name == context.context.cluster)
            .ok_or_else(|| format!("cluster \"{}\" is not in the kubeconfig", context.context.cluster))?;
        let user =
            self.users.iter().find(|u| u.name == context.context.user).ok_or_else(|| format!("user \"{}\" is not in the kubeconfig", context.context.user))?;
        let ca = match cluster.cluster.certificate_authority_data.as_deref() {
            Some(data) => Some(
                String::from_utf8(base64::engine::general_purpose::STANDARD.decode(data.trim()).map_err(|e| format!("certificate-authority-data: {e}"))?)
                    .map_err(|e| format!("certificate-authority-data: {e}"))?,
            ),
            None => None,
        };
        let token = user.user.token.clone().ok_or_else(|| format!("user \"{}\" has no token", user.name))?;
        Ok((cluster.cluster.server.clone(), ca, token))
    }

    /// The current context's default namespace.
    pub fn namespace(&self) -> Option<String> {
        self.contexts.iter().find(|c| c.name == self.current_context).and_then(|c| c.context.namespace.clone())
    }
}

/// The kubeconfig to use: `--kubeconfig`, else `FLOTILLA_KUBECONFIG`, else `~/.flotilla/kubeconfig`.
pub fn default_path(flag: Option<&Path>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os("FLOTILLA_KUBECONFIG").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".flotilla").join("kubeconfig")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_resolves_the_current_context() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubeconfig");
        Kubeconfig::single("flotilla", "https://127.0.0.1:6443", "PEM", "tok").save(&path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let loaded = Kubeconfig::load(&path).unwrap();
        assert_eq!(loaded.current().unwrap(), ("https://127.0.0.1:6443".to_string(), Some("PEM".to_string()), "tok".to_string()));
        assert!(Kubeconfig::load(&dir.path().join("missing")).unwrap_err().contains("flotilla up"));
    }
}
