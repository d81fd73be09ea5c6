//! The device plug-in layer: discovers the node's devices (NVIDIA GPUs, configured classes of
//! device nodes), advertises them as extended resources on the Node, allocates them to pods at
//! admission, and gives each container exactly the device nodes it was granted.

mod advertise;
mod allocator;
mod class;
mod discovery;
mod error;
mod glob;
mod manager;
mod nvidia;
mod requests;

pub use advertise::{is_device_label, publish, run, NodeDevices};
pub use allocator::{Allocations, PodAllocation};
pub use class::DeviceClass;
pub use discovery::{container_path, device_node, Device, Discoverer, DiscoveryConfig, Inventory};
pub use error::{AdmissionError, DeviceError};
pub use manager::{ContainerDevices, DeviceManager, ALLOCATIONS_FILE, NVIDIA_VISIBLE_DEVICES};
pub use nvidia::{parse_nvidia_smi, GpuInfo, NvidiaSmiError, COUNT_LABEL, GPU_RESOURCE, MEMORY_LABEL, PRODUCT_LABEL};
pub use requests::{is_device_resource, PodRequest};

/// The prefix of the extended resources of configured classes: `flotilla.dev/<class>`.
pub const CLASS_RESOURCE_PREFIX: &str = "flotilla.dev/";

/// The pod status reason of a pod the node's devices cannot take, as the kubelet reports it.
pub const ADMISSION_FAILED_REASON: &str = "UnexpectedAdmissionError";
