//! Printing: tables like kubectl's, ages, and the JSON/YAML shapes of objects and lists.

use api::ResourceType;
use serde_json::Value;

/// `5s`, `3m`, `2h`, `4d` since an RFC 3339 timestamp.
pub fn age(timestamp: Option<&str>) -> String {
    let Some(ts) = timestamp.and_then(|t| t.parse::<api::jiff::Timestamp>().ok()) else { return "<unknown>".into() };
    let secs = (api::jiff::Timestamp::now().as_second() - ts.as_second()).max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// Prints rows as aligned columns.
pub fn table(rows: &[Vec<String>]) {
    let Some(first) = rows.first() else { return };
    let widths: Vec<usize> = (0..first.len()).map(|i| rows.iter().map(|r| r.get(i).map_or(0, |c| c.chars().count())).max().unwrap_or(0)).collect();
    for row in rows {
        let line: Vec<String> = row.iter().enumerate().map(|(i, c)| if i + 1 == row.len() { c.clone() } else { format!("{c:<w$}", w = widths[i]) }).collect();
        println!("{}", line.join("   ").trim_end());
    }
}

/// A `List` document around `items`, as `kubectl get -o json` prints.
pub fn list(items: Vec<Value>) -> Value {
    serde_json::json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": items})
}

/// Prints a value as JSON or YAML.
pub fn print_structured(value: &Value, format: &str) -> anyhow::Result<()> {
    match format {
        "json" => println!("{}", serde_json::to_string_pretty(value)?),
        "yaml" => print!("{}", serde_yaml::to_string(value)?),
        other => anyhow::bail!("unknown output format \"{other}\"; use wide, json or yaml"),
    }
    Ok(())
}

/// `deployment.apps/web` as kubectl names objects in messages.
pub fn object_name(rt: &ResourceType, name: &str) -> String {
    if rt.group.is_empty() {
        format!("{}/{name}", rt.kind.to_ascii_lowercase())
    } else {
        format!("{}.{}/{name}", rt.kind.to_ascii_lowercase(), rt.group)
    }
}

/// The string at a JSON pointer, or "".
pub fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// The STATUS column of a pod, as kubectl computes it.
pub fn pod_status(pod: &Value) -> String {
    if pod.pointer("/metadata/deletionTimestamp").is_some() {
        return "Terminating".into();
    }
    let mut reason = s(pod, "/status/phase").to_string();
    if reason.is_empty() {
        reason = "Pending".into();
    }
    if let Some(r) = pod
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|c| c.iter().find(|c| s(c, "/type") == "PodScheduled" && s(c, "/status") == "False"))
    {
        return s(r, "/reason").to_string();
    }
    if let Some(init) = init_status(pod) {
        return init;
    }
    for c in pod.pointer("/status/containerStatuses").and_then(Value::as_array).into_iter().flatten() {
        let waiting = s(c, "/state/waiting/reason");
        let terminated = s(c, "/state/terminated/reason");
        if !waiting.is_empty() && waiting != "ContainerCreating" {
            return waiting.to_string();
        }
        if !waiting.is_empty() && reason == "Pending" {
            reason = waiting.to_string();
        }
        if !terminated.is_empty() && reason != "Running" {
            reason = terminated.to_string();
        }
    }
    reason
}

/// The STATUS of a pod still in its init phase (`Init:1/2`, `Init:CrashLoopBackOff`,
/// `Init:Error`), or `None` once every init container has done its part.
fn init_status(pod: &Value) -> Option<String> {
    let specs = pod.pointer("/spec/initContainers").and_then(Value::as_array).cloned().unwrap_or_default();
    let statuses = pod.pointer("/status/initContainerStatuses").and_then(Value::as_array).cloned().unwrap_or_default();
    for (i, c) in statuses.iter().enumerate() {
        let sidecar = specs.iter().any(|spec| spec["name"] == c["name"] && spec["restartPolicy"] == "Always");
        let exit = c.pointer("/state/terminated/exitCode").and_then(Value::as_i64);
        let waiting = s(c, "/state/waiting/reason");
        if exit == Some(0) || (sidecar && c["started"] == true) {
            continue;
        }
        return Some(match (exit, s(c, "/state/terminated/reason")) {
            (Some(code), "") => format!("Init:ExitCode:{code}"),
            (Some(_), reason) => format!("Init:{reason}"),
            (None, _) if !waiting.is_empty() && waiting != "PodInitializing" => format!("Init:{waiting}"),
            (None, _) => format!("Init:{i}/{}", specs.len()),
        });
    }
    None
}
