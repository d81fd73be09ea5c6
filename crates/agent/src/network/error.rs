//! Errors of pod networking, each naming the command, request, namespace, path or pod involved.

use std::time::Duration;

use ipnet::Ipv4Net;

/// Everything that can go wrong while wiring pods to the node network.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// A configuration value is unusable.
    #[error("invalid network config {field} = {value:?}: {reason}")]
    InvalidConfig {
        /// The field.
        field: &'static str,
        /// Its value.
        value: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A pod uid that cannot name a namespace.
    #[error("invalid pod uid {pod_uid:?}: only ASCII letters, digits, '-', '_' and '.' are allowed (1 to 128)")]
    InvalidPodUid {
        /// The uid.
        pod_uid: String,
    },
    /// A tool the real implementation runs is missing.
    #[error("`{tool}` not found in PATH or the sbin directories; install the Debian package `{package}`")]
    ToolNotFound {
        /// The command.
        tool: &'static str,
        /// The package that provides it.
        package: &'static str,
    },
    /// A command ran and failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// How it ended.
        status: String,
        /// What it printed to stderr.
        stderr: String,
    },
    /// A command did not finish in time and was killed.
    #[error("`{command}` did not finish within {timeout:?}")]
    CommandTimeout {
        /// The command line.
        command: String,
        /// The limit.
        timeout: Duration,
    },
    /// A command printed something we could not understand.
    #[error("cannot parse the output of `{command}`: {reason}")]
    Parse {
        /// The command line.
        command: String,
        /// What was wrong.
        reason: String,
    },
    /// The kernel refused an rtnetlink request, or it could not be sent.
    #[error("netlink: {request} in netns {netns}: {source}{}", kernel_reason(.kernel_message))]
    Netlink {
        /// What the request does, naming its link or address ("set link eth0 up").
        request: String,
        /// The namespace it was sent in ("host" or the name).
        netns: String,
        /// The error code.
        #[source]
        source: std::io::Error,
        /// The kernel's explanation, when it gave one ("Nexthop has invalid gateway").
        kernel_message: Option<String>,
    },
    /// The kernel answered an rtnetlink request with something we could not decode.
    #[error("netlink: cannot decode the reply to {request} in netns {netns}: {reason}")]
    NetlinkReply {
        /// What the request does.
        request: String,
        /// The namespace it was sent in.
        netns: String,
        /// What was wrong.
        reason: String,
    },
    /// Creating, entering or removing a named network namespace failed.
    #[error("{action} network namespace {name}: {source}")]
    Netns {
        /// What was being done ("unshare", "bind-mount", "enter", …).
        action: &'static str,
        /// The namespace (or the path involved).
        name: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A thread that changes namespace could not be started.
    #[error("start a thread to {purpose}: {source}")]
    Thread {
        /// What the thread was for ("enter network namespace flotilla-…").
        purpose: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing state failed.
    #[error(transparent)]
    Io(#[from] crate::PathError),
    /// Every address of the pod network is taken.
    #[error("no free address left in {cidr} for pod {pod_uid}; tear down unused pods or widen the pod CIDR")]
    PoolExhausted {
        /// The pod network.
        cidr: Ipv4Net,
        /// The pod that needed one.
        pod_uid: String,
    },
    /// A step of a pod's setup or teardown failed.
    #[error("{step} for pod {pod_uid}: {source}")]
    Pod {
        /// What was being done.
        step: &'static str,
        /// The pod.
        pod_uid: String,
        /// What went wrong.
        #[source]
        source: Box<NetworkError>,
    },
}

/// The kernel's explanation of a refused request, as the end of the message.
fn kernel_reason(message: &Option<String>) -> String {
    message.as_deref().map(|reason| format!(" ({reason})")).unwrap_or_default()
}
