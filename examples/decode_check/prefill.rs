//! `decode_check prefill`: the flash prefill attention (src/ops/prefill.rs, prefill.cu) against
//! its plain twin (f32 scores over K and V repeated per query head) on fresh random inputs, then
//! the whole decoder with `prefill_attention = "flash"` against the plain one:
//!
//! 1. the kernel at the presets' head shapes (GQA groups 3, 7, 4, 2; head_dim 64 and 128) and
//!    the tiny configs' (head_dim 16), batch 1 and 8, prompt lengths 1, 17, 64, 100 and 512 at
//!    position 0 and two continuations (17 at 100, 64 at 512), bf16 and f16, the cache holding
//!    random values past the prompt (which must not leak in): worst |got - want| / max |want|
//!    within 3e-2 (bf16) and 4e-3 (f16) (kernels.rs's bounds: P is rounded to the dtype before
//!    PV, the context to the dtype at the end, the twin rounds its context too);
//! 2. a NaN in sequence 0's keys (KV head 0, position 50) reaches sequence 0's query heads of
//!    that KV head at positions >= 50 only;
//! 3. the kernel captured as a CUDA graph and replayed: bit-identical to eager;
//! 4. the decoder, flash against plain on the same weights (bf16; f16 once): the prefill's
//!    logits within 5e-2 of their scale, the greedy first tokens compared, then 8 greedy decode
//!    steps on from each prefill's cache; and the whole prefill captured (the cell's fixed
//!    prefill) replayed against eager, bit-identical.
//!
//! `timing` lines: one layer's attention each way at the presets' heads (batch 8, prompt 512),
//! and each decoder's whole eager prefill each way.

use std::time::Instant;

use candle_core::{DType, Device, Result, Tensor};
use runner::config::{Implementation, Precision, PrefillAttention};
use runner::model::decoder::DecoderSpec;
use runner::model::workload::{greedy, DecoderUnit, Generate, Phase};
use runner::ops::graph::{FixedWork, GraphMode};
use runner::ops::prefill;

use super::kernels::{err, report, SHAPES};

const CAPACITY: usize = 640;
/// (prompt length, start): from position 0, and two continuations.
const SPANS: [(usize, usize); 7] = [
    (1, 0),
    (17, 0),
    (64, 0),
    (100, 0),
    (512, 0),
    (17, 100),
    (64, 512),
];

fn randn(shape: &[usize], dtype: DType, dev: &Device) -> Result<Tensor> {
    Tensor::randn(0f32, 1f32, shape, dev)?.to_dtype(dtype)
}

fn pass(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "FAIL"
    }
}

fn has_nan(t: &Tensor) -> Result<bool> {
    let t = t.to_dtype(DType::F32)?;
    Ok(t.ne(&t)?
        .to_dtype(DType::F32)?
        .sum_all()?
        .to_scalar::<f32>()?
        > 0.0)
}

fn check_shapes(dev: &Device, dtype: DType, batch: usize) -> Result<bool> {
    let mut ok = true;
    let tiny = ("tiny-d16", 0, 0, 4, 2, 16);
    for (name, _, _, heads, kv_heads, d) in SHAPES.into_iter().chain([tiny]) {
        let keys = randn(&[batch, kv_heads, CAPACITY, d], dtype, dev)?;
        let values = randn(&[batch, kv_heads, CAPACITY, d], dtype, dev)?;
        let mut errors = Vec::new();
        for (len, start) in SPANS {
            let q = randn(&[batch, heads, len, d], dtype, dev)?;
            let got = prefill::prefill_attention(&q, &keys, &values, start)?;
            let want = prefill::plain_prefill_attention(&q, &keys, &values, start)?;
            errors.push((format!("len {len}@{start}"), err(&got, &want)?));
        }
        let named: Vec<(&str, f32)> = errors.iter().map(|(n, e)| (n.as_str(), *e)).collect();
        ok &= report(&format!("prefill_attention {name} b{batch}"), dtype, &named);
    }
    Ok(ok)
}

