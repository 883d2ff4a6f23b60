//! Checks every CUTLASS GEMM of the runner (src/ops/kernels/cutlass/, `device.gemm_library =
//! "cutlass"`) on a Hopper GPU against the CPU numerics reference, on fresh random inputs:
//!
//! 1. every W8A8 linear (int8, E4M3; f16, bf16 out; with and without erf GELU) at every linear
//!    shape of DistilBERT/BERT-base (Q/K/V 768 -> 2304, 768 -> 768, 768 -> 3072, 3072 -> 768) at
//!    16 x 128 and 64 x 128 tokens, and the decoder linears of SmolLM2-135M, Qwen2.5-0.5B and
//!    Llama-3.2-1B (Q, K/V, O, gate/up, down) at 16 tokens (a decode step of 16 sequences) and 512
//!    (a prefill); each timed against the cuBLASLt path it replaces, in the same process;
//! 2. FFN-in writing FFN-out's packed 8-bit input (CUTLASS GEMM with bias + GELU, then the row
//!    quantization pass) and FFN-out reading it, against the CPU reference;
//! 3. the float FFN-in (f16/bf16 GEMM with bias + erf GELU in the epilogue) against f32 on the
//!    CPU, timed against cuBLAS + the runner's bias + GELU kernel;
//! 4. a NaN input reaching its row's output, and only it, in every kernel family;
//! 5. every configuration of the GEMM kinds that have several (int8 plain: 128x128 ping-pong and
//!    128x256 cooperative; int8 GELU: erff against the fast erf, ping-pong against cooperative;
//!    E4M3 with fast accumulation: 64- and 128-row tiles), forced in turn at the same shapes:
//!    checked and timed, the evidence for the row rule in src/ops/cutlass.rs (cutlass_check/configs.rs);
//! 6. (`--tactics`) every kernel `device.gemm_tactics = "timed"` chooses among for int8 -> f16,
//!    session 8's three new configurations among them, against the CPU and the rule's kernel,
//!    timed; NaN rows; the models with tactics timed, graph against eager (cutlass_check/tactics.rs);
//!    (`--rows`) session 9's epilogues, the same sweep with the codes kernels and the static FFN
//!    (cutlass_check/rows.rs); (`--half2`) session 14's codes kernel with the GELU in f16 pairs
//!    (cutlass_check/half2.rs);
//! 7. DistilBERT-base (random weights) with `device.gemm_library = "cutlass"` in fp16, bf16,
//!    int8-fp16, fp8-fp16 (also with fast accumulation), int8-bf16, fp8-bf16: the CUDA-graph replay
//!    against the eager pass on fresh batches (must be equal: same kernels, same order), as
//!    examples/graph_check.rs does, with the per-linear GEMMs the record names
//!    (cutlass_check/model.rs).
//!
//! E4M3 also runs with `device.fp8_fast_accumulation` (f16 output: the only kernels that have it;
//! bf16 keeps cuBLASLt and the check says so). Every section runs to its end: a shape that errors
//! is a failed line, and a shape no kernel takes is a skipped line that says why.
//!
//!     cargo run --release --features cuda --example cutlass_check
//!
//! Error: max |gpu - cpu| / max |cpu|, bounds as examples/int8_check.rs (the same quantized bytes;
//! int32 / f32 accumulation against the CPU's f32 sums; one rounding to the dtype); FP8 fast
//! accumulation 8e-3 (cuBLASLt's measured 4e-3 at K = 3072, doubled). Exits 1 on any failure,
//! after every section ran.

use candle_core::{DType, Device, Module, Result, Tensor};
use runner::config::{EightBit, GemmLibrary};
use runner::model::parts::w8a8::EightBitLinear;

mod common;
use common::{rel_err, Timing};

