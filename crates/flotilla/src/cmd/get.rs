//! `flotilla get TYPE [NAME]`: tables, or the objects as JSON or YAML.

use anyhow::{anyhow, Result};
use api::ResourceType;
use clap::Args;
use client::Selectors;
use serde_json::Value;

use crate::output::{age, list, pod_status, print_structured, s, table};
use crate::Context;

/// Arguments of `get`.
#[derive(Args, Debug)]
pub struct GetArgs {
    /// The type (`pods`, `po`, `deployments`, `nodes`, … or `TYPE/NAME`).
    pub kind: String,
    /// Object names.
    pub names: Vec<String>,
    /// Output: wide, json or yaml.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// All namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Label selector, e.g. app=web.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Field selector, e.g. spec.nodeName=node1.
    #[arg(long)]
    pub field_selector: Option<String>,
}

/// Resolves `pods`, `po/web`, `deploy` to a type and optional name.
pub fn resolve_kind(kind: &str) -> Result<(&'static ResourceType, Option<String>)> {
    let (kind, name) = match kind.split_once('/') {
        Some((k, n)) => (k, Some(n.to_string())),
        None => (kind, None),
    };
    let rt = api::kinds::lookup_cli(kind).ok_or_else(|| {
        let known: Vec<&str> = api::kinds::TYPES.iter().map(|t| t.plural).collect();
        anyhow!("the server doesn't have a resource type \"{kind}\"; known types: {}", known.join(", "))
    })?;
    Ok((rt, name))
}

/// Runs `get`.
pub async fn run(ctx: &Context, args: &GetArgs) -> Result<()> {
    let (rt, inline) = resolve_kind(&args.kind)?;
    let names: Vec<String> = inline.into_iter().chain(args.names.iter().cloned()).collect();
    let ns = if rt.namespaced && !args.all_namespaces { Some(ctx.namespace.as_str()) } else { None };
    let items = if names.is_empty() {
        let selectors = Selectors { labels: args.selector.clone(), fields: args.field_selector.clone() };
        ctx.client.list(rt, ns, &selectors).await?.0
    } else {
        let mut items = Vec::new();
        for n in &names {
            items.push(ctx.client.get(rt, ns.or(Some(&ctx.namespace)), n).await?);
        }
        items
    };
    match args.output.as_deref() {
        Some(format @ ("json" | "yaml")) => {
            let value = if names.len() == 1 { items.into_iter().next().unwrap_or(Value::Null) } else { list(items) };
            return print_structured(&value, format);
        }
        Some("wide") | None => {}
        Some(other) => anyhow::bail!("unknown output format \"{other}\"; use wide, json or yaml"),
    }
    if items.is_empty() {
        match ns {
            Some(ns) => eprintln!("No resources found in {ns} namespace."),
            None => eprintln!("No resources found"),
        }
        return Ok(());
    }
    let wide = args.output.as_deref() == Some("wide");
    let show_ns = args.all_namespaces && rt.namespaced;
    let mut rows = vec![header(rt.kind, wide)];
    for item in &items {
        rows.push(row(rt.kind, item, wide));
    }
    if show_ns {
        rows[0].insert(0, "NAMESPACE".into());
        for (row, item) in rows.iter_mut().skip(1).zip(&items) {
            row.insert(0, s(item, "/metadata/namespace").to_string());
        }
    }
    table(&rows);
    Ok(())
}