/// Median ms of `f` over 5 timed calls after one warm call (synchronized around each).
fn time_ms(dev: &Device, f: &dyn Fn() -> Result<Tensor>) -> Result<f64> {
    f()?;
    let mut v = Vec::new();
    for _ in 0..5 {
        dev.synchronize()?;
        let t = Instant::now();
        f()?;
        dev.synchronize()?;
        v.push(t.elapsed().as_secs_f64() * 1e3);
    }
    v.sort_by(|a, b| a.total_cmp(b));
    Ok(v[2])
}

/// One layer's prefill attention at the presets' heads, batch 8, prompt 512, bf16: the flash
/// kernel and the plain twin, ms per call, and the kernel's rate on the causal FLOPs
/// (2 b H d L (L + 1): QK^T and PV over the keys each query sees).
fn timing(dev: &Device) -> Result<bool> {
    let (batch, len, dtype) = (8, 512, DType::BF16);
    for (name, _, _, heads, kv_heads, d) in SHAPES {
        let keys = randn(&[batch, kv_heads, CAPACITY, d], dtype, dev)?;
        let values = randn(&[batch, kv_heads, CAPACITY, d], dtype, dev)?;
        let q = randn(&[batch, heads, len, d], dtype, dev)?;
        let flash = time_ms(dev, &|| prefill::prefill_attention(&q, &keys, &values, 0))?;
        let plain = time_ms(dev, &|| {
            prefill::plain_prefill_attention(&q, &keys, &values, 0)
        })?;
        let flops = 2.0 * (batch * heads * d * len * (len + 1)) as f64;
        println!(
            "timing,prefill_attention,{name},b{batch} len {len},flash {flash:.4} ms,plain {plain:.4} ms,plain/flash {:.1}x,flash {:.1} TFLOP/s causal",
            plain / flash,
            flops / (flash * 1e-3) / 1e12
        );
    }
    Ok(true)
}

/// Checks 2 and 3 at Llama-3.2-1B's heads, batch 8, bf16.
fn check_nan_and_graph(dev: &Device) -> Result<bool> {
    let (batch, heads, kv_heads, d, dtype, len) = (8, 32, 8, 64, DType::BF16, 100);
    let groups = heads / kv_heads;
    let keys = randn(&[batch, kv_heads, CAPACITY, d], dtype, dev)?;
    let values = randn(&[batch, kv_heads, CAPACITY, d], dtype, dev)?;
    let q = randn(&[batch, heads, len, d], dtype, dev)?;
    let nan = Tensor::new(&[f32::NAN], dev)?
        .to_dtype(dtype)?
        .reshape((1, 1, 1, 1))?;
    let poisoned = keys.slice_assign(&[0..1, 0..1, 50..51, 0..1], &nan)?;
    // (batch, len, heads * d)
    let out = prefill::prefill_attention(&q, &poisoned, &values, 0)?;
    let seq0 = out.get(0)?;
    let reached = has_nan(&seq0.narrow(0, 50, len - 50)?.narrow(1, 0, groups * d)?)?;
    let others = has_nan(&out.narrow(0, 1, batch - 1)?)?
        || has_nan(&seq0.narrow(0, 0, 50)?)?
        || has_nan(&seq0.narrow(1, groups * d, (heads - groups) * d)?)?;
    let confined = reached && !others;
    println!(
        "kernel,nan propagation prefill_attention,BF16,{},{}",
        if confined {
            "NaN reaches sequence 0's heads of KV head 0 at positions >= 50 only"
        } else if reached {
            "NaN not confined"
        } else {
            "NaN did not reach its rows"
        },
        pass(confined)
    );
    let eager = prefill::prefill_attention(&q, &keys, &values, 0)?;
    let work = || prefill::prefill_attention(&q, &keys, &values, 0);
    let fixed = FixedWork::new(dev, GraphMode::Auto, "prefill_attention", work);
    let mut same = fixed.execution().is_graph();
    let mut errors = Vec::new();
    for _ in 0..3 {
        let e = err(&fixed.run()?.copy()?, &eager)?;
        same &= e == 0.0;
        errors.push(format!("{e:.1e}"));
    }
    println!(
        "kernel,prefill_attention graph replay,BF16,{},{},{}",
        fixed.describe().replace(',', ";"),
        errors.join(" "),
        pass(same)
    );
    Ok(confined && same)
}

