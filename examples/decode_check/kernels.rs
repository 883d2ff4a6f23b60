//! Every fused decode kernel (src/ops/decode.rs) against its plain candle twin on fresh random
//! inputs on the GPU, in f32, f16 and bf16, at the three presets' shapes (and qwen2's bias,
//! qwen3's Q/K norms), batch 1 and 8: worst |fused - plain| / max |plain| per output, NaN caught
//! (a NaN anywhere fails the line). Bounds: f32 1e-5; f16 4e-3 and bf16 3e-2 (a rounding of the
//! output or of an intermediate the plain path stores, ~1 ulp: 2^-11 and 2^-8, plus f32 order).

use candle_core::{DType, Device, Result, Tensor};
use runner::ops::decode::{self, CacheAt, RopeArgs};

fn bound(dtype: DType) -> f32 {
    match dtype {
        DType::F32 => 1e-5,
        DType::F16 => 4e-3,
        _ => 3e-2,
    }
}

fn max_abs(t: &Tensor) -> Result<f32> {
    t.to_dtype(DType::F32)?
        .abs()?
        .flatten_all()?
        .max(0)?
        .to_scalar()
}

/// |a - b| / max |b|, NaN when either holds a NaN.
pub fn err(a: &Tensor, b: &Tensor) -> Result<f32> {
    if a.dims() != b.dims() {
        candle_core::bail!("shapes {:?} and {:?}", a.dims(), b.dims());
    }
    let (fa, fb) = (a.to_dtype(DType::F32)?, b.to_dtype(DType::F32)?);
    for t in [&fa, &fb] {
        let nan = t
            .ne(t)?
            .to_dtype(DType::F32)?
            .sum_all()?
            .to_scalar::<f32>()?;
        if nan > 0.0 {
            return Ok(f32::NAN);
        }
    }
    Ok(max_abs(&(fa - fb)?)? / max_abs(b)?.max(1e-6))
}

fn randn(shape: &[usize], dtype: DType, dev: &Device) -> Result<Tensor> {
    Tensor::randn(0f32, 1f32, shape, dev)?.to_dtype(dtype)
}

/// One line per check: name, worst error, PASS/FAIL; returns whether it passed.
pub fn report(name: &str, dtype: DType, errors: &[(&str, f32)]) -> bool {
    let b = bound(dtype);
    let worst = errors
        .iter()
        .map(|e| e.1)
        .fold(0f32, |a, e| if e.is_nan() { f32::NAN } else { a.max(e) });
    let ok = !worst.is_nan() && worst <= b;
    let parts: Vec<String> = errors.iter().map(|(n, e)| format!("{n} {e:.2e}")).collect();
    println!(
        "kernel,{name},{dtype:?},{},bound {b:.0e},{}",
        parts.join(" "),
        if ok { "PASS" } else { "FAIL" }
    );
    ok
}

/// (name, hidden, intermediate, heads, kv_heads, head_dim)
pub const SHAPES: [(&str, usize, usize, usize, usize, usize); 4] = [
    ("smollm2-135m", 576, 1536, 9, 3, 64),
    ("qwen2.5-0.5b", 896, 4864, 14, 2, 64),
    ("llama-3.2-1b", 2048, 8192, 32, 8, 64),
    ("qwen3-like-d128", 1024, 3072, 16, 8, 128),
];

fn check_norm_swiglu(dev: &Device, dtype: DType, batch: usize) -> Result<bool> {
    let mut ok = true;
    for (name, hidden, inter, ..) in SHAPES {
        let x = randn(&[batch, hidden], dtype, dev)?;
        let r = randn(&[batch, hidden], dtype, dev)?;
        let w = (randn(&[hidden], dtype, dev)? * 0.1)?;
        let (n1, s1) = decode::add_rms_norm(&x, &r, &w, 1e-5)?;
        let (n2, s2) = decode::plain_add_rms_norm(&x, &r, &w, 1e-5)?;
        ok &= report(
            &format!("add_rms_norm {name} b{batch}"),
            dtype,
            &[("normed", err(&n1, &n2)?), ("residual", err(&s1, &s2)?)],
        );
        let gu = (randn(&[batch, 2 * inter], dtype, dev)? * 3.0)?;
        let (a, b) = (decode::swiglu(&gu)?, decode::plain_swiglu(&gu)?);
        ok &= report(
            &format!("swiglu {name} b{batch}"),
            dtype,
            &[("out", err(&a, &b)?)],
        );
    }
    Ok(ok)
}

/// A position tensor (u32, (1,)).
fn at(position: usize, dev: &Device) -> Result<Tensor> {
    Tensor::new(&[position as u32], dev)
}

