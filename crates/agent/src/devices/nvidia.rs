//! NVIDIA GPUs: the `/dev/nvidiaN` nodes (one `nvidia.com/gpu` each), the control nodes every
//! GPU container also needs, and what `nvidia-smi` says about the cards (names, UUIDs, memory)
//! for the node's labels.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The extended resource of NVIDIA GPUs.
pub const GPU_RESOURCE: &str = "nvidia.com/gpu";

/// Nodes added to every container granted a GPU, when they exist.
pub const CONTROL_NODES: &[&str] = &["nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset"];

/// The query the agent runs.
pub const NVIDIA_SMI_ARGS: &[&str] = &["--query-gpu=index,name,uuid,memory.total", "--format=csv,noheader,nounits"];

/// How long `nvidia-smi` may take; a wedged GPU can hang it.
const NVIDIA_SMI_TIMEOUT: Duration = Duration::from_secs(10);

/// Node label keys set from `nvidia-smi`.
pub const PRODUCT_LABEL: &str = "nvidia.com/gpu.product";
/// Number of GPUs on the node.
pub const COUNT_LABEL: &str = "nvidia.com/gpu.count";
/// Memory of one GPU, in MiB.
pub const MEMORY_LABEL: &str = "nvidia.com/gpu.memory";

/// One GPU as `nvidia-smi` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpuInfo {
    /// The driver's index (the N of `/dev/nvidiaN`).
    pub index: u32,
    /// Product name, e.g. `NVIDIA H100 80GB HBM3`.
    pub name: String,
    /// `GPU-…` UUID.
    pub uuid: String,
    /// Total memory in MiB, when reported.
    pub memory_mib: Option<u64>,
}

/// Why `nvidia-smi` output could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot parse line {line} of `nvidia-smi {}` output {text:?}: {reason}", NVIDIA_SMI_ARGS.join(" "))]
pub struct NvidiaSmiError {
    /// 1-based line number.
    pub line: usize,
    /// The line.
    pub text: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Parses the CSV `nvidia-smi` prints for [`NVIDIA_SMI_ARGS`]: `index, name, uuid, memory`
/// per line. Blank lines are skipped; memory `[N/A]` is `None`.
pub fn parse_nvidia_smi(output: &str) -> Result<Vec<GpuInfo>, NvidiaSmiError> {
    let mut gpus = Vec::new();
    for (i, line) in output.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let err = |reason| NvidiaSmiError { line: i + 1, text: line.to_string(), reason };
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let [index, name, uuid, memory] = fields[..] else { return Err(err("expected 4 comma-separated fields: index, name, uuid, memory.total")) };
        let index = index.parse().map_err(|_| err("the index is not a number"))?;
        if name.is_empty() {
            return Err(err("the name is empty"));
        }
        if !uuid.starts_with("GPU-") && !uuid.starts_with("MIG-") {
            return Err(err("the uuid does not start with GPU-"));
        }
        let memory_mib = match memory {
            "[N/A]" | "N/A" | "[Not Supported]" => None,
            m => Some(m.parse().map_err(|_| err("memory.total is not a number of MiB"))?),
        };
        gpus.push(GpuInfo { index, name: name.to_string(), uuid: uuid.to_string(), memory_mib });
    }
    Ok(gpus)
}

/// The node labels for these GPUs: product (of the first card), count and memory (MiB).
pub fn labels(gpus: &[GpuInfo]) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let Some(first) = gpus.iter().min_by_key(|g| g.index) else { return labels };
    labels.insert(PRODUCT_LABEL.to_string(), label_value(&first.name));
    labels.insert(COUNT_LABEL.to_string(), gpus.len().to_string());
    if let Some(memory) = first.memory_mib {
        labels.insert(MEMORY_LABEL.to_string(), memory.to_string());
    }
    labels
}

/// A product name as a label value: spaces and anything else a label may not hold become
/// `-`, at most 63 characters, starting and ending with a letter or digit.
fn label_value(name: &str) -> String {
    let mapped: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '-' }).collect();
    let trimmed: String = mapped.chars().take(63).collect();
    trimmed.trim_matches(|c: char| !c.is_ascii_alphanumeric()).to_string()
}

/// The GPU nodes under `dev_root` (`nvidiaN`, N its index), sorted by index.
pub fn gpu_nodes(dev_root: &Path) -> Vec<(u32, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dev_root) else { return Vec::new() };
    let mut nodes: Vec<(u32, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let digits = name.to_str()?.strip_prefix("nvidia")?;
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            Some((digits.parse().ok()?, e.path()))
        })
        .collect();
    nodes.sort();
    nodes
}

/// The control nodes under `dev_root` that exist.
pub fn control_nodes(dev_root: &Path) -> Vec<PathBuf> {
    CONTROL_NODES.iter().map(|n| dev_root.join(n)).filter(|p| p.exists()).collect()
}

/// `nvidia-smi` from PATH (or the usual places), if installed.
pub fn find_nvidia_smi() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).chain(["/usr/bin".into(), "/usr/local/bin".into(), "/usr/sbin".into()]).map(|d| d.join("nvidia-smi")).find(|p| p.is_file())
}

