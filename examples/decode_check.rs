//! The runner's own Llama-family decoder on a GPU, against candle-transformers' model on the same
//! (seeded random) weights and against itself replayed as one CUDA graph per decode step:
//!
//! 1. fp32: greedy tokens of both over 64 steps (batch 2) must be identical; worst logit
//!    difference relative to the logits' scale (NaN caught).
//! 2. bf16: the same, reporting agreement and the worst difference (bounded by 5 %).
//! 3. the fixed step replayed as a CUDA graph against the same step run eagerly, step by step
//!    over 32 steps (logits and tokens), NaN caught.
//! 4. ms per decode step at the cell's context (prompt 512 + 128 steps), bf16, batch 1 and 8, for
//!    candle-transformers (eager, Tensor::cat cache), the own decoder eager, its graph, and its
//!    graph with the fused decode kernels; samples alternated so drift hits all alike. Printed as
//!    CSV lines `timing,...`.
//!
//! `profile` times each launch of a fused layer step alone inside a CUDA graph
//! (decode_check/profile.rs); `fused` runs the fused decode kernels' checks alone (issue 30's
//! rule), then stops:
//!
//! 5. every kernel of src/ops/decode.rs against its plain twin on fresh random inputs
//!    (decode_check/kernels.rs), f32/f16/bf16, batch 1 and 8, NaN caught; the one-launch
//!    attention at lengths 1..640 and forced split counts, repeatability, NaN confined to its
//!    sequence, graph replay at new positions against eager (decode_check/attention.rs);
//! 6. the own decoder with `decode_kernels = "fused"` against the plain one on the same weights:
//!    greedy tokens identical over 64 steps in fp32 (worst logit difference <= 1e-4 of scale),
//!    bf16 over 16 steps (worst <= 5 %), for llama/mistral/qwen2/qwen3 tiny configs and SmolLM2;
//! 7. the fused step replayed as a CUDA graph against itself eager (32 steps).
//!
//! `gemv` runs the decode GEMV's checks alone (examples/decode_check/gemv.rs: each fused GEMV
//! against its plain twin, launched plainly and programmatically) and checks 6-7 for
//! `decode_kernels = "gemv"` and `"gemv-pdl"`; `gemv-pdl` the programmatic GEMV checks and 6-7 for
//! `"gemv-pdl"` alone; `gemv-bulk` the bulk GEMV's checks (decode_check/bulk.rs) and the wide
//! attention merge's (attention.rs's check_wide), then 6-7 for `"gemv-bulk"` on a shorter model
//! list (llama and qwen2 tiny, SmolLM2); `bulk-kernels`, `wide` and `decoder WAY` (6-7 on that
//! list for one way) are its parts, to run side by side. `fold-kernels` checks gemv-fold's kernels
//! (decode_check/fold.rs); `decoder gemv-fold` its decoder. `lean-kernels` and `lean-decoder`
//! (decode_check/lean.rs): gemv-lean's kernels, and its fixed step against its own eager steps.
//! `steps PRESET BATCH...` times the whole step's graph per way (decode_check/steps.rs);
//! `ncu-step PRESET WAY step|gemvs|attn|none` one way's step for Nsight Compute (ncu_step.rs).
//!
//! `prefill` runs the flash prefill attention's checks alone (examples/decode_check/prefill.rs:
//! the kernel against its plain twin, NaN, graph replay, the decoder with `prefill_attention =
//! "flash"` against the plain one).
//!
//!     cargo run --release --features cuda --example decode_check -- [fused|gemv|gemv-pdl|gemv-bulk|bulk-kernels|wide|decoder WAY|prefill|profile|steps|boundary PRESET LAYERS WAY] [PRESETS...]

#[path = "decode_check/attention.rs"]
mod attention;
#[path = "decode_check/boundary.rs"]
mod boundary;
#[path = "decode_check/bulk.rs"]
mod bulk;
#[path = "decode_check/fold.rs"]
mod fold;
#[path = "decode_check/gemv.rs"]
mod gemv;
#[path = "decode_check/kernels.rs"]
mod kernels;
#[path = "decode_check/lean.rs"]
mod lean;
#[path = "decode_check/ncu_step.rs"]
mod ncu_step;
#[path = "decode_check/prefill.rs"]
mod prefill;
#[path = "decode_check/profile.rs"]
mod profile;
#[path = "decode_check/steps.rs"]
mod steps;

use std::time::Instant;