fn check_rope_attention(dev: &Device, dtype: DType, batch: usize) -> Result<bool> {
    let mut ok = true;
    let capacity = 640;
    for (name, _, _, heads, kv_heads, d) in SHAPES {
        for (extras, position) in [("", capacity - 1), ("+bias+qk_norm", 37), ("", 0)] {
            let width = (heads + 2 * kv_heads) * d;
            let qkv = randn(&[batch, width], dtype, dev)?;
            let bias = randn(&[width], dtype, dev)?;
            let qn = randn(&[d], dtype, dev)?.affine(0.1, 1.0)?;
            let kn = randn(&[d], dtype, dev)?.affine(0.1, 1.0)?;
            // Tables as the decoder builds them: theta 10000, every position of the cache.
            let inv: Vec<f32> = (0..d / 2)
                .map(|i| 1.0 / 10000f32.powf(2.0 * i as f32 / d as f32))
                .collect();
            let t = Tensor::arange(0u32, capacity as u32, dev)?
                .to_dtype(DType::F32)?
                .reshape((capacity, 1))?
                .broadcast_mul(&Tensor::from_vec(inv, (1, d / 2), dev)?)?;
            let (cos, sin) = (t.cos()?.to_dtype(dtype)?, t.sin()?.to_dtype(dtype)?);
            let with = !extras.is_empty();
            let rope = RopeArgs {
                cos: &cos,
                sin: &sin,
                bias: with.then_some(&bias),
                qk_norm: with.then_some((&qn, &kn, 1e-6)),
                heads,
                kv_heads,
                head_dim: d,
            };
            let keys = randn(&[batch, kv_heads, capacity, d], dtype, dev)?;
            let values = randn(&[batch, kv_heads, capacity, d], dtype, dev)?;
            let (k1, v1, k2, v2) = (keys.copy()?, values.copy()?, keys.copy()?, values.copy()?);
            let position = at(position, dev)?;
            let fused_at = CacheAt {
                keys: &k1,
                values: &v1,
                position: &position,
                scratch: None,
            };
            let plain_at = CacheAt {
                keys: &k2,
                values: &v2,
                position: &position,
                scratch: None,
            };
            let q1 = decode::rope_kv_write(&qkv, &rope, &fused_at)?;
            let q2 = decode::plain_rope_kv_write(&qkv, &rope, &plain_at)?;
            ok &= report(
                &format!(
                    "rope_kv_write {name}{extras} b{batch} pos {}",
                    position.to_vec1::<u32>()?[0]
                ),
                dtype,
                &[
                    ("q", err(&q1, &q2)?),
                    ("keys", err(&k1, &k2)?),
                    ("values", err(&v1, &v2)?),
                ],
            );
            // The attention on the same (plain-written) cache and queries.
            let a1 = decode::decode_attention(&q2, &plain_at)?;
            let a2 = decode::plain_decode_attention(&q2, &plain_at)?;
            ok &= report(
                &format!(
                    "decode_attention {name} b{batch} len {}",
                    position.to_vec1::<u32>()?[0] + 1
                ),
                dtype,
                &[("context", err(&a1, &a2)?)],
            );
        }
    }
    Ok(ok)
}

/// Every kernel check; true when all passed.
pub fn check_all(dev: &Device) -> Result<bool> {
    let mut ok = true;
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        for batch in [1, 8] {
            for check in [check_norm_swiglu, check_rope_attention] {
                match check(dev, dtype, batch) {
                    Ok(passed) => ok &= passed,
                    Err(e) => {
                        println!("kernel,error,{dtype:?},batch {batch},{e},FAIL");
                        ok = false;
                    }
                }
            }
        }
    }
    // A NaN in one sequence's input reaches that sequence's output (and is caught above).
    let x = randn(&[2, 576], DType::BF16, dev)?;
    let nan = Tensor::new(&[f32::NAN], dev)?.to_dtype(DType::BF16)?;
    let x = x.slice_assign(&[0..1, 0..1], &nan.reshape((1, 1))?)?;
    let r = randn(&[2, 576], DType::BF16, dev)?;
    let w = randn(&[576], DType::BF16, dev)?;
    let (n, _) = decode::add_rms_norm(&x, &r, &w, 1e-5)?;
    let row0 = n.get(0)?;
    let row1 = n.get(1)?;
    let caught = err(&row0, &row0)?.is_nan() && !err(&row1, &row1)?.is_nan();
    println!(
        "kernel,nan propagation add_rms_norm,BF16,{},{}",
        if caught {
            "NaN row stays NaN, the other row finite"
        } else {
            "NaN not confined to its row"
        },
        if caught { "PASS" } else { "FAIL" }
    );
    Ok(ok && caught)
}
