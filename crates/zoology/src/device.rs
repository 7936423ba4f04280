//! The one place that picks the device and the dtype. Everything else asks [`Runtime`].
//!
//! Layer 1 of 11, **foundations** (docs/ARCHITECTURE.md): it uses only modules of its own layer or
//! below; `layering_tests.rs` checks it.

use crate::error::{config_err, Result};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind};

/// Where a run computes: `"cpu"` (default), `"cuda"` (GPU 0) or `"cuda:N"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DeviceSpec(pub String);

impl Default for DeviceSpec {
    fn default() -> Self {
        DeviceSpec("cpu".into())
    }
}

impl DeviceSpec {
    /// Parses and checks availability. `field` names the config key or flag for errors.
    pub fn resolve(&self, field: &str) -> Result<Device> {
        let s = self.0.trim();
        let dev = match s {
            "cpu" => Device::Cpu,
            "cuda" => Device::Cuda(0),
            _ => match s.strip_prefix("cuda:").and_then(|i| i.parse::<usize>().ok()) {
                Some(i) => Device::Cuda(i),
                None => {
                    return Err(config_err(field, format!("unknown device {s:?}; use \"cpu\", \"cuda\" or \"cuda:N\"")))
                }
            },
        };
        if let Device::Cuda(i) = dev {
            if !tch::Cuda::is_available() {
                return Err(config_err(
                    field,
                    "CUDA was requested but libtorch sees no GPU (tch::Cuda::is_available() is false); \
                     use device = \"cpu\", or check the driver and that libtorch_cuda is linked",
                ));
            }
            let n = tch::Cuda::device_count() as usize;
            if i >= n {
                return Err(config_err(field, format!("cuda:{i} requested but only {n} GPU(s) present")));
            }
        }
        Ok(dev)
    }
}

/// Device and floating-point kind used by a model and its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Runtime {
    pub device: Device,
    pub kind: Kind,
}

impl Runtime {
    pub fn cpu() -> Self {
        Runtime { device: Device::Cpu, kind: Kind::Float }
    }
    pub fn new(device: Device) -> Self {
        Runtime { device, kind: Kind::Float }
    }
    /// (kind, device) pair for tch tensor constructors.
    pub fn opts(&self) -> (Kind, Device) {
        (self.kind, self.device)
    }
    pub fn name(&self) -> String {
        match self.device {
            Device::Cpu => "cpu".into(),
            Device::Cuda(i) => format!("cuda:{i}"),
            d => format!("{d:?}"),
        }
    }
}

/// Sets the number of intra-op CPU threads libtorch uses (0 = libtorch's default).
pub fn set_threads(n: usize) {
    if n > 0 {
        tch::set_num_threads(n as i32);
    }
}
