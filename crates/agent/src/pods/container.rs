//! Turning a pod's container spec and its image into a running OCI container: image resolution
//! by pull policy, the command line, env, user, mounts, granted devices and limits, the overlay
//! rootfs, and the reverse on stop.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use api::k8s_openapi::api::core::v1::Container;
use api::{quantity, Pod};
use image::{ImageConfig, ImageRecord, PullOptions};

use super::env::{container_env, expand, NodeFacts};
use crate::config::container_id;
use crate::runtime::{container_cgroups_path, write_bundle, BindMount, ContainerSpec, ProcessUser, Resources};
use crate::AgentContext;

/// Why a container could not be started; `reason` is the Kubernetes waiting reason.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StartError {
    /// `ErrImagePull`, `ErrImageNeverPull`, `CreateContainerConfigError`, `CreateContainerError`,
    /// `RunContainerError`.
    pub reason: &'static str,
    /// What went wrong, for the user.
    pub message: String,
}

fn fail(reason: &'static str, message: impl Into<String>) -> StartError {
    StartError { reason, message: message.into() }
}

/// Re-checks `container`'s image against the image policies the API holds now, as admission did:
/// an enforced failure refuses the start (`ImagePolicyDenied`). Returns the container with its
/// image pinned to the checked digest when a tag was resolved. When the API cannot be reached the
/// container starts as admitted (the server checked it then), so nodes keep running offline.
pub async fn recheck_image(ctx: &AgentContext, namespace: &str, container: &Container) -> Result<Option<Container>, StartError> {
    let image = container.image.clone().unwrap_or_default();
    let policies = match ctx.policies.current() {
        Some(watched) => watched,
        None => {
            // The watch is not live (just started, or reconnecting): ask the API.
            let mut listed = Vec::new();
            for kind in ["ClusterImagePolicy", "ImagePolicy"] {
                let Some(rt) = api::kinds::lookup_kind(api::imagepolicy::API_VERSION, kind) else { continue };
                let ns = rt.namespaced.then_some(namespace);
                match ctx.client.list(rt, ns, &client::Selectors::default()).await {
                    Ok((items, _)) => listed.extend(trust::policy::compile_stored(items)),
                    Err(e) => {
                        tracing::warn!(kind, error = %e, "cannot list image policies; starting the container as admitted");
                        return Ok(None);
                    }
                }
            }
            std::sync::Arc::new(listed)
        }
    };
    if policies.is_empty() {
        return Ok(None);
    }
    let outcome = ctx.image_policy.evaluate(namespace, &image, &policies).await;
    let refused: Vec<String> = outcome.violations.iter().filter(|v| v.mode == trust::policy::Mode::Enforce).map(|v| v.to_string()).collect();
    if !refused.is_empty() {
        return Err(fail("ImagePolicyDenied", format!("image \"{image}\" refused by the node's image policy check: {}", refused.join("; "))));
    }
    Ok(outcome.pinned.map(|pinned| Container { image: Some(pinned), ..container.clone() }))
}

/// The image for `container`, pulled or not according to its `imagePullPolicy`. The second
/// value says whether it was pulled now.
pub async fn ensure_image(ctx: &AgentContext, container: &Container) -> Result<(ImageRecord, bool), StartError> {
    let reference = container.image.clone().unwrap_or_default();
    let policy = container.image_pull_policy.as_deref().unwrap_or("IfNotPresent");
    let local = ctx.images.resolve(&reference).map_err(|e| fail("ErrImagePull", e.to_string()))?;
    match (policy, local) {
        ("Never", Some(image)) | ("IfNotPresent", Some(image)) => Ok((image, false)),
        ("Never", None) => Err(fail(
            "ErrImageNeverPull",
            format!("image \"{reference}\" is not present on the node and imagePullPolicy is Never; import it with `flotilla image import`"),
        )),
        _ => {
            let opts = PullOptions { insecure_registries: ctx.config.insecure_registries.clone(), ..Default::default() };
            ctx.images.pull(&reference, &opts).await.map(|i| (i, true)).map_err(|e| {
                fail(
                    "ErrImagePull",
                    format!(
                        "pulling image \"{reference}\": {e}; for offline nodes import it with `flotilla image import` and use imagePullPolicy: IfNotPresent"
                    ),
                )
            })
        }
    }
}

