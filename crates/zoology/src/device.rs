//! The one place that picks the device and the dtype. Everything else asks [`Runtime`].
//!
//! Layer 1 of 11, **foundations** (docs/ARCHITECTURE.md): it uses only modules of its own layer or
//! below; `layering_tests.rs` checks it.

use crate::error::{config_err, Result};
use serde::{Deserialize, Serialize};
#[cfg(test)]
use tch::Tensor;
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

/// The machine a run trained on, for its summary: the CPU model (from /proc/cpuinfo), the
/// logical CPUs and libtorch's intra-op threads, e.g. "AMD EPYC, 2 CPUs, 1 libtorch thread".
/// Results at a fixed seed differ slightly between CPU models (their kernels round
/// differently), so a grid's runs say where they ran.
pub fn machine() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let threads = tch::get_num_threads();
    format!("{model}, {cpus} CPUs, {threads} libtorch thread{}", if threads == 1 { "" } else { "s" })
}

/// Sets the number of intra-op CPU threads libtorch uses (0 = libtorch's default).
pub fn set_threads(n: usize) {
    if n > 0 {
        tch::set_num_threads(n as i32);
    }
}

/// Numeric precision of a run's forward pass. `Fp32` everywhere, or `Bf16`: libtorch's
/// autocast for the run's device type (CPU or CUDA) runs matmuls, linear layers, convolutions
/// and batched matmuls in bfloat16 while parameters, optimiser state, gradients, the loss and
/// the ops on autocast's fp32 list (reductions, norms, softmax, FFTs, …) stay fp32; a mixer's
/// delicate parts can also opt out explicitly ([`Precision::fp32_region`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    #[default]
    Fp32,
    Bf16,
}

mod autocast_ffi {
    // libtorch's C++ API (at::autocast), as exported by libtorch_cpu for the pinned torch 2.11.0:
    // `void set_autocast_enabled(c10::DeviceType, bool)`, `bool is_autocast_enabled(DeviceType)`,
    // `void set_autocast_dtype(DeviceType, c10::ScalarType)`; both enums are `int8_t`. tch
    // exposes only CUDA's legacy switch. The test `bf16_autocast_runs_matmuls_in_bf16` fails if
    // these declarations ever stop matching the library.
    extern "C" {
        #[link_name = "_ZN2at8autocast20set_autocast_enabledEN3c1010DeviceTypeEb"]
        pub fn set_autocast_enabled(device_type: i8, enabled: bool);
        #[link_name = "_ZN2at8autocast19is_autocast_enabledEN3c1010DeviceTypeE"]
        pub fn is_autocast_enabled(device_type: i8) -> bool;
        #[link_name = "_ZN2at8autocast18set_autocast_dtypeEN3c1010DeviceTypeENS1_10ScalarTypeE"]
        pub fn set_autocast_dtype(device_type: i8, dtype: i8);
    }
    pub const CPU: i8 = 0;
    pub const CUDA: i8 = 1;
    pub const BFLOAT16: i8 = 15;
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
        }
    }

    /// Runs `f` (a forward pass) in this precision on `device`: for `Bf16`, inside an autocast
    /// region of the device's type (nested regions are fine; the weight-cast cache is cleared
    /// when the outermost one ends, as `torch.autocast` does). Call `backward` outside.
    pub fn autocast<T>(self, device: Device, f: impl FnOnce() -> T) -> T {
        if self == Precision::Fp32 {
            return f();
        }
        let ty = if device.is_cuda() { autocast_ffi::CUDA } else { autocast_ffi::CPU };
        let _region = AutocastRegion::enter(ty, true);
        f()
    }

    /// Runs `f` with autocast switched off for `x`'s device type (a mixer's numerically
    /// delicate part: scans, FFT convolutions, decays, normalisers) and returns its result in
    /// fp32; the inputs it reads should be cast to fp32 by `f` (`to_kind(Kind::Float)`).
    pub fn fp32_region<T>(device: Device, f: impl FnOnce() -> T) -> T {
        let ty = if device.is_cuda() { autocast_ffi::CUDA } else { autocast_ffi::CPU };
        // SAFETY: a plain query of libtorch's thread-local autocast state.
        if !unsafe { autocast_ffi::is_autocast_enabled(ty) } {
            return f();
        }
        let _region = AutocastRegion::enter(ty, false);
        f()
    }

    /// True while a bf16 autocast region is active for `device`'s type on this thread.
    pub fn autocast_active(device: Device) -> bool {
        let ty = if device.is_cuda() { autocast_ffi::CUDA } else { autocast_ffi::CPU };
        // SAFETY: a plain query of libtorch's thread-local autocast state.
        unsafe { autocast_ffi::is_autocast_enabled(ty) }
    }
}

/// `t` as fp32 when it is a half-precision tensor (as autocast's matmuls return), else `t`
/// itself (fp32 and the f64 of the tests pass through unchanged).
pub fn full_precision(t: &tch::Tensor) -> tch::Tensor {
    match t.kind() {
        Kind::BFloat16 | Kind::Half => t.to_kind(Kind::Float),
        _ => t.shallow_clone(),
    }
}

/// An autocast region: sets the device type's autocast switch (and bf16 as its dtype) and
/// restores the previous state when dropped, even on a panic.
struct AutocastRegion {
    ty: i8,
    was: bool,
}

impl AutocastRegion {
    fn enter(ty: i8, enabled: bool) -> Self {
        // SAFETY: libtorch's thread-local autocast state; the calls take plain integers.
        let was = unsafe { autocast_ffi::is_autocast_enabled(ty) };
        unsafe {
            autocast_ffi::set_autocast_dtype(ty, autocast_ffi::BFLOAT16);
            autocast_ffi::set_autocast_enabled(ty, enabled);
            torch_sys::at_autocast_increment_nesting();
        }
        AutocastRegion { ty, was }
    }
}

impl Drop for AutocastRegion {
    fn drop(&mut self) {
        // SAFETY: as in `enter`.
        unsafe {
            if torch_sys::at_autocast_decrement_nesting() == 0 {
                torch_sys::at_autocast_clear_cache();
            }
            autocast_ffi::set_autocast_enabled(self.ty, self.was);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_autocast_runs_matmuls_in_bf16() {
        let a = Tensor::randn([8, 8], (Kind::Float, Device::Cpu));
        assert_eq!(Precision::Fp32.autocast(Device::Cpu, || a.matmul(&a)).kind(), Kind::Float);
        let y = Precision::Bf16.autocast(Device::Cpu, || {
            assert!(Precision::autocast_active(Device::Cpu));
            // inside an fp32 region the same matmul stays fp32
            let inner = Precision::fp32_region(Device::Cpu, || a.matmul(&a));
            assert_eq!(inner.kind(), Kind::Float);
            assert!(Precision::autocast_active(Device::Cpu), "the fp32 region restores autocast");
            a.matmul(&a)
        });
        assert_eq!(y.kind(), Kind::BFloat16, "autocast did not run the matmul in bf16");
        assert!(!Precision::autocast_active(Device::Cpu), "the region did not end");
        // values: bf16 has an 8-bit mantissa
        let exact = a.matmul(&a);
        let err = (y.to_kind(Kind::Float) - &exact).abs().max().double_value(&[]);
        assert!(err < 0.1 * exact.abs().max().double_value(&[]), "bf16 matmul far from fp32: {err}");
        // a panic inside a region still ends it
        let r = std::panic::catch_unwind(|| Precision::Bf16.autocast(Device::Cpu, || panic!("inside")));
        assert!(r.is_err());
        assert!(!Precision::autocast_active(Device::Cpu));
    }
}
