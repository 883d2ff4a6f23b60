//! `cutlass_check --tactics`: `device.gemm_tactics = "timed"` and the kernels it chooses among
//! (src/ops/cutlass/tactics.rs).
//!
//! 1. Every int8 -> f16 kernel without GELU (the row rule's 128x128 ping-pong, 128x256
//!    cooperative, and session 8's 128x128 cooperative, 128x128 ping-pong without clusters and
//!    128x64 ping-pong; session 17's 128x128 cooperative stream-K with its workspace and 128x96
//!    ping-pong without clusters) forced in
//!    turn on the same fresh layer and input at DistilBERT/BERT's shapes (64 x 128 and 16 x 128 tokens; BERT-large's at 16 x 128) and the decoders' (16 and 512
//!    tokens): against the CPU reference (bound as every int8 linear), against the rule's kernel
//!    on the GPU (int32 accumulation and the same epilogue: the same bits are expected), and timed
//!    in a CUDA graph; each line says which kernel the tactics picked for the shape and its time.
//! 2. A NaN input reaching its row's output, and only it, through each new kernel.
//! 3. The models with tactics timed: DistilBERT-base int8-fp16 (static FFN steps), fp16 (fused
//!    embeddings) and fp8-fp16, graph replay against eager on fresh batches (the capture's
//!    warm-up times the shapes), and the picks the record would name.

use candle_core::{DType, Device, Result, Tensor};
use runner::config::{EightBit, GemmLibrary, GemmTactics};
use runner::model::parts::w8a8::EightBitLinear;
use runner::ops::cutlass::{self, tactics, Inputs, Kind};

use super::{guarded, rel_err, time_us};

/// The kernels sessions 8 and 17 added (tactic candidates only: the row rule never picks them).
pub const NEW: &[&str] = &[
    "i8_f16_co128",
    "i8_f16_pp128c1",
    "i8_f16_pp128x64",
    "i8_f16_co128sk",
    "i8_f16_pp128x96c1",
];

const INT8: Kind = Kind {
    inputs: Inputs::Int8,
    out: DType::F16,
    gelu: false,
    fast_accumulation: false,
};

/// (model, rows, in, out).
pub fn shapes() -> Vec<(&'static str, usize, usize, usize)> {
    let mut v = Vec::new();
    for rows in [8192, 2048] {
        for (k, n) in [(768, 2304), (768, 768), (3072, 768), (768, 3072)] {
            v.push(("distilbert/bert-base", rows, k, n));
        }
    }
    for (k, n) in [(1024, 3072), (1024, 1024), (4096, 1024)] {
        v.push(("bert-large", 2048, k, n));
    }
    for (name, d, kv, ffn) in [
        ("qwen2.5-0.5b", 896, 128, 4864),
        ("llama-3.2-1b", 2048, 512, 8192),
    ] {
        for rows in [16, 512] {
            for (k, n) in [(d, d), (d, kv), (d, ffn), (ffn, d)] {
                v.push((name, rows, k, n));
            }
        }
    }
    v
}

/// In the order a call cut short loses last: the flagship's shapes, NaN rows, the flagship's
/// models, the other shapes, the FP8 model.
pub fn tactics_checks(gpu: &Device, cpu: &Device) -> usize {
    println!(
        "tactic {:<20} {:>5} {:>5} {:>5} {:<16} {:>11} {:>9} {:>13} {:>8} result",
        "model", "rows", "in", "out", "kernel", "max rel err", "bound", "|x - rule|", "us"
    );
    let (flagship, others): (Vec<_>, Vec<_>) = shapes()
        .into_iter()
        .partition(|s| s.0 == "distilbert/bert-base");
    let sweep = |list: Vec<(&'static str, usize, usize, usize)>| {
        let mut failures = 0;
        for (model, m, k, n) in list {
            failures += guarded(&format!("tactic {model} {m} {k} {n}"), || {
                one_shape(gpu, cpu, model, (m, k, n))
            });
        }
        cutlass::force(None);
        failures
    };
    let mut failures = sweep(flagship);
    failures += super::nan_checks_for(gpu, cpu, |i| NEW.contains(&i.name));
    failures += models(gpu, &["int8-fp16 static", "fp16 fused-emb"]);
    failures += sweep(others);
    failures += models(gpu, &["fp8-fp16"]);
    failures
}