/// The process arguments, as Kubernetes combines `command`/`args` with the image's
/// `Entrypoint`/`Cmd`; `$(VAR)` in the pod's command and args is expanded from `env`.
pub fn command_line(container: &Container, config: &ImageConfig, env: &[(String, String)]) -> Vec<String> {
    let expanded = |items: &Vec<String>| items.iter().map(|a| expand(a, env)).collect::<Vec<_>>();
    match (container.command.as_ref().filter(|c| !c.is_empty()), container.args.as_ref()) {
        (Some(command), args) => expanded(command).into_iter().chain(args.map(expanded).into_iter().flatten()).collect(),
        (None, Some(args)) => config.entrypoint.iter().cloned().chain(expanded(args)).collect(),
        (None, None) => config.entrypoint.iter().chain(config.cmd.iter()).cloned().collect(),
    }
}

/// `uid[:gid]` from the pod's securityContext or the image's `User`; names are looked up in the
/// image's /etc/passwd.
fn process_user(pod: &Pod, container: &Container, config: &ImageConfig, rootfs: &Path) -> Result<ProcessUser, StartError> {
    let ctx_uid = container.security_context.as_ref().and_then(|s| s.run_as_user).or_else(|| pod.spec.as_ref()?.security_context.as_ref()?.run_as_user);
    let ctx_gid = container.security_context.as_ref().and_then(|s| s.run_as_group).or_else(|| pod.spec.as_ref()?.security_context.as_ref()?.run_as_group);
    let (mut uid, mut gid) = (0u32, 0u32);
    if let Some(user) = config.user.as_deref().filter(|u| !u.is_empty()) {
        let (name, group) = user.split_once(':').map(|(u, g)| (u, Some(g))).unwrap_or((user, None));
        match name.parse::<u32>() {
            Ok(n) => uid = n,
            Err(_) => {
                let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap_or_default();
                let entry = passwd.lines().map(|l| l.split(':').collect::<Vec<_>>()).find(|f| f.first() == Some(&name) && f.len() > 3);
                let entry = entry.ok_or_else(|| fail("CreateContainerConfigError", format!("image user \"{name}\" is not in the image's /etc/passwd")))?;
                uid = entry[2].parse().unwrap_or(0);
                gid = entry[3].parse().unwrap_or(0);
            }
        }
        if let Some(g) = group {
            gid = g.parse().map_err(|_| fail("CreateContainerConfigError", format!("image group \"{g}\" must be numeric")))?;
        }
    }
    if let Some(u) = ctx_uid {
        uid = u32::try_from(u).map_err(|_| fail("CreateContainerConfigError", "securityContext.runAsUser is out of range"))?;
    }
    if let Some(g) = ctx_gid {
        gid = u32::try_from(g).map_err(|_| fail("CreateContainerConfigError", "securityContext.runAsGroup is out of range"))?;
    }
    Ok(ProcessUser { uid, gid, additional_gids: Vec::new() })
}

fn resources(container: &Container) -> Resources {
    let r = container.resources.as_ref();
    let get = |section: Option<&std::collections::BTreeMap<String, api::k8s_openapi::apimachinery::pkg::api::resource::Quantity>>, name: &str| {
        section.and_then(|m| m.get(name)).map(|q| q.0.clone())
    };
    let requests = r.and_then(|r| r.requests.as_ref());
    let limits = r.and_then(|r| r.limits.as_ref());
    let cpu_request = get(requests, "cpu").or_else(|| get(limits, "cpu")).and_then(|q| quantity::millis(&q).ok());
    Resources {
        cpu_shares: Some(Resources::cpu_shares_for_millicores(cpu_request.unwrap_or(0).max(0) as u64)),
        cpu_limit_millicores: get(limits, "cpu").and_then(|q| quantity::millis(&q).ok()).map(|m| m.max(1) as u64),
        memory_limit_bytes: get(limits, "memory").and_then(|q| quantity::units(&q).ok()),
        pids_limit: Some(4096),
    }
}

