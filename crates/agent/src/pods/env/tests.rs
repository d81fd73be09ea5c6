use std::net::Ipv4Addr;

use api::k8s_openapi::api::core::v1::{
    ConfigMapEnvSource, ConfigMapKeySelector, EnvFromSource, EnvVarSource, ObjectFieldSelector, PodSpec, ResourceRequirements, SecretKeySelector,
};
use api::k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use api::k8s_openapi::ByteString;
use api::ObjectMeta;

use super::*;

/// ConfigMaps and Secrets held in memory, counting reads.
#[derive(Default)]
struct Objects {
    config_maps: BTreeMap<String, ConfigMap>,
    secrets: BTreeMap<String, Secret>,
    reads: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl ConfigSource for Objects {
    async fn config_map(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>, EnvError> {
        assert_eq!(namespace, "shop");
        self.reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(self.config_maps.get(name).cloned())
    }
    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, EnvError> {
        assert_eq!(namespace, "shop");
        self.reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(self.secrets.get(name).cloned())
    }
}

fn objects() -> Objects {
    let mut o = Objects::default();
    o.config_maps.insert(
        "settings".into(),
        ConfigMap { data: Some([("LOG_LEVEL".to_string(), "debug".to_string()), ("url".to_string(), "http://db".to_string())].into()), ..Default::default() },
    );
    o.secrets.insert("db".into(), Secret { data: Some([("password".to_string(), ByteString(b"s3cret".to_vec()))].into()), ..Default::default() });
    o
}

fn facts() -> NodeFacts {
    NodeFacts { pod_ip: Ipv4Addr::new(10, 88, 0, 7).into(), host_ip: Ipv4Addr::new(192, 168, 1, 2).into(), cpus: 4, memory_bytes: 8 << 30 }
}

fn pod(container: Container) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("web-1".into()),
            namespace: Some("shop".into()),
            uid: Some("u-1".into()),
            labels: Some([("app".to_string(), "web".to_string())].into()),
            ..Default::default()
        },
        spec: Some(PodSpec { node_name: Some("edge-3".into()), containers: vec![container], ..Default::default() }),
        ..Default::default()
    }
}

fn literal(name: &str, value: &str) -> EnvVar {
    EnvVar { name: name.into(), value: Some(value.into()), value_from: None }
}

fn from(name: &str, source: EnvVarSource) -> EnvVar {
    EnvVar { name: name.into(), value: None, value_from: Some(source) }
}

fn field(path: &str) -> EnvVarSource {
    EnvVarSource { field_ref: Some(ObjectFieldSelector { field_path: path.into(), api_version: None }), ..Default::default() }
}

fn cm_key(name: &str, key: &str, optional: bool) -> EnvVarSource {
    EnvVarSource { config_map_key_ref: Some(ConfigMapKeySelector { name: name.into(), key: key.into(), optional: Some(optional) }), ..Default::default() }
}

async fn build(container: Container, source: &Objects) -> Result<Vec<String>, EnvError> {
    let pod = pod(container.clone());
    container_env(source, &pod, &container, &facts(), &["PATH=/bin".to_string(), "LOG_LEVEL=info".to_string()]).await
}

