//! `flotilla describe TYPE NAME`: the object's main fields and the events about it.

use anyhow::Result;
use clap::Args;
use client::Selectors;
use serde_json::Value;

use super::get::resolve_kind;
use crate::output::{age, s, table};
use crate::Context;

/// Arguments of `describe`.
#[derive(Args, Debug)]
pub struct DescribeArgs {
    /// The type, or TYPE/NAME.
    pub kind: String,
    /// The object name.
    pub name: Option<String>,
}

/// Runs `describe`.
pub async fn run(ctx: &Context, args: &DescribeArgs) -> Result<()> {
    let (rt, inline) = resolve_kind(&args.kind)?;
    let name = inline.or(args.name.clone()).ok_or_else(|| anyhow::anyhow!("give the name of the {} to describe", rt.kind.to_ascii_lowercase()))?;
    let ns = rt.namespaced.then_some(ctx.namespace.as_str());
    let object = ctx.client.get(rt, ns, &name).await?;
    println!("Name:         {}", s(&object, "/metadata/name"));
    if rt.namespaced {
        println!("Namespace:    {}", s(&object, "/metadata/namespace"));
    }
    let labels = object
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|l| l.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect::<Vec<_>>().join(","))
        .unwrap_or_default();
    println!("Labels:       {}", if labels.is_empty() { "<none>" } else { &labels });
    println!("Created:      {} ago", age(object.pointer("/metadata/creationTimestamp").and_then(Value::as_str)));
    for section in ["spec", "status"] {
        if let Some(v) = object.get(section) {
            println!("{}:", section[..1].to_uppercase() + &section[1..]);
            for line in serde_yaml::to_string(v)?.lines() {
                println!("  {line}");
            }
        }
    }
    let selectors = Selectors { fields: Some(format!("involvedObject.name={name}")), labels: None };
    let (events, _) = ctx.client.list(api::ResourceType::of::<api::Event>(), ns, &selectors).await?;
    let mut events: Vec<&Value> = events.iter().filter(|e| s(e, "/involvedObject/kind") == rt.kind).collect();
    events.sort_by_key(|e| s(e, "/lastTimestamp").to_string());
    if events.is_empty() {
        println!("Events:       <none>");
        return Ok(());
    }
    println!("Events:");
    let mut rows = vec![vec!["  Type".to_string(), "Reason".into(), "Age".into(), "From".into(), "Message".into()]];
    for e in events {
        rows.push(vec![
            format!("  {}", s(e, "/type")),
            s(e, "/reason").into(),
            age(e.pointer("/lastTimestamp").and_then(Value::as_str)),
            s(e, "/source/component").into(),
            s(e, "/message").into(),
        ]);
    }
    table(&rows);
    Ok(())
}