#[path = "cutlass_check/attention.rs"]
mod attention;
#[path = "cutlass_check/codes.rs"]
mod codes;
#[path = "cutlass_check/configs.rs"]
mod configs;
#[path = "cutlass_check/embeddings.rs"]
mod embeddings;
#[path = "cutlass_check/ffn.rs"]
mod ffn;
#[path = "cutlass_check/half2.rs"]
mod half2;
#[path = "cutlass_check/lean.rs"]
mod lean;
#[path = "cutlass_check/model.rs"]
mod model;
#[path = "cutlass_check/padding.rs"]
mod padding;
#[path = "int8_check/pairs.rs"]
mod pairs;
#[path = "cutlass_check/rows.rs"]
mod rows;
#[path = "cutlass_check/static_ffn.rs"]
mod static_ffn;
#[path = "cutlass_check/tactics.rs"]
mod tactics;

/// The 8-bit formats and output dtypes checked, FP8 also with fast accumulation (`--quick`:
/// the f16 ones).
pub(crate) const EIGHT_BIT: &[(EightBit, DType, bool)] = &[
    (EightBit::Int8, DType::F16, false),
    (EightBit::Int8, DType::BF16, false),
    (EightBit::Fp8E4M3, DType::F16, false),
    (EightBit::Fp8E4M3, DType::F16, true),
    (EightBit::Fp8E4M3, DType::BF16, false),
    (EightBit::Fp8E4M3, DType::BF16, true),
];

/// The eager fallback's sampling, where a call cannot be captured in a CUDA graph.
const TIMING: Timing = Timing {
    samples: 15,
    calls: 10,
};

/// Microseconds per call inside a CUDA graph of back-to-back calls (common::graph_time_us): the
/// kernels' time, without the host's launch and allocation cost per call, which an eager loop of
/// small GEMMs measured instead (~25 us for a 16-row GEMM on the H100 run of 2026-12-06). A call
/// that cannot be captured is timed eagerly and the line says so.
pub(crate) fn time_us(device: &Device, f: impl Fn() -> Result<Tensor>) -> Result<f64> {
    match common::graph_time_us(device, "cutlass_check timing", &f) {
        Ok(t) => Ok(t),
        Err(e) => {
            println!("(timed eagerly: {e})");
            common::time_us(device, TIMING, f)
        }
    }
}

/// One 8-bit layer against the CPU on the same input (common::linear_bound, int8_check's); FP8
/// fast accumulation's partial sums lose bits along K (README: 4e-3 at K = 3072 through cuBLASLt).
pub(crate) fn linear_bound(d: DType, fast_accumulation: bool) -> f32 {
    match (d, fast_accumulation) {
        (DType::F16, true) => 8e-3,
        (d, _) => common::linear_bound(d),
    }
}

/// Runs one check; an error is a failed line naming it, and the next check runs.
pub(crate) fn guarded(label: &str, check: impl FnOnce() -> Result<usize>) -> usize {
    match check() {
        Ok(failures) => failures,
        Err(e) => {
            println!("{label}: error: {e} FAILED");
            1
        }
    }
}

/// (model, rows, in, out) of every linear checked.
fn shapes(quick: bool) -> Vec<(&'static str, usize, usize, usize)> {
    let mut v = Vec::new();
    for rows in [2048, 8192] {
        for (k, n) in [(768, 2304), (768, 768), (768, 3072), (3072, 768)] {
            v.push(("distilbert/bert-base", rows, k, n));
        }
    }
    // (name, hidden, q out, k/v out, intermediate)
    for (name, d, kv, ffn) in [
        ("smollm2-135m", 576, 192, 1536),
        ("qwen2.5-0.5b", 896, 128, 4864),
        ("llama-3.2-1b", 2048, 512, 8192),
    ] {
        if quick && name != "llama-3.2-1b" {
            continue;
        }
        for rows in [16, 512] {
            if quick && rows != 16 {
                continue;
            }
            for (k, n) in [(d, d), (d, kv), (d, ffn), (ffn, d)] {
                v.push((name, rows, k, n));
            }
        }
    }
    v
}

