//! `decode_kernels = "gemv-fold"`'s kernels against their plain twins on fresh random inputs
//! (`decode_check fold-kernels`):
//!
//! - gemv.cu's gemv_fold, the RMSNorm applied to the finished dot products (Q|K|V with and
//!   without a bias, gate|up, 1001 rows) against `plain_gemv` with the RMSNorm prologue, and with
//!   SwiGLU out against `plain_gemv` then `plain_swiglu`; every preset shape, f32/f16/bf16, batch
//!   1, 3, 8, plain and programmatic launches; NaN in batch row 1 to row 1 only; two calls
//!   bit-identical.
//! - gemv_split (the down projection's columns split over a block's warps) and gemv_long (gemv
//!   with 16 loads in flight a lane) against `plain_gemv` + residual (+ bias), at the same shapes
//!   and launches.
//! - decode.cu's argmax_rows_f32 (the fixed step's greedy pick) against candle's argmax: equal
//!   tokens, ties to the lowest index, NaN never picked, graph replay = eager.
//! - decode.cu's decode_attention_rope (rope_kv_write folded into the one-launch attention)
//!   against `plain_rope_kv_write` then `plain_decode_attention`, each on its own copy of the
//!   cache: the context and both whole caches after the call (the position's K and V written, the
//!   rest untouched), at lengths 1 to 640 (the position's key in the first, a middle and the last
//!   split), every preset shape plus head_dim 16 and 32 (the tiny configs), a Q|K|V bias (qwen2)
//!   and per-head norms (qwen3); NaN in sequence 1's Q|K|V row reaches sequence 1 only; its graph
//!   replayed at new positions = eager.
//! - decode.cu's decode_attention_cluster (the same work, its 8 splits merged in a thread-block
//!   cluster through distributed shared memory: gemv-cluster's attention): the same
//!   checks, every dtype and batch; decode_attention_rope (kept, selectable) bf16 b1 and its graph.

use candle_core::{DType, Device, Result, Tensor};
use runner::ops::decode::gemv::{
    gemv_fold_into, gemv_long_into, gemv_split_into, plain_gemv, Prologue,
};
use runner::ops::decode::{self, AttentionScratch, CacheAt, Launch, RopeArgs};
use runner::ops::graph::{FixedWork, GraphMode};

use super::gemv::nan_rows;
use super::kernels::{err, report, SHAPES};

const CAPACITY: usize = 640;

fn randn(shape: &[usize], scale: f64, dtype: DType, dev: &Device) -> Result<Tensor> {
    (Tensor::randn(0f32, 1f32, shape, dev)? * scale)?.to_dtype(dtype)
}

/// Row 1 of `t` (batch, cols) with a NaN in its first column.
fn poison(t: &Tensor, dev: &Device) -> Result<Tensor> {
    let (batch, cols) = t.dims2()?;
    let nan = Tensor::full(f32::NAN, (1, 1), dev)?.to_dtype(t.dtype())?;
    let row1 = Tensor::cat(&[&nan, &t.narrow(0, 1, 1)?.narrow(1, 1, cols - 1)?], 1)?;
    Tensor::cat(
        &[&t.narrow(0, 0, 1)?, &row1, &t.narrow(0, 2, batch - 2)?],
        0,
    )
}

