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
    /// On CUDA, the library of the GEMMs that fuse more than a bias: `"cublaslt"` (the
    /// 8-bit GEMMs write int32 or take their scales in cuBLASLt's epilogue, GELU and the int8
    /// dequantization run as kernels of their own) or `"cutlass"` (the runner's CUTLASS GEMMs for
    /// Hopper: per-token x per-channel scales, bias and erf GELU in the epilogue, for int8-*,
    /// fp8-* and the fp16/bf16 FFN-in; their FP8 GEMMs promote along K, or with
    /// `fp8_fast_accumulation` keep the tensor cores' accumulator (f16 output only: fp8-bf16
    /// with it stays cuBLASLt's, and says so)). A GPU cell with a binary built
    /// without them fails before measuring. Every record says which GEMM and epilogue ran per
    /// linear and why a layer kept cuBLASLt (`implementation.gemms`). Left out of a file, it is
    /// `"cutlass"` for experiments with an encoder in a binary with the CUTLASS GEMMs whose
    /// backend is not "cpu", `"cublaslt"` elsewhere (the loader resolves it:
    /// [`DeviceSection::resolve_kernel_defaults`]). Decoders run cuBLASLt either way. Left out
    /// of the resolved config when cuBLASLt (every manifest written before CUTLASS became the
    /// default where it runs: what ran then).
    #[serde(skip_serializing_if = "GemmLibrary::is_cublaslt")]
    pub gemm_library: GemmLibrary,
    /// On CUDA, an encoder's embeddings (token gather, position and token-type add, layer norm)
    /// as one runner kernel instead of candle's gather, broadcast add and norm (checked against
    /// them on an H100: docs/results/2026-12-06-nvidia-h100-cutlass-embeddings/). Left out of a
    /// file, it is on for experiments with an encoder in a CUDA build whose backend is not
    /// "cpu" (the loader resolves it: [`DeviceSection::resolve_fused_embeddings`]), off
    /// elsewhere; the CPU backend, a build without CUDA and a decoder refuse an explicit true.
    /// A cell on the CPU with it on (a CUDA build without a GPU) runs candle's ops, which the
    /// kernel's plain twin is bit for bit, and says so. Every record says which ran
    /// (`implementation.embeddings`). In the resolved config only when on; a config without it
    /// (every manifest written before it became the default) means off, what ran then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fused_embeddings: Option<bool>,
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
    /// The erf GELU in the CUTLASS FFN-in epilogues (`gemm_library = "cutlass"`): `"standard"`
    /// (default: a rational erf, 22 instructions a value) or `"lean"` (the same rational with its
    /// constants folded and one reciprocal: 17; |GELU error| <= 3e-7 |x| (2.5e-7 measured), against 1.9e-7;
    /// and where FFN-in writes int8 codes (`ffn_activation_scales = "static"`) a tanh form fitted
    /// to erf GELU: 6, within 0.05 of a code's step; src/ops/kernels/cutlass/gelu_lean.cuh). The
    /// epilogue runs 25 M GELUs an FFN at batch 64 x 128, and its instructions, not its bytes,
    /// are its time. Kinds without a lean kernel (bf16 outputs, FP8 fast accumulation, E4M3
    /// codes) keep the standard one. Every record says which ran, per linear
    /// (`implementation.gemms`). Left out of the resolved config when standard.
    #[serde(skip_serializing_if = "GeluEpilogue::is_standard")]
    pub gelu_epilogue: GeluEpilogue,
    /// The encoders' one-kernel attention (CUDA, f16/bf16 and the 8-bit precisions' float part)
    /// and the padding of a batch: `"compute"` (every query row against every key, the
    /// padding's keys masked) or `"skip"` (the key chunks of 64 past each sequence's last
    /// unmasked key are neither loaded nor multiplied; a masked key's probability is exactly 0
    /// in f32, so the context is the same bits wherever the padding's values are finite; a NaN
    /// in a padding key no longer reaches the sequence's rows). The kernel reads the lengths
    /// from the mask, so a CUDA graph serves every batch. Needs a CUDA build and a backend other
    /// than "cpu". Left out of a file, it is `"skip"` for experiments with an encoder in a CUDA
    /// build whose backend is not "cpu", `"compute"` elsewhere
    /// ([`DeviceSection::resolve_kernel_defaults`]). Every record says which ran
    /// (`implementation.attention`). Left out of the resolved config when compute.
    #[serde(skip_serializing_if = "AttentionPadding::is_compute")]
    pub attention_padding: AttentionPadding,
    /// W8A8 encoders: how attention-out's input (the attention's context) is quantized.
    /// `"dynamic"` (default): per token, in a pass of its own after the attention kernel wrote
    /// the context in the float dtype (a row spans every head, and one block computes one head).
    /// `"static"`: one step per input channel, calibrated at load through the fp32 model on the
    /// dataset's first sentences (as `ffn_activation_scales`) and folded into attention-out's
    /// weights, so the attention kernel writes the 8-bit codes itself (src/ops/attention_codes.rs):
    /// no pass, half the bytes stored. Needs a CUDA build and a backend other than "cpu"; refused
    /// for decoders. Every record says which ran and how it was calibrated
    /// (`implementation.attention_activation_scales`). Left out of the resolved config when dynamic.
    #[serde(skip_serializing_if = "FfnActivationScales::is_dynamic")]
    pub attention_activation_scales: FfnActivationScales,
    /// Which CUTLASS kernel (tile, cluster, schedule) runs each GEMM shape (`gemm_library =
    /// "cutlass"`): `"rule"` (default: by row count, as one sweep set it) or `"timed"` (each
    /// shape's first eager launch, the warm-up before a cell's graph is captured, times every
    /// kernel that computes the same numbers, as a CUDA graph of 10 launches on the layer's own
    /// operands, and the fastest runs: TensorRT's tactic selection; src/ops/cutlass/tactics.rs).
    /// The outputs are those of the rule's kernel (same kind and erf: only the tiling differs).
    /// Needs a CUDA build and a backend other than "cpu". Every record says which ran, per shape
    /// with every candidate's time (`implementation.gemm_tactics`). Left out of the resolved
    /// config when rule.
    #[serde(skip_serializing_if = "GemmTactics::is_rule")]
    pub gemm_tactics: GemmTactics,
    /// On CUDA, the residual + layer norm of f16/bf16 rows of up to 1024 values (the norm kernel,
    /// the one that also adds the linear's bias, and the one that also writes the next 8-bit
    /// layer's codes) as the pair kernels of src/ops/kernels/norm_row.cuh: the same values,
    /// codes and scales bit for bit in about 40 % fewer instructions and 40 registers instead
    /// of 72 (`false`: the kernels they replace). Checked on an H100 (`cutlass_check --pairs`,
    /// docs/results/2026-12-07-nvidia-h100-cutlass-rows/session11/): int8-fp16 b64 3.9 % faster,
    /// fp16 unchanged. Left out of a file, it is on where fused_embeddings' default is (an
    /// encoder, a CUDA build, a backend other than "cpu": [`DeviceSection::resolve_pair_norms`]);
    /// the CPU backend and a build without CUDA refuse an explicit true. In the resolved config
    /// only when on; absent (every manifest before it became the default) means off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pair_norms: Option<bool>,
}