fn main() -> Result<()> {
    if !runner::ops::cutlass::compiled() {
        eprintln!(
            "cutlass_check: this binary has no CUTLASS GEMMs ({})",
            runner::ops::cutlass::BUILD
        );
        std::process::exit(2);
    }
    // --quick (the short GPU call): f16 outputs only, DistilBERT shapes and Llama's at 16 rows,
    // the sweep at 8192 rows, the model's graph check for the 8-bit precisions only.
    let quick = std::env::args().any(|a| a == "--quick");
    let gpu = runner::device::open_cuda(0).map_err(candle_core::Error::msg)?;
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--profile") {
        return model::profile(&gpu, &args[2..]);
    }
    let cpu = Device::Cpu;
    println!("CUTLASS: {}", runner::ops::cutlass::BUILD);
    // --static (a short call): only what is new or failed last: the packed FFN's split check
    // (f16), the static-steps FFN, and the model's graph replay with static steps.
    if std::env::args().any(|a| a == "--static") {
        let mut failures = ffn::ffn_checks(&gpu, &cpu, true);
        failures += static_ffn::static_checks(&gpu, &cpu);
        failures += model::graph_checks_named(&gpu, &["int8-fp16 static", "fp8-fp16 static"]);
        println!("cutlass_check --static: {failures} failure(s)");
        std::process::exit(i32::from(failures > 0));
    }
    // --padding (a short call): device.attention_padding = "skip" against compute, kernel and
    // model (cutlass_check/padding.rs); device.attention_activation_scales = "static", the
    // attention writing attention-out's codes (cutlass_check/codes.rs).
    if std::env::args().any(|a| a == "--padding") {
        // Kernels first (a cut run keeps them), then the models.
        let mut failures = padding::padding_checks(&gpu);
        failures += codes::codes_checks(&gpu);
        failures += padding::padding_model_checks(&gpu);
        println!("cutlass_check --padding: {failures} failure(s)");
        std::process::exit(i32::from(failures > 0));
    }
    // --tactics (a short call): device.gemm_tactics = "timed" and session 8's kernels it picks
    // among (cutlass_check/tactics.rs).
    if std::env::args().any(|a| a == "--tactics") {
        let failures = tactics::tactics_checks(&gpu, &cpu);
        println!("cutlass_check --tactics: {failures} failure(s)");
        std::process::exit(i32::from(failures > 0));
    }
    // --pairs (a short call): the f16/bf16 layer norms in pairs (device.pair_norms) against the
    // kernels they replace, bit for bit (int8_check/pairs.rs), then the 16-bit and int8 models'
    // graph replay = eager with them on.
    if std::env::args().any(|a| a == "--pairs") {
        let mut failures = pairs::pair_norm_checks(&gpu).unwrap_or_else(|e| {
            println!("pairs: did not run: {e} FAILED");
            1
        });
        runner::ops::fused::use_pair_norms(true);
        failures += model::graph_checks_named(&gpu, &["fp16", "int8-fp16 static"]);
        runner::ops::fused::use_pair_norms(false);
        println!("cutlass_check --pairs: {failures} failure(s)");
        std::process::exit(i32::from(failures > 0));
    }
    // --rows (a short call): session 9's epilogues, the column vectors in one load and the
    // codes in one node (cutlass_check/rows.rs).
    if std::env::args().any(|a| a == "--rows") {
        let failures = rows::rows_checks(&gpu, &cpu);
        println!("cutlass_check --rows: {failures} failure(s)");
        std::process::exit(i32::from(failures > 0));
    }
    // --half2 (a short call): session 14's codes kernel with the GELU in f16 pairs
    // (cutlass_check/half2.rs).
    if std::env::args().any(|a| a == "--half2") {
        let failures = half2::half2_checks(&gpu, &cpu);
        println!("cutlass_check --half2: {failures} failure(s)");
        std::process::exit(i32::from(failures > 0));
    }
    // --lean (a short call): device.gelu_epilogue = "lean", every GELU kernel swept, the rule's
    // picks checked, the model's graph replay (cutlass_check/lean.rs).
    if std::env::args().any(|a| a == "--lean") {
        let failures = lean::lean_checks(&gpu, &cpu);
        println!("cutlass_check --lean: {failures} failure(s)");
        std::process::exit(i32::from(failures > 0));
    }
    // The newest kernels and the sections a short call must not lose first (a call cut short
    // still has them): the packed attention, the packed FFN, NaN rows, the model's graph replay.
    let mut failures = attention::attention_checks(&gpu);
    failures += embeddings::embedding_checks(&gpu);
    failures += ffn::ffn_checks(&gpu, &cpu, quick);
    failures += nan_checks(&gpu, &cpu);
    failures += model::graph_checks(&gpu, quick);
    println!(
        "{:<20} {:<4} {:<5} {:<4} {:>5} {:>5} {:>5} {:>5} {:>11} {:>8} {:>10} {:>11} {:>7} result",
        "model",
        "fmt",
        "dtype",
        "fast",
        "rows",
        "in",
        "out",
        "gelu",
        "max rel err",
        "bound",
        "cutlass us",
        "cublaslt us",
        "speedup"
    );
    for &(format, dtype, fast) in EIGHT_BIT {
        if quick && dtype == DType::BF16 {
            continue;
        }
        for (model, m, k, n) in shapes(quick) {
            for gelu in [false, true] {
                let label = format!(
                    "{model:<20} {:<4} {dtype:?}{} {m} {k} {n} gelu {gelu}",
                    format.name(),
                    if fast { " fast" } else { "" }
                );
                failures += guarded(&label, || {
                    linear_check(&gpu, &cpu, model, format, dtype, fast, (m, k, n), gelu)
                });
            }
        }
    }
    failures += float_checks(&gpu, &cpu, quick);
    failures += configs::sweep(&gpu, &cpu, quick);
    if failures > 0 {
        eprintln!("cutlass_check: {failures} check(s) failed");
        std::process::exit(1);
    }
    println!("cutlass_check: all passed");
    Ok(())
}