/// Runs `nvidia-smi` with [`NVIDIA_SMI_ARGS`] and parses what it prints; `None` (logged)
/// when it fails, hangs or prints something else.
pub fn query(nvidia_smi: &Path) -> Option<Vec<GpuInfo>> {
    let spawn = || Command::new(nvidia_smi).args(NVIDIA_SMI_ARGS).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn();
    let mut spawned = spawn();
    // A binary just installed may still be open for writing in a process forking at that
    // moment (ETXTBSY); that passes quickly.
    for _ in 0..5 {
        match &spawned {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                std::thread::sleep(Duration::from_millis(50));
                spawned = spawn();
            }
            _ => break,
        }
    }
    let child = match spawned {
        Ok(child) => child,
        Err(e) => {
            tracing::warn!(path = %nvidia_smi.display(), error = %e, "cannot run nvidia-smi; GPUs are advertised without labels");
            return None;
        }
    };
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = match rx.recv_timeout(NVIDIA_SMI_TIMEOUT) {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => {
            tracing::warn!(path = %nvidia_smi.display(), error = %e, "waiting for nvidia-smi; GPUs are advertised without labels");
            return None;
        }
        Err(_) => {
            // Not reaped yet (the thread is still waiting for it), so the pid is still its own.
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
            tracing::warn!(path = %nvidia_smi.display(), timeout = ?NVIDIA_SMI_TIMEOUT, "nvidia-smi did not answer; GPUs are advertised without labels");
            return None;
        }
    };
    let (status, stdout, stderr) = (output.status, String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    if !status.success() {
        tracing::warn!(%status, stdout = stdout.trim(), stderr = stderr.trim(), "nvidia-smi failed; GPUs are advertised without labels");
        return None;
    }
    match parse_nvidia_smi(&stdout) {
        Ok(gpus) => Some(gpus),
        Err(e) => {
            tracing::warn!(error = %e, "GPUs are advertised without labels");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `nvidia-smi --query-gpu=index,name,uuid,memory.total --format=csv,noheader,nounits`
    /// prints on a two-card node.
    const TWO_CARDS: &str = "0, NVIDIA H100 80GB HBM3, GPU-6a1b2c3d-1111-2222-3333-444455556666, 81559\n\
                             1, NVIDIA H100 80GB HBM3, GPU-7b2c3d4e-aaaa-bbbb-cccc-ddddeeeeffff, 81559\n";

    #[test]
    fn nvidia_smi_output_parses() {
        let gpus = parse_nvidia_smi(TWO_CARDS).expect("parses");
        assert_eq!(gpus.len(), 2);
        assert_eq!(
            gpus[0],
            GpuInfo { index: 0, name: "NVIDIA H100 80GB HBM3".into(), uuid: "GPU-6a1b2c3d-1111-2222-3333-444455556666".into(), memory_mib: Some(81559) }
        );
        assert_eq!(gpus[1].index, 1);
        let t4 = parse_nvidia_smi("\n0, Tesla T4, GPU-0f0e0d0c-0000-0000-0000-000000000000, [N/A]\n\n").expect("parses");
        assert_eq!((t4[0].name.as_str(), t4[0].memory_mib), ("Tesla T4", None));
        assert_eq!(parse_nvidia_smi("").expect("empty"), Vec::new());
    }

    #[test]
    fn bad_nvidia_smi_output_names_the_line() {
        let cases = [
            ("No devices were found", 1, "4 comma-separated"),
            ("0, Tesla T4, GPU-x, 15360\nx, Tesla T4, GPU-y, 15360", 2, "index"),
            ("0, , GPU-x, 15360", 1, "name"),
            ("0, Tesla T4, 1234, 15360", 1, "uuid"),
            ("0, Tesla T4, GPU-x, 15 GiB", 1, "memory"),
        ];
        for (output, line, reason) in cases {
            let err = parse_nvidia_smi(output).expect_err(output);
            assert_eq!(err.line, line, "{output}");
            assert!(err.reason.contains(reason), "{output}: {err}");
        }
    }

    #[test]
    fn labels_follow_gpu_feature_discovery() {
        let gpus = parse_nvidia_smi(TWO_CARDS).expect("parses");
        let labels = labels(&gpus);
        assert_eq!(labels[PRODUCT_LABEL], "NVIDIA-H100-80GB-HBM3");
        assert_eq!(labels[COUNT_LABEL], "2");
        assert_eq!(labels[MEMORY_LABEL], "81559");
        assert!(super::labels(&[]).is_empty());
        assert_eq!(label_value("GeForce RTX 4090 (rev 2)"), "GeForce-RTX-4090--rev-2");
        assert_eq!(label_value(&"A".repeat(80)).len(), 63);
    }

    #[test]
    fn gpu_nodes_are_the_numbered_ones() {
        let dev = tempfile::tempdir().expect("tempdir");
        for name in ["nvidia0", "nvidia10", "nvidia2", "nvidiactl", "nvidia-uvm", "nvidia-modeset", "nvidia", "nvidia1a"] {
            std::fs::write(dev.path().join(name), "").expect("file");
        }
        let nodes: Vec<u32> = gpu_nodes(dev.path()).into_iter().map(|(i, _)| i).collect();
        assert_eq!(nodes, [0, 2, 10]);
        assert_eq!(control_nodes(dev.path()), [dev.path().join("nvidiactl"), dev.path().join("nvidia-uvm"), dev.path().join("nvidia-modeset")]);
        assert!(gpu_nodes(Path::new("/nonexistent")).is_empty());
    }

    #[test]
    fn a_real_nvidia_smi_process_is_queried() {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = dir.path().join("nvidia-smi");
        std::fs::write(&script, format!("#!/bin/sh\n[ \"$1 $2\" = \"{}\" ] || exit 9\nprintf '%s' '{TWO_CARDS}'\n", NVIDIA_SMI_ARGS.join(" ")))
            .expect("script");
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
        assert_eq!(query(&script).expect("answers").len(), 2);
        std::fs::write(&script, "#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n").expect("script");
        assert_eq!(query(&script), None, "a failing nvidia-smi gives no labels");
        assert_eq!(query(&dir.path().join("missing")), None);
    }
}
