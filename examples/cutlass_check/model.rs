//! cutlass_check's last section: the whole model through CUTLASS, the CUDA-graph replay against
//! the eager pass on fresh batches (examples/graph_check.rs's check, common::replay_against_eager).

use candle_core::{DType, Device, Result};
use runner::config::{EightBit, GemmLibrary};

use super::common::{batch, replay_against_eager};

/// DistilBERT-base (random weights) with `device.gemm_library = "cutlass"` in every precision the
/// kernels serve (FP8 also with fast accumulation): graph replay equal to eager, finite logits.
/// A precision or shape that fails is counted and the next one runs.
pub fn graph_checks(gpu: &Device, quick: bool) -> usize {
    let quick_ones = [
        "int8-fp16",
        "fp8-fp16",
        "fp16 fused-emb",
        "int8-fp16 fused-emb",
        "int8-fp16 static",
    ];
    let all: Vec<&str> = PRECISIONS.iter().map(|p| p.0).collect();
    graph_checks_named(gpu, if quick { &quick_ones } else { &all })
}

/// The precisions graph_checks runs: (name, dtype, 8-bit format, FP8 fast accumulation). "fused-emb":
/// `device.fused_embeddings`; "static": `device.ffn_activation_scales = "static"` (calibrated on
/// random token batches through the fp32 model of the same weights), with fused embeddings.
const PRECISIONS: &[(&str, DType, Option<EightBit>, bool)] = &[
    ("fp16", DType::F16, None, false),
    ("bf16", DType::BF16, None, false),
    ("int8-fp16", DType::F16, Some(EightBit::Int8), false),
    ("fp8-fp16", DType::F16, Some(EightBit::Fp8E4M3), false),
    ("fp8-fp16 fast", DType::F16, Some(EightBit::Fp8E4M3), true),
    ("int8-bf16", DType::BF16, Some(EightBit::Int8), false),
    ("fp8-bf16", DType::BF16, Some(EightBit::Fp8E4M3), false),
    ("fp16 fused-emb", DType::F16, None, false),
    (
        "int8-fp16 fused-emb",
        DType::F16,
        Some(EightBit::Int8),
        false,
    ),
    ("int8-fp16 static", DType::F16, Some(EightBit::Int8), false),
    (
        "fp8-fp16 static",
        DType::F16,
        Some(EightBit::Fp8E4M3),
        false,
    ),
    (
        "fp8-fp16 fast static",
        DType::F16,
        Some(EightBit::Fp8E4M3),
        true,
    ),
];

/// [`graph_checks`] for the named precisions only.
pub fn graph_checks_named(gpu: &Device, names: &[&str]) -> usize {
    let mut failures = 0;
    for &(name, dtype, eight_bit, fast) in PRECISIONS {
        if !names.contains(&name) {
            continue;
        }
        match one_precision(gpu, name, dtype, eight_bit, fast) {
            Ok(f) => failures += f,
            Err(e) => {
                println!("{name}: the model did not run: {e} FAILED");
                failures += 1;
            }
        }
    }
    failures
}

fn one_precision(
    gpu: &Device,
    name: &str,
    dtype: DType,
    eight_bit: Option<EightBit>,
    fast: bool,
) -> Result<usize> {
    use runner::model::{encoder, Encoder, Head, Numerics, Preset};
    let preset = Preset::DISTILBERT_BASE_UNCASED;
    let tensors = encoder::random_tensors(&preset, 0).map_err(candle_core::Error::msg)?;
    let vb = candle_nn::VarBuilder::from_tensors(tensors, dtype, gpu);
    let numerics = Numerics {
        float: dtype,
        quant: None,
        eight_bit,
    };
    let mut model = Encoder::load(vb, &preset, numerics, Head::Checkpoint)?;
    model.set_gemm_library(GemmLibrary::Cutlass);
    if fast {
        model.set_fp8_fast_accumulation(true);
    }
    model.set_fused_embeddings(name.ends_with("fused-emb") || name.ends_with("static"))?;
    if name.ends_with("static") {
        let f32_vb = candle_nn::VarBuilder::from_tensors(
            encoder::random_tensors(&preset, 0).map_err(candle_core::Error::msg)?,
            DType::F32,
            gpu,
        );
        let reference = Encoder::load(
            f32_vb,
            &preset,
            Numerics {
                float: DType::F32,
                quant: None,
                eight_bit: None,
            },
            Head::Checkpoint,
        )?;
        let calibration = [batch(gpu, 32, 128, preset.vocab_size, 11)?];
        let held_out = [batch(gpu, 32, 128, preset.vocab_size, 12)?];
        model.calibrate_static_ffn(&reference, &calibration, &held_out)?;
        model
            .static_ffns_runnable()
            .map_err(|e| candle_core::Error::msg(e.to_string()))?;
    }
    let mut implementation = model.implementation();
    println!(
        "{name} embeddings: {}",
        implementation.remove("embeddings").unwrap_or_default()
    );
    let gemms = implementation.remove("gemms").unwrap_or_default();
    println!("{name} gemms: {gemms}");
    let quantization = implementation
        .remove("activation_quantization")
        .unwrap_or_default();
    println!("{name} activation_quantization: {quantization}");
    if let Some(steps) = implementation.remove("ffn_activation_scales") {
        println!("{name} ffn_activation_scales: {steps}");
    }
    let mut failures = 0;
    for &(b, s) in &[(1, 128), (16, 128), (64, 128), (3, 512), (32, 77)] {
        match replay_vs_eager(gpu, &model, &preset, b, s) {
            Ok((ok, line)) => {
                failures += usize::from(!ok);
                println!("{name:<13} batch {b:>3} seq {s:>3}: {line}");
            }
            Err(e) => {
                failures += 1;
                println!("{name:<13} batch {b:>3} seq {s:>3}: error: {e} FAILED");
            }
        }
    }
    Ok(failures)
}

