//! What a pod asks of the node's devices: the extended resources (`nvidia.com/gpu`,
//! `flotilla.dev/*`) in its containers' limits and requests, as whole device counts.

use std::collections::BTreeMap;

use api::k8s_openapi::api::core::v1::Container;
use api::{quantity, Pod};

use super::nvidia::GPU_RESOURCE;
use super::{AdmissionError, CLASS_RESOURCE_PREFIX};

/// True for the resources this layer allocates: `nvidia.com/gpu` and `flotilla.dev/<class>`.
pub fn is_device_resource(name: &str) -> bool {
    name == GPU_RESOURCE || name.strip_prefix(CLASS_RESOURCE_PREFIX).is_some_and(|class| !class.is_empty())
}

/// Device counts per container and resource; containers asking for none are left out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodRequest {
    /// Container name → resource → count (never 0).
    pub containers: BTreeMap<String, BTreeMap<String, u64>>,
}

impl PodRequest {
    /// True when the pod asks for no device.
    pub fn is_empty(&self) -> bool {
        self.containers.is_empty()
    }

    /// Counts summed over the containers.
    pub fn totals(&self) -> BTreeMap<String, u64> {
        let mut totals = BTreeMap::new();
        for resources in self.containers.values() {
            for (resource, count) in resources {
                *totals.entry(resource.clone()).or_default() += count;
            }
        }
        totals
    }

    /// The device request of `pod`'s containers. As for Kubernetes extended resources, a limit
    /// alone stands for the request, a request alone is the count, and both must be equal.
    pub fn of(pod: &Pod) -> Result<PodRequest, AdmissionError> {
        let mut request = PodRequest::default();
        for container in pod.spec.iter().flat_map(|s| &s.containers) {
            let resources = container_request(container)?;
            if !resources.is_empty() {
                request.containers.insert(container.name.clone(), resources);
            }
        }
        Ok(request)
    }
}

fn container_request(container: &Container) -> Result<BTreeMap<String, u64>, AdmissionError> {
    let empty = BTreeMap::new();
    let resources = container.resources.as_ref();
    let limits = resources.and_then(|r| r.limits.as_ref()).unwrap_or(&empty);
    let requests = resources.and_then(|r| r.requests.as_ref()).unwrap_or(&empty);
    let count = |resource: &str, text: &str| {
        let invalid = || AdmissionError::InvalidQuantity { container: container.name.clone(), resource: resource.to_string(), quantity: text.to_string() };
        let millis = quantity::millis(text).map_err(|_| invalid())?;
        if millis < 0 || millis % 1000 != 0 {
            return Err(invalid());
        }
        Ok((millis / 1000) as u64)
    };
    let mut counts = BTreeMap::new();
    for resource in limits.keys().chain(requests.keys()).filter(|r| is_device_resource(r)) {
        if counts.contains_key(resource) {
            continue;
        }
        let limit = limits.get(resource).map(|q| count(resource, &q.0)).transpose()?;
        let request = requests.get(resource).map(|q| count(resource, &q.0)).transpose()?;
        let n = match (request, limit) {
            (Some(request), Some(limit)) if request != limit => {
                return Err(AdmissionError::Overcommitted { container: container.name.clone(), resource: resource.clone(), request, limit })
            }
            (_, Some(n)) | (Some(n), None) => n,
            (None, None) => 0,
        };
        counts.insert(resource.clone(), n);
    }
    counts.retain(|_, n| *n > 0);
    Ok(counts)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A container's name, limits and requests.
    pub(crate) type ContainerResources<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [(&'a str, &'a str)]);

    /// A pod with these containers.
    pub(crate) fn pod(containers: &[ContainerResources]) -> Pod {
        let quantities = |list: &[(&str, &str)]| {
            (!list.is_empty())
                .then(|| list.iter().map(|(k, v)| (k.to_string(), api::k8s_openapi::apimachinery::pkg::api::resource::Quantity(v.to_string()))).collect())
        };
        let containers = containers
            .iter()
            .map(|(name, limits, requests)| Container {
                name: name.to_string(),
                resources: Some(api::k8s_openapi::api::core::v1::ResourceRequirements {
                    limits: quantities(limits),
                    requests: quantities(requests),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect();
        Pod { spec: Some(api::k8s_openapi::api::core::v1::PodSpec { containers, ..Default::default() }), ..Default::default() }
    }

    #[test]
    fn device_resources_are_recognised() {
        assert!(is_device_resource("nvidia.com/gpu") && is_device_resource("flotilla.dev/camera"));
        assert!(!is_device_resource("cpu") && !is_device_resource("flotilla.dev/") && !is_device_resource("example.com/foo"));
    }

    #[test]
    fn limits_and_requests_give_counts() {
        let p = pod(&[
            ("train", &[("nvidia.com/gpu", "2"), ("cpu", "1")], &[]),
            ("cam", &[], &[("flotilla.dev/camera", "1")]),
            ("both", &[("flotilla.dev/serial", "1")], &[("flotilla.dev/serial", "1"), ("memory", "1Gi")]),
            ("none", &[("cpu", "500m")], &[]),
            ("zero", &[("nvidia.com/gpu", "0")], &[]),
        ]);
        let request = PodRequest::of(&p).expect("valid");
        assert_eq!(request.containers.len(), 3);
        assert_eq!(request.containers["train"], BTreeMap::from([("nvidia.com/gpu".to_string(), 2)]));
        assert_eq!(request.containers["cam"], BTreeMap::from([("flotilla.dev/camera".to_string(), 1)]));
        assert_eq!(request.totals().values().sum::<u64>(), 4);
        assert!(PodRequest::of(&pod(&[("plain", &[("cpu", "1")], &[("memory", "1Gi")])])).expect("valid").is_empty());
    }

    #[test]
    fn fractions_and_overcommit_are_refused_by_name() {
        let err = PodRequest::of(&pod(&[("train", &[("nvidia.com/gpu", "500m")], &[])])).expect_err("fraction");
        assert!(err.to_string().contains("\"train\"") && err.to_string().contains("nvidia.com/gpu"), "{err}");
        assert!(PodRequest::of(&pod(&[("c", &[("flotilla.dev/camera", "-1")], &[])])).is_err());
        assert!(PodRequest::of(&pod(&[("c", &[("flotilla.dev/camera", "lots")], &[])])).is_err());
        let err = PodRequest::of(&pod(&[("c", &[("flotilla.dev/camera", "1")], &[("flotilla.dev/camera", "2")])])).expect_err("differ");
        assert!(matches!(err, AdmissionError::Overcommitted { request: 2, limit: 1, .. }), "{err}");
    }
}
