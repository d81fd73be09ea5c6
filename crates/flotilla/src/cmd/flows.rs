//! `flotilla flows [--pod [NS/]NAME] [-n NS] [--verdict forwarded|dropped] [--node N]
//! [--last N | --all] [-f] [-o json]`: the flows the nodes' policy datapaths judged, as
//! `hubble observe` prints them: time, node, source -> destination (pod or address, port,
//! identity), protocol, verdict (and why it was dropped), and the direction it was judged in.

use std::io::Write;

use anyhow::{Context as _, Result};
use api::flow::{Flow, FlowEndpoint, FlowFilter, Verdict};
use clap::{Args, ValueEnum};
use futures::StreamExt;

use crate::Context;

/// Flows shown when neither `--last` nor `--all` is given (as `hubble observe`).
const DEFAULT_LAST: usize = 20;

/// Arguments of `flows`.
#[derive(Args, Debug)]
pub struct FlowsArgs {
    /// Only flows to or from this pod ([NAMESPACE/]NAME).
    #[arg(long)]
    pub pod: Option<String>,
    /// Only flows with this verdict.
    #[arg(long)]
    pub verdict: Option<VerdictArg>,
    /// Only flows judged on this node.
    #[arg(long)]
    pub node: Option<String>,
    /// The newest N flows.
    #[arg(long, conflicts_with = "all")]
    pub last: Option<usize>,
    /// Every flow the nodes still hold.
    #[arg(long)]
    pub all: bool,
    /// Keep printing flows as they are judged.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Output: the table (default) or json (one object per line, as the API streams them).
    #[arg(short = 'o', long, default_value = "table")]
    pub output: FlowsOutput,
}

/// A verdict to select.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum VerdictArg {
    /// Let through.
    Forwarded,
    /// Dropped.
    Dropped,
}

/// How flows are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FlowsOutput {
    /// One line per flow.
    Table,
    /// One JSON object per line.
    Json,
}

/// The filter the arguments ask for: all namespaces unless `-n` was given.
pub fn filter_of(ctx: &Context, args: &FlowsArgs) -> FlowFilter {
    let pod = args.pod.as_ref().map(|pod| match pod.split_once('/') {
        Some((ns, name)) => (ns.to_string(), name.to_string()),
        None => (ctx.namespace.clone(), pod.clone()),
    });
    FlowFilter {
        namespace: ctx.namespace_given.then(|| ctx.namespace.clone()),
        pod,
        verdict: args.verdict.map(|v| match v {
            VerdictArg::Forwarded => Verdict::Forwarded,
            VerdictArg::Dropped => Verdict::Dropped,
        }),
        node: args.node.clone(),
        last: if args.all { None } else { Some(args.last.unwrap_or(DEFAULT_LAST)) },
        follow: args.follow,
    }
}

/// One line of the API's stream.
enum Line {
    Flow(Box<Flow>),
    /// A node whose flows could not be read, and why.
    Unavailable(String, String),
}

fn parse_line(line: &[u8]) -> Result<Line> {
    let value: serde_json::Value = serde_json::from_slice(line).context("a flow line from the API server is not JSON")?;
    if let Some(why) = value.get("unavailable").and_then(|w| w.as_str()) {
        let node = value.get("node").and_then(|n| n.as_str()).unwrap_or("?");
        return Ok(Line::Unavailable(node.to_string(), why.to_string()));
    }
    Ok(Line::Flow(Box::new(serde_json::from_value(value).context("a flow line from the API server")?)))
}

/// Reads the stream `filter` selects line by line, handing each to `each`, until it ends.
async fn read(ctx: &Context, filter: &FlowFilter, mut each: impl FnMut(Line, &[u8]) -> Result<()>) -> Result<()> {
    let mut stream = ctx.client.flows(filter).await?;
    let mut pending = Vec::new();
    while let Some(chunk) = stream.next().await {
        pending.extend_from_slice(&chunk?);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            if line.iter().any(|b| !b.is_ascii_whitespace()) {
                each(parse_line(&line)?, &line)?;
            }
        }
    }
    Ok(())
}

/// The flows `filter` selects (it must not follow), oldest first, at most `filter.last`
/// over all nodes; nodes that could not be read are named on stderr, and returned with why.
pub async fn collect(ctx: &Context, filter: &FlowFilter) -> Result<(Vec<Flow>, Vec<(String, String)>)> {
    let (mut flows, mut unavailable) = (Vec::new(), Vec::new());
    read(ctx, filter, |line, _| {
        match line {
            Line::Flow(flow) => flows.push(*flow),
            Line::Unavailable(node, why) => {
                eprintln!("warning: the flows of node {node} could not be read: {why}");
                unavailable.push((node, why));
            }
        }
        Ok(())
    })
    .await?;
    flows.sort_by_key(|f| f.time);
    if let Some(last) = filter.last {
        flows.drain(..flows.len().saturating_sub(last));
    }
    Ok((flows, unavailable))
}