use candle_core::{DType, Device, Result, Tensor};
use runner::config::{DecodeKernels, Implementation, Precision};
use runner::model::decoder::DecoderSpec;
use runner::model::workload::greedy;
use runner::ops::graph::{FixedWork, GraphMode};

fn spec(arch: &str, preset: &str, implementation: Implementation) -> DecoderSpec {
    DecoderSpec::resolve(arch, Some(preset), None, 5, implementation).expect("a preset")
}

fn max_abs(t: &Tensor) -> Result<f32> {
    t.to_dtype(DType::F32)?
        .abs()?
        .flatten_all()?
        .max(0)?
        .to_scalar()
}

fn rel_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
    let d = max_abs(&(a.to_dtype(DType::F32)? - b.to_dtype(DType::F32)?)?)?;
    Ok(d / max_abs(a)?.max(1e-3))
}

fn ids(t: &Tensor) -> Result<Vec<u32>> {
    t.flatten_all()?.to_vec1()
}

fn prompt(device: &Device, batch: usize, len: usize, vocab: usize) -> Result<Tensor> {
    let v: Vec<u32> = (0..batch * len)
        .map(|i| ((i * 7919 + 13) % (vocab - 1)) as u32 + 1)
        .collect();
    Tensor::from_vec(v, (batch, len), device)
}

/// The own decoder with the fused decode kernels.
fn fused_spec(arch: &str, preset: &str) -> DecoderSpec {
    kernels_spec(arch, preset, DecodeKernels::Fused)
}

/// The own decoder with these decode kernels.
fn kernels_spec(arch: &str, preset: &str, kernels: DecodeKernels) -> DecoderSpec {
    let mut s = spec(arch, preset, Implementation::Own);
    s.decode_kernels = kernels;
    s
}

/// Greedy side by side: (steps with identical tokens, worst relative logit difference).
fn versus(
    arch: &str,
    preset: &str,
    precision: Precision,
    steps: usize,
    dev: &Device,
) -> Result<(usize, f32)> {
    let a = spec(arch, preset, Implementation::Crate);
    let b = spec(arch, preset, Implementation::Own);
    versus_specs(&a, &b, precision, steps, dev)
}

/// [`versus`] of any two decoders (`b` reserves its cache for the steps).
fn versus_specs(
    a_spec: &DecoderSpec,
    b_spec: &DecoderSpec,
    precision: Precision,
    steps: usize,
    dev: &Device,
) -> Result<(usize, f32)> {
    let mut a = a_spec
        .load(precision, dev)
        .map_err(candle_core::Error::wrap)?;
    let mut b = b_spec
        .load(precision, dev)
        .map_err(candle_core::Error::wrap)?;
    a.reserve(2, 16 + steps + 1)?;
    let p = prompt(dev, 2, 16, a_spec.shapes.vocab)?;
    b.reserve(2, 16 + steps + 1)?;
    let (mut la, mut lb) = (a.prefill(&p)?, b.prefill(&p)?);
    let mut worst = 0f32;
    for step in 0..=steps {
        let d = rel_diff(&la, &lb)?;
        if d.is_nan() {
            candle_core::bail!("NaN in the logits at step {step}");
        }
        worst = worst.max(d);
        let (ta, tb) = (greedy(&la)?, greedy(&lb)?);
        if ids(&ta)? != ids(&tb)? || step == steps {
            return Ok((step, worst));
        }
        la = a.step(&ta)?;
        lb = b.step(&tb)?;
    }
    unreachable!()
}

/// The fixed step as a graph against the same step eager, step by step.
fn graph_versus_eager(arch: &str, preset: &str, dev: &Device) -> Result<String> {
    graph_versus_eager_of(&spec(arch, preset, Implementation::Own), dev)
}

fn graph_versus_eager_of(s: &DecoderSpec, dev: &Device) -> Result<String> {
    let mut m = s
        .load(Precision::Bf16, dev)
        .map_err(candle_core::Error::wrap)?;
    let steps = 32;
    m.reserve(2, 64 + steps)?;
    let first = greedy(&m.prefill(&prompt(dev, 2, 64, s.shapes.vocab)?)?)?;
    m.mark()?;
    let fixed = m
        .fixed_step(&first, steps)?
        .expect("the own decoder has a fixed step");
    let eager = FixedWork::stateful(
        dev,
        GraphMode::Off,
        "one decode step",
        &fixed.run,
        &*fixed.restore,
    );
    let graph = FixedWork::stateful(
        dev,
        GraphMode::Auto,
        "one decode step",
        &fixed.run,
        &*fixed.restore,
    );
    let mut want = Vec::new();
    (fixed.restore)()?;
    for _ in 0..steps {
        want.push(eager.run()?.copy()?);
    }
    (fixed.restore)()?;
    let mut worst = 0f32;
    let mut same_tokens = 0;
    for w in &want {
        let got = graph.run()?;
        let d = rel_diff(w, &got)?;
        if d.is_nan() {
            candle_core::bail!("NaN in the replayed step");
        }
        worst = worst.max(d);
        same_tokens += usize::from(ids(&greedy(w)?)? == ids(&greedy(&got)?)?);
    }
    Ok(format!(
        "{}; {same_tokens}/{steps} steps with identical tokens, worst logit difference {worst:.2e} of scale",
        graph.describe()
    ))
}