/// One W8A8 linear through CUTLASS against the CPU reference on the same fresh input, timed
/// against the cuBLASLt path it replaces (with the same fast accumulation setting). A kind the
/// library has no kernel for by design (E4M3 with fast accumulation writing bf16) is a skip.
#[allow(clippy::too_many_arguments)]
fn linear_check(
    gpu: &Device,
    cpu: &Device,
    model: &str,
    format: EightBit,
    dtype: DType,
    fast: bool,
    (m, k, n): (usize, usize, usize),
    gelu: bool,
) -> Result<usize> {
    let w = Tensor::randn(0f32, 0.05, (n, k), cpu)?;
    let b = Tensor::randn(0f32, 0.1, n, cpu)?.to_dtype(dtype)?;
    let x = Tensor::randn(0f32, 1.0, (m, k), cpu)?.to_dtype(dtype)?;
    let reference = EightBitLinear::quantize(&w, b.clone(), format)?;
    let mut layer = EightBitLinear::quantize(&w.to_device(gpu)?, b.to_device(gpu)?, format)?;
    layer.set_fp8_fast_accumulation(fast);
    let xg = x.to_device(gpu)?;
    // cuBLASLt's time, or why it has none: it may have no kernel for a shape (FP8 at 16 x 8192 x
    // 2048 with these scales and a bias: NOT_SUPPORTED on the H100 run), which is no reason not
    // to check CUTLASS's against the CPU.
    let t_lt = time_us(gpu, || layer.forward(&xg, gelu));
    layer.set_gemm_library(GemmLibrary::Cutlass);
    let head = format!(
        "{model:<20} {:<4} {:<5} {fast:<4} {m:>5} {k:>5} {n:>5} {gelu:>5}",
        format.name(),
        format!("{dtype:?}")
    );
    if let Err(why) = layer.cutlass(gelu) {
        if fast && dtype == DType::BF16 {
            println!("{head} skipped: no CUTLASS kernel by design ({why}); cuBLASLt runs it");
            return Ok(0);
        }
        println!("{head} no CUTLASS kernel: {why} FAILED");
        return Ok(1);
    }
    let got = layer.forward(&xg, gelu)?;
    let want = reference.forward(&x, gelu)?;
    let (err, finite) = rel_err(&got, &want)?;
    let bound = linear_bound(dtype, fast);
    let ok = finite && err <= bound && got.dims() == want.dims();
    let t_cu = time_us(gpu, || layer.forward(&xg, gelu))?;
    let (lt, speedup, why) = match &t_lt {
        Ok(t) => (
            format!("{t:>11.1}"),
            format!("{:>6.2}x", t / t_cu),
            String::new(),
        ),
        Err(e) => (
            format!("{:>11}", "n/a"),
            format!("{:>7}", "n/a"),
            format!(
                " (cuBLASLt: {})",
                e.to_string().lines().next().unwrap_or("")
            ),
        ),
    };
    println!(
        "{head} {err:>11.2e} {bound:>8.1e} {t_cu:>10.1} {lt} {speedup} {}{why}",
        if ok { "ok" } else { "FAILED" }
    );
    Ok(usize::from(!ok))
}

