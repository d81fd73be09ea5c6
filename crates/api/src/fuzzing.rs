//! Fuzz bodies for the parsers in this crate that read untrusted input, shared by the cargo-fuzz
//! targets in `fuzz/` and the corpus tests in `tests/fuzz_corpus.rs` so CI runs them on stable.
//!
//! Each body panics only when it finds a bug: bad input must come back as an error.

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;

use crate::manifest::{decode_document, parse_documents, Document};
use crate::{defaults, validation, Deployment, Event, FieldErrors, Lease, Namespace, Node, ObjectMeta, Pod};

/// Reads `data` as a manifest the way `flotilla apply` and the API server do: split into
/// documents, decode each strictly into its kind, fill defaults and validate.
///
/// Asserts that nothing panics, that every error can be displayed, and that an object that
/// decodes encodes to JSON that decodes again to the same object (the API server stores the
/// encoded form and reads it back with the same strict decoder).
pub fn manifest(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let documents = match parse_documents(&text) {
        Ok(documents) => documents,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    for doc in &documents {
        let _ = (doc.name(), doc.namespace());
        match doc.resource.kind {
            "Pod" => admit_pod(doc),
            "Deployment" => admit_deployment(doc),
            "Namespace" => admit_with::<Namespace>(doc, crate::netpol::validate_namespace),
            "Node" => admit_with::<Node>(doc, |o| {
                let mut errors = FieldErrors::default();
                validation::metadata(&o.metadata, false, &mut errors);
                validation::node_pod_cidr(o, Some(o), &mut errors);
                errors.into_result()
            }),
            "Event" => admit_metadata_only::<Event>(doc, false, |o| &o.metadata),
            "Lease" => admit_metadata_only::<Lease>(doc, false, |o| &o.metadata),
            "ConfigMap" => admit_with::<crate::ConfigMap>(doc, |o| crate::configdata::config_map(o, Some(o))),
            "Secret" => admit_with::<crate::Secret>(doc, |o| crate::configdata::secret(o, Some(o))),
            "PriorityClass" => admit_with::<crate::PriorityClass>(doc, |o| {
                let mut errors = FieldErrors::default();
                crate::priority::validate_class(o, &mut errors);
                errors.into_result()
            }),
            "ImagePolicy" => admit_with::<crate::ImagePolicy>(doc, |o| crate::imagepolicy::validate(o, true)),
            "ClusterImagePolicy" => admit_with::<crate::ImagePolicy>(doc, |o| crate::imagepolicy::validate(o, false)),
            "Function" => admit_with::<crate::function::Function>(doc, crate::function::validate),
            "NetworkPolicy" => admit_with::<crate::NetworkPolicy>(doc, crate::netpol::validate),
            "FlotillaNetworkPolicy" => admit_with::<crate::netpol::flotilla::FlotillaNetworkPolicy>(doc, crate::netpol::flotilla::validate),
            "Identity" => admit_with::<crate::identity::Identity>(doc, crate::identity::validate),
            "Service" => admit_with::<crate::Service>(doc, |o| {
                let mut o = o.clone();
                crate::service::default_service(&mut o);
                crate::service::validate_service(&o)?;
                crate::service::validate_service_update(&o, &o)
            }),
            "Endpoints" => admit_with::<crate::Endpoints>(doc, crate::service::validate_endpoints),
            other => panic!("parse_documents returned kind {other}, which has no decoder here"),
        }
    }
}

fn admit_pod(doc: &Document) {
    let Some(mut pod) = decoded::<Pod>(doc) else { return };
    let before_defaults = validation::pod(&pod);
    let update = validation::pod_update(&pod, &pod);
    assert_eq!(before_defaults.is_ok(), update.is_ok(), "an unchanged pod is a valid update exactly when it is valid");
    show(before_defaults);
    defaults::pod(&mut pod);
    show(validation::pod(&pod));
    round_trips(&pod);
}

fn admit_deployment(doc: &Document) {
    let Some(mut deployment) = decoded::<Deployment>(doc) else { return };
    show(validation::deployment(&deployment));
    defaults::deployment(&mut deployment);
    show(validation::deployment(&deployment));
    round_trips(&deployment);
}

fn admit_metadata_only<K>(doc: &Document, label_name: bool, meta: impl Fn(&K) -> &ObjectMeta)
where
    K: DeserializeOwned + Serialize + PartialEq + Debug,
{
    let Some(object) = decoded::<K>(doc) else { return };
    let mut errors = FieldErrors::default();
    validation::metadata(meta(&object), label_name, &mut errors);
    show(errors.into_result());
    round_trips(&object);
}

/// Decodes, validates with `validate`, and checks the round trip.
fn admit_with<K>(doc: &Document, validate: impl Fn(&K) -> Result<(), FieldErrors>)
where
    K: DeserializeOwned + Serialize + PartialEq + Debug,
{
    let Some(object) = decoded::<K>(doc) else { return };
    show(validate(&object));
    round_trips(&object);
}

fn decoded<K: DeserializeOwned>(doc: &Document) -> Option<K> {
    decode_document::<K>(doc).map_err(|e| e.to_string()).ok()
}

fn show(result: Result<(), FieldErrors>) {
    if let Err(errors) = result {
        let _ = errors.to_string();
    }
}

fn round_trips<K: DeserializeOwned + Serialize + PartialEq + Debug>(object: &K) {
    let encoded = serde_json::to_value(object).expect("a decoded object encodes");
    let again: K =
        crate::manifest::decode(&encoded).unwrap_or_else(|errors| panic!("the encoded form of a decoded object does not decode: {errors}\n{encoded}"));
    assert_eq!(&again, object, "decode(encode(object)) changed the object");
}

/// Reads `data` as what `flows` requests and answers carry: after a first byte that picks
/// which, either a query (`key=value&…`, as the agent and the API server read it into a
/// [`crate::flow::FlowFilter`]) or a flow line (as `flotilla flows` reads it).
///
/// Asserts that a filter that parses writes itself back as a query that parses to the same
/// filter, and that a flow that decodes encodes to JSON that decodes to the same flow.
pub fn flows(data: &[u8]) {
    let Some((which, rest)) = data.split_first() else { return };
    if which % 2 == 0 {
        let text = String::from_utf8_lossy(rest);
        let query: std::collections::HashMap<String, String> =
            text.split('&').filter_map(|pair| pair.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect();
        match crate::flow::FlowFilter::from_query(&query) {
            Ok(filter) => {
                let again: std::collections::HashMap<String, String> = filter.to_query().into_iter().map(|(k, v)| (k.to_string(), v)).collect();
                assert_eq!(crate::flow::FlowFilter::from_query(&again).as_ref(), Ok(&filter), "a filter reads back from its own query");
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    } else if let Ok(flow) = serde_json::from_slice::<crate::flow::Flow>(rest) {
        let _ = (flow.source.name(), flow.destination.name(), crate::flow::FlowFilter::default().matches(&flow));
        let text = serde_json::to_vec(&flow).expect("a flow encodes");
        assert_eq!(serde_json::from_slice::<crate::flow::Flow>(&text).expect("an encoded flow decodes"), flow);
        // Whatever a node reports, `policy suggest` writes only policies admission accepts.
        for namespace in [&flow.source.namespace, &flow.destination.namespace].into_iter().flatten().filter(|ns| crate::validation::is_dns_label(ns)) {
            let (suggested, summary) = crate::netpol::suggest::suggest(namespace, &[], std::slice::from_ref(&flow));
            for s in &suggested {
                crate::netpol::validate(&s.policy).unwrap_or_else(|e| panic!("a suggested policy is refused: {e}\n{:#?}", s.policy));
            }
            crate::netpol::suggest::to_yaml(namespace, &suggested, &summary).expect("a suggestion writes as YAML");
        }
    }
}
