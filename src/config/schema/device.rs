//! `[device]` and `[sensor]`: the backend, GPUs or CPU workers, the GEMM library, and the
//! energy sensor.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// CUDA when compiled in and a GPU is present, else the CPU (with a notice).
    #[default]
    Auto,
    Cuda,
    Cpu,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DeviceSection {
    pub backend: Backend,
    /// CUDA ordinal of the GPU to use.
    pub gpu: usize,
    /// Several GPUs of this host, one worker process each, every worker taking the next
    /// unmeasured cell of the plan: `[0, 1, 3]` or `"all"`. Each cell still runs alone on its GPU,
    /// metered by that GPU's own counter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpus: Option<GpuSet>,
    /// Worker processes on the CPU (device.backend = "cpu" only): stand-ins for GPUs that let the
    /// multi-worker path run without GPUs. They share the CPU, so their latencies are not
    /// independent measurements.
    #[serde(skip_serializing_if = "is_one")]
    pub cpu_workers: usize,
    /// On CUDA, capture each cell's whole forward pass once as a CUDA graph and replay it per
    /// loop, as a deployment would (`torch.compile(mode="reduce-overhead")` does the same); false
    /// runs it kernel by kernel, for comparison. Every record says which ran
    /// (`implementation.execution`). No effect on the CPU. Left out of the resolved config when
    /// true, so files written before the key existed resolve as they did.
    #[serde(skip_serializing_if = "is_true")]
    pub cuda_graphs: bool,
    /// W8A8 precisions on tensor cores: quantize the FFN's second GEMM's input inside the kernel
    /// that computes the first one's GELU, so that activation is never stored in the float dtype;
    /// false gives that GEMM a quantization pass of its own, for comparison. Every record says
    /// which ran (`implementation.activation_quantization`). Left out of the resolved config when
    /// true.
    #[serde(skip_serializing_if = "is_true")]
    pub fuse_quantization: bool,
    /// FP8 precisions on tensor cores: let cuBLASLt accumulate the E4M3 products in the tensor
    /// cores' own precision instead of promoting partial sums to f32 along K (faster on Hopper,
    /// less exact; the fidelity section measures what it costs). Off by default. The record says
    /// which ran (`implementation.linear`). No effect on int8, floats or the CPU reference.
    #[serde(skip_serializing_if = "is_false")]
    pub fp8_fast_accumulation: bool,
    /// On CUDA, the library of the GEMMs that fuse more than a bias: `"cublaslt"` (default: the
    /// 8-bit GEMMs write int32 or take their scales in cuBLASLt's epilogue, GELU and the int8
    /// dequantization run as kernels of their own) or `"cutlass"` (the runner's CUTLASS GEMMs for
    /// Hopper: per-token x per-channel scales, bias and erf GELU in the epilogue, for int8-*,
    /// fp8-* and the fp16/bf16 FFN-in; their FP8 GEMMs promote along K, or with
    /// `fp8_fast_accumulation` keep the tensor cores' accumulator (f16 output only: fp8-bf16
    /// with it stays cuBLASLt's, and says so)). A GPU cell with a binary built
    /// without them fails before measuring. Every record says which GEMM and epilogue ran per
    /// linear and why a layer kept cuBLASLt (`implementation.gemms`). Left out of the resolved
    /// config when cuBLASLt.
    #[serde(skip_serializing_if = "GemmLibrary::is_cublaslt")]
    pub gemm_library: GemmLibrary,
    /// On CUDA, an encoder's embeddings (token gather, position and token-type add, layer norm)
    /// as one runner kernel instead of candle's gather, broadcast add and norm; false (default)
    /// keeps candle's until a GPU has checked the kernel (examples/cutlass_check). The CPU backend
    /// refuses true (it has only candle's). Every record says which ran
    /// (`implementation.embeddings`). Left out of the resolved config when false.
    #[serde(skip_serializing_if = "is_false")]
    pub fused_embeddings: bool,
    /// W8A8 encoders: how FFN-out's input (FFN-in's GELU output) is quantized. `"dynamic"`
    /// (default): per token, with a scale from the row's largest |value| found at run time (on
    /// CUDA a row pass reads the GELU output once: no CTA of FFN-in's GEMM holds a whole row).
    /// `"static"`: one step per input channel, calibrated at load through the fp32 model on the
    /// dataset's first sentences and folded into FFN-out's weights, so FFN-in's CUTLASS epilogue
    /// writes the 8-bit codes itself (no row pass; needs `gemm_library = "cutlass"` on CUDA, and
    /// E4M3 an f16 model). Every record says which ran, how it was calibrated and how many
    /// held-out values saturate (`implementation.ffn_activation_scales`). No effect on other
    /// precisions. Left out of the resolved config when dynamic.
    #[serde(skip_serializing_if = "FfnActivationScales::is_dynamic")]
    pub ffn_activation_scales: FfnActivationScales,
}