/// The float FFN-in: f16/bf16 GEMM + bias + erf GELU in one CUTLASS kernel against f32 on the CPU.
fn float_checks(gpu: &Device, cpu: &Device, quick: bool) -> usize {
    let mut failures = 0;
    println!(
        "{:<5} {:>5} {:>5} {:>5} {:>11} {:>8} {:>10} {:>11} {:>7} result (float bias + GELU GEMM)",
        "dtype", "rows", "in", "out", "vs f32", "bound", "cutlass us", "cublas us", "speedup"
    );
    for dtype in [DType::F16, DType::BF16] {
        if quick && dtype == DType::BF16 {
            continue;
        }
        for &(m, k, n) in &[
            (8192, 768, 3072),
            (2048, 768, 3072),
            (512, 2048, 8192),
            (16, 576, 1536),
        ] {
            let label = format!("float {dtype:?} {m} {k} {n}");
            failures += guarded(&label, || float_check(gpu, cpu, dtype, (m, k, n)));
        }
    }
    failures
}

fn float_check(
    gpu: &Device,
    cpu: &Device,
    dtype: DType,
    (m, k, n): (usize, usize, usize),
) -> Result<usize> {
    let w = Tensor::randn(0f32, 0.05, (n, k), cpu)?.to_dtype(dtype)?;
    let b = Tensor::randn(0f32, 0.1, n, cpu)?.to_dtype(dtype)?;
    let x = Tensor::randn(0f32, 1.0, (m, k), cpu)?.to_dtype(dtype)?;
    // The reference: the same rounded inputs, in f32.
    let f = |t: &Tensor| t.to_dtype(DType::F32);
    let want = f(&x)?
        .matmul(&f(&w)?.t()?)?
        .broadcast_add(&f(&b)?)?
        .gelu_erf()?;
    let (wg, bg, xg) = (w.to_device(gpu)?, b.to_device(gpu)?, x.to_device(gpu)?);
    let got = runner::ops::float_gemm::linear_bias_gelu(&xg, &wg, &bg)?;
    let (err, finite) = rel_err(&got, &want)?;
    let bound = linear_bound(dtype, false);
    let ok = finite && err <= bound;
    let plain = candle_nn::Linear::new(wg.clone(), None);
    let t_cu = time_us(gpu, || {
        runner::ops::float_gemm::linear_bias_gelu(&xg, &wg, &bg)
    })?;
    let t_lt = time_us(gpu, || {
        runner::ops::fused::bias_act(&plain.forward(&xg)?, &bg, true)
    })?;
    println!(
        "{:<5} {m:>5} {k:>5} {n:>5} {err:>11.2e} {bound:>8.1e} {t_cu:>10.1} {t_lt:>11.1} {:>6.2}x {}",
        format!("{dtype:?}"),
        t_lt / t_cu,
        if ok { "ok" } else { "FAILED" }
    );
    Ok(usize::from(!ok))
}

/// A NaN in one input row reaches that row's output, and only it: every kernel of the library
/// (each forced in turn, at 300 rows: a partial tile), the packed FFN and the float GELU GEMM.
fn nan_checks(gpu: &Device, cpu: &Device) -> usize {
    nan_checks_for(gpu, cpu, |_| true)
}

