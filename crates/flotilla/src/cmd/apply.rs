//! `flotilla apply -f FILE`: create what does not exist, replace what does.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use api::manifest::{parse_documents, Document};
use clap::Args;
use serde_json::Value;

use crate::output::object_name;
use crate::Context;

/// Arguments of `apply`.
#[derive(Args, Debug)]
pub struct ApplyArgs {
    /// Manifest files or directories (`-` reads standard input).
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
}

/// Reads manifest documents from files, directories (their .yaml, .yml and .json files) or stdin.
pub fn read_documents(files: &[PathBuf]) -> Result<Vec<(String, Document)>> {
    let mut paths = Vec::new();
    for f in files {
        if f.is_dir() {
            let mut entries: Vec<PathBuf> =
                std::fs::read_dir(f)?.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml" || e == "json")).collect();
            entries.sort();
            paths.extend(entries);
        } else {
            paths.push(f.clone());
        }
    }
    let mut documents = Vec::new();
    for path in paths {
        let text = if path == Path::new("-") {
            std::io::read_to_string(std::io::stdin()).context("reading standard input")?
        } else {
            std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?
        };
        let docs = parse_documents(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        documents.extend(docs.into_iter().map(|d| (path.display().to_string(), d)));
    }
    Ok(documents)
}

/// The namespace a document goes to.
pub fn namespace_for<'a>(ctx: &'a Context, doc: &'a Document) -> Result<Option<&'a str>> {
    if !doc.resource.namespaced {
        return Ok(None);
    }
    match doc.namespace() {
        Some(ns) if ctx.namespace_given && ns != ctx.namespace => {
            bail!("the namespace from the manifest (\"{ns}\") does not match the namespace given with -n (\"{}\")", ctx.namespace)
        }
        Some(ns) => Ok(Some(ns)),
        None => Ok(Some(&ctx.namespace)),
    }
}

/// Runs `apply`.
pub async fn run(ctx: &Context, args: &ApplyArgs) -> Result<()> {
    let documents = read_documents(&args.files)?;
    if documents.is_empty() {
        bail!("no objects found in {:?}", args.files);
    }
    let mut failures = 0;
    for (file, doc) in &documents {
        let ns = namespace_for(ctx, doc)?;
        let name = doc.name().to_string();
        match apply_one(ctx, doc, ns).await {
            Ok(verb) => println!("{} {verb}", object_name(doc.resource, &name)),
            Err(e) => {
                failures += 1;
                eprintln!("error: {file} (document {}): {e}", doc.index);
            }
        }
    }
    if failures > 0 {
        bail!("{failures} of {} objects could not be applied", documents.len());
    }
    Ok(())
}

async fn apply_one(ctx: &Context, doc: &Document, ns: Option<&str>) -> Result<&'static str> {
    let name = doc.name();
    if name.is_empty() {
        bail!("metadata.name: Required value");
    }
    for _attempt in 0..5 {
        let existing = match ctx.client.get(doc.resource, ns, name).await {
            Ok(v) => Some(v),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e.into()),
        };
        let Some(existing) = existing else {
            ctx.client.create(doc.resource, ns, &doc.value).await?;
            return Ok("created");
        };
        let mut wanted = doc.value.clone();
        let rv = existing.pointer("/metadata/resourceVersion").cloned().unwrap_or(Value::Null);
        wanted["metadata"]["resourceVersion"] = rv.clone();
        if let (Some(node), None) = (existing.pointer("/spec/nodeName"), wanted.pointer("/spec/nodeName")) {
            wanted["spec"]["nodeName"] = node.clone();
        }
        match ctx.client.update(doc.resource, ns, name, &wanted).await {
            Ok(updated) => return Ok(if updated.pointer("/metadata/resourceVersion") == Some(&rv) { "unchanged" } else { "configured" }),
            Err(e) if e.is_conflict() => continue,
            Err(e) => return Err(e.into()),
        }
    }
    bail!("the object kept changing while it was being applied; try again")
}
