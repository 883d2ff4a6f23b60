//! `[device]` and `[sensor]`: which devices measure, how many workers, and what meters them.

use super::{MAX_SAMPLE_INTERVAL_MS, MAX_WORKERS};
use crate::config::{Backend, ExperimentConfig, GpuSet, SensorKind, DEFAULT_POWERCAP_ROOT};

pub(super) fn check(c: &ExperimentConfig, bad: &mut impl FnMut(&[&str], String)) {
    if c.device.backend == Backend::Cuda && !cfg!(feature = "cuda") {
        bad(&["device", "backend"], "device.backend = \"cuda\" but this runner was built without CUDA: build it with scripts/build-cuda.sh (or `cargo build --release --features cuda`), or set device.backend = \"auto\" or \"cpu\"".into());
    }
    if let Some(gpus) = &c.device.gpus {
        match gpus {
            GpuSet::Named(name) if name != "all" => bad(&["device", "gpus"], format!(
                "device.gpus = {name:?}: use a list of CUDA ordinals such as [0, 1], or \"all\""
            )),
            GpuSet::List(list) if list.is_empty() => bad(&["device", "gpus"],
                "device.gpus = []: list at least one GPU (e.g. [0, 1]), or leave device.gpus out to use device.gpu".into()),
            GpuSet::List(list) => {
                let mut seen = std::collections::BTreeSet::new();
                if let Some(dup) = list.iter().find(|g| !seen.insert(**g)) {
                    bad(&["device", "gpus"], format!(
                        "device.gpus lists GPU {dup} twice: each GPU runs one worker, and two cells on one GPU would disturb each other's measurements"
                    ));
                }
            }
            GpuSet::Named(_) => {}
        }
        if c.device.backend == Backend::Cpu {
            bad(&["device", "gpus"], "device.gpus names GPUs but device.backend = \"cpu\": set device.backend = \"cuda\" (or \"auto\"), or use device.cpu_workers for several CPU workers".into());
        } else if !cfg!(feature = "cuda") {
            bad(&["device", "gpus"], "device.gpus names GPUs but this runner was built without CUDA: build it with scripts/build-cuda.sh, or leave device.gpus out".into());
        }
    }
    if let Some(GpuSet::List(list)) = &c.device.gpus {
        if list.len() > MAX_WORKERS || list.iter().any(|&g| g >= MAX_WORKERS) {
            bad(&["device", "gpus"], format!(
                "device.gpus: at most {MAX_WORKERS} GPUs, ordinals below {MAX_WORKERS} (no host has more)"
            ));
        }
    }
    if c.device.fused_embeddings == Some(true) {
        if c.device.backend == Backend::Cpu {
            bad(&["device", "fused_embeddings"], "device.fused_embeddings = true runs the embeddings as a CUDA kernel, but device.backend = \"cpu\": the CPU has only candle's embeddings; set device.fused_embeddings = false (or leave it out)".into());
        } else if !cfg!(feature = "cuda") {
            bad(&["device", "fused_embeddings"], "device.fused_embeddings = true runs the embeddings as a CUDA kernel, but this runner was built without CUDA: build it with scripts/build-cuda.sh, or set device.fused_embeddings = false".into());
        }
    }
    if !c.device.ffn_activation_scales.is_dynamic()
        && c.device.backend == Backend::Cuda
        && c.device.gemm_library.is_cublaslt()
    {
        bad(&["device", "ffn_activation_scales"], "device.ffn_activation_scales = \"static\" has FFN-in's CUTLASS epilogue write FFN-out's codes, but device.gemm_library = \"cublaslt\": set device.gemm_library = \"cutlass\" (or leave ffn_activation_scales out)".into());
    }
    if !c.device.gelu_epilogue.is_standard() && c.device.gemm_library.is_cublaslt() {
        bad(&["device", "gelu_epilogue"], "device.gelu_epilogue = \"lean\" picks the GELU of the CUTLASS FFN-in epilogues, but device.gemm_library = \"cublaslt\", whose GELU is a runner kernel: set device.gemm_library = \"cutlass\" (or leave gelu_epilogue out)".into());
    }
    if !c.device.attention_padding.is_compute() {
        if c.device.backend == Backend::Cpu {
            bad(&["device", "attention_padding"], "device.attention_padding = \"skip\" is a mode of the CUDA attention kernel, but device.backend = \"cpu\": the CPU computes the padding; leave attention_padding out".into());
        } else if !cfg!(feature = "cuda") {
            bad(&["device", "attention_padding"], "device.attention_padding = \"skip\" is a mode of the CUDA attention kernel, but this runner was built without CUDA: build it with scripts/build-cuda.sh, or leave attention_padding out".into());
        }
    }
    if !c.device.attention_activation_scales.is_dynamic() {
        if c.device.backend == Backend::Cpu {
            bad(&["device", "attention_activation_scales"], "device.attention_activation_scales = \"static\" has the CUDA attention kernel write attention-out's codes, but device.backend = \"cpu\": leave attention_activation_scales out".into());
        } else if !cfg!(feature = "cuda") {
            bad(&["device", "attention_activation_scales"], "device.attention_activation_scales = \"static\" has the CUDA attention kernel write attention-out's codes, but this runner was built without CUDA: build it with scripts/build-cuda.sh, or leave attention_activation_scales out".into());
        }
    }
    if !c.device.gemm_tactics.is_rule() {
        let why = if c.device.gemm_library.is_cublaslt() {
            Some("but device.gemm_library = \"cublaslt\", whose kernels cuBLASLt picks: set device.gemm_library = \"cutlass\" (or leave gemm_tactics out)")
        } else if c.device.backend == Backend::Cpu {
            Some("but device.backend = \"cpu\": leave gemm_tactics out")
        } else if !cfg!(feature = "cuda") {
            Some("but this runner was built without CUDA: build it with scripts/build-cuda.sh, or leave gemm_tactics out")
        } else {
            None
        };
        if let Some(why) = why {
            bad(&["device", "gemm_tactics"], format!("device.gemm_tactics = \"timed\" times the CUDA CUTLASS GEMMs' kernels on each shape, {why}"));
        }
    }
    if c.device.pair_norms == Some(true) {
        if c.device.backend == Backend::Cpu {
            bad(&["device", "pair_norms"], "device.pair_norms = true picks CUDA layer norm kernels, but device.backend = \"cpu\": leave pair_norms out".into());
        } else if !cfg!(feature = "cuda") {
            bad(&["device", "pair_norms"], "device.pair_norms = true picks CUDA layer norm kernels, but this runner was built without CUDA: build it with scripts/build-cuda.sh, or leave pair_norms out".into());
        }
    }
    if c.device.gpu >= MAX_WORKERS {
        bad(
            &["device", "gpu"],
            format!(
                "device.gpu = {}: a CUDA ordinal below {MAX_WORKERS} (`nvidia-smi -L` lists them)",
                c.device.gpu
            ),
        );
    }
    if c.device.cpu_workers > MAX_WORKERS {
        bad(
            &["device", "cpu_workers"],
            format!(
            "device.cpu_workers = {}: at most {MAX_WORKERS} (each is a process sharing this CPU)",
            c.device.cpu_workers
        ),
        );
    }
    if c.device.cpu_workers == 0 {
        bad(
            &["device", "cpu_workers"],
            "device.cpu_workers = 0: at least one worker must measure".into(),
        );
    } else if c.device.cpu_workers > 1 && c.device.backend != Backend::Cpu {
        bad(&["device", "cpu_workers"], format!(
            "device.cpu_workers = {} needs device.backend = \"cpu\" (CPU workers stand in for GPUs in tests); on GPUs use device.gpus = [0, 1, ...]",
            c.device.cpu_workers
        ));
    }
    if c.sensor.sample_interval_ms == 0 {
        bad(
            &["sensor", "sample_interval_ms"],
            "sensor.sample_interval_ms must be >= 1".into(),
        );
    } else if c.sensor.sample_interval_ms > MAX_SAMPLE_INTERVAL_MS {
        bad(&["sensor", "sample_interval_ms"], format!(
            "sensor.sample_interval_ms = {}: at most {MAX_SAMPLE_INTERVAL_MS} (a minute between power samples leaves no trace; NVML updates every ~100 ms)",
            c.sensor.sample_interval_ms
        ));
    }

    if !c.sensor.powercap_root.is_absolute() {
        bad(
            &["sensor", "powercap_root"],
            format!(
                "sensor.powercap_root = {:?}: give an absolute path (the kernel's is {DEFAULT_POWERCAP_ROOT:?})",
                c.sensor.powercap_root.display().to_string()
            ),
        );
    }
    // RAPL counts a whole CPU package: with several workers measuring at once on one host, no
    // share of it belongs to one cell.
    let workers = match &c.device.gpus {
        Some(GpuSet::List(list)) if list.len() == 1 => None,
        Some(_) => Some("device.gpus"),
        None if c.device.cpu_workers > 1 => Some("device.cpu_workers"),
        None => None,
    };
    if let (Some(key), SensorKind::Rapl | SensorKind::NvmlRapl) = (workers, c.sensor.kind) {
        bad(&["sensor", "kind"], format!(
            "sensor.kind = \"{}\" meters the host's CPU packages and DRAM, which the workers of {key} share while they measure at once: no share of it belongs to one cell; run one device at a time, or set sensor.kind = \"auto\" or \"nvml\" (GPU boards only)",
            c.sensor.kind.name()
        ));
    }
}