/// [`nan_checks`] through the kernels `which` keeps (the packed FFNs whatever it says).
fn nan_checks_for(
    gpu: &Device,
    cpu: &Device,
    which: impl Fn(&runner::ops::cutlass::Instance) -> bool,
) -> usize {
    use runner::ops::cutlass::{self, Inputs};
    let (m, k, n) = (300, 256, 512);
    let row = 137;
    let only_row = |t: &Tensor| -> Result<bool> {
        let rows: Vec<Vec<f32>> = t.to_dtype(DType::F32)?.to_vec2()?;
        Ok(rows
            .iter()
            .enumerate()
            .all(|(r, v)| v.iter().all(|x| x.is_nan() == (r == row))))
    };
    let input = |dtype: DType| -> Result<Tensor> {
        let mut v: Vec<f32> = Tensor::randn(0f32, 1.0, (m, k), cpu)?
            .flatten_all()?
            .to_vec1()?;
        v[row * k + 11] = f32::NAN;
        Tensor::from_vec(v, (m, k), gpu)?.to_dtype(dtype)
    };
    let say = |what: &str, caught: bool| {
        println!(
            "{what}: a NaN input reaches its row's output (and only it): {caught} {}",
            if caught { "ok" } else { "FAILED" }
        );
        usize::from(!caught)
    };
    let mut failures = 0;
    for instance in cutlass::INSTANCES.iter().filter(|i| which(i)) {
        let kind = instance.kind;
        failures += guarded(&format!("NaN {}", instance.name), || {
            let x = input(kind.out)?;
            cutlass::force(Some(instance));
            let out = match kind.inputs {
                Inputs::Float => {
                    let w = Tensor::randn(0f32, 0.05, (n, k), gpu)?.to_dtype(kind.out)?;
                    let b = Tensor::zeros(n, kind.out, gpu)?;
                    runner::ops::float_gemm::linear_bias_gelu(&x, &w, &b)
                }
                Inputs::Int8 | Inputs::E4m3 => {
                    let format = if kind.inputs == Inputs::Int8 {
                        EightBit::Int8
                    } else {
                        EightBit::Fp8E4M3
                    };
                    let w = Tensor::randn(0f32, 0.05, (n, k), gpu)?;
                    let mut l =
                        EightBitLinear::quantize(&w, Tensor::zeros(n, kind.out, gpu)?, format)?;
                    l.set_fp8_fast_accumulation(kind.fast_accumulation);
                    l.set_gemm_library(GemmLibrary::Cutlass);
                    l.cutlass(kind.gelu).map_err(candle_core::Error::msg)?;
                    l.forward(&x, kind.gelu)
                }
            };
            cutlass::force(None);
            Ok(say(&format!("kernel {}", instance.name), only_row(&out?)?))
        });
    }
    cutlass::force(None);
    for &(format, dtype, fast) in EIGHT_BIT {
        if fast && dtype == DType::BF16 {
            continue;
        }
        let what = format!("{} {dtype:?} fast {fast} FFN packed between", format.name());
        failures += guarded(&what, || {
            let x = input(dtype)?;
            let w1 = Tensor::randn(0f32, 0.05, (n, k), gpu)?;
            let w2 = Tensor::randn(0f32, 0.05, (k, n), gpu)?;
            let mut l1 = EightBitLinear::quantize(&w1, Tensor::zeros(n, dtype, gpu)?, format)?;
            let mut l2 = EightBitLinear::quantize(&w2, Tensor::zeros(k, dtype, gpu)?, format)?;
            for l in [&mut l1, &mut l2] {
                l.set_fp8_fast_accumulation(fast);
                l.set_gemm_library(GemmLibrary::Cutlass);
            }
            l1.cutlass(true).map_err(candle_core::Error::msg)?;
            l2.cutlass(false).map_err(candle_core::Error::msg)?;
            let packed = l1
                .forward_gelu_packed(&x, None, &l2)?
                .ok_or_else(|| candle_core::Error::msg("no packed FFN"))?;
            Ok(say(&what, only_row(&l2.forward_packed(&packed)?)?))
        });
    }
    failures
}
