//! The table of resource types the API serves: group, version, kind, plural and scope.

use k8s_openapi::Resource;

/// One servable resource type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ResourceType {
    /// API group; empty for the core group.
    pub group: &'static str,
    /// API version within the group.
    pub version: &'static str,
    /// Kind, e.g. `Pod`.
    pub kind: &'static str,
    /// The URL plural, e.g. `pods`.
    pub plural: &'static str,
    /// Short names accepted on the command line, e.g. `po`.
    pub short_names: &'static [&'static str],
    /// True when objects live in a namespace.
    pub namespaced: bool,
}

impl ResourceType {
    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The URL prefix of the group-version: `/api/v1` or `/apis/apps/v1`.
    pub fn group_prefix(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }

    /// The collection URL for `namespace` (ignored for cluster-scoped types; `None` means all
    /// namespaces).
    pub fn collection_path(&self, namespace: Option<&str>) -> String {
        match (self.namespaced, namespace) {
            (true, Some(ns)) => format!("{}/namespaces/{}/{}", self.group_prefix(), ns, self.plural),
            _ => format!("{}/{}", self.group_prefix(), self.plural),
        }
    }

    /// The URL of one object.
    pub fn object_path(&self, namespace: Option<&str>, name: &str) -> String {
        format!("{}/{}", self.collection_path(namespace), name)
    }

    /// The kind of the list, e.g. `PodList`.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// The store key prefix of every object of this type (all namespaces).
    pub fn key_prefix(&self) -> String {
        format!("/registry/{}/", self.plural)
    }

    /// The store key of one object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match (self.namespaced, namespace) {
            (true, Some(ns)) => format!("/registry/{}/{}/{}", self.plural, ns, name),
            _ => format!("/registry/{}/{}", self.plural, name),
        }
    }

    /// The store key prefix of one namespace's objects.
    pub fn namespace_prefix(&self, namespace: &str) -> String {
        format!("/registry/{}/{}/", self.plural, namespace)
    }

    /// The entry for a k8s-openapi type.
    pub fn of<K: Resource>() -> &'static ResourceType {
        lookup_kind(K::API_VERSION, K::KIND).expect("every k8s-openapi type used by flotilla is in the table")
    }
}

/// Every type the API serves.
pub static TYPES: &[ResourceType] = &[
    ResourceType { group: "", version: "v1", kind: "Namespace", plural: "namespaces", short_names: &["ns"], namespaced: false },
    ResourceType { group: "", version: "v1", kind: "Node", plural: "nodes", short_names: &["no"], namespaced: false },
    ResourceType { group: "", version: "v1", kind: "Pod", plural: "pods", short_names: &["po"], namespaced: true },
    ResourceType { group: "", version: "v1", kind: "Event", plural: "events", short_names: &["ev"], namespaced: true },
    ResourceType { group: "", version: "v1", kind: "ConfigMap", plural: "configmaps", short_names: &["cm"], namespaced: true },
    ResourceType { group: "", version: "v1", kind: "Secret", plural: "secrets", short_names: &[], namespaced: true },
    ResourceType { group: "", version: "v1", kind: "Service", plural: "services", short_names: &["svc"], namespaced: true },
    ResourceType { group: "", version: "v1", kind: "Endpoints", plural: "endpoints", short_names: &["ep"], namespaced: true },
    ResourceType { group: "apps", version: "v1", kind: "Deployment", plural: "deployments", short_names: &["deploy"], namespaced: true },
    ResourceType { group: "networking.k8s.io", version: "v1", kind: "NetworkPolicy", plural: "networkpolicies", short_names: &["netpol"], namespaced: true },
    ResourceType { group: "coordination.k8s.io", version: "v1", kind: "Lease", plural: "leases", short_names: &[], namespaced: true },
    ResourceType { group: "scheduling.k8s.io", version: "v1", kind: "PriorityClass", plural: "priorityclasses", short_names: &["pc"], namespaced: false },
    ResourceType { group: "flotilla.dev", version: "v1alpha1", kind: "ImagePolicy", plural: "imagepolicies", short_names: &["imgpol"], namespaced: true },
    ResourceType { group: "flotilla.dev", version: "v1alpha1", kind: "Function", plural: "functions", short_names: &["fn"], namespaced: true },
    ResourceType { group: "flotilla.dev", version: "v1alpha1", kind: "Identity", plural: "identities", short_names: &["id"], namespaced: false },
    ResourceType {
        group: "flotilla.dev",
        version: "v1alpha1",
        kind: "FlotillaNetworkPolicy",
        plural: "flotillanetworkpolicies",
        short_names: &["fnp"],
        namespaced: true,
    },
    ResourceType {
        group: "flotilla.dev",
        version: "v1alpha1",
        kind: "ClusterImagePolicy",
        plural: "clusterimagepolicies",
        short_names: &["cimgpol"],
        namespaced: false,
    },
];

/// Finds a type by `apiVersion` and `kind`.
pub fn lookup_kind(api_version: &str, kind: &str) -> Option<&'static ResourceType> {
    TYPES.iter().find(|t| t.kind == kind && t.api_version() == api_version)
}

/// Finds a type by group and plural (URL form).
pub fn lookup_plural(group: &str, version: &str, plural: &str) -> Option<&'static ResourceType> {
    TYPES.iter().find(|t| t.group == group && t.version == version && t.plural == plural)
}

/// Finds a type by what a user types on the command line: plural, singular, kind or short name,
/// any case (`pods`, `pod`, `po`, `Pod`, `deployments.apps`).
pub fn lookup_cli(name: &str) -> Option<&'static ResourceType> {
    let lower = name.to_ascii_lowercase();
    let (base, group) = match lower.split_once('.') {
        Some((b, g)) => (b.to_string(), Some(g.to_string())),
        None => (lower.clone(), None),
    };
    TYPES.iter().find(|t| {
        let names = base == t.plural || base == t.kind.to_ascii_lowercase() || t.short_names.contains(&base.as_str());
        names && group.as_deref().is_none_or(|g| g == t.group)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_keys() {
        let pods = lookup_cli("po").unwrap();
        assert_eq!(pods.object_path(Some("default"), "web"), "/api/v1/namespaces/default/pods/web");
        assert_eq!(pods.key(Some("default"), "web"), "/registry/pods/default/web");
        let deploy = lookup_cli("deployments.apps").unwrap();
        assert_eq!(deploy.collection_path(None), "/apis/apps/v1/deployments");
        let nodes = lookup_kind("v1", "Node").unwrap();
        assert_eq!(nodes.object_path(Some("ignored"), "n1"), "/api/v1/nodes/n1");
        assert!(lookup_cli("widgets").is_none());
        assert_eq!(ResourceType::of::<crate::Deployment>().plural, "deployments");
    }
}
