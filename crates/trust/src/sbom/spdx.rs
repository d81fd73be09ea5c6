//! SPDX 2.3 JSON: the image as the described package, containing its packages.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use super::{Sbom, Subject};

/// The inventory as an SPDX 2.3 document.
pub fn to_spdx(sbom: &Sbom, subject: &Subject, now: DateTime<Utc>) -> Value {
    let none = "NOASSERTION";
    let mut packages = vec![json!({
        "SPDXID": "SPDXRef-Image",
        "name": subject.name,
        "versionInfo": subject.digest,
        "downloadLocation": none,
        "filesAnalyzed": false,
        "primaryPackagePurpose": "CONTAINER",
    })];
    let mut relationships = vec![json!({"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES", "relatedSpdxElement": "SPDXRef-Image"})];
    for (i, p) in sbom.packages.iter().enumerate() {
        let id = format!("SPDXRef-Package-{i}");
        packages.push(json!({
            "SPDXID": id,
            "name": p.name,
            "versionInfo": p.version,
            "downloadLocation": none,
            "filesAnalyzed": false,
            "licenseConcluded": none,
            "licenseDeclared": none,
            "copyrightText": none,
            "sourceInfo": format!("{:?} package found in {}", p.kind, p.location).to_lowercase(),
            "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": p.purl}],
        }));
        relationships.push(json!({"spdxElementId": "SPDXRef-Image", "relationshipType": "CONTAINS", "relatedSpdxElement": id}));
    }
    json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": subject.name,
        "documentNamespace": format!("https://flotilla.dev/spdx/{}-{}", subject.name.replace(['/', ':', '@'], "-"), uuid::Uuid::new_v4()),
        "creationInfo": {"created": now.to_rfc3339_opts(SecondsFormat::Secs, true), "creators": [format!("Tool: flotilla-{}", env!("CARGO_PKG_VERSION"))]},
        "packages": packages,
        "relationships": relationships,
    })
}
