//! ConfigMaps and Secrets: key rules, the 1 MiB size limit, `stringData` folded into `data`,
//! and immutability, as Kubernetes enforces them at admission.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::ByteString;

use crate::field::FieldErrors;
use crate::validation::metadata;
use crate::FieldError;

/// The most a ConfigMap's or Secret's data may hold, all keys and values together (as etcd's
/// request limit makes Kubernetes cap it).
pub const MAX_DATA_BYTES: usize = 1024 * 1024;

/// Secret types whose required keys are checked.
const TYPED_SECRETS: &[(&str, &[&str])] = &[
    ("kubernetes.io/tls", &["tls.crt", "tls.key"]),
    ("kubernetes.io/dockerconfigjson", &[".dockerconfigjson"]),
    ("kubernetes.io/basic-auth", &[]),
    ("kubernetes.io/ssh-auth", &["ssh-privatekey"]),
];

/// True for a key Kubernetes accepts in data maps: `[-._a-zA-Z0-9]+`, at most 253, not `.` or `..`.
pub fn is_config_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= 253 && key != "." && key != ".." && key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn keys<'a>(keys: impl Iterator<Item = &'a String>, path: &str, seen: &mut BTreeMap<String, String>, errors: &mut FieldErrors) {
    for key in keys {
        if !is_config_key(key) {
            errors.push(FieldError::invalid(format!("{path}[{key}]"), key, "a valid config key must consist of alphanumeric characters, '-', '_' or '.'"));
        }
        if let Some(other) = seen.insert(key.clone(), path.to_string()) {
            errors.push(FieldError::invalid(format!("{path}[{key}]"), key, &format!("duplicate of key {key} in {other}")));
        }
    }
}

fn size_limit(total: usize, errors: &mut FieldErrors) {
    if total > MAX_DATA_BYTES {
        errors.push(FieldError::invalid("data", format!("{total} bytes"), &format!("must have at most {MAX_DATA_BYTES} bytes")));
    }
}

/// Validates a ConfigMap; `old` is the stored one on update (an immutable one may not change).
pub fn config_map(cm: &ConfigMap, old: Option<&ConfigMap>) -> Result<(), FieldErrors> {
    let mut errors = FieldErrors::default();
    metadata(&cm.metadata, false, &mut errors);
    let mut seen = BTreeMap::new();
    keys(cm.data.iter().flat_map(|d| d.keys()), "data", &mut seen, &mut errors);
    keys(cm.binary_data.iter().flat_map(|d| d.keys()), "binaryData", &mut seen, &mut errors);
    let total = cm.data.iter().flatten().map(|(k, v)| k.len() + v.len()).sum::<usize>()
        + cm.binary_data.iter().flatten().map(|(k, v)| k.len() + v.0.len()).sum::<usize>();
    size_limit(total, &mut errors);
    if let Some(old) = old.filter(|o| o.immutable == Some(true)) {
        if old.data != cm.data || old.binary_data != cm.binary_data {
            errors.push(FieldError::invalid("data", "changed", "field is immutable when `immutable` is set"));
        }
        if cm.immutable != Some(true) {
            errors.push(FieldError::invalid("immutable", "false", "field is immutable when `immutable` is set"));
        }
    }
    errors.into_result()
}

/// Folds `stringData` into `data` (it wins over a `data` key of the same name, as in
/// Kubernetes) and sets the default type `Opaque`.
pub fn default_secret(secret: &mut Secret) {
    if let Some(strings) = secret.string_data.take() {
        let data = secret.data.get_or_insert_with(BTreeMap::new);
        for (k, v) in strings {
            data.insert(k, ByteString(v.into_bytes()));
        }
    }
    secret.type_.get_or_insert_with(|| "Opaque".to_string());
}

/// Validates a defaulted Secret; `old` is the stored one on update.
pub fn secret(secret: &Secret, old: Option<&Secret>) -> Result<(), FieldErrors> {
    let mut errors = FieldErrors::default();
    metadata(&secret.metadata, false, &mut errors);
    let mut seen = BTreeMap::new();
    keys(secret.data.iter().flat_map(|d| d.keys()), "data", &mut seen, &mut errors);
    size_limit(secret.data.iter().flatten().map(|(k, v)| k.len() + v.0.len()).sum(), &mut errors);
    let type_ = secret.type_.as_deref().unwrap_or("Opaque");
    if let Some((_, required)) = TYPED_SECRETS.iter().find(|(t, _)| *t == type_) {
        for key in *required {
            if !secret.data.as_ref().is_some_and(|d| d.contains_key(*key)) {
                errors.push(FieldError::required(format!("data[{key}]"), &format!("a secret of type {type_} needs it")));
            }
        }
    }
    if let Some(old) = old {
        if old.type_.as_deref().unwrap_or("Opaque") != type_ {
            errors.push(FieldError::invalid("type", type_, "field is immutable"));
        }
        if old.immutable == Some(true) && (old.data != secret.data || secret.immutable != Some(true)) {
            errors.push(FieldError::invalid("data", "changed", "field is immutable when `immutable` is set"));
        }
    }
    errors.into_result()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cm(data: &[(&str, &str)]) -> ConfigMap {
        ConfigMap {
            metadata: crate::ObjectMeta { name: Some("settings".into()), ..Default::default() },
            data: Some(data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            ..Default::default()
        }
    }

    #[test]
    fn config_keys_sizes_and_immutability() {
        assert!(config_map(&cm(&[("app.conf", "x"), ("LOG_LEVEL", "debug")]), None).is_ok());
        let err = config_map(&cm(&[("bad/key", "x")]), None).unwrap_err().to_string();
        assert!(err.starts_with("data[bad/key]: Invalid value"), "{err}");
        let big = "x".repeat(MAX_DATA_BYTES);
        assert!(config_map(&cm(&[("k", &big)]), None).unwrap_err().to_string().contains("at most 1048576 bytes"));
        let mut frozen = cm(&[("k", "1")]);
        frozen.immutable = Some(true);
        let mut changed = frozen.clone();
        changed.data = Some([("k".to_string(), "2".to_string())].into());
        assert!(config_map(&changed, Some(&frozen)).unwrap_err().to_string().contains("immutable"));
        assert!(config_map(&frozen, Some(&frozen)).is_ok());
        let mut both = cm(&[("k", "1")]);
        both.binary_data = Some([("k".to_string(), ByteString(vec![1]))].into());
        assert!(config_map(&both, None).unwrap_err().to_string().contains("duplicate of key k"));
    }

    #[test]
    fn string_data_is_folded_into_data_and_typed_secrets_need_their_keys() {
        let mut s = Secret {
            metadata: crate::ObjectMeta { name: Some("db".into()), ..Default::default() },
            data: Some([("user".to_string(), ByteString(b"old".to_vec()))].into()),
            string_data: Some([("user".to_string(), "admin".to_string()), ("password".to_string(), "s3cret".to_string())].into()),
            ..Default::default()
        };
        default_secret(&mut s);
        assert_eq!(s.string_data, None);
        assert_eq!(s.type_.as_deref(), Some("Opaque"));
        let data = s.data.as_ref().unwrap();
        assert_eq!((data["user"].0.as_slice(), data["password"].0.as_slice()), (&b"admin"[..], &b"s3cret"[..]));
        assert!(secret(&s, None).is_ok());
        let mut tls = s.clone();
        tls.type_ = Some("kubernetes.io/tls".into());
        assert!(secret(&tls, None).unwrap_err().to_string().contains("data[tls.crt]: Required value"));
        assert!(secret(&tls, Some(&s)).unwrap_err().to_string().contains("type: Invalid value"));
    }
}