/// `device.gemm_tactics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GemmTactics {
    #[default]
    Rule,
    Timed,
}

impl GemmTactics {
    pub fn is_rule(&self) -> bool {
        *self == Self::Rule
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Rule => "rule",
            Self::Timed => "timed",
        }
    }
}

/// `device.attention_padding`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttentionPadding {
    #[default]
    Compute,
    Skip,
}

impl AttentionPadding {
    pub fn is_compute(&self) -> bool {
        *self == Self::Compute
    }

    pub fn is_skip(&self) -> bool {
        *self == Self::Skip
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Compute => "compute",
            Self::Skip => "skip",
        }
    }
}

/// `device.gelu_epilogue`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GeluEpilogue {
    #[default]
    Standard,
    Lean,
}

impl GeluEpilogue {
    pub fn is_standard(&self) -> bool {
        *self == Self::Standard
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Standard => "standard",
            Self::Lean => "lean",
        }
    }
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
            fused_embeddings: None,
            ffn_activation_scales: FfnActivationScales::Dynamic,
            gelu_epilogue: GeluEpilogue::Standard,
            attention_padding: AttentionPadding::Compute,
            attention_activation_scales: FfnActivationScales::Dynamic,
            gemm_tactics: GemmTactics::Rule,
            pair_norms: None,
        }
    }
}

