//! Which device cells run on: `device.backend` = auto | cuda | cpu.

use anyhow::Result;
use candle_core::Device;
use serde::{Deserialize, Serialize};

use crate::config::{Backend, DeviceSection};
use crate::error::ConfigError;

/// What the cells ran on, as recorded in the manifest and in every cell record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// "cpu" or "cuda".
    pub backend: String,
    /// CUDA ordinal, for GPUs.
    pub ordinal: Option<usize>,
    pub name: String,
    /// Threads candle's CPU kernels use (all cores unless RAYON_NUM_THREADS says otherwise).
    pub cpu_threads: usize,
}

pub struct SelectedDevice {
    pub device: Device,
    pub info: DeviceInfo,
    /// Said to the user and kept in the manifest, e.g. why the run fell back to the CPU.
    pub notice: Option<String>,
}

pub fn select(section: &DeviceSection) -> Result<SelectedDevice> {
    match section.backend {
        Backend::Cpu => Ok(cpu(None)),
        Backend::Cuda => cuda(section.gpu).map_err(|e| {
            ConfigError::new(format!(
                "device.backend = \"cuda\" but no usable GPU {}: {e}. Check `nvidia-smi`, build with scripts/build-cuda.sh, or set device.backend = \"auto\" or \"cpu\"",
                section.gpu
            ))
            .into()
        }),
        Backend::Auto => match cuda(section.gpu) {
            Ok(selected) => Ok(selected),
            Err(why) => Ok(cpu(Some(format!(
                "no GPU: running on the CPU ({why}); energy is not measured on the CPU, only latency"
            )))),
        },
    }
}

fn cpu(notice: Option<String>) -> SelectedDevice {
    SelectedDevice {
        device: Device::Cpu,
        info: DeviceInfo {
            backend: "cpu".into(),
            ordinal: None,
            name: cpu_model_name(),
            cpu_threads: rayon::current_num_threads(),
        },
        notice,
    }
}

#[cfg(feature = "cuda")]
fn cuda(ordinal: usize) -> std::result::Result<SelectedDevice, String> {
    let device = Device::new_cuda(ordinal).map_err(|e| e.to_string())?;
    Ok(SelectedDevice {
        device,
        info: DeviceInfo {
            backend: "cuda".into(),
            ordinal: Some(ordinal),
            name: format!("cuda:{ordinal}"),
            cpu_threads: rayon::current_num_threads(),
        },
        notice: None,
    })
}

#[cfg(not(feature = "cuda"))]
fn cuda(_ordinal: usize) -> std::result::Result<SelectedDevice, String> {
    Err("this runner was built without CUDA support".into())
}

/// The CPU's model name from /proc/cpuinfo, or the architecture where that file does not exist.
pub fn cpu_model_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, name)| name.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}
