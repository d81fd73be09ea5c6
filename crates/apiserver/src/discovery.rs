//! Discovery documents (`/api`, `/apis`, `/api/v1`, `/apis/<group>/<version>`, `/version`) so
//! that generic clients such as kubectl can find the served resources.

use std::collections::BTreeMap;

use api::kinds::TYPES;
use serde_json::{json, Value};

/// `/api`: the core group's versions.
pub fn core_versions() -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}]})
}

/// `/apis`: every named group.
pub fn groups() -> Value {
    let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for t in TYPES.iter().filter(|t| !t.group.is_empty()) {
        let versions = groups.entry(t.group).or_default();
        if !versions.contains(&t.version) {
            versions.push(t.version);
        }
    }
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|(name, versions)| {
            let versions: Vec<Value> = versions.iter().map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v})).collect();
            json!({"name": name, "versions": versions, "preferredVersion": versions[0]})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/<group>/<version>` or `/api/v1`: the resources served there; `None` if none.
pub fn resources(group: &str, version: &str) -> Option<Value> {
    let mut list = Vec::new();
    for t in TYPES.iter().filter(|t| t.group == group && t.version == version) {
        let verbs = ["create", "delete", "get", "list", "update", "watch"];
        list.push(json!({
            "name": t.plural, "singularName": t.kind.to_ascii_lowercase(), "namespaced": t.namespaced,
            "kind": t.kind, "verbs": verbs, "shortNames": t.short_names,
        }));
        if matches!(t.kind, "Pod" | "Deployment" | "Node" | "Namespace") {
            list.push(
                json!({"name": format!("{}/status", t.plural), "singularName": "", "namespaced": t.namespaced, "kind": t.kind, "verbs": ["get", "update"]}),
            );
        }
        if t.kind == "Pod" {
            list.push(json!({"name": "pods/log", "singularName": "", "namespaced": true, "kind": "Pod", "verbs": ["get"]}));
        }
    }
    if list.is_empty() {
        return None;
    }
    let group_version = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": list}))
}

/// `/version`.
pub fn version() -> Value {
    json!({
        "major": "1", "minor": "34", "gitVersion": format!("v1.34.0+flotilla-{}", env!("CARGO_PKG_VERSION")),
        "platform": format!("{}/{}", std::env::consts::OS, match std::env::consts::ARCH { "x86_64" => "amd64", "aarch64" => "arm64", a => a }),
    })
}
