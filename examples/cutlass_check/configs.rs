//! cutlass_check's configuration sweep: every kernel of a GEMM kind that has more than one
//! (tile, schedule, erf) forced in turn on the same layer and input, checked against the CPU and
//! timed, at DistilBERT/BERT's linear shapes and at few rows. This is the evidence the row rule in
//! src/ops/cutlass.rs (`INSTANCES`) is set from; `rule` marks the kernel the rule picks.

use candle_core::{DType, Device, Result, Tensor};
use runner::config::{EightBit, GemmLibrary};
use runner::model::parts::w8a8::EightBitLinear;
use runner::ops::cutlass::{self, Inputs, Kind};

/// (inputs, fast accumulation, GELU): the kinds with several kernels, all writing f16.
const KINDS: &[(EightBit, bool, bool)] = &[
    (EightBit::Int8, false, false),
    (EightBit::Int8, false, true),
    (EightBit::Fp8E4M3, true, false),
];

pub fn sweep(gpu: &Device, cpu: &Device, quick: bool) -> usize {
    println!(
        "config {:<4} {:<4} {:<5} {:>5} {:>5} {:>5} {:<24} {:<66} {:>11} {:>8} {:>9} result (configurations)",
        "fmt", "fast", "gelu", "rows", "in", "out", "kernel", "configuration", "max rel err", "bound", "us"
    );
    let mut failures = 0;
    for &(format, fast, gelu) in KINDS {
        let kind = Kind {
            inputs: match format {
                EightBit::Int8 => Inputs::Int8,
                EightBit::Fp8E4M3 => Inputs::E4m3,
            },
            out: DType::F16,
            gelu,
            fast_accumulation: fast,
        };
        for &(m, k, n) in &[
            (8192, 768, 2304),
            (8192, 768, 3072),
            (8192, 768, 768),
            (8192, 3072, 768),
            (2048, 768, 2304),
            (2048, 768, 3072),
            (2048, 3072, 768),
            (128, 768, 2304),
            (16, 768, 3072),
        ] {
            if quick && m != 8192 {
                continue;
            }
            if let Err(e) = one_shape(gpu, cpu, kind, format, m, k, n, &mut failures) {
                println!(
                    "config {} {fast} {gelu} {m} {k} {n}: error: {e} FAILED",
                    format.name()
                );
                failures += 1;
            }
        }
    }
    cutlass::force(None);
    failures
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn one_shape(
    gpu: &Device,
    cpu: &Device,
    kind: Kind,
    format: EightBit,
    m: usize,
    k: usize,
    n: usize,
    failures: &mut usize,
) -> Result<()> {
    let w = Tensor::randn(0f32, 0.05, (n, k), cpu)?;
    let b = Tensor::randn(0f32, 0.1, n, cpu)?.to_dtype(DType::F16)?;
    let x = Tensor::randn(0f32, 1.0, (m, k), cpu)?.to_dtype(DType::F16)?;
    let mut reference = EightBitLinear::quantize(&w, b.clone(), format)?;
    let mut layer = EightBitLinear::quantize(&w.to_device(gpu)?, b.to_device(gpu)?, format)?;
    reference.set_fp8_fast_accumulation(kind.fast_accumulation);
    layer.set_fp8_fast_accumulation(kind.fast_accumulation);
    layer.set_gemm_library(GemmLibrary::Cutlass);
    let want = reference.forward(&x, kind.gelu)?;
    let xg = x.to_device(gpu)?;
    let rule = cutlass::choose(kind, m, n).map(|i| i.name);
    for instance in cutlass::instances(kind) {
        cutlass::force(Some(instance));
        let run = || layer.forward(&xg, kind.gelu);
        let got = run();
        let (err, finite, us) = match got {
            Ok(got) => {
                let (err, finite) = super::rel_err(&got, &want)?;
                (err, finite, super::time_us(gpu, run)?)
            }
            Err(e) => {
                println!("config {} {m} {k} {n}: error: {e} FAILED", instance.name);
                *failures += 1;
                continue;
            }
        };
        cutlass::force(None);
        let bound = super::linear_bound(DType::F16, kind.fast_accumulation);
        let ok = finite && err <= bound;
        *failures += usize::from(!ok);
        let config = format!(
            "{}{}",
            instance.config.describe(),
            match (kind.gelu, instance.erf) {
                (false, _) => "",
                (true, cutlass::Erf::Fast) => ", fast erf",
                (true, cutlass::Erf::Lean) => ", lean erf",
                (true, cutlass::Erf::TanhFit) => ", fitted tanh",
                (true, cutlass::Erf::TanhFitRne) => ", fitted tanh, ties to even",
                (true, cutlass::Erf::TanhFitHalf2) => ", fitted tanh in f16 pairs",
                (true, cutlass::Erf::Erff) => ", erff",
            }
        );
        println!(
            "config {:<4} {:<4} {:<5} {m:>5} {k:>5} {n:>5} {:<24} {config:<66} {err:>11.2e} {bound:>8.1e} {us:>9.1} {}{}",
            format.name(),
            kind.fast_accumulation,
            kind.gelu,
            instance.name,
            if ok { "ok" } else { "FAILED" },
            if rule == Some(instance.name) { " rule" } else { "" }
        );
    }
    cutlass::force(None);
    Ok(())
}
