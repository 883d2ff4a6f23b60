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
    /// GPU UUID in NVML's form (`GPU-...`), which ties the CUDA device to its energy counter.
    pub uuid: Option<String>,
    /// Threads candle's CPU kernels use (all cores unless RAYON_NUM_THREADS says otherwise).
    pub cpu_threads: usize,
    /// The cuBLAS(Lt) library the GEMMs ran on (CUDA only), e.g. `13.1.0`: the version loaded
    /// at run time, which is what computed, whatever the build was compiled against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cublas_version: Option<String>,
}

/// cuBLASLt's version number (major * 10000 + minor * 100 + patch) as `major.minor.patch`.
pub fn cublas_version_text(v: usize) -> String {
    format!("{}.{}.{}", v / 10_000, (v / 100) % 100, v % 100)
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
                "no GPU: running on the CPU ({why})"
            )))),
        },
    }
}

/// Whether `device.backend = "auto"` will run on GPU `ordinal`: a CUDA build whose GPU opens
/// (the device is opened and dropped: the run opens it again).
pub fn cuda_usable(ordinal: usize) -> bool {
    cfg!(feature = "cuda") && cuda(ordinal).is_ok()
}

/// Memory a model could still take on `device`, in bytes, and what that figure is ("the GPU has
/// ... free", "... of RAM available"); `None` where the system does not say.
pub fn free_memory(device: &Device) -> Option<(u64, &'static str)> {
    #[cfg(feature = "cuda")]
    if let Device::Cuda(cuda) = device {
        let (free, _total) = cuda.cuda_stream().context().mem_get_info().ok()?;
        return Some((free as u64, "free on the GPU"));
    }
    let _ = device;
    // MemAvailable: what the kernel can give without swapping.
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some((kb * 1024, "of RAM available"))
}

fn cpu(notice: Option<String>) -> SelectedDevice {
    SelectedDevice {
        device: Device::Cpu,
        info: DeviceInfo {
            backend: "cpu".into(),
            ordinal: None,
            name: cpu_model_name(),
            uuid: None,
            cpu_threads: rayon::current_num_threads(),
            cublas_version: None,
        },
        notice,
    }
}

#[cfg(feature = "cuda")]
fn cuda(ordinal: usize) -> std::result::Result<SelectedDevice, String> {
    let device = open_cuda(ordinal)?;
    let context = device
        .as_cuda_device()
        .map_err(|e| e.to_string())?
        .cuda_stream()
        .context()
        .clone();
    let name = context.name().map_err(|e| e.to_string())?;
    let uuid = context.uuid().map_err(|e| e.to_string())?;
    let bytes: Vec<u8> = uuid.bytes.iter().map(|&b| b as u8).collect();
    Ok(SelectedDevice {
        device,
        info: DeviceInfo {
            backend: "cuda".into(),
            ordinal: Some(ordinal),
            name,
            uuid: Some(nvml_uuid(&bytes)),
            cpu_threads: rayon::current_num_threads(),
            // SAFETY: a plain query of the loaded library, no handle or state involved.
            cublas_version: Some(cublas_version_text(unsafe {
                candle_core::cuda_backend::cudarc::cublaslt::sys::cublasLtGetVersion()
            })),
        },
        notice: None,
    })
}

/// The CUDA device as every cell (and the GPU examples) use it: see [`keep_pool_memory`].
#[cfg(feature = "cuda")]
pub fn open_cuda(ordinal: usize) -> std::result::Result<Device, String> {
    let device = Device::new_cuda(ordinal).map_err(|e| e.to_string())?;
    let context = device
        .as_cuda_device()
        .map_err(|e| e.to_string())?
        .cuda_stream()
        .context()
        .clone();
    keep_pool_memory(&context).map_err(|e| format!("setting up the CUDA memory pool: {e}"))?;
    // SAFETY: candle runs every operation of a device on its one stream and the runner adds no
    // other, so cudarc's per-tensor events (a record and a wait per kernel argument, to order work
    // across streams) order nothing here: they cost host time per launch, and a wait on an event
    // recorded before a CUDA graph capture is not allowed inside it.
    unsafe {
        device
            .as_cuda_device()
            .map_err(|e| e.to_string())?
            .disable_event_tracking()
    };
    Ok(device)
}

/// candle allocates every tensor with cuMemAllocAsync from the device's default pool, whose
/// release threshold is 0: at every synchronize (the runner synchronizes after each batch to time
/// it) the pool hands its free memory back to the driver, and the next batch maps it again.
/// Raising the threshold keeps freed memory for reuse, as PyTorch's caching allocator does; memory
/// still returns to the driver when the process ends.
#[cfg(feature = "cuda")]
fn keep_pool_memory(
    context: &candle_core::cuda_backend::cudarc::driver::CudaContext,
) -> std::result::Result<(), candle_core::cuda_backend::cudarc::driver::DriverError> {
    use candle_core::cuda_backend::cudarc::driver::sys;
    let mut pool: sys::CUmemoryPool = std::ptr::null_mut();
    let mut threshold = u64::MAX;
    // SAFETY: `pool` is written by the driver for a valid device; the attribute takes a u64.
    unsafe {
        sys::cuDeviceGetDefaultMemPool(&mut pool, context.cu_device()).result()?;
        sys::cuMemPoolSetAttribute(
            pool,
            sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
            (&mut threshold as *mut u64).cast(),
        )
        .result()
    }
}

#[cfg(not(feature = "cuda"))]
pub fn open_cuda(_ordinal: usize) -> std::result::Result<Device, String> {
    Err("this runner was built without CUDA support".into())
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

/// CUDA's 16 UUID bytes in NVML's text form: `GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
pub fn nvml_uuid(bytes: &[u8]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "GPU-{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn cuda_uuid_bytes_print_in_nvml_form() {
        let bytes: Vec<u8> = (0u8..16).collect();
        assert_eq!(
            super::nvml_uuid(&bytes),
            "GPU-00010203-0405-0607-0809-0a0b0c0d0e0f"
        );
    }
}
