//! Image references: parsing and normalizing `busybox`, `localhost:5000/a/b:t`, `x@sha256:...`.

use std::fmt;

use crate::digest::Digest;

/// The registry that short names (`busybox`) resolve to.
pub const DEFAULT_REGISTRY: &str = "docker.io";
const DEFAULT_TAG: &str = "latest";
const MAX_NAME_LEN: usize = 255;

/// Why a string is not a valid image reference.
#[derive(Debug, thiserror::Error)]
#[error("invalid image reference {reference:?}: {reason}")]
pub struct ReferenceError {
    /// The reference as given.
    pub reference: String,
    /// What is wrong with it.
    pub reason: String,
}

/// A normalized image reference: `registry/repository[:tag][@digest]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry host, with port when given (`docker.io`, `localhost:5000`, `[::1]:5000`).
    pub registry: String,
    /// Repository path within the registry (`library/busybox`).
    pub repository: String,
    /// Tag; `latest` when neither a tag nor a digest was given.
    pub tag: Option<String>,
    /// Manifest digest, when the reference pins one.
    pub digest: Option<Digest>,
}

/// Parses `r` and fills in the defaults: `busybox` becomes `docker.io/library/busybox:latest`.
pub fn normalize_reference(r: &str) -> Result<Reference, ReferenceError> {
    let fail = |reason: &str| ReferenceError { reference: r.to_string(), reason: reason.to_string() };
    if r.is_empty() {
        return Err(fail("empty"));
    }
    let (name_and_tag, digest) = match r.split_once('@') {
        Some((rest, digest)) => {
            let digest = Digest::parse(digest).map_err(|e| fail(&e.to_string()))?;
            (rest, Some(digest))
        }
        None => (r, None),
    };
    let last_slash = name_and_tag.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name_and_tag[last_slash..].rfind(':') {
        Some(i) => {
            let tag = &name_and_tag[last_slash + i + 1..];
            if !valid_tag(tag) {
                return Err(fail(&format!("tag {tag:?} must match [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}")));
            }
            (&name_and_tag[..last_slash + i], Some(tag.to_string()))
        }
        None => (name_and_tag, None),
    };
    let (registry, repository) = match name.split_once('/') {
        Some((first, rest)) if looks_like_registry(first) => (first.to_string(), rest.to_string()),
        _ => (DEFAULT_REGISTRY.to_string(), name.to_string()),
    };
    let registry = if registry == "index.docker.io" { DEFAULT_REGISTRY.to_string() } else { registry };
    if !valid_registry(&registry) {
        return Err(fail(&format!("registry {registry:?} is not a host[:port]")));
    }
    let repository = if registry == DEFAULT_REGISTRY && !repository.contains('/') { format!("library/{repository}") } else { repository };
    if let Some(bad) = repository.split('/').find(|c| !valid_path_component(c)) {
        return Err(fail(&format!("repository component {bad:?} must be lowercase letters and digits separated by '.', '_', '__' or '-'")));
    }
    if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
        return Err(fail("name longer than 255 characters"));
    }
    let tag = match (tag, &digest) {
        (None, None) => Some(DEFAULT_TAG.to_string()),
        (tag, _) => tag,
    };
    Ok(Reference { registry, repository, tag, digest })
}

impl Reference {
    /// `registry/repository`, without tag or digest.
    pub fn repository_name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// What to ask the registry's manifest endpoint for: the digest if pinned, else the tag.
    pub fn manifest_selector(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => DEFAULT_TAG.to_string(),
        }
    }

    /// The host to contact for the distribution API (`docker.io` is served by `registry-1.docker.io`).
    pub fn api_host(&self) -> &str {
        if self.registry == DEFAULT_REGISTRY {
            "registry-1.docker.io"
        } else {
            &self.registry
        }
    }

    /// The same repository pinned to `digest`, without a tag.
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference { tag: None, digest: Some(digest), ..self.clone() }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        normalize_reference(s)
    }
}

/// Docker's rule: the first component names a registry when it has a `.` or a `:`, or is `localhost`.
fn looks_like_registry(component: &str) -> bool {
    component.contains('.') || component.contains(':') || component == "localhost" || component.bytes().any(|b| b.is_ascii_uppercase())
}

fn valid_registry(registry: &str) -> bool {
    let (host, port) = if let Some(rest) = registry.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        if v6.is_empty() || !v6.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.') {
            return false;
        }
        match after {
            "" => return true,
            p => match p.strip_prefix(':') {
                Some(port) => ("", port),
                None => return false,
            },
        }
    } else {
        match registry.rsplit_once(':') {
            Some((h, p)) => (h, p),
            None => (registry, ""),
        }
    };
    let host_ok = host.is_empty() && registry.starts_with('[')
        || (!host.is_empty()
            && host.split('.').all(|label| {
                !label.is_empty() && !label.starts_with('-') && !label.ends_with('-') && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            }));
    let port_ok = port.is_empty() && !registry.ends_with(':') || (!port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit()));
    host_ok && port_ok
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            return false;
        }
    }
    true
}

fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter().all(|&x| x.is_ascii_alphanumeric() || x == b'_' || x == b'.' || x == b'-')
}

#[cfg(test)]
mod tests;