impl DeviceSection {
    /// Whether an encoder's embeddings run as one kernel (`device.fused_embeddings`, resolved).
    pub fn fused_embeddings(&self) -> bool {
        self.fused_embeddings.unwrap_or(false)
    }

    /// Whether the f16/bf16 residual + layer norms run as the pair kernels (`device.pair_norms`,
    /// resolved).
    pub fn pair_norms(&self) -> bool {
        self.pair_norms.unwrap_or(false)
    }

    /// The default of `device.pair_norms` for a file that leaves it out: fused_embeddings' rule
    /// (on where the runner's CUDA kernels run an encoder); off stored as absent.
    pub fn resolve_pair_norms(&mut self, has_encoder: bool) {
        let default = self.encoder_kernels_run(has_encoder);
        self.pair_norms = resolved(self.pair_norms, default);
    }

    /// The default of `device.fused_embeddings` for a file that leaves it out: on where the
    /// kernel can run (a CUDA build, a backend other than "cpu", an experiment with an encoder).
    /// Off is stored as absent, so a resolved config reads as every earlier manifest does.
    pub fn resolve_fused_embeddings(&mut self, has_encoder: bool) {
        let default = self.encoder_kernels_run(has_encoder);
        self.fused_embeddings = resolved(self.fused_embeddings, default);
    }

    /// Where the runner's CUDA kernels can run an encoder: the default of the keys that pick them.
    fn encoder_kernels_run(&self, has_encoder: bool) -> bool {
        cfg!(feature = "cuda") && self.backend != Backend::Cpu && has_encoder
    }

    /// The defaults of `device.gemm_library` and `device.attention_padding` for a file that
    /// leaves them out (`given(key)`: the file, `--set` or the environment set `device.<key>`):
    /// issue 31's kernels where they run, so the flagship answers from them, with the same
    /// numerics as the defaults they replace. See [`kernel_defaults`].
    pub fn resolve_kernel_defaults(&mut self, has_encoder: bool, given: impl Fn(&str) -> bool) {
        let (library, padding) = kernel_defaults(
            self.encoder_kernels_run(has_encoder),
            cfg!(all(feature = "cuda", has_cutlass_sm90)),
        );
        if !given("gemm_library") {
            self.gemm_library = library;
        }
        if !given("attention_padding") {
            self.attention_padding = padding;
        }
    }
}

/// `device.gemm_library` and `device.attention_padding` left out of a file: CUTLASS where this
/// binary has its GEMMs and the runner's CUDA kernels run an encoder (their epilogues fuse what
/// cuBLASLt's kernels leave to passes of their own; checked against the CPU reference on the
/// GPU, docs/results/2026-12-07-nvidia-h200-cutlass/), and the padding's key chunks skipped
/// wherever those kernels run (the same context bits where the padding's values are finite);
/// cuBLASLt and every key computed elsewhere (a build without CUDA or CUTLASS, the CPU backend,
/// decoders, which run neither).
pub fn kernel_defaults(
    encoder_kernels_run: bool,
    cutlass_built: bool,
) -> (GemmLibrary, AttentionPadding) {
    let library = if encoder_kernels_run && cutlass_built {
        GemmLibrary::Cutlass
    } else {
        GemmLibrary::Cublaslt
    };
    let padding = if encoder_kernels_run {
        AttentionPadding::Skip
    } else {
        AttentionPadding::Compute
    };
    (library, padding)
}