/// `device.ffn_activation_scales`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FfnActivationScales {
    #[default]
    Dynamic,
    Static,
}

impl FfnActivationScales {
    pub fn is_dynamic(&self) -> bool {
        *self == Self::Dynamic
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Dynamic => "dynamic",
            Self::Static => "static",
        }
    }
}

/// `device.gemm_library`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GemmLibrary {
    #[default]
    Cublaslt,
    Cutlass,
}

impl GemmLibrary {
    pub fn is_cublaslt(&self) -> bool {
        *self == Self::Cublaslt
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Cublaslt => "cublaslt",
            Self::Cutlass => "cutlass",
        }
    }
}

impl Default for DeviceSection {
    fn default() -> Self {
        Self {
            backend: Backend::default(),
            gpu: 0,
            gpus: None,
            cpu_workers: 1,
            cuda_graphs: true,
            fuse_quantization: true,
            fp8_fast_accumulation: false,
            gemm_library: GemmLibrary::Cublaslt,
            fused_embeddings: false,
            ffn_activation_scales: FfnActivationScales::Dynamic,
        }
    }
}

fn is_one(n: &usize) -> bool {
    *n == 1
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_true(b: &bool) -> bool {
    *b
}

/// `device.gpus`: a list of CUDA ordinals, or every GPU of the host.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(untagged)]
pub enum GpuSet {
    List(Vec<usize>),
    /// Only "all" is valid (checked in validation, so the message can name the key).
    Named(String),
}

impl<'de> Deserialize<'de> for GpuSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct GpuSetVisitor;
        impl<'de> serde::de::Visitor<'de> for GpuSetVisitor {
            type Value = GpuSet;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of CUDA ordinals such as [0, 1], or \"all\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<GpuSet, E> {
                Ok(GpuSet::Named(v.to_string()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<GpuSet, A::Error> {
                let mut list = Vec::new();
                while let Some(k) = seq.next_element::<usize>()? {
                    list.push(k);
                }
                Ok(GpuSet::List(list))
            }
        }
        d.deserialize_any(GpuSetVisitor)
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum SensorKind {
    /// Every sensor this machine has: NVML when the cells run on a GPU and NVML answers, RAPL
    /// (CPU packages and DRAM) when the powercap counters are there and readable. Whatever is
    /// missing is said in one line, and every report says what the energy covers.
    #[default]
    Auto,
    /// NVML only; a configuration error where it cannot work.
    Nvml,
    /// RAPL only (CPU packages and DRAM); a configuration error where it is absent or unreadable.
    Rapl,
    /// NVML and RAPL both, each required.
    #[serde(rename = "nvml+rapl")]
    NvmlRapl,
    None,
}

impl SensorKind {
    /// As the experiment file spells it.
    pub fn name(self) -> &'static str {
        match self {
            SensorKind::Auto => "auto",
            SensorKind::Nvml => "nvml",
            SensorKind::Rapl => "rapl",
            SensorKind::NvmlRapl => "nvml+rapl",
            SensorKind::None => "none",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SensorSection {
    pub kind: SensorKind,
    /// Period of the background power sampler.
    pub sample_interval_ms: u64,
    /// Where the kernel's powercap tree is (RAPL's counters): an absolute path. Tests point it
    /// at a tree they write. Left out of what is written when it is the kernel's, so records and
    /// reports of runs made before it existed read the same.
    #[serde(skip_serializing_if = "is_default_powercap_root")]
    pub powercap_root: PathBuf,
}

fn is_default_powercap_root(p: &Path) -> bool {
    p == Path::new(DEFAULT_POWERCAP_ROOT)
}

impl Default for SensorSection {
    fn default() -> Self {
        Self {
            kind: SensorKind::Auto,
            sample_interval_ms: 20,
            powercap_root: PathBuf::from(DEFAULT_POWERCAP_ROOT),
        }
    }
}

/// Where Linux exposes powercap (RAPL).
pub const DEFAULT_POWERCAP_ROOT: &str = "/sys/class/powercap";