fn check_gemv(dev: &Device, dtype: DType, batch: usize, launch: Launch) -> Result<bool> {
    let mut ok = true;
    let kind = match launch {
        Launch::Stream => "gemv-fold",
        Launch::Programmatic => "gemv-fold pdl",
    };
    for (name, hidden, inter, heads, kv_heads, d) in SHAPES {
        let width = (heads + 2 * kv_heads) * d;
        let h = randn(&[batch, hidden], 1.0, dtype, dev)?;
        let norm_w = randn(&[hidden], 0.1, DType::F32, dev)?
            .affine(1.0, 1.0)?
            .to_dtype(dtype)?;
        let rms = Prologue::RmsNorm {
            weight: &norm_w,
            eps: 1e-5,
        };
        let scale = 1.0 / (hidden as f64).sqrt();
        let w_qkv = randn(&[width, hidden], scale, dtype, dev)?;
        let bias = randn(&[width], 0.5, dtype, dev)?;
        let w_gu = randn(&[2 * inter, hidden], scale, dtype, dev)?;
        let w_odd = randn(&[1001, hidden], scale, dtype, dev)?;
        let fold = |rows: usize, x: &Tensor, w: &Tensor, b: Option<&Tensor>, swiglu: bool| {
            let out = Tensor::zeros((batch, rows), dtype, dev)?;
            gemv_fold_into(&out, x, w, rms, b, swiglu, launch)?;
            Ok::<_, candle_core::Error>(out)
        };
        let plain = |rows: usize, x: &Tensor, w: &Tensor, b: Option<&Tensor>| {
            plain_gemv(
                &Tensor::zeros((batch, rows), dtype, dev)?,
                x,
                w,
                rms,
                b,
                false,
            )
        };
        let gate_up = plain(2 * inter, &h, &w_gu, None)?;
        let w_down = randn(&[hidden, inter], 1.0 / (inter as f64).sqrt(), dtype, dev)?;
        let act = randn(&[batch, inter], 1.0, dtype, dev)?;
        // gemv_split, or (`long`) gemv_long, + residual against the plain twin.
        let split = |out: &Tensor, x: &Tensor, w: &Tensor, b: Option<&Tensor>, long: bool| {
            let got = out.copy()?;
            if long {
                gemv_long_into(&got, x, w, b, true, launch)?;
            } else {
                gemv_split_into(&got, x, w, b, true, launch)?;
            }
            let want = plain_gemv(out, x, w, Prologue::None, b, true)?;
            err(&got, &want)
        };
        let w_o = randn(&[hidden, hidden], scale, dtype, dev)?;
        let w_odd_long = randn(&[1001, inter], 1.0 / (inter as f64).sqrt(), dtype, dev)?;
        let odd_out = randn(&[batch, 1001], 1.0, dtype, dev)?;
        let odd_bias = randn(&[1001], 0.5, dtype, dev)?;
        let errors = [
            (
                "qkv+rms",
                err(
                    &fold(width, &h, &w_qkv, None, false)?,
                    &plain(width, &h, &w_qkv, None)?,
                )?,
            ),
            (
                "qkv+rms+bias",
                err(
                    &fold(width, &h, &w_qkv, Some(&bias), false)?,
                    &plain(width, &h, &w_qkv, Some(&bias))?,
                )?,
            ),
            (
                "gate_up+rms",
                err(&fold(2 * inter, &h, &w_gu, None, false)?, &gate_up)?,
            ),
            (
                "gate_up+rms+swiglu_out",
                err(
                    &fold(inter, &h, &w_gu, None, true)?,
                    &decode::plain_swiglu(&gate_up)?,
                )?,
            ),
            (
                "split down+residual",
                split(&h, &act, &w_down, None, false)?,
            ),
            (
                "split 1001 rows+bias+residual",
                split(&odd_out, &act, &w_odd_long, Some(&odd_bias), false)?,
            ),
            ("long down+residual", split(&h, &act, &w_down, None, true)?),
            ("long o+residual", split(&h, &h, &w_o, None, true)?),
            (
                "long 1001 rows+bias+residual",
                split(&odd_out, &act, &w_odd_long, Some(&odd_bias), true)?,
            ),
            (
                "1001 rows+rms",
                err(
                    &fold(1001, &h, &w_odd, None, false)?,
                    &plain(1001, &h, &w_odd, None)?,
                )?,
            ),
        ];
        ok &= report(&format!("{kind} {name} b{batch}"), dtype, &errors);
        let once = fold(inter, &h, &w_gu, None, true)?;
        let twice = fold(inter, &h, &w_gu, None, true)?;
        let repeat = err(&once, &twice)?;
        if repeat != 0.0 {
            ok = false;
            println!(
                "kernel,{kind} {name} b{batch},{dtype:?},two calls differ by {repeat:.2e},FAIL"
            );
        }
        if batch > 1 {
            let bad = poison(&h, dev)?;
            let ra = nan_rows(&fold(width, &bad, &w_qkv, None, false)?)?;
            let rs = nan_rows(&fold(inter, &bad, &w_gu, None, true)?)?;
            let pass = ra == [1] && rs == [1];
            ok &= pass;
            println!(
                "kernel,{kind} nan {name} b{batch},{dtype:?},NaN rows of the output: qkv+rms {ra:?} gate_up+swiglu_out {rs:?} (want [1]),{}",
                if pass { "PASS" } else { "FAIL" }
            );
        }
    }
    Ok(ok)
}

/// The position tensor set in place (a captured graph reads the same buffer).
fn set(position: &Tensor, len: usize, dev: &Device) -> Result<()> {
    position.slice_set(&Tensor::new(&[len as u32 - 1], dev)?, 0, 0)
}