fn header(kind: &str, wide: bool) -> Vec<String> {
    let (base, extra): (&[&str], &[&str]) = match kind {
        "Pod" => (&["NAME", "READY", "STATUS", "RESTARTS", "AGE"], &["IP", "NODE"]),
        "Deployment" => (&["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"], &["CONTAINERS", "IMAGES", "SELECTOR"]),
        "Node" => (&["NAME", "STATUS", "ROLES", "AGE", "VERSION"], &["INTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME"]),
        "Event" => (&["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"], &[]),
        "Namespace" => (&["NAME", "STATUS", "AGE"], &[]),
        "Lease" => (&["NAME", "HOLDER", "AGE"], &[]),
        "ConfigMap" => (&["NAME", "DATA", "AGE"], &[]),
        "Function" => (&["NAME", "READY", "REPLICAS", "BACKLOG", "IN-FLIGHT", "RECEIVED", "ACKED", "DEAD-LETTERED", "AGE"], &["TRIGGERS"]),
        "Secret" => (&["NAME", "TYPE", "DATA", "AGE"], &[]),
        "Identity" => (&["NAME", "NAMESPACE", "LABELS", "AGE"], &[]),
        "Service" => (&["NAME", "TYPE", "CLUSTER-IP", "PORT(S)", "AGE"], &["SELECTOR"]),
        "Endpoints" => (&["NAME", "ENDPOINTS", "AGE"], &[]),
        _ => (&["NAME", "AGE"], &[]),
    };
    base.iter().chain(if wide { extra.iter() } else { [].iter() }).map(|s| s.to_string()).collect()
}

