//! Container probes: exec (in the container), httpGet and tcpSocket (to the pod IP).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use api::k8s_openapi::api::core::v1::{Container, Probe};
use api::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::runtime::ContainerRuntime;

/// What a probe found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeResult {
    /// The check passed.
    Success,
    /// The check failed, with why.
    Failure(String),
}

/// Resolves a probe port: a number, or the name of one of the container's ports.
pub fn resolve_port(port: &IntOrString, container: &Container) -> Option<u16> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).ok(),
        IntOrString::String(name) => {
            container.ports.iter().flatten().find(|p| p.name.as_deref() == Some(name.as_str())).and_then(|p| u16::try_from(p.container_port).ok())
        }
    }
}

/// Runs one probe against a container with IP `pod_ip` and runtime id `container_id`.
pub async fn run(probe: &Probe, container: &Container, pod_ip: IpAddr, runtime: Arc<dyn ContainerRuntime>, container_id: &str) -> ProbeResult {
    let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
    if let Some(exec) = probe.exec.as_ref() {
        let argv = exec.command.clone().unwrap_or_default();
        return match runtime.exec(container_id, &argv, timeout).await {
            Ok(out) if out.exit_code == 0 => ProbeResult::Success,
            Ok(out) => ProbeResult::Failure(format!("command {argv:?} exited with {}: {}", out.exit_code, String::from_utf8_lossy(&out.stdout).trim())),
            Err(e) => ProbeResult::Failure(e.to_string()),
        };
    }
    if let Some(http) = probe.http_get.as_ref() {
        let Some(port) = resolve_port(&http.port, container) else {
            return ProbeResult::Failure(format!("port {:?} is not a port of the container", http.port));
        };
        let host = http.host.clone().unwrap_or_else(|| pod_ip.to_string());
        let scheme = http.scheme.as_deref().unwrap_or("HTTP").to_ascii_lowercase();
        let path = http.path.clone().unwrap_or_else(|| "/".into());
        let url = format!("{scheme}://{host}:{port}{path}");
        let client = match reqwest::Client::builder()
            .timeout(timeout)
            .danger_accept_invalid_certs(true)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
        {
            Ok(c) => c,
            Err(e) => return ProbeResult::Failure(e.to_string()),
        };
        let mut request = client.get(&url).header("user-agent", "flotilla-probe/1.0");
        for h in http.http_headers.iter().flatten() {
            request = request.header(h.name.as_str(), h.value.as_str());
        }
        return match request.send().await {
            Ok(r) if (200..400).contains(&r.status().as_u16()) => ProbeResult::Success,
            Ok(r) => ProbeResult::Failure(format!("HTTP probe failed with statuscode: {}", r.status().as_u16())),
            Err(e) => ProbeResult::Failure(format!("Get \"{url}\": {e}")),
        };
    }
    if let Some(tcp) = probe.tcp_socket.as_ref() {
        let Some(port) = resolve_port(&tcp.port, container) else { return ProbeResult::Failure(format!("port {:?} is not a port of the container", tcp.port)) };
        let host: IpAddr = tcp.host.as_deref().and_then(|h| h.parse().ok()).unwrap_or(pod_ip);
        return match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(SocketAddr::new(host, port))).await {
            Ok(Ok(_)) => ProbeResult::Success,
            Ok(Err(e)) => ProbeResult::Failure(format!("dial tcp {host}:{port}: {e}")),
            Err(_) => ProbeResult::Failure(format!("dial tcp {host}:{port}: timeout")),
        };
    }
    ProbeResult::Failure("the probe has no handler".into())
}