/// Prepares the rootfs and bundle and starts the container; returns its host PID and the
/// image digest.
pub async fn start(
    ctx: &Arc<AgentContext>,
    pod: &Pod,
    container: &Container,
    image: &ImageRecord,
    network: (IpAddr, &Path),
    log: &Path,
) -> Result<u32, StartError> {
    let (pod_ip, netns) = network;
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let id = container_id(&uid, &container.name);
    let config = ctx.images.config(image).map_err(|e| fail("CreateContainerError", e.to_string()))?;
    let facts = {
        // Only a resourceFieldRef of an unset limit needs the machine's size.
        let needs_capacity = container.env.iter().flatten().any(|v| v.value_from.as_ref().is_some_and(|f| f.resource_field_ref.is_some()));
        let (cpus, memory_bytes) = if needs_capacity { crate::node::machine_capacity() } else { (0, 0) };
        NodeFacts { pod_ip, host_ip: ctx.config.node_ip, cpus, memory_bytes }
    };
    let mut env = container_env(&ctx.client, pod, container, &facts, &config.env).await.map_err(|e| fail("CreateContainerConfigError", e.to_string()))?;
    let pairs: Vec<(String, String)> = env.iter().filter_map(|e| e.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let args = command_line(container, &config, &pairs);
    if args.is_empty() {
        return Err(fail("CreateContainerConfigError", format!("no command given for container \"{}\" and the image has none", container.name)));
    }
    let devices = ctx
        .devices
        .container_devices(&uid, &container.name)
        .map_err(|e| fail("CreateContainerError", format!("devices of container \"{}\": {e}", container.name)))?;
    devices.apply_env(&mut env);
    remove_rootfs(ctx, &id).await;
    let dir = ctx.config.container_dir(&id);
    let (rootfs, upper, work) = (dir.join("rootfs"), dir.join("upper"), dir.join("work"));
    let images = ctx.images.clone();
    let image_for_unpack = image.clone();
    let lower = tokio::task::spawn_blocking(move || images.prepare_layers(&image_for_unpack))
        .await
        .map_err(|e| fail("CreateContainerError", e.to_string()))?
        .map_err(|e| fail("CreateContainerError", format!("unpacking image layers: {e}")))?;
    for d in [&rootfs, &upper, &work] {
        std::fs::create_dir_all(d).map_err(|e| fail("CreateContainerError", format!("{}: {e}", d.display())))?;
    }
    image::mount_overlay(&lower, &upper, &work, &rootfs).map_err(|e| fail("CreateContainerError", format!("mounting the root filesystem: {e}")))?;
    let user = process_user(pod, container, &config, &rootfs)?;
    let pod_dir = ctx.config.pod_dir(&uid);
    let mounts = ["hosts", "hostname", "resolv.conf"]
        .iter()
        .map(|f| BindMount { source: pod_dir.join(f), destination: Path::new("/etc").join(f), readonly: false })
        .collect();
    let mut spec = ContainerSpec::new(args, rootfs);
    spec.env = env;
    spec.cwd = container.working_dir.clone().or(config.working_dir.clone()).filter(|w| !w.is_empty()).unwrap_or_else(|| "/".into());
    spec.user = user;
    spec.hostname = pod.metadata.name.clone();
    spec.netns = Some(netns.to_path_buf());
    spec.cgroups_path = container_cgroups_path(&uid, &container.name).map_err(|e| fail("CreateContainerError", e.to_string()))?;
    spec.resources = resources(container);
    spec.mounts = mounts;
    spec.devices = devices.nodes;
    spec.readonly_rootfs = container.security_context.as_ref().and_then(|s| s.read_only_root_filesystem).unwrap_or(false);
    write_bundle(&dir, &spec).map_err(|e| fail("CreateContainerError", e.to_string()))?;
    if let Some(parent) = log.parent() {
        std::fs::create_dir_all(parent).map_err(|e| fail("CreateContainerError", format!("{}: {e}", parent.display())))?;
    }
    ctx.runtime.start(&id, &dir, log).await.map_err(|e| fail("RunContainerError", e.to_string()))
}

/// Deletes the runtime container, unmounts its rootfs and removes its directory. Idempotent.
pub async fn remove_rootfs(ctx: &AgentContext, id: &str) {
    if let Err(e) = ctx.runtime.delete(id).await {
        tracing::warn!(container = id, error = %e, "deleting container");
    }
    let dir = ctx.config.container_dir(id);
    let rootfs = dir.join("rootfs");
    if is_mounted(&rootfs) {
        if let Err(e) = image::unmount(&rootfs) {
            tracing::warn!(path = %rootfs.display(), error = %e, "unmounting container rootfs");
        }
    }
    if dir.exists() {
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            tracing::warn!(path = %dir.display(), error = %e, "removing container directory");
        }
    }
}

/// True when `path` is a mount point (listed in /proc/self/mountinfo).
pub fn is_mounted(path: &Path) -> bool {
    let target = path.to_string_lossy();
    std::fs::read_to_string("/proc/self/mountinfo").is_ok_and(|m| m.lines().any(|l| l.split_whitespace().nth(4) == Some(target.as_ref())))
}
