//! Where a net runs and which implementation of its ops runs it: the CPU kernels
//! ([`super::kernels`], host slices, the fastest on a CPU) or candle tensor operations only
//! ([`super::tensorops`], what runs on CUDA and Metal; on the CPU as `cpu-generic`, so that
//! every test can exercise the exact code a GPU runs).

use candle_core::Device;

use crate::error::{Error, Result};

/// The implementation of the ops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// The CPU kernels: `im2col` + gemm, switches and LRN scales in host vectors.
    CpuKernels,
    /// Candle tensor operations only; the forward state is kept as tensors on the device.
    TensorOps,
}

/// A device and the backend that runs on it.
#[derive(Debug, Clone)]
pub struct Placement {
    pub device: Device,
    pub backend: Backend,
}

impl Placement {
    /// The CPU with its kernels (the default).
    pub fn cpu() -> Placement {
        Placement {
            device: Device::Cpu,
            backend: Backend::CpuKernels,
        }
    }

    /// The CPU running the tensor-op backend (what a GPU runs).
    pub fn cpu_generic() -> Placement {
        Placement {
            device: Device::Cpu,
            backend: Backend::TensorOps,
        }
    }

    /// The name `--device` takes for it: `cpu`, `cpu-generic`, `cuda:N`, `metal:N`.
    pub fn name(&self) -> String {
        match (&self.device, self.backend) {
            (Device::Cpu, Backend::CpuKernels) => "cpu".into(),
            (Device::Cpu, Backend::TensorOps) => "cpu-generic".into(),
            (d, _) => match d.location() {
                candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
                candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
                candle_core::DeviceLocation::Cpu => "cpu".into(),
            },
        }
    }
}

/// A device runs its native backend: the kernels on the CPU, tensor ops anywhere else.
impl From<&Device> for Placement {
    fn from(device: &Device) -> Placement {
        let backend = if device.is_cpu() {
            Backend::CpuKernels
        } else {
            Backend::TensorOps
        };
        Placement {
            device: device.clone(),
            backend,
        }
    }
}

impl From<Device> for Placement {
    fn from(device: Device) -> Placement {
        Placement::from(&device)
    }
}

impl From<&Placement> for Placement {
    fn from(p: &Placement) -> Placement {
        p.clone()
    }
}

/// Parses `--device`: `cpu`, `cpu-generic`, `cuda` or `cuda:N`.
pub fn parse_device(s: &str) -> Result<Placement> {
    match s {
        "cpu" => Ok(Placement::cpu()),
        "cpu-generic" => Ok(Placement::cpu_generic()),
        _ if s == "cuda" || s.starts_with("cuda:") => {
            let ordinal: usize = match s.strip_prefix("cuda:") {
                Some(n) => n.parse().map_err(|_| {
                    Error::Device(format!("`{s}`: expected cuda:N with N a GPU number"))
                })?,
                None => 0,
            };
            Ok(Placement::from(cuda_device(ordinal)?))
        }
        _ => Err(Error::Device(format!(
            "unknown device `{s}`; use cpu, cpu-generic, cuda or cuda:N"
        ))),
    }
}

#[cfg(feature = "cuda")]
fn cuda_device(ordinal: usize) -> Result<Device> {
    Device::new_cuda(ordinal).map_err(|e| Error::Device(format!("cuda:{ordinal}: {e}")))
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(ordinal: usize) -> Result<Device> {
    Err(Error::Device(format!(
        "cuda:{ordinal} asked for, but this treevis was built without CUDA; rebuild with `cargo build --release --features cuda`"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_round_trip() {
        for s in ["cpu", "cpu-generic"] {
            assert_eq!(parse_device(s).unwrap().name(), s);
        }
        assert_eq!(
            parse_device("cpu-generic").unwrap().backend,
            Backend::TensorOps
        );
        assert_eq!(Placement::from(&Device::Cpu).backend, Backend::CpuKernels);
        let e = parse_device("gpu").unwrap_err().to_string();
        assert!(e.contains("cpu-generic"), "{e}");
    }
}
