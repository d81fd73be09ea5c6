//! CycloneDX 1.5 JSON: the image as the described component, its packages as libraries.

use std::collections::HashSet;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use super::{Sbom, Subject};

/// The inventory as a CycloneDX 1.5 document.
pub fn to_cyclonedx(sbom: &Sbom, subject: &Subject, now: DateTime<Utc>) -> Value {
    let mut refs = HashSet::new();
    let mut components: Vec<Value> = Vec::with_capacity(sbom.packages.len() + 1);
    if let Some(os) = &sbom.os {
        components.push(json!({"bom-ref": format!("os:{}@{}", os.id, os.version_id), "type": "operating-system", "name": os.id, "version": os.version_id, "description": os.pretty_name}));
    }
    for p in &sbom.packages {
        // The same package can be found in several places; each finding keeps its own ref.
        let mut bom_ref = p.purl.clone();
        let mut n = 1;
        while !refs.insert(bom_ref.clone()) {
            n += 1;
            bom_ref = format!("{}#{n}", p.purl);
        }
        let mut properties = vec![json!({"name": "flotilla:package:type", "value": p.kind}), json!({"name": "flotilla:package:location", "value": p.location})];
        if let Some((name, version)) = &p.source {
            properties.push(json!({"name": "flotilla:package:source", "value": format!("{name} {version}")}));
        }
        components.push(json!({"bom-ref": bom_ref, "type": "library", "name": p.name, "version": p.version, "purl": p.purl, "properties": properties}));
    }
    json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": format!("urn:uuid:{}", uuid::Uuid::new_v4()),
        "version": 1,
        "metadata": {
            "timestamp": now.to_rfc3339_opts(SecondsFormat::Secs, true),
            "tools": {"components": [{"type": "application", "name": "flotilla", "version": env!("CARGO_PKG_VERSION")}]},
            "component": {"bom-ref": subject.digest, "type": "container", "name": subject.name, "version": subject.digest},
        },
        "components": components,
    })
}
