//! `Identity` (`flotilla.dev/v1alpha1`, cluster-scoped): the number every pod with the same
//! namespace and security-relevant labels shares. Network policy is enforced on these numbers,
//! not on addresses, which change every time a pod moves. The control plane allocates one per
//! distinct label set (the object's name is the number, so two servers cannot hand out the
//! same one) and deletes it once no pod has had that label set for a while.
//!
//! ```yaml
//! apiVersion: flotilla.dev/v1alpha1
//! kind: Identity
//! metadata: {name: "256"}
//! spec:
//!   namespace: shop
//!   labels: {app: web, tier: front}
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::field::{FieldError, FieldErrors};
use crate::validation;
use crate::ObjectMeta;

/// API group and version of the Identity kind.
pub const API_VERSION: &str = "flotilla.dev/v1alpha1";

/// The identity of the node itself (its host network).
pub const HOST: u32 = 1;
/// The identity of every address outside the cluster.
pub const WORLD: u32 = 2;
/// The first number handed to pods; those below are reserved.
pub const FIRST_ALLOCATED: u32 = 256;
/// The last number handed out (the datapath keys identities as 32-bit numbers and shifts one
/// bit in for the direction).
pub const LAST_ALLOCATED: u32 = (1 << 24) - 1;

/// Labels that differ between pods of one workload without saying anything about what the pod
/// is: they would split its pods into identities of their own.
const IGNORED_LABELS: [&str; 4] = ["pod-template-hash", "controller-revision-hash", "pod-template-generation", crate::function::WARM_LABEL];

/// An Identity.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    /// `flotilla.dev/v1alpha1`.
    #[serde(default)]
    pub api_version: String,
    /// `Identity`.
    #[serde(default)]
    pub kind: String,
    /// The name is the number.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The label set it stands for.
    #[serde(default)]
    pub spec: IdentitySpec,
}

/// What an Identity stands for.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentitySpec {
    /// The pods' namespace.
    #[serde(default)]
    pub namespace: String,
    /// Their security-relevant labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl k8s_openapi::Resource for Identity {
    type Scope = k8s_openapi::ClusterResourceScope;
    const API_VERSION: &'static str = API_VERSION;
    const GROUP: &'static str = "flotilla.dev";
    const KIND: &'static str = "Identity";
    const VERSION: &'static str = "v1alpha1";
    const URL_PATH_SEGMENT: &'static str = "identities";
}

impl k8s_openapi::Metadata for Identity {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl Identity {
    /// Its number, when its name is one.
    pub fn number(&self) -> Option<u32> {
        self.metadata.name.as_deref().and_then(|n| n.parse().ok())
    }
}

/// The number in use for each label set among `identities` (number, label set): the lowest
/// standing for it, when racing servers allocated several.
pub fn in_use<'a>(identities: impl IntoIterator<Item = (u32, &'a IdentitySpec)>) -> BTreeMap<IdentitySpec, u32> {
    let mut chosen: BTreeMap<IdentitySpec, u32> = BTreeMap::new();
    for (number, spec) in identities {
        chosen.entry(spec.clone()).and_modify(|n| *n = (*n).min(number)).or_insert(number);
    }
    chosen
}

/// The security-relevant part of a pod's labels.
pub fn security_labels(labels: Option<&BTreeMap<String, String>>) -> BTreeMap<String, String> {
    labels.into_iter().flatten().filter(|(k, _)| !IGNORED_LABELS.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// The label set a pod of `namespace` with `labels` has, as a [`IdentitySpec`].
pub fn spec_for(namespace: &str, labels: Option<&BTreeMap<String, String>>) -> IdentitySpec {
    IdentitySpec { namespace: namespace.to_string(), labels: security_labels(labels) }
}

/// Checks an Identity: a number in the allocated range, a namespace, valid labels.
pub fn validate(identity: &Identity) -> Result<(), FieldErrors> {
    let mut errors = FieldErrors::default();
    validation::metadata(&identity.metadata, false, &mut errors);
    let name = identity.metadata.name.as_deref().unwrap_or("");
    if identity.number().is_none_or(|n| !(FIRST_ALLOCATED..=LAST_ALLOCATED).contains(&n)) || name.starts_with('0') {
        errors.push(FieldError::invalid("metadata.name", name, &format!("must be a number from {FIRST_ALLOCATED} to {LAST_ALLOCATED}, without leading zeros")));
    }
    if !validation::is_dns_label(&identity.spec.namespace) {
        errors.push(FieldError::invalid("spec.namespace", &identity.spec.namespace, "must be a namespace name"));
    }
    let labels = ObjectMeta { labels: Some(identity.spec.labels.clone()), ..Default::default() };
    let mut label_errors = FieldErrors::default();
    validation::metadata(&labels, false, &mut label_errors);
    for error in label_errors.0.into_iter().filter(|e| e.path.starts_with("metadata.labels")) {
        errors.push(FieldError { path: error.path.replacen("metadata.labels", "spec.labels", 1), message: error.message });
    }
    errors.into_result()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_bookkeeping_labels_do_not_split_an_identity() {
        let labels: BTreeMap<String, String> = [("app", "web"), ("pod-template-hash", "5d8f"), ("tier", "front")].map(|(k, v)| (k.into(), v.into())).into();
        let spec = spec_for("shop", Some(&labels));
        assert_eq!(spec.labels.keys().collect::<Vec<_>>(), ["app", "tier"]);
        assert_eq!(spec.namespace, "shop");
    }

    #[test]
    fn an_identity_is_a_number_in_range_with_a_namespace() {
        let identity = |name: &str, ns: &str, label: (&str, &str)| Identity {
            metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
            spec: IdentitySpec { namespace: ns.into(), labels: [(label.0.to_string(), label.1.to_string())].into() },
            ..Default::default()
        };
        validate(&identity("256", "shop", ("app", "web"))).unwrap();
        for (bad, expected) in [
            (identity("255", "shop", ("app", "web")), "metadata.name: Invalid value: \"255\": must be a number from 256"),
            (identity("0256", "shop", ("app", "web")), "metadata.name"),
            (identity("web", "shop", ("app", "web")), "metadata.name"),
            (identity("300", "Shop!", ("app", "web")), "spec.namespace: Invalid value: \"Shop!\""),
            (identity("300", "shop", ("app", "not ok")), "spec.labels"),
        ] {
            let err = validate(&bad).unwrap_err().to_string();
            assert!(err.contains(expected), "{bad:?}: {err}");
        }
    }
}