fn replay_vs_eager(
    gpu: &Device,
    model: &runner::model::Encoder,
    preset: &runner::model::Preset,
    b: usize,
    s: usize,
) -> Result<(bool, String)> {
    use runner::ops::graph::GraphMode;
    let (ids, mask) = batch(gpu, b, s, preset.vocab_size, 1)?;
    let mut forward = model.cell_forward(&ids, &mask, GraphMode::Auto);
    let (max_diff, finite) =
        replay_against_eager(model, &mut forward, gpu, (b, s), preset.vocab_size)?;
    let graph = forward.execution().is_graph();
    let ok = graph && max_diff == 0.0 && finite;
    Ok((
        ok,
        format!(
            "{} max |graph - eager| {max_diff:.3e} finite {finite} {}",
            forward.execution().describe(),
            if ok { "ok" } else { "FAILED" }
        ),
    ))
}

/// `--profile PRECISION LIBRARY BATCH`: DistilBERT-base (random weights, seq 128) run eagerly,
/// three warm-up forwards, then two forwards between cuProfilerStart and cuProfilerStop, for
/// `ncu --profile-from-start off` to time every kernel of them (benchmarks' profile step); then
/// the same forward replayed as a CUDA graph, timed, for the gaps between kernels.
pub fn profile(gpu: &Device, args: &[String]) -> Result<()> {
    use runner::model::{encoder, Encoder, Head, Numerics, Preset};
    use runner::ops::graph::GraphMode;
    let [precision, library, b] = args else {
        candle_core::bail!("--profile PRECISION LIBRARY BATCH (e.g. int8-fp16 cutlass 64)");
    };
    let b: usize = b.parse().map_err(candle_core::Error::msg)?;
    let (dtype, eight_bit) = match precision.as_str() {
        "fp16" => (DType::F16, None),
        "int8-fp16" => (DType::F16, Some(EightBit::Int8)),
        "fp8-fp16" => (DType::F16, Some(EightBit::Fp8E4M3)),
        other => candle_core::bail!("--profile: precision {other}: fp16, int8-fp16 or fp8-fp16"),
    };
    let library = match library.as_str() {
        "cutlass" => GemmLibrary::Cutlass,
        "cublaslt" => GemmLibrary::Cublaslt,
        other => candle_core::bail!("--profile: library {other}: cutlass or cublaslt"),
    };
    let preset = Preset::DISTILBERT_BASE_UNCASED;
    let tensors = encoder::random_tensors(&preset, 0).map_err(candle_core::Error::msg)?;
    let vb = candle_nn::VarBuilder::from_tensors(tensors, dtype, gpu);
    let numerics = Numerics {
        float: dtype,
        quant: None,
        eight_bit,
    };
    let mut model = Encoder::load(vb, &preset, numerics, Head::Checkpoint)?;
    model.set_gemm_library(library);
    let s = 128;
    let (ids, mask) = batch(gpu, b, s, preset.vocab_size, 1)?;
    for _ in 0..3 {
        model.forward(&ids, &mask)?;
    }
    gpu.synchronize()?;
    profiler(true);
    for _ in 0..2 {
        model.forward(&ids, &mask)?;
    }
    gpu.synchronize()?;
    profiler(false);
    let mut forward = model.cell_forward(&ids, &mask, GraphMode::Auto);
    for _ in 0..5 {
        forward.forward(&[ids.clone(), mask.clone()])?;
    }
    gpu.synchronize()?;
    let mut times = Vec::new();
    for _ in 0..50 {
        let t = std::time::Instant::now();
        forward.forward(&[ids.clone(), mask.clone()])?;
        gpu.synchronize()?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "profile {precision} {} batch {b} seq {s}: 2 eager forwards profiled; {}: median {:.3} ms per forward over 50",
        library.name(),
        forward.execution().describe(),
        times[times.len() / 2]
    );
    let implementation = model.implementation();
    for key in ["gemms", "activation_quantization"] {
        println!(
            "profile {key}: {}",
            implementation.get(key).cloned().unwrap_or_default()
        );
    }
    Ok(())
}

/// cuProfilerStart / cuProfilerStop: what `ncu --profile-from-start off` profiles.
fn profiler(on: bool) {
    #[cfg(feature = "cuda")]
    {
        use candle_core::cuda_backend::cudarc::driver::sys;
        // SAFETY: driver calls without arguments; without a profiler attached they do nothing.
        let _ = unsafe {
            if on {
                sys::cuProfilerStart()
            } else {
                sys::cuProfilerStop()
            }
        };
    }
    #[cfg(not(feature = "cuda"))]
    let _ = on;
}