/// Median ms per decode step of each way, alternated.
fn timing(arch: &str, preset: &str, batch: usize, dev: &Device) -> Result<()> {
    let (prompt_len, steps, samples) = (512, 128, 5);
    let s = spec(arch, preset, Implementation::Own);
    let p = prompt(dev, batch, prompt_len, s.shapes.vocab)?;
    let mut crate_run = spec(arch, preset, Implementation::Crate)
        .load(Precision::Bf16, dev)
        .map_err(candle_core::Error::wrap)?;
    let first = greedy(&crate_run.prefill(&p)?)?;
    crate_run.mark()?;
    let mut own = s
        .load(Precision::Bf16, dev)
        .map_err(candle_core::Error::wrap)?;
    own.reserve(batch, prompt_len + steps)?;
    let t = Instant::now();
    own.prefill(&p)?;
    dev.synchronize()?;
    let own_prefill_ms = t.elapsed().as_secs_f64() * 1e3;
    own.mark()?;
    let fixed = own.fixed_step(&first, steps)?.expect("a fixed step");
    let eager = FixedWork::stateful(
        dev,
        GraphMode::Off,
        "one decode step",
        &fixed.run,
        &*fixed.restore,
    );
    let graph = FixedWork::stateful(
        dev,
        GraphMode::Auto,
        "one decode step",
        &fixed.run,
        &*fixed.restore,
    );
    // The same step with the fused decode kernels, on the same prompt.
    let mut fused_model = fused_spec(arch, preset)
        .load(Precision::Bf16, dev)
        .map_err(candle_core::Error::wrap)?;
    fused_model.reserve(batch, prompt_len + steps)?;
    fused_model.prefill(&p)?;
    fused_model.mark()?;
    let fused_fixed = fused_model
        .fixed_step(&first, steps)?
        .expect("a fixed step");
    let fused = FixedWork::stateful(
        dev,
        GraphMode::Auto,
        "one decode step",
        &fused_fixed.run,
        &*fused_fixed.restore,
    );
    let mut t_crate = Vec::new();
    let mut t_eager = Vec::new();
    let mut t_graph = Vec::new();
    let mut t_fused = Vec::new();
    for _ in 0..samples {
        crate_run.rewind()?;
        let mut tok = first.clone();
        dev.synchronize()?;
        let t = Instant::now();
        for _ in 0..steps {
            tok = greedy(&crate_run.step(&tok)?)?;
        }
        dev.synchronize()?;
        t_crate.push(t.elapsed().as_secs_f64() * 1e3 / steps as f64);
        for (work, out) in [(&eager, &mut t_eager), (&graph, &mut t_graph)] {
            (fixed.restore)()?;
            dev.synchronize()?;
            let t = Instant::now();
            for _ in 0..steps {
                work.run()?;
            }
            dev.synchronize()?;
            out.push(t.elapsed().as_secs_f64() * 1e3 / steps as f64);
        }
        (fused_fixed.restore)()?;
        dev.synchronize()?;
        let t = Instant::now();
        for _ in 0..steps {
            fused.run()?;
        }
        dev.synchronize()?;
        t_fused.push(t.elapsed().as_secs_f64() * 1e3 / steps as f64);
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    let (c, e, g) = (med(&mut t_crate), med(&mut t_eager), med(&mut t_graph));
    let f = med(&mut t_fused);
    println!(
        "timing,{preset},bf16,batch={batch},prompt={prompt_len},steps={steps},crate_ms_per_step={c:.4},own_eager_ms_per_step={e:.4},own_graph_ms_per_step={g:.4},own_fused_graph_ms_per_step={f:.4},graph_vs_crate={:.3},fused_vs_plain_graph={:.3},own_prefill_ms_once={own_prefill_ms:.2},execution={},fused_execution={}",
        g / c,
        f / g,
        graph.describe().replace(',', ";"),
        fused.describe().replace(',', ";")
    );
    Ok(())
}

/// Checks 5-7 (the fused decode kernels, and the decode GEMV's); true when every one passed.
fn fused_checks(dev: &Device) -> Result<bool> {
    let mut ok = kernels::check_all(dev)?;
    ok &= attention::check_all(dev)?;
    ok &= gemv::check_all(dev)?;
    ok &= decoder_checks(dev, DecodeKernels::Fused)?;
    ok &= decoder_checks(dev, DecodeKernels::Gemv)?;
    println!("fused_checks,{}", if ok { "PASS" } else { "FAIL" });
    Ok(ok)
}

/// `decode_check gemv`: the decode GEMV's kernel checks and its decoder's (checks 5-7 for
/// `decode_kernels = "gemv"` alone).
fn gemv_checks(dev: &Device) -> Result<bool> {
    let mut ok = gemv::check_all(dev)?;
    ok &= decoder_checks(dev, DecodeKernels::Gemv)?;
    ok &= decoder_checks(dev, DecodeKernels::GemvPdl)?;
    println!("gemv_checks,{}", if ok { "PASS" } else { "FAIL" });
    Ok(ok)
}

/// Checks 6-7 for the decoder with `kernels`: against the plain one, and graph against eager.
fn decoder_checks(dev: &Device, kernels: DecodeKernels) -> Result<bool> {
    let cases = [
        ("llama", "llama-tiny"),
        ("mistral", "mistral-tiny"),
        ("qwen2", "qwen2-tiny"),
        ("qwen3", "qwen3-tiny"),
        ("llama", "smollm2-135m"),
    ];
    let graphs = [("llama", "smollm2-135m"), ("qwen2", "qwen2.5-0.5b")];
    decoder_checks_of(dev, kernels, &cases, &graphs)
}

/// [`decoder_checks`] on fewer models, to fit a short GPU call: llama (no bias) and qwen2 (the
/// Q|K|V bias) tiny, SmolLM2's real widths; the graph of SmolLM2 (each line printed as it ends).
fn decoder_checks_quick(dev: &Device, kernels: DecodeKernels) -> Result<bool> {
    let cases = [
        ("llama", "llama-tiny"),
        ("qwen2", "qwen2-tiny"),
        ("llama", "smollm2-135m"),
    ];
    decoder_checks_of(dev, kernels, &cases, &[("llama", "smollm2-135m")])
}

fn decoder_checks_of(
    dev: &Device,
    kernels: DecodeKernels,
    cases: &[(&str, &str)],
    graphs: &[(&str, &str)],
) -> Result<bool> {
    let mut ok = true;
    let label = kernels.name();
    for &(arch, preset) in cases {
        let (plain, fused) = (
            spec(arch, preset, Implementation::Own),
            kernels_spec(arch, preset, kernels),
        );
        for (precision, steps, bound) in [(Precision::Fp32, 64, 1e-4), (Precision::Bf16, 16, 0.05)]
        {
            let name = precision.name();
            match versus_specs(&plain, &fused, precision, steps, dev) {
                Ok((agreed, worst)) => {
                    // fp32 must agree on every token; bf16 is bounded by its logits.
                    let pass = worst <= bound && (precision != Precision::Fp32 || agreed == steps);
                    ok &= pass;
                    println!(
                        "{label}_vs_plain,{preset},{name},{agreed}/{steps} identical greedy steps,worst {worst:.2e} (bound {bound:.0e}),{}",
                        if pass { "PASS" } else { "FAIL" }
                    );
                }
                Err(e) => {
                    ok = false;
                    println!("{label}_vs_plain,{preset},{name},error: {e},FAIL");
                }
            }
        }
    }
    for &(arch, preset) in graphs {
        match graph_versus_eager_of(&kernels_spec(arch, preset, kernels), dev) {
            Ok(line) => {
                let pass = line.contains("32/32") && line.contains("0.00e0 of scale");
                ok &= pass;
                println!(
                    "{label}_graph,{preset},bf16,{line},{}",
                    if pass { "PASS" } else { "FAIL" }
                );
            }
            Err(e) => {
                ok = false;
                println!("{label}_graph,{preset},bf16,error: {e},FAIL");
            }
        }
    }
    Ok(ok)
}

fn main() -> Result<()> {
    let dev = Device::new_cuda(0)?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("fused") {
        let ok = fused_checks(&dev)?;
        std::process::exit(if ok { 0 } else { 1 });
    }
    if args.first().map(String::as_str) == Some("gemv") {
        let ok = gemv_checks(&dev)?;
        std::process::exit(if ok { 0 } else { 1 });
    }
    if args.first().map(String::as_str) == Some("gemv-pdl") {
        let mut ok = gemv::check_programmatic(&dev)?;
        ok &= decoder_checks(&dev, DecodeKernels::GemvPdl)?;
        println!("gemv_pdl_checks,{}", if ok { "PASS" } else { "FAIL" });
        std::process::exit(if ok { 0 } else { 1 });
    }
    if args.first().map(String::as_str) == Some("gemv-bulk") {
        // The bulk GEMV against its plain twin, then the gemv-bulk decoder, then gemv-pdl's
        // (session 6's owed check), on the quick model list.
        let mut ok = bulk::check_all(&dev)?;
        ok &= attention::check_wide(&dev)?;
        ok &= decoder_checks_quick(&dev, DecodeKernels::GemvBulk)?;
        println!("gemv_bulk_checks,{}", if ok { "PASS" } else { "FAIL" });
        std::process::exit(if ok { 0 } else { 1 });
    }
    // The same in parts, for processes side by side in a short call.
    if args.first().map(String::as_str) == Some("bulk-kernels") {
        let ok = bulk::check_all(&dev)?;
        println!("bulk_kernel_checks,{}", if ok { "PASS" } else { "FAIL" });
        std::process::exit(if ok { 0 } else { 1 });
    }
    if args.first().map(String::as_str) == Some("fold-kernels") {
        let ok = fold::check_all(&dev)?;
        println!("fold_kernel_checks,{}", if ok { "PASS" } else { "FAIL" });
        std::process::exit(if ok { 0 } else { 1 });
    }
    if args.first().map(String::as_str) == Some("lean-kernels") {
        let ok = lean::check_all(&dev)?;
        println!("lean_kernel_checks,{}", if ok { "PASS" } else { "FAIL" });
        std::process::exit(if ok { 0 } else { 1 });
    }
    if args.first().map(String::as_str) == Some("lean-decoder") {
        let mut ok = true;
        for (arch, preset) in [
            ("llama", "llama-tiny"),
            ("qwen2", "qwen2-tiny"),
            ("llama", "smollm2-135m"),
        ] {
            ok &= lean::fixed_versus_steps(&dev, arch, preset).unwrap_or_else(|e| {
                println!("gemv-lean_fixed_vs_step,{preset},error: {e},FAIL");
                false
            });
        }
        println!("lean_decoder_checks,{}", if ok { "PASS" } else { "FAIL" });
        std::process::exit(if ok { 0 } else { 1 });
    }
    if args.first().map(String::as_str) == Some("wide") {
        let ok = attention::check_wide(&dev)?;
        println!("wide_attention_checks,{}", if ok { "PASS" } else { "FAIL" });
        std::process::exit(if ok { 0 } else { 1 });
    }
    if args.first().map(String::as_str) == Some("decoder") {
        // `decoder WAY`: checks 6-7 on the quick model list for one way (a second process beside
        // `gemv-bulk` in a short call: gemv-pdl's owed 64-step fp32 check and graph = eager).
        let ways = [
            DecodeKernels::Fused,
            DecodeKernels::Gemv,
            DecodeKernels::GemvPdl,
            DecodeKernels::GemvBulk,
            DecodeKernels::GemvFold,
            DecodeKernels::GemvCluster,
            DecodeKernels::GemvLean,
        ];
        let want = args.get(1).map_or("gemv-pdl", String::as_str);
        let Some(&way) = ways.iter().find(|k| k.name() == want) else {
            candle_core::bail!(
                "decoder {want}: not one of fused, gemv, gemv-pdl, gemv-bulk, gemv-fold, gemv-cluster, gemv-lean"
            );
        };
        let ok = decoder_checks_quick(&dev, way)?;
        println!("decoder_checks,{want},{}", if ok { "PASS" } else { "FAIL" });
        std::process::exit(if ok { 0 } else { 1 });
    }
    if args.first().map(String::as_str) == Some("prefill") {
        let ok = prefill::check_all(&dev)?;
        std::process::exit(if ok { 0 } else { 1 });
    }
    if args.first().map(String::as_str) == Some("profile") {
        return profile::profile(&dev, &args[1..]);
    }
    if args.first().map(String::as_str) == Some("ncu-step") {
        return ncu_step::ncu_step(&dev, &args[1..]);
    }
    if args.first().map(String::as_str) == Some("boundary") {
        let preset = args.get(1).map_or("smollm2-135m", String::as_str);
        let arch = if preset.starts_with("qwen") {
            "qwen2"
        } else {
            "llama"
        };
        let layers = args.get(2).and_then(|n| n.parse().ok());
        let way = match args.get(3) {
            None => DecodeKernels::Plain,
            Some(w) => serde_json::from_value(serde_json::Value::String(w.clone()))
                .map_err(|e| candle_core::Error::Msg(format!("boundary: way {w:?}: {e}")))?,
        };
        let ok = boundary::boundary(&dev, arch, preset, layers, way)?;
        std::process::exit(if ok { 0 } else { 1 });
    }
    if args.first().map(String::as_str) == Some("steps") {
        let preset = args.get(1).map_or("llama-3.2-1b", String::as_str);
        let arch = if preset.starts_with("qwen") {
            "qwen2"
        } else {
            "llama"
        };
        let rest = &args[2.min(args.len())..];
        let batches: Vec<usize> = rest.iter().filter_map(|b| b.parse().ok()).collect();
        let named: Vec<DecodeKernels> = (steps::WAYS.iter())
            .filter(|k| rest.iter().any(|a| a == k.name()))
            .copied()
            .collect();
        let ways = if named.is_empty() {
            &steps::WAYS[..]
        } else {
            &named[..]
        };
        for batch in if batches.is_empty() { vec![1] } else { batches } {
            if let Err(e) = steps::steps(&dev, arch, preset, batch, ways) {
                println!("step,{preset},bf16,batch={batch},error: {e}");
            }
        }
        return Ok(());
    }
    if args.first().map(String::as_str) == Some("timing") {
        for (arch, preset) in [
            ("llama", "smollm2-135m"),
            ("qwen2", "qwen2.5-0.5b"),
            ("llama", "llama-3.2-1b"),
        ] {
            if args.len() > 1 && !args[1..].iter().any(|o| o == preset) {
                continue;
            }
            for batch in [1, 8] {
                if let Err(e) = timing(arch, preset, batch, &dev) {
                    println!("timing,{preset},bf16,batch={batch},error: {e}");
                }
            }
        }
        return Ok(());
    }
    for arch in ["llama", "mistral", "qwen2", "qwen3"] {
        let tiny = format!("{arch}-tiny");
        match versus(arch, &tiny, Precision::Fp32, 64, &dev) {
            Ok((agreed, worst)) => println!(
                "versus,{tiny},fp32,{agreed}/64 identical greedy steps,worst {worst:.2e},{}",
                if agreed == 64 && worst <= 1e-4 {
                    "PASS"
                } else {
                    "FAIL"
                }
            ),
            Err(e) => println!("versus,{tiny},fp32,error: {e}"),
        }
        match versus(arch, &tiny, Precision::Bf16, 16, &dev) {
            Ok((agreed, worst)) => println!(
                "versus,{tiny},bf16,{agreed}/16 identical greedy steps,worst {worst:.2e},{}",
                if worst <= 0.05 { "PASS" } else { "FAIL" }
            ),
            Err(e) => println!("versus,{tiny},bf16,error: {e}"),
        }
    }
    for (arch, preset) in [("llama", "smollm2-135m"), ("qwen2", "qwen2.5-0.5b")] {
        match versus(arch, preset, Precision::Fp32, 64, &dev) {
            Ok((agreed, worst)) => println!(
                "versus,{preset},fp32,{agreed}/64 identical greedy steps,worst {worst:.2e}"
            ),
            Err(e) => println!("versus,{preset},fp32,error: {e}"),
        }
        match graph_versus_eager(arch, preset, &dev) {
            Ok(line) => println!("graph,{preset},bf16,{line}"),
            Err(e) => println!("graph,{preset},bf16,error: {e}"),
        }
    }
    let only: Vec<String> = std::env::args().skip(1).collect();
    for (arch, preset) in [
        ("llama", "smollm2-135m"),
        ("qwen2", "qwen2.5-0.5b"),
        ("llama", "llama-3.2-1b"),
    ] {
        if !only.is_empty() && !only.iter().any(|o| o == preset) {
            continue;
        }
        for batch in [1, 8] {
            if let Err(e) = timing(arch, preset, batch, &dev) {
                println!("timing,{preset},bf16,batch={batch},error: {e}");
            }
        }
    }
    Ok(())
}
