//! `cutlass_check --rows`: session 9's epilogues (src/ops/kernels/cutlass/gemm_rows.cuh: the
//! column vectors loaded in one round trip, wider subtiles; gemm_codes_lean.cuh: the codes in one
//! node, ties to even) on fresh random inputs, in the order a call cut short should keep:
//!
//! 1. FFN-in writing int8 codes with the lean setting at 8192 rows: every codes kernel forced in
//!    turn, its codes within one step of the standard kernel's, timed (lean.rs's sweep);
//! 2. the static FFN against the CPU (codes within one step, saturation, row scales, FFN-out on
//!    the codes, a NaN row) with i8_codes_gelu_pp128rows forced (session 9's kernels are
//!    Rule::Unchecked: neither the rule nor the tactics run them until this check has passed);
//! 3. the flagship's int8 -> f16 shapes (64 x 128 and 16 x 128 tokens of DistilBERT/BERT-base):
//!    every kernel the tactics time, i8_f16_pp128rows and i8_f16_pp128c1rows among them, against
//!    the CPU and bit-equal to the rule's kernel, timed in CUDA graphs (tactics.rs's sweep);
//! 4. DistilBERT-base int8-fp16 (static FFN steps) with each new kernel forced, then int8-fp16 and
//!    fp16 with the lean setting and the tactics timed: graph replay against eager, and the picks;
//! 5. the codes kernels at 2048 rows; a NaN input row through the new f16 kernels (that row's
//!    output only); the static FFN with i8_codes_gelu_pp128rne forced; the other shapes of
//!    tactics.rs's sweep (BERT-large, the decoders).

use candle_core::Device;
use runner::config::GeluEpilogue;
use runner::ops::cutlass;

use super::guarded;

/// The f16 kernels this session added (tactic candidates only).
const NEW_F16: &[&str] = &["i8_f16_pp128rows", "i8_f16_pp128c1rows"];

pub fn rows_checks(gpu: &Device, cpu: &Device) -> usize {
    cutlass::set_gelu_epilogue(GeluEpilogue::Lean);
    let codes_kind = cutlass::Kind {
        inputs: cutlass::Inputs::Int8,
        out: candle_core::DType::U8,
        gelu: true,
        fast_accumulation: false,
    };
    println!(
        "rows: the lean rule's codes kernel (session 9's stay Rule::Unchecked until this passes): {}",
        cutlass::choose(codes_kind, 8192, 3072).map_or("none", |i| i.name)
    );
    let (flagship, others): (Vec<_>, Vec<_>) = super::tactics::shapes()
        .into_iter()
        .partition(|s| s.0 == "distilbert/bert-base");
    let sweep = |list: Vec<(&'static str, usize, usize, usize)>| {
        let mut failures = 0;
        for (model, m, k, n) in list {
            failures += guarded(&format!("tactic {model} {m} {k} {n}"), || {
                super::tactics::one_shape(gpu, cpu, model, (m, k, n))
            });
        }
        cutlass::force(None);
        failures
    };
    // Most important first (a call cut short keeps it): the codes kernels at the flagship's
    // rows, the static FFN against the CPU with the lean rule's kernel, the f16 sweep, the
    // models, then the rest.
    let mut failures = guarded("codes kernels 8192", || {
        super::lean::codes_variants(gpu, cpu, 8192)
    });
    // Session 9's kernels are Rule::Unchecked (neither the rule nor the tactics run them until
    // this check has passed): forced here, one at a time.
    let find = |name: &str| cutlass::INSTANCES.iter().find(|i| i.name == name);
    let Some(rows_codes) = find("i8_codes_gelu_pp128rows") else {
        println!("rows: no i8_codes_gelu_pp128rows in this build FAILED");
        return failures + 1;
    };
    println!("rows: static FFN with {} forced", rows_codes.name);
    cutlass::force(Some(rows_codes));
    failures += super::static_ffn::static_checks(gpu, cpu);
    cutlass::force(None);
    failures += sweep(flagship);
    for name in ["i8_codes_gelu_pp128rows", "i8_f16_pp128rows"] {
        if let Some(i) = find(name) {
            println!("rows: the models with {name} forced");
            cutlass::force(Some(i));
            failures += super::model::graph_checks_named(gpu, &["int8-fp16 static"]);
            cutlass::force(None);
        }
    }
    failures += super::tactics::models(gpu, &["int8-fp16 static", "fp16 fused-emb"]);
    failures += guarded("codes kernels 2048", || {
        super::lean::codes_variants(gpu, cpu, 2048)
    });
    failures += super::nan_checks_for(gpu, cpu, |i| NEW_F16.contains(&i.name));
    if let Some(rne) = find("i8_codes_gelu_pp128rne") {
        println!("rows: static FFN with {} forced", rne.name);
        cutlass::force(Some(rne));
        failures += super::static_ffn::static_checks(gpu, cpu);
        cutlass::force(None);
    }
    failures += sweep(others);
    cutlass::set_gelu_epilogue(GeluEpilogue::Standard);
    failures
}