/// Rotary tables (CAPACITY, d / 2): position p, pair i at angle p / 10000^(2 i / d).
fn tables(d: usize, dtype: DType, dev: &Device) -> Result<(Tensor, Tensor)> {
    let inv: Vec<f32> = (0..d / 2)
        .map(|i| 10000f32.powf(-2.0 * i as f32 / d as f32))
        .collect();
    let t = Tensor::arange(0u32, CAPACITY as u32, dev)?
        .to_dtype(DType::F32)?
        .reshape((CAPACITY, 1))?
        .broadcast_mul(&Tensor::new(inv.as_slice(), dev)?.reshape((1, d / 2))?)?;
    Ok((t.cos()?.to_dtype(dtype)?, t.sin()?.to_dtype(dtype)?))
}

/// (name, heads, kv_heads, head_dim, bias, qk_norm) of the attention cases.
const ATTENTION: [(&str, usize, usize, usize, bool, bool); 7] = [
    ("smollm2-135m", 9, 3, 64, false, false),
    ("qwen2.5-0.5b+bias", 14, 2, 64, true, false),
    ("llama-3.2-1b", 32, 8, 64, false, false),
    ("qwen3-like-d128+qk_norm", 16, 8, 128, false, true),
    ("tiny-d16", 8, 2, 16, false, false),
    ("tiny-d32+qk_norm", 4, 4, 32, false, true),
    ("tiny-d32+bias g8", 16, 2, 32, true, false),
];

/// decode_attention_cluster (`cluster`) or decode_attention_rope.
fn rope_attention(
    cluster: bool,
    qkv: &Tensor,
    rope: &RopeArgs,
    at: &CacheAt,
    launch: Launch,
) -> Result<Tensor> {
    if cluster {
        decode::decode_attention_cluster(qkv, rope, at, launch)
    } else {
        decode::decode_attention_rope(qkv, rope, at, launch)
    }
}

fn kernel_name(cluster: bool) -> &'static str {
    if cluster {
        "decode_attention_cluster"
    } else {
        "decode_attention_rope"
    }
}

fn check_attention(dev: &Device, dtype: DType, batch: usize, cluster: bool) -> Result<bool> {
    let mut ok = true;
    let kname = kernel_name(cluster);
    for (name, heads, kv_heads, d, with_bias, with_norm) in ATTENTION {
        let width = (heads + 2 * kv_heads) * d;
        let qkv = randn(&[batch, width], 1.0, dtype, dev)?;
        let bias = randn(&[width], 0.5, dtype, dev)?;
        let (qn, kn) = (
            randn(&[d], 0.1, DType::F32, dev)?
                .affine(1.0, 1.0)?
                .to_dtype(dtype)?,
            randn(&[d], 0.1, DType::F32, dev)?
                .affine(1.0, 1.0)?
                .to_dtype(dtype)?,
        );
        let (cos, sin) = tables(d, dtype, dev)?;
        let rope = RopeArgs {
            cos: &cos,
            sin: &sin,
            bias: with_bias.then_some(&bias),
            qk_norm: with_norm.then_some((&qn, &kn, 1e-6)),
            heads,
            kv_heads,
            head_dim: d,
        };
        let keys = randn(&[batch, kv_heads, CAPACITY, d], 1.0, dtype, dev)?;
        let values = randn(&[batch, kv_heads, CAPACITY, d], 1.0, dtype, dev)?;
        let position = Tensor::zeros(1, DType::U32, dev)?;
        let shape = [batch, heads, kv_heads, d, CAPACITY];
        let scratch = AttentionScratch::new(shape, dtype, dev)?;
        let mut errors = Vec::new();
        for len in [1, 2, 65, 300, 577, 640] {
            set(&position, len, dev)?;
            let (ka, va, kb, vb) = (keys.copy()?, values.copy()?, keys.copy()?, values.copy()?);
            let at = |k, v| CacheAt {
                keys: k,
                values: v,
                position: &position,
                scratch: Some(&scratch),
            };
            let got =
                rope_attention(cluster, &qkv, &rope, &at(&ka, &va), Launch::Stream)?.copy()?;
            let plain_at = CacheAt {
                scratch: None,
                ..at(&kb, &vb)
            };
            let q = decode::plain_rope_kv_write(&qkv, &rope, &plain_at)?;
            let want = decode::plain_decode_attention(&q, &plain_at)?;
            let cache = err(&ka, &kb)?.max(err(&va, &vb)?);
            errors.push((format!("len {len}"), err(&got, &want)?.max(cache)));
        }
        let named: Vec<(&str, f32)> = errors.iter().map(|(n, e)| (n.as_str(), *e)).collect();
        ok &= report(
            &format!("{kname} {name} b{batch} (context and cache)",),
            dtype,
            &named,
        );
        if batch > 1 {
            set(&position, 577, dev)?;
            let at = CacheAt {
                keys: &keys.copy()?,
                values: &values.copy()?,
                position: &position,
                scratch: Some(&scratch),
            };
            let bad = poison(&qkv, dev)?;
            let out = rope_attention(cluster, &bad, &rope, &at, Launch::Stream)?;
            let rows = nan_rows(&out.reshape((batch, heads * d))?)?;
            let pass = rows == [1];
            ok &= pass;
            println!(
                "kernel,{kname} nan {name} b{batch},{dtype:?},NaN in sequence 1's Q|K|V row: NaN rows {rows:?} (want [1]),{}",
                if pass { "PASS" } else { "FAIL" }
            );
        }
    }
    Ok(ok)
}