/// Runs `flows`.
pub async fn run(ctx: &Context, args: &FlowsArgs) -> Result<()> {
    let filter = filter_of(ctx, args);
    let print = |flow: &Flow, raw: Option<&[u8]>| -> Result<()> {
        let mut out = std::io::stdout().lock();
        match (args.output, raw) {
            (FlowsOutput::Json, Some(raw)) => out.write_all(raw)?,
            (FlowsOutput::Json, None) => writeln!(out, "{}", serde_json::to_string(flow)?)?,
            (FlowsOutput::Table, _) => writeln!(out, "{}", describe(flow))?,
        }
        out.flush()?;
        Ok(())
    };
    if !args.follow {
        for flow in collect(ctx, &filter).await?.0 {
            print(&flow, None)?;
        }
        return Ok(());
    }
    read(ctx, &filter, |line, raw| match line {
        Line::Flow(flow) => print(&flow, Some(raw)),
        Line::Unavailable(node, why) => {
            eprintln!("warning: the flows of node {node} could not be read: {why}");
            Ok(())
        }
    })
    .await
}

/// One flow as a line: `Dec  3 08:10:01.123 node1 default/client:43210 (ID:300) -> default/web:80 (ID:301) TCP FORWARDED (ingress)`,
/// and for an HTTP request ` HTTP GET /path => 200 (0.8 ms)`.
pub fn describe(flow: &Flow) -> String {
    let time = flow.time.strftime("%b %e %H:%M:%S%.3f");
    let verdict = match (&flow.verdict, &flow.drop_reason) {
        (Verdict::Dropped, Some(reason)) => format!("DROPPED ({reason})"),
        (verdict, _) => verdict.as_str().to_string(),
    };
    let direction = match flow.traffic_direction {
        api::flow::TrafficDirection::Ingress => "ingress",
        api::flow::TrafficDirection::Egress => "egress",
    };
    let line = format!("{time} {} {} -> {} {} {verdict} ({direction})", flow.node, end(&flow.source), end(&flow.destination), flow.protocol);
    match &flow.l7 {
        Some(l7) => format!("{line} HTTP {} {} => {} ({:.1} ms)", l7.http.method, l7.http.url, l7.http.code, l7.latency_ns as f64 / 1e6),
        None => line,
    }
}

fn end(e: &FlowEndpoint) -> String {
    let identity = match e.identity {
        api::identity::HOST => "host".to_string(),
        api::identity::WORLD => "world".to_string(),
        id => format!("ID:{id}"),
    };
    format!("{}:{} ({identity})", e.name(), e.port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flow_prints_as_one_line_with_both_ends() {
        let line = br#"{"time":"2026-12-03T08:10:01.123456Z","node":"n1","verdict":"DROPPED","dropReason":"POLICY_DENIED","trafficDirection":"INGRESS","protocol":"TCP",
            "source":{"ip":"10.42.0.5","port":43210,"identity":300,"namespace":"default","pod":"client"},
            "destination":{"ip":"10.42.0.6","port":9090,"identity":301,"namespace":"default","pod":"web","labels":{"app":"web"}}}"#;
        let Line::Flow(flow) = parse_line(line).unwrap() else { panic!("a flow") };
        assert_eq!(describe(&flow), "Dec  3 08:10:01.123 n1 default/client:43210 (ID:300) -> default/web:9090 (ID:301) TCP DROPPED (POLICY_DENIED) (ingress)");
        let mut l7 = flow.clone();
        l7.l7 = Some(api::flow::L7 {
            latency_ns: 1_250_000,
            http: api::flow::HttpFlow { method: "GET".into(), url: "/private?x=1".into(), host: None, code: 403 },
        });
        assert!(describe(&l7).ends_with("DROPPED (POLICY_DENIED) (ingress) HTTP GET /private?x=1 => 403 (1.2 ms)"), "{}", describe(&l7));
        let host = FlowEndpoint { ip: "10.42.0.1".into(), port: 53, identity: api::identity::HOST, ..Default::default() };
        assert_eq!(end(&host), "10.42.0.1:53 (host)");
    }

    #[test]
    fn an_unavailable_node_is_its_own_line() {
        let Line::Unavailable(node, why) = parse_line(br#"{"node":"n2","unavailable":"connection refused"}"#).unwrap() else { panic!("unavailable") };
        assert_eq!((node.as_str(), why.as_str()), ("n2", "connection refused"));
        assert!(parse_line(b"not json").is_err());
    }
}
