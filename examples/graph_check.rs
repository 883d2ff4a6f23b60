//! The CUDA-graph forward against the eager one, on DistilBERT-base (random weights, the real
//! architecture) on a GPU: for each precision (fp16, bf16, fp32, int8-fp16, fp8-fp16) and shape, capture, then check the replayed logits
//! against the eager pass on FRESH random batches (not the one captured with: the graph must read
//! its input buffers), and time both as the runner's loop does (one forward + synchronize per
//! loop), alternating eager and graph samples so drift hits both alike.
//!
//!     cargo run --release --features cuda --example graph_check -- [SAMPLES] [cutlass]
//!
//! With `cutlass`, the precisions whose GEMMs the CUTLASS library takes (`device.gemm_library =
//! "cutlass"`: fp16, bf16, int8-fp16, fp8-fp16, int8-bf16, fp8-bf16) run through it instead.
//!
//! Prints one line per case: capture result, node count, max |graph - eager| over 3 fresh batches
//! (must be 0: same kernels, same order), NaN check, and median ms per loop of each.

use candle_core::{DType, Result};
use candle_nn::VarBuilder;
use runner::config::EightBit;
use runner::model::{encoder, Encoder, Head, Numerics, Preset};
use runner::ops::graph::GraphMode;

mod common;
use common::{batch, replay_against_eager};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<()> {
    let samples: usize = std::env::args()
        .nth(1)
        .map_or(20, |a| a.parse().expect("SAMPLES"));
    let cutlass = std::env::args().nth(2).as_deref() == Some("cutlass");
    let library = if cutlass {
        runner::config::GemmLibrary::Cutlass
    } else {
        runner::config::GemmLibrary::Cublaslt
    };
    let device = runner::device::open_cuda(0).map_err(candle_core::Error::msg)?;
    let preset = Preset::DISTILBERT_BASE_UNCASED;
    let tensors = encoder::random_tensors(&preset, 0).map_err(candle_core::Error::msg)?;
    let cases: &[(usize, usize)] = &[(1, 128), (16, 128), (64, 128), (1, 1), (3, 512), (32, 77)];
    let mut failures = 0;
    println!(
        "{:<9} {:>5} {:>4} {:<10} {:>6} {:>10} {:>6} {:>9} {:>9} {:>7}",
        "dtype",
        "batch",
        "seq",
        "execution",
        "nodes",
        "max diff",
        "finite",
        "eager ms",
        "graph ms",
        "speedup"
    );
    // The float precisions, and W8A8 (whose norms and GELU write the next GEMM's packed input).
    let precisions: &[(&str, DType, Option<EightBit>)] = if cutlass {
        &[
            ("fp16", DType::F16, None),
            ("bf16", DType::BF16, None),
            ("int8-fp16", DType::F16, Some(EightBit::Int8)),
            ("fp8-fp16", DType::F16, Some(EightBit::Fp8E4M3)),
            ("int8-bf16", DType::BF16, Some(EightBit::Int8)),
            ("fp8-bf16", DType::BF16, Some(EightBit::Fp8E4M3)),
        ]
    } else {
        &[
            ("fp16", DType::F16, None),
            ("bf16", DType::BF16, None),
            ("fp32", DType::F32, None),
            ("int8-fp16", DType::F16, Some(EightBit::Int8)),
            ("fp8-fp16", DType::F16, Some(EightBit::Fp8E4M3)),
        ]
    };
    for &(name, dtype, eight_bit) in precisions {
        let vb = VarBuilder::from_tensors(tensors.clone(), dtype, &device);
        let numerics = Numerics {
            float: dtype,
            quant: None,
            eight_bit,
        };
        let mut model = Encoder::load(vb, &preset, numerics, Head::Checkpoint)?;
        model.set_gemm_library(library);
        if cutlass {
            let gemms = model.implementation().remove("gemms").unwrap_or_default();
            println!("{name}: {gemms}");
        }
        for &(b, s) in cases {
            let (ids, mask) = batch(&device, b, s, preset.vocab_size, 1)?;
            let mut forward = model.cell_forward(&ids, &mask, GraphMode::Auto);
            let inputs = [ids.clone(), mask.clone()];
            let execution = forward.execution().clone();
            let (max_diff, finite) =
                replay_against_eager(&model, &mut forward, &device, (b, s), preset.vocab_size)?;
            let ok = execution.is_graph() && max_diff == 0.0 && finite;
            failures += usize::from(!ok);
            // Timing: alternate one sample of each; a sample is 20 loops of forward + sync.
            let (mut te, mut tg) = (Vec::new(), Vec::new());
            for _ in 0..3 {
                model.forward(&ids, &mask)?;
                forward.forward(&inputs)?;
            }
            device.synchronize()?;
            for _ in 0..samples {
                for (times, graph) in [(&mut te, false), (&mut tg, true)] {
                    let t = std::time::Instant::now();
                    for _ in 0..20 {
                        if graph {
                            forward.forward(&inputs)?;
                        } else {
                            model.forward(&ids, &mask)?;
                        }
                        device.synchronize()?;
                    }
                    times.push(t.elapsed().as_secs_f64() * 1e3 / 20.0);
                }
            }
            let (me, mg) = (median(te), median(tg));
            let label = match &execution {
                runner::ops::graph::Execution::CudaGraph { .. } => "cuda-graph",
                _ => "eager",
            };
            let nodes = match &execution {
                runner::ops::graph::Execution::CudaGraph { nodes, .. } => nodes.to_string(),
                _ => "-".into(),
            };
            println!(
                "{name:<9} {b:>5} {s:>4} {label:<10} {nodes:>6} {max_diff:>10.3e} {finite:>6} {me:>9.3} {mg:>9.3} {:>6.2}x {}",
                me / mg,
                if ok { "ok" } else { "FAILED" }
            );
            if !execution.is_graph() {
                println!("      {}", execution.describe());
            }
        }
    }
    println!("graph_check: {failures} failed");
    if failures > 0 {
        std::process::exit(1);
    }
    Ok(())
}
