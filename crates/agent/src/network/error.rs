//! Errors of pod networking, each naming the command, path or pod involved.

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
