//! Errors of the device layer: bad configuration, the allocation file, device nodes, and why a
//! pod could not be admitted.

use std::path::PathBuf;

/// Something wrong with device configuration, files or nodes.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// A `--device-class` value is unusable.
    #[error("invalid --device-class {value:?}: {reason}")]
    InvalidClass {
        /// The flag value.
        value: String,
        /// Why it is refused.
        reason: String,
    },
    /// Reading or writing a file failed.
    #[error(transparent)]
    Io(#[from] crate::PathError),
    /// The allocation file exists but cannot be understood.
    #[error(
        "device allocations in {path} are unreadable ({reason}); containers may hold devices it no longer records, so the agent will not guess: \
         fix the file, or move it away to start with no devices allocated"
    )]
    CorruptAllocations {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A device node is not there (any more).
    #[error("device {path} is gone from the node: {source}")]
    Gone {
        /// The host path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A path matched as a device is not a device node.
    #[error("{path} is not a character or block device")]
    NotADevice {
        /// The host path.
        path: PathBuf,
    },
}

/// Why a pod could not be admitted to the node's devices. The message is what the pod's
/// status says, next to the reason [`ADMISSION_FAILED_REASON`](super::ADMISSION_FAILED_REASON).
#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    /// Fewer free devices than the pod asks for.
    #[error(
        "Allocate failed due to requested number of devices unavailable for {resource}. Requested: {requested}, Available: {available}, which is unexpected"
    )]
    Insufficient {
        /// The extended resource.
        resource: String,
        /// What the pod asks for in all.
        requested: u64,
        /// Free devices of the resource on the node.
        available: u64,
    },
    /// A device quantity that is not a whole, non-negative number.
    #[error("container {container:?}: {resource} = {quantity:?} is not a whole number of devices")]
    InvalidQuantity {
        /// The container.
        container: String,
        /// The extended resource.
        resource: String,
        /// The quantity as given.
        quantity: String,
    },
    /// Requests and limits of a device resource differ.
    #[error("container {container:?}: requests ({request}) and limits ({limit}) of {resource} must be equal; devices cannot be overcommitted")]
    Overcommitted {
        /// The container.
        container: String,
        /// The extended resource.
        resource: String,
        /// The request.
        request: u64,
        /// The limit.
        limit: u64,
    },
    /// The allocation could not be recorded; nothing was allocated.
    #[error("recording the device allocation: {0}")]
    Persist(#[source] DeviceError),
}

impl AdmissionError {
    /// True when trying again later may succeed without the pod changing (a disk error);
    /// otherwise the pod fails.
    pub fn is_transient(&self) -> bool {
        matches!(self, AdmissionError::Persist(_))
    }
}