#[tokio::test]
async fn values_from_fields_config_maps_secrets_and_earlier_variables() {
    let container = Container {
        name: "app".into(),
        env_from: Some(vec![EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource { name: "settings".into(), optional: None }),
            prefix: Some("CFG_".into()),
            ..Default::default()
        }]),
        env: Some(vec![
            from("POD", field("metadata.name")),
            from("NODE", field("spec.nodeName")),
            from("IP", field("status.podIP")),
            from("APP", field("metadata.labels['app']")),
            from("LOG_LEVEL", cm_key("settings", "LOG_LEVEL", false)),
            from(
                "DB_PASSWORD",
                EnvVarSource { secret_key_ref: Some(SecretKeySelector { name: "db".into(), key: "password".into(), optional: None }), ..Default::default() },
            ),
            literal("GREETING", "$(POD) on $(NODE) costs $$5, $(UNKNOWN) stays"),
        ]),
        ..Default::default()
    };
    let source = objects();
    let env = build(container, &source).await.expect("env");
    let get = |k: &str| env.iter().find_map(|e| e.strip_prefix(&format!("{k}="))).map(str::to_string);
    assert_eq!(get("PATH").as_deref(), Some("/bin"), "image variables stay");
    assert_eq!(get("HOSTNAME").as_deref(), Some("web-1"));
    assert_eq!(get("CFG_url").as_deref(), Some("http://db"), "envFrom with its prefix");
    assert_eq!(get("POD").as_deref(), Some("web-1"));
    assert_eq!(get("NODE").as_deref(), Some("edge-3"));
    assert_eq!(get("IP").as_deref(), Some("10.88.0.7"));
    assert_eq!(get("APP").as_deref(), Some("web"));
    assert_eq!(get("LOG_LEVEL").as_deref(), Some("debug"), "env replaces the image's value");
    assert_eq!(env.iter().filter(|e| e.starts_with("LOG_LEVEL=")).count(), 1);
    assert_eq!(get("DB_PASSWORD").as_deref(), Some("s3cret"));
    assert_eq!(get("GREETING").as_deref(), Some("web-1 on edge-3 costs $5, $(UNKNOWN) stays"));
    assert_eq!(source.reads.load(std::sync::atomic::Ordering::Relaxed), 2, "each object is read once");
}

#[tokio::test]
async fn missing_references_fail_unless_optional() {
    let with = |var: EnvVar| Container { name: "app".into(), env: Some(vec![var]), ..Default::default() };
    let source = objects();
    let err = build(with(from("X", cm_key("absent", "k", false))), &source).await.unwrap_err();
    assert_eq!(err.to_string(), "configmap \"absent\" not found");
    let err = build(with(from("X", cm_key("settings", "nope", false))), &source).await.unwrap_err();
    assert_eq!(err.to_string(), "couldn't find key nope in ConfigMap shop/settings");
    let env = build(with(from("X", cm_key("absent", "k", true))), &source).await.expect("optional");
    assert!(!env.iter().any(|e| e.starts_with("X=")), "a missing optional reference sets nothing");
    let absent_from = Container {
        name: "app".into(),
        env_from: Some(vec![EnvFromSource { config_map_ref: Some(ConfigMapEnvSource { name: "absent".into(), optional: None }), ..Default::default() }]),
        ..Default::default()
    };
    assert!(matches!(build(absent_from, &source).await, Err(EnvError::NotFound { kind: "configmap", .. })));
}

#[tokio::test]
async fn resource_amounts_in_divisor_units_with_node_capacity_for_unset_limits() {
    let resource = |r: &str, divisor: Option<&str>| EnvVarSource {
        resource_field_ref: Some(ResourceFieldSelector { resource: r.into(), divisor: divisor.map(|d| Quantity(d.into())), container_name: None }),
        ..Default::default()
    };
    let container = Container {
        name: "app".into(),
        resources: Some(ResourceRequirements {
            limits: Some([("memory".to_string(), Quantity("64Mi".into()))].into()),
            requests: Some([("cpu".to_string(), Quantity("250m".into()))].into()),
            ..Default::default()
        }),
        env: Some(vec![
            from("MEM_MI", resource("limits.memory", Some("1Mi"))),
            from("CPU_REQ", resource("requests.cpu", None)),
            from("CPU_REQ_M", resource("requests.cpu", Some("1m"))),
            from("CPU_LIMIT", resource("limits.cpu", None)),
        ]),
        ..Default::default()
    };
    let env = build(container, &objects()).await.expect("env");
    for expected in ["MEM_MI=64", "CPU_REQ=1", "CPU_REQ_M=250", "CPU_LIMIT=4"] {
        assert!(env.iter().any(|e| e == expected), "{expected} missing from {env:?}");
    }
}
