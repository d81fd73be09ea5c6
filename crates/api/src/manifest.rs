//! Manifests: YAML or JSON text with one or more documents, decoded into typed objects with
//! unknown fields and wrong types reported by their field path.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use crate::field::{FieldError, FieldErrors};
use crate::kinds::{lookup_kind, ResourceType};

/// The largest manifest text accepted (the API body limit is the same).
pub const MAX_MANIFEST_BYTES: usize = 3 * 1024 * 1024;

/// Why a manifest could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The text is larger than [`MAX_MANIFEST_BYTES`].
    #[error("manifest is {size} bytes; the limit is {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    /// The text is not YAML or JSON.
    #[error("document {document}: not valid YAML or JSON: {message}")]
    Syntax { document: usize, message: String },
    /// A document is not a mapping with `apiVersion` and `kind`.
    #[error("document {document}: {message}")]
    Shape { document: usize, message: String },
    /// The document names a type this server does not serve.
    #[error("document {document}: no kind \"{kind}\" is registered for version \"{api_version}\"; supported: {supported}")]
    UnknownKind { document: usize, api_version: String, kind: String, supported: String },
    /// The document does not match the schema of its kind.
    #[error("document {document} ({kind} {name}): {errors}")]
    Invalid { document: usize, kind: String, name: String, errors: FieldErrors },
}

/// One document of a manifest: its type and its raw JSON form.
#[derive(Clone, Debug)]
pub struct Document {
    /// 1-based position in the file, for error messages.
    pub index: usize,
    /// The resource type named by `apiVersion` and `kind`.
    pub resource: &'static ResourceType,
    /// The document as JSON.
    pub value: Value,
}

impl Document {
    /// `metadata.name`, or empty.
    pub fn name(&self) -> &str {
        self.value.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("")
    }

    /// `metadata.namespace`, if set.
    pub fn namespace(&self) -> Option<&str> {
        self.value.pointer("/metadata/namespace").and_then(Value::as_str)
    }
}

/// Splits `text` (YAML or JSON, `---`-separated documents, or a `List` with `items`) into
/// documents, each with a known type. Empty documents are skipped.
pub fn parse_documents(text: &str) -> Result<Vec<Document>, ManifestError> {
    if text.len() > MAX_MANIFEST_BYTES {
        return Err(ManifestError::TooLarge { size: text.len(), limit: MAX_MANIFEST_BYTES });
    }
    let mut documents = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let index = i + 1;
        let value = Value::deserialize(doc).map_err(|e| ManifestError::Syntax { document: index, message: e.to_string() })?;
        if value.is_null() {
            continue;
        }
        if value.get("kind").and_then(Value::as_str) == Some("List") {
            let items = value.get("items").and_then(Value::as_array).cloned().unwrap_or_default();
            for item in items {
                documents.push(typed_document(index, item)?);
            }
        } else {
            documents.push(typed_document(index, value)?);
        }
    }
    Ok(documents)
}

fn typed_document(index: usize, value: Value) -> Result<Document, ManifestError> {
    let shape = |message: &str| ManifestError::Shape { document: index, message: message.to_string() };
    if !value.is_object() {
        return Err(shape("expected a mapping with apiVersion, kind and metadata"));
    }
    let api_version = value.get("apiVersion").and_then(Value::as_str).ok_or_else(|| shape("apiVersion: Required value"))?;
    let kind = value.get("kind").and_then(Value::as_str).ok_or_else(|| shape("kind: Required value"))?;
    let resource = lookup_kind(api_version, kind).ok_or_else(|| ManifestError::UnknownKind {
        document: index,
        api_version: api_version.to_string(),
        kind: kind.to_string(),
        supported: crate::kinds::TYPES.iter().map(|t| format!("{}/{}", t.api_version(), t.kind)).collect::<Vec<_>>().join(", "),
    })?;
    Ok(Document { index, resource, value })
}

/// Decodes a JSON value into a typed object, reporting every unknown field and the first wrong
/// type by field path (`spec.replicas: invalid type: string "three", expected i32`).
pub fn decode<K: DeserializeOwned>(value: &Value) -> Result<K, FieldErrors> {
    let mut unknown = Vec::new();
    let decoded: Result<K, _> = {
        let mut record = |path: serde_ignored::Path<'_>| unknown.push(bracket_indexes(&path.to_string()));
        let ignored = serde_ignored::Deserializer::new(value, &mut record);
        serde_path_to_error::deserialize(ignored)
    };
    let mut errors = FieldErrors::default();
    for path in unknown {
        errors.push(FieldError::unknown(path));
    }
    match decoded {
        Ok(object) if errors.is_empty() => Ok(object),
        Ok(_) => Err(errors),
        Err(e) => {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            errors.push(FieldError { path, message: e.into_inner().to_string() });
            Err(errors)
        }
    }
}

/// Decodes one document of a manifest, with the document's position in the error.
pub fn decode_document<K: DeserializeOwned>(doc: &Document) -> Result<K, ManifestError> {
    decode(&doc.value).map_err(|errors| ManifestError::Invalid {
        document: doc.index,
        kind: doc.resource.kind.to_string(),
        name: doc.name().to_string(),
        errors,
    })
}

/// `spec.?.containers.?.0.foo` (serde_ignored's form, `?` marking an `Option`) →
/// `spec.containers[0].foo`.
fn bracket_indexes(path: &str) -> String {
    let mut out = String::new();
    for part in path.split('.').filter(|p| *p != "?") {
        if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{part}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(part);
        }
    }
    out
}

#[cfg(test)]
mod tests;