pub fn one_shape(
    gpu: &Device,
    cpu: &Device,
    model: &str,
    (m, k, n): (usize, usize, usize),
) -> Result<usize> {
    let w = Tensor::randn(0f32, 0.05, (n, k), cpu)?;
    let b = Tensor::randn(0f32, 0.1, n, cpu)?.to_dtype(DType::F16)?;
    let x = Tensor::randn(0f32, 1.0, (m, k), cpu)?.to_dtype(DType::F16)?;
    let reference = EightBitLinear::quantize(&w, b.clone(), EightBit::Int8)?;
    let mut layer =
        EightBitLinear::quantize(&w.to_device(gpu)?, b.to_device(gpu)?, EightBit::Int8)?;
    layer.set_gemm_library(GemmLibrary::Cutlass);
    let want = reference.forward(&x, false)?;
    let xg = x.to_device(gpu)?;
    // The tactics' candidates, then the kernels not yet checked on a GPU (never timed by the
    // runner until this check has passed: `cutlass_check --rows`).
    let mut candidates = tactics::candidates(INT8, m, n);
    candidates.extend(cutlass::instances(INT8).filter(|i| i.rule == cutlass::Rule::Unchecked));
    let rule = candidates[0];
    cutlass::force(Some(rule));
    let rule_out = layer.forward(&xg, false)?.to_dtype(DType::F32)?;
    let bound = super::linear_bound(DType::F16, false);
    let mut failures = 0;
    let mut times = Vec::new();
    for &c in &candidates {
        cutlass::force(Some(c));
        let run = || layer.forward(&xg, false);
        let line = match run() {
            Ok(got) => {
                let (err, finite) = rel_err(&got, &want)?;
                let same = (got.to_dtype(DType::F32)? - &rule_out)?
                    .abs()?
                    .flatten_all()?
                    .max(0)?
                    .to_scalar::<f32>()?;
                let us = time_us(gpu, run)?;
                // int32 accumulation and the same epilogue in every configuration: the rule's bits.
                let ok = finite && err <= bound && same == 0.0;
                failures += usize::from(!ok);
                times.push(Ok(us));
                format!(
                    "{err:>11.2e} {bound:>9.1e} {same:>13.3e} {us:>8.1} {}",
                    if ok { "ok" } else { "FAILED" }
                )
            }
            Err(e) => {
                // A configuration that cannot take a shape is no failure: the tactics skip it.
                times.push(Err(e.to_string()));
                format!("cannot run: {e}")
            }
        };
        println!(
            "tactic {model:<20} {m:>5} {k:>5} {n:>5} {:<16} {line}{}",
            c.name,
            if c == rule { " (rule)" } else { "" }
        );
    }
    cutlass::force(None);
    let best = tactics::fastest(&times).map_or("none", |i| candidates[i].name);
    println!("tactic {model:<20} {m:>5} {k:>5} {n:>5} fastest here: {best}");
    Ok(failures)
}

/// The models with `gemm_tactics = "timed"`: graph replay = eager at several shapes (each
/// capture's warm-up times its GEMMs), then the table of picks.
pub fn models(gpu: &Device, names: &[&str]) -> usize {
    tactics::set_tactics(GemmTactics::Timed);
    let failures = super::model::graph_checks_named(gpu, names);
    println!("tactics picks: {}", tactics::describe(&tactics::picks()));
    tactics::set_tactics(GemmTactics::Rule);
    failures
}