/// The kernel captured once and replayed at new positions against eager (Llama's shape, bf16,
/// batch 8), launched programmatically as in the step.
fn check_graph(dev: &Device, cluster: bool) -> Result<bool> {
    let kname = kernel_name(cluster);
    let (batch, heads, kv_heads, d, dtype) = (8, 32, 8, 64, DType::BF16);
    let width = (heads + 2 * kv_heads) * d;
    let qkv = randn(&[batch, width], 1.0, dtype, dev)?;
    let (cos, sin) = tables(d, dtype, dev)?;
    let rope = RopeArgs {
        cos: &cos,
        sin: &sin,
        bias: None,
        qk_norm: None,
        heads,
        kv_heads,
        head_dim: d,
    };
    let keys = randn(&[batch, kv_heads, CAPACITY, d], 1.0, dtype, dev)?;
    let values = randn(&[batch, kv_heads, CAPACITY, d], 1.0, dtype, dev)?;
    let position = Tensor::zeros(1, DType::U32, dev)?;
    let scratch = AttentionScratch::new([batch, heads, kv_heads, d, CAPACITY], dtype, dev)?;
    let at = CacheAt {
        keys: &keys,
        values: &values,
        position: &position,
        scratch: Some(&scratch),
    };
    set(&position, 100, dev)?;
    let work = || rope_attention(cluster, &qkv, &rope, &at, Launch::Programmatic);
    let fixed = FixedWork::new(dev, GraphMode::Auto, kname, work);
    let mut replay_ok = fixed.execution().is_graph();
    let mut errors = Vec::new();
    for len in [1, 64, 333, 640] {
        set(&position, len, dev)?;
        let replayed = fixed.run()?.copy()?;
        let eager = rope_attention(cluster, &qkv, &rope, &at, Launch::Stream)?.copy()?;
        let e = err(&replayed, &eager)?;
        replay_ok &= e == 0.0;
        errors.push(format!("len {len} {e:.1e}"));
    }
    println!(
        "kernel,{kname} graph replay,BF16,{},{},{}",
        fixed.describe().replace(',', ";"),
        errors.join(" "),
        if replay_ok { "PASS" } else { "FAIL" }
    );
    Ok(replay_ok)
}