fn own(arch: &str, preset: &str, attention: PrefillAttention) -> DecoderSpec {
    let mut s =
        DecoderSpec::resolve(arch, Some(preset), None, 5, Implementation::Own).expect("a preset");
    s.prefill_attention = attention;
    s
}

fn rel(a: &Tensor, b: &Tensor) -> Result<f32> {
    let (a, b) = (a.to_dtype(DType::F32)?, b.to_dtype(DType::F32)?);
    let d = (&a - &b)?
        .abs()?
        .flatten_all()?
        .max(0)?
        .to_scalar::<f32>()?;
    let scale = a.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
    Ok(d / scale.max(1e-3))
}

fn ids(t: &Tensor) -> Result<Vec<u32>> {
    t.flatten_all()?.to_vec1()
}

/// The prefill's units alone (the per-layer profiler's: embeddings, block 0's attention and MLP
/// halves, block 0, the head), eager ms each: where a prefill's time goes.
fn units(m: &mut dyn Generate, prompt: &Tensor, dev: &Device) -> Result<String> {
    let Some(layers) = m.layers() else {
        candle_core::bail!("no per-layer access");
    };
    let captured = layers.capture(Phase::Prefill, prompt, 0)?;
    let mut out = Vec::new();
    for u in &captured.units {
        let keep = matches!(
            u.unit,
            DecoderUnit::Embeddings
                | DecoderUnit::Attention(0)
                | DecoderUnit::Mlp(0)
                | DecoderUnit::Block(0)
                | DecoderUnit::Head
        );
        if keep {
            let t = time_ms(dev, &|| layers.run_unit(Phase::Prefill, u))?;
            out.push(format!("{} {t:.3} ms", u.unit.name()));
        }
    }
    Ok(out.join(" | "))
}

/// Check 4 for one preset: (prefill logits difference, first tokens agreeing, steps agreeing).
fn decoder(
    arch: &str,
    preset: &str,
    precision: Precision,
    batch: usize,
    len: usize,
    dev: &Device,
) -> Result<bool> {
    let steps = 8;
    let (plain, flash) = (
        own(arch, preset, PrefillAttention::Plain),
        own(arch, preset, PrefillAttention::Flash),
    );
    let vocab = plain.shapes.vocab;
    let v: Vec<u32> = (0..batch * len)
        .map(|i| ((i * 7919 + 13) % (vocab - 1)) as u32 + 1)
        .collect();
    let prompt = Tensor::from_vec(v, (batch, len), dev)?;
    let mut a = plain
        .load(precision, dev)
        .map_err(candle_core::Error::wrap)?;
    let mut b = flash
        .load(precision, dev)
        .map_err(candle_core::Error::wrap)?;
    let record = b.implementation();
    let ran = record.get("prefill_attention").cloned().unwrap_or_default();
    a.reserve(batch, len + steps + 1)?;
    b.reserve(batch, len + steps + 1)?;
    let (la, lb) = (a.prefill(&prompt)?, b.prefill(&prompt)?);
    let worst_prefill = rel(&la, &lb)?;
    let (ta, tb) = (greedy(&la)?, greedy(&lb)?);
    let first_same = ids(&ta)?
        .iter()
        .zip(ids(&tb)?)
        .filter(|(x, y)| **x == *y)
        .count();
    // Each decodes on from its own prefill's cache with the plain tokens (the same inputs).
    let mut worst_steps = 0f32;
    let mut tok = ta;
    for _ in 0..steps {
        let (sa, sb) = (a.step(&tok)?, b.step(&tok)?);
        worst_steps = worst_steps.max(rel(&sa, &sb)?);
        tok = greedy(&sa)?;
    }
    // The whole prefill (prompt + the last position's logits), eager, each way.
    let mut ms = Vec::new();
    for m in [&mut a, &mut b] {
        let mut v = Vec::new();
        for _ in 0..3 {
            m.reset()?;
            dev.synchronize()?;
            let t = Instant::now();
            m.prefill(&prompt)?;
            dev.synchronize()?;
            v.push(t.elapsed().as_secs_f64() * 1e3);
        }
        v.sort_by(|x, y| x.total_cmp(y));
        ms.push(v[1]);
    }
    let name = precision.name();
    println!(
        "timing,prefill eager,{preset},{name},b{batch} len {len},plain {:.3} ms,flash {:.3} ms",
        ms[0], ms[1]
    );
    if batch == 8 {
        for (way, m) in [("plain", &mut a), ("flash", &mut b)] {
            println!(
                "timing,prefill units,{preset},{name},b{batch} len {len},{way},{}",
                units(&mut **m, &prompt, dev)?
            );
        }
        a.reset()?;
        b.reset()?;
    }
    let bound = 5e-2;
    let ok = ran.starts_with("flash")
        && !worst_prefill.is_nan()
        && worst_prefill <= bound
        && worst_steps <= bound;
    println!(
        "flash_vs_plain,{preset},{name},b{batch} len {len},prefill logits worst {worst_prefill:.2e} (bound {bound:.0e}),first tokens {first_same}/{batch} identical,{steps} steps on worst {worst_steps:.2e},{}",
        pass(ok)
    );
    Ok(ok)
}