/// A boolean key resolved: the file's value, else `default`; off stored as absent.
fn resolved(set: Option<bool>, default: bool) -> Option<bool> {
    set.unwrap_or(default).then_some(true)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fused_embeddings_is_the_default_only_where_its_kernel_can_run() {
        let resolved = |backend: Backend, set: Option<bool>, encoder: bool| {
            let mut d = DeviceSection {
                backend,
                fused_embeddings: set,
                ..DeviceSection::default()
            };
            d.resolve_fused_embeddings(encoder);
            d.fused_embeddings
        };
        let cuda = cfg!(feature = "cuda");
        assert_eq!(resolved(Backend::Auto, None, true), cuda.then_some(true));
        assert_eq!(resolved(Backend::Cuda, None, true), cuda.then_some(true));
        assert_eq!(resolved(Backend::Cpu, None, true), None);
        assert_eq!(resolved(Backend::Auto, None, false), None, "decoders only");
        // Spelled out, it is what the file says; off is stored as absent.
        assert_eq!(resolved(Backend::Auto, Some(false), true), None);
        assert_eq!(resolved(Backend::Auto, Some(true), true), Some(true));
    }

    #[test]
    fn cutlass_and_skipped_padding_are_defaults_only_where_their_kernels_run() {
        use AttentionPadding::{Compute, Skip};
        use GemmLibrary::{Cublaslt, Cutlass};
        assert_eq!(kernel_defaults(true, true), (Cutlass, Skip));
        assert_eq!(kernel_defaults(true, false), (Cublaslt, Skip), "no CUTLASS");
        assert_eq!(kernel_defaults(false, true), (Cublaslt, Compute));
        assert_eq!(kernel_defaults(false, false), (Cublaslt, Compute));
        // Where a file sets a key, it stays what the file says.
        let resolve = |given: &[&str], backend: Backend, encoder: bool| {
            let mut d = DeviceSection {
                backend,
                gemm_library: Cublaslt,
                attention_padding: Compute,
                ..DeviceSection::default()
            };
            d.resolve_kernel_defaults(encoder, |k| given.contains(&k));
            (d.gemm_library, d.attention_padding)
        };
        let both = ["gemm_library", "attention_padding"];
        assert_eq!(resolve(&both, Backend::Auto, true), (Cublaslt, Compute));
        // This build's own answer for a file that leaves them out.
        let run = cfg!(feature = "cuda");
        let built = cfg!(all(feature = "cuda", has_cutlass_sm90));
        assert_eq!(
            resolve(&[], Backend::Auto, true),
            kernel_defaults(run, built)
        );
        assert_eq!(resolve(&[], Backend::Cpu, true), (Cublaslt, Compute));
        assert_eq!(resolve(&[], Backend::Auto, false), (Cublaslt, Compute));
        assert_eq!(
            resolve(&["gemm_library"], Backend::Auto, true).0,
            Cublaslt,
            "a file's cublaslt stays"
        );
    }

    #[test]
    fn pair_norms_are_the_default_only_where_their_kernels_can_run() {
        let resolved = |backend: Backend, set: Option<bool>, encoder: bool| {
            let mut d = DeviceSection {
                backend,
                pair_norms: set,
                ..DeviceSection::default()
            };
            d.resolve_pair_norms(encoder);
            (d.pair_norms, d.pair_norms())
        };
        let cuda = cfg!(feature = "cuda");
        assert_eq!(
            resolved(Backend::Auto, None, true),
            (cuda.then_some(true), cuda)
        );
        assert_eq!(resolved(Backend::Cpu, None, true), (None, false));
        assert_eq!(resolved(Backend::Auto, None, false), (None, false));
        assert_eq!(resolved(Backend::Auto, Some(false), true), (None, false));
        assert_eq!(
            resolved(Backend::Cuda, Some(true), true),
            (Some(true), true)
        );
        // A manifest from before the default reads as the kernels that ran then.
        let old: DeviceSection = serde_json::from_str(r#"{"backend": "auto", "gpu": 0}"#).unwrap();
        assert!(!old.pair_norms());
    }

    #[test]
    fn a_config_written_before_the_default_changed_reads_as_candles_embeddings() {
        // Every manifest before the key became the default left it out when false.
        let old: DeviceSection = serde_json::from_str(r#"{"backend": "auto", "gpu": 0}"#).unwrap();
        assert!(!old.fused_embeddings());
        let on: DeviceSection =
            serde_json::from_str(r#"{"backend": "auto", "gpu": 0, "fused_embeddings": true}"#)
                .unwrap();
        assert!(on.fused_embeddings());
        // And a resolved config writes the key only when on.
        let text = serde_json::to_string(&DeviceSection::default()).unwrap();
        assert!(!text.contains("fused_embeddings"), "{text}");
    }
}