/// The one-launch argmax against candle's (`argmax_keepdim`): random logits at the presets'
/// vocabularies and 1001, batch 1 and 8; a row of equal maxima (the lowest index); NaN in a row
/// (never picked) and an all-NaN row (0); the scratch zero after each call (two calls agree);
/// graph replay = eager.
fn check_argmax(dev: &Device) -> Result<bool> {
    let mut ok = true;
    for vocab in [49152, 151936, 128256, 1001] {
        for batch in [1, 8] {
            let logits = (Tensor::randn(0f32, 3f32, (batch, vocab), dev)?).contiguous()?;
            let scratch = Tensor::zeros((batch, 4), DType::U32, dev)?;
            let tokens = Tensor::zeros((batch, 1), DType::U32, dev)?;
            let want: Vec<u32> = logits.argmax_keepdim(1)?.flatten_all()?.to_vec1()?;
            decode::argmax_into(&tokens, &logits, &scratch)?;
            let got: Vec<u32> = tokens.flatten_all()?.to_vec1()?;
            decode::argmax_into(&tokens, &logits, &scratch)?;
            let again: Vec<u32> = tokens.flatten_all()?.to_vec1()?;
            let pass = got == want && again == want;
            ok &= pass;
            println!(
                "kernel,argmax_rows vocab {vocab} b{batch},F32,tokens {} candle's (first rows {:?} / {:?}),{}",
                if pass { "equal" } else { "differ from" },
                &got[..got.len().min(3)],
                &want[..want.len().min(3)],
                if pass { "PASS" } else { "FAIL" }
            );
        }
    }
    // Row 0: equal maxima at 7 and 900 (7 wanted); row 1: NaN at 5 and the max at 600 (600);
    // row 2: all NaN (0).
    let mut v = vec![0f32; 3 * 1001];
    v[7] = 5.0;
    v[900] = 5.0;
    v[1001 + 5] = f32::NAN;
    v[1001 + 600] = 2.0;
    for x in &mut v[2002..] {
        *x = f32::NAN;
    }
    let logits = Tensor::from_vec(v, (3, 1001), dev)?;
    let scratch = Tensor::zeros((3, 4), DType::U32, dev)?;
    let tokens = Tensor::zeros((3, 1), DType::U32, dev)?;
    decode::argmax_into(&tokens, &logits, &scratch)?;
    let got: Vec<u32> = tokens.flatten_all()?.to_vec1()?;
    let pass = got == [7, 600, 0];
    ok &= pass;
    println!(
        "kernel,argmax_rows ties and NaN,F32,tokens {got:?} (want [7, 600, 0]),{}",
        if pass { "PASS" } else { "FAIL" }
    );
    let logits = Tensor::randn(0f32, 3f32, (8, 128256), dev)?;
    let scratch = Tensor::zeros((8, 4), DType::U32, dev)?;
    let tokens = Tensor::zeros((8, 1), DType::U32, dev)?;
    let work = || {
        decode::argmax_into(&tokens, &logits, &scratch)?;
        Ok(tokens.clone())
    };
    let fixed = FixedWork::new(dev, GraphMode::Auto, "argmax_rows", work);
    let mut replay = fixed.execution().is_graph();
    for _ in 0..3 {
        let noise = Tensor::randn(0f32, 3f32, (8, 128256), dev)?;
        logits.slice_set(&noise, 0, 0)?;
        let got: Vec<u32> = fixed.run()?.flatten_all()?.to_vec1()?;
        let want: Vec<u32> = logits.argmax_keepdim(1)?.flatten_all()?.to_vec1()?;
        replay &= got == want;
    }
    ok &= replay;
    println!(
        "kernel,argmax_rows graph replay,F32,{},new logits 3 times,{}",
        fixed.describe().replace(',', ";"),
        if replay { "PASS" } else { "FAIL" }
    );
    Ok(ok)
}

/// Every gemv-fold kernel check (`decode_check fold-kernels`); true when all passed. The
/// decoder's cases first (bf16 b1 programmatic), each line printed as it finishes.
pub fn check_all(dev: &Device) -> Result<bool> {
    let mut ok = true;
    let mut run = |what: String, r: Result<bool>| match r {
        Ok(pass) => ok &= pass,
        Err(e) => {
            ok = false;
            println!("kernel,{what},error: {e},FAIL");
        }
    };
    run(
        "gemv-fold bf16 b1".into(),
        check_gemv(dev, DType::BF16, 1, Launch::Programmatic),
    );
    run(
        "decode_attention_cluster bf16 b1".into(),
        check_attention(dev, DType::BF16, 1, true),
    );
    run(
        "decode_attention_cluster graph".into(),
        check_graph(dev, true),
    );
    run(
        "decode_attention_rope bf16 b1".into(),
        check_attention(dev, DType::BF16, 1, false),
    );
    run(
        "decode_attention_rope graph".into(),
        check_graph(dev, false),
    );
    run("argmax_rows".into(), check_argmax(dev));
    for (dtype, batch) in [
        (DType::F32, 1),
        (DType::BF16, 8),
        (DType::F16, 3),
        (DType::F32, 8),
        (DType::BF16, 3),
        (DType::F16, 1),
        (DType::F32, 3),
    ] {
        run(
            format!("decode_attention_cluster {dtype:?} b{batch}"),
            check_attention(dev, dtype, batch, true),
        );
    }
    for (dtype, batch, launch) in [
        (DType::F32, 1, Launch::Stream),
        (DType::BF16, 8, Launch::Programmatic),
        (DType::F16, 3, Launch::Stream),
        (DType::F32, 8, Launch::Programmatic),
        (DType::BF16, 3, Launch::Stream),
        (DType::F16, 1, Launch::Programmatic),
        (DType::F32, 3, Launch::Stream),
    ] {
        run(
            format!("gemv-fold {dtype:?} b{batch}"),
            check_gemv(dev, dtype, batch, launch),
        );
    }
    Ok(ok)
}