fn row(kind: &str, v: &Value, wide: bool) -> Vec<String> {
    let name = s(v, "/metadata/name").to_string();
    let created = age(v.pointer("/metadata/creationTimestamp").and_then(Value::as_str));
    let arr = |p: &str| v.pointer(p).and_then(Value::as_array).cloned().unwrap_or_default();
    let mut cells: Vec<String> = match kind {
        "Pod" => {
            // Sidecars (init containers that keep running) count as containers, as kubectl counts them.
            let sidecars: Vec<Value> = arr("/spec/initContainers").into_iter().filter(|c| c["restartPolicy"] == "Always").collect();
            let is_sidecar = |c: &Value| sidecars.iter().any(|s| s["name"] == c["name"]);
            let init = arr("/status/initContainerStatuses");
            let statuses = arr("/status/containerStatuses");
            let total = arr("/spec/containers").len() + sidecars.len();
            let ready = statuses.iter().chain(init.iter().filter(|c| is_sidecar(c))).filter(|c| c["ready"] == true).count();
            let restarts: i64 = statuses.iter().chain(&init).filter_map(|c| c["restartCount"].as_i64()).sum();
            let mut row = vec![name, format!("{ready}/{total}"), pod_status(v), restarts.to_string(), created];
            if wide {
                row.push(non_empty(s(v, "/status/podIP")));
                row.push(non_empty(s(v, "/spec/nodeName")));
            }
            row
        }
        "Deployment" => {
            let replicas = v.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0);
            let n = |p: &str| v.pointer(p).and_then(Value::as_i64).unwrap_or(0);
            let mut row = vec![
                name,
                format!("{}/{replicas}", n("/status/readyReplicas")),
                n("/status/updatedReplicas").to_string(),
                n("/status/availableReplicas").to_string(),
                created,
            ];
            if wide {
                let containers = arr("/spec/template/spec/containers");
                row.push(containers.iter().map(|c| s(c, "/name")).collect::<Vec<_>>().join(","));
                row.push(containers.iter().map(|c| s(c, "/image")).collect::<Vec<_>>().join(","));
                let labels = v.pointer("/spec/selector/matchLabels").and_then(Value::as_object).cloned().unwrap_or_default();
                row.push(labels.iter().map(|(k, l)| format!("{k}={}", l.as_str().unwrap_or(""))).collect::<Vec<_>>().join(","));
            }
            row
        }
        "Node" => {
            let ready = arr("/status/conditions").iter().find(|c| s(c, "/type") == "Ready").map(|c| s(c, "/status") == "True").unwrap_or(false);
            let mut status = if ready { "Ready" } else { "NotReady" }.to_string();
            if v.pointer("/spec/unschedulable") == Some(&Value::Bool(true)) {
                status.push_str(",SchedulingDisabled");
            }
            let mut row = vec![name, status, "<none>".into(), created, s(v, "/status/nodeInfo/kubeletVersion").to_string()];
            if wide {
                let ip = arr("/status/addresses").iter().find(|a| s(a, "/type") == "InternalIP").map(|a| s(a, "/address").to_string()).unwrap_or_default();
                row.extend([
                    ip,
                    s(v, "/status/nodeInfo/osImage").into(),
                    s(v, "/status/nodeInfo/kernelVersion").into(),
                    s(v, "/status/nodeInfo/containerRuntimeVersion").into(),
                ]);
            }
            row
        }
        "Event" => vec![
            age(v.pointer("/lastTimestamp").and_then(Value::as_str)),
            s(v, "/type").into(),
            s(v, "/reason").into(),
            format!("{}/{}", s(v, "/involvedObject/kind").to_ascii_lowercase(), s(v, "/involvedObject/name")),
            s(v, "/message").into(),
        ],
        "Namespace" => vec![name, "Active".into(), created],
        "Identity" => {
            let labels = v
                .pointer("/spec/labels")
                .and_then(Value::as_object)
                .map(|m| m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect::<Vec<_>>().join(","));
            vec![name, s(v, "/spec/namespace").into(), labels.unwrap_or_default(), created]
        }
        "Lease" => vec![name, s(v, "/spec/holderIdentity").into(), created],
        "Service" => {
            let ports: Vec<String> = arr("/spec/ports")
                .iter()
                .map(|p| {
                    let node_port = p.get("nodePort").and_then(Value::as_u64).map(|n| format!(":{n}")).unwrap_or_default();
                    format!("{}{node_port}/{}", p.get("port").and_then(Value::as_u64).unwrap_or(0), p.get("protocol").and_then(Value::as_str).unwrap_or("TCP"))
                })
                .collect();
            let mut row = vec![name, s(v, "/spec/type").into(), non_empty(s(v, "/spec/clusterIP")), non_empty(&ports.join(",")), created];
            if wide {
                let selector = v.pointer("/spec/selector").and_then(Value::as_object);
                let selector = selector.map(|m| m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect::<Vec<_>>().join(","));
                row.push(non_empty(&selector.unwrap_or_default()));
            }
            row
        }
        "Endpoints" => {
            let mut endpoints = Vec::new();
            for subset in arr("/subsets") {
                let ports: Vec<u64> =
                    subset.get("ports").and_then(Value::as_array).into_iter().flatten().filter_map(|p| p.get("port").and_then(Value::as_u64)).collect();
                for address in subset.get("addresses").and_then(Value::as_array).into_iter().flatten() {
                    let ip = address.get("ip").and_then(Value::as_str).unwrap_or_default();
                    endpoints.extend(ports.iter().map(|p| format!("{ip}:{p}")));
                }
            }
            vec![name, non_empty(&endpoints.join(",")), created]
        }
        "Function" => {
            let n = |p: &str| v.pointer(p).and_then(Value::as_u64).unwrap_or(0).to_string();
            let mut row = vec![
                name,
                n("/status/readyReplicas"),
                n("/status/replicas"),
                n("/status/backlog"),
                n("/status/inFlight"),
                n("/status/received"),
                n("/status/acked"),
                n("/status/deadLettered"),
                created,
            ];
            if wide {
                let spec: api::function::FunctionSpec = v.get("spec").and_then(|s| serde_json::from_value(s.clone()).ok()).unwrap_or_default();
                row.push(api::function::triggers_summary(&spec));
            }
            row
        }
        "ConfigMap" => {
            let count = |p: &str| v.pointer(p).and_then(Value::as_object).map_or(0, |m| m.len());
            vec![name, (count("/data") + count("/binaryData")).to_string(), created]
        }
        "Secret" => {
            let data = v.pointer("/data").and_then(Value::as_object).map_or(0, |m| m.len());
            vec![name, s(v, "/type").into(), data.to_string(), created]
        }
        _ => vec![name, created],
    };
    cells.iter_mut().for_each(|c| *c = c.replace('\n', " "));
    cells
}

fn non_empty(s: &str) -> String {
    if s.is_empty() {
        "<none>".into()
    } else {
        s.into()
    }
}