/// The cell's fixed prefill with flash attention, captured and replayed, against eager.
fn decoder_graph(arch: &str, preset: &str, batch: usize, len: usize, dev: &Device) -> Result<bool> {
    let s = own(arch, preset, PrefillAttention::Flash);
    let vocab = s.shapes.vocab;
    let v: Vec<u32> = (0..batch * len)
        .map(|i| ((i * 31 + 7) % (vocab - 1)) as u32 + 1)
        .collect();
    let prompt = Tensor::from_vec(v, (batch, len), dev)?;
    let mut m = s
        .load(Precision::Bf16, dev)
        .map_err(candle_core::Error::wrap)?;
    m.reserve(batch, len + 8)?;
    let fixed = m
        .fixed_prefill(&prompt)?
        .expect("the own decoder has a fixed prefill");
    let want = (fixed.run)()?.copy()?;
    let graph = FixedWork::stateful(
        dev,
        GraphMode::Auto,
        "one prefill",
        &fixed.run,
        &*fixed.restore,
    );
    let mut same = graph.execution().is_graph();
    let mut errors = Vec::new();
    for _ in 0..2 {
        let e = err(&graph.run()?.copy()?, &want)?;
        same &= e == 0.0;
        errors.push(format!("{e:.1e}"));
    }
    println!(
        "flash_graph,{preset},bf16,b{batch} len {len},{},{},{}",
        graph.describe().replace(',', ";"),
        errors.join(" "),
        pass(same)
    );
    Ok(same)
}

/// Every check; true when all passed. Each failure is a line, never an abort of the rest.
pub fn check_all(dev: &Device) -> Result<bool> {
    let mut ok = true;
    let mut note = |what: &str, r: Result<bool>| match r {
        Ok(passed) => ok &= passed,
        Err(e) => {
            println!("error,{what},{e},FAIL");
            ok = false;
        }
    };
    for dtype in [DType::BF16, DType::F16] {
        for batch in [1, 8] {
            note(
                &format!("prefill_attention {dtype:?} b{batch}"),
                check_shapes(dev, dtype, batch),
            );
        }
    }
    note("prefill_attention nan/graph", check_nan_and_graph(dev));
    note("prefill_attention timing", timing(dev));
    let cases: [(&str, &str, Precision, usize, usize); 8] = [
        ("llama", "llama-tiny", Precision::Bf16, 2, 17),
        ("qwen2", "qwen2-tiny", Precision::Bf16, 2, 100),
        ("qwen3", "qwen3-tiny", Precision::Bf16, 2, 65),
        ("llama", "smollm2-135m", Precision::Bf16, 8, 512),
        ("llama", "smollm2-135m", Precision::Fp16, 1, 100),
        ("qwen2", "qwen2.5-0.5b", Precision::Bf16, 8, 512),
        ("llama", "llama-3.2-1b", Precision::Bf16, 8, 512),
        ("qwen3", "qwen3-0.6b", Precision::Bf16, 1, 512),
    ];
    for (arch, preset, precision, batch, len) in cases {
        note(
            &format!("flash_vs_plain {preset}"),
            decoder(arch, preset, precision, batch, len, dev),
        );
    }
    note(
        "flash_graph smollm2-135m",
        decoder_graph("llama", "smollm2-135m", 8, 512, dev),
    );
    println!("prefill_checks,{}", pass(ok));
    Ok(ok)
}
