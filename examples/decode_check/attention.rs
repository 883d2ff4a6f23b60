//! The one-launch decode attention (decode.cu's decode_attention_fused) against the plain twin on
//! fresh random caches: lengths 1, 38, 63, 64, 65, 97, 577 and 640 (the capacity), the split
//! count the launcher picks and forced odd ones (1, 3, 7, 64: splits of uneven length, empty
//! splits at short lengths), batch 1 and 8, f32/f16/bf16, at the presets' shapes (GQA groups 3,
//! 7, 4, 2; head_dim 64 and 128), one scratch per line reused across lengths (so a counter left
//! set would break the next length); then two calls bit-identical, a NaN confined to its
//! sequence, and the kernel captured as a CUDA graph replayed at new device-held positions
//! against eager calls there.

use candle_core::{DType, Device, Result, Tensor};
use runner::ops::decode::{self, AttentionScratch, CacheAt, Launch};
use runner::ops::graph::{FixedWork, GraphMode};

use super::kernels::{err, report, SHAPES};

const CAPACITY: usize = 640;
const LENGTHS: [usize; 8] = [1, 38, 63, 64, 65, 97, 577, 640];

fn randn(shape: &[usize], dtype: DType, dev: &Device) -> Result<Tensor> {
    Tensor::randn(0f32, 1f32, shape, dev)?.to_dtype(dtype)
}

/// The position tensor set in place (a captured graph reads the same buffer).
fn set(position: &Tensor, len: usize, dev: &Device) -> Result<()> {
    position.slice_set(&Tensor::new(&[len as u32 - 1], dev)?, 0, 0)
}

fn check_shapes(dev: &Device, dtype: DType, batch: usize) -> Result<bool> {
    let mut ok = true;
    for (name, _, _, heads, kv_heads, d) in SHAPES {
        let keys = randn(&[batch, kv_heads, CAPACITY, d], dtype, dev)?;
        let values = randn(&[batch, kv_heads, CAPACITY, d], dtype, dev)?;
        let q = randn(&[batch, heads, d], dtype, dev)?;
        let position = Tensor::zeros(1, DType::U32, dev)?;
        let shape = [batch, heads, kv_heads, d, CAPACITY];
        let auto = AttentionScratch::new(shape, dtype, dev)?;
        for splits in [auto.splits(), 1, 3, 7, 64] {
            let scratch = AttentionScratch::with_splits(shape, splits, dtype, dev)?;
            let at = CacheAt {
                keys: &keys,
                values: &values,
                position: &position,
                scratch: Some(&scratch),
            };
            let mut errors = Vec::new();
            for len in LENGTHS {
                set(&position, len, dev)?;
                let got = decode::decode_attention(&q, &at)?;
                let want = decode::plain_decode_attention(&q, &at)?;
                errors.push((format!("len {len}"), err(&got, &want)?));
            }
            let named: Vec<(&str, f32)> = errors.iter().map(|(n, e)| (n.as_str(), *e)).collect();
            let which = if splits == auto.splits() { "auto " } else { "" };
            ok &= report(
                &format!("decode_attention_fused {name} b{batch} {which}splits {splits}"),
                dtype,
                &named,
            );
        }
    }
    Ok(ok)
}

/// Two calls on the same inputs bit-identical; a NaN key in sequence 0 reaches sequence 0's
/// context only; the captured kernel replayed at three new positions equals eager calls there.
fn check_state(dev: &Device) -> Result<bool> {
    let (batch, heads, kv_heads, d, dtype) = (8, 32, 8, 64, DType::BF16);
    let keys = randn(&[batch, kv_heads, CAPACITY, d], dtype, dev)?;
    let values = randn(&[batch, kv_heads, CAPACITY, d], dtype, dev)?;
    let q = randn(&[batch, heads, d], dtype, dev)?;
    let position = Tensor::zeros(1, DType::U32, dev)?;
    let scratch =
        AttentionScratch::with_splits([batch, heads, kv_heads, d, CAPACITY], 7, dtype, dev)?;
    let at = CacheAt {
        keys: &keys,
        values: &values,
        position: &position,
        scratch: Some(&scratch),
    };
    set(&position, 577, dev)?;
    let first = decode::decode_attention(&q, &at)?.copy()?;
    let second = decode::decode_attention(&q, &at)?.copy()?;
    let same = err(&first, &second)? == 0.0;
    println!(
        "kernel,decode_attention_fused repeat,BF16,{},{}",
        if same {
            "two calls bit-identical"
        } else {
            "two calls differ"
        },
        if same { "PASS" } else { "FAIL" }
    );
    // NaN at sequence 0, KV head 0, position 300 (inside one split of seven).
    let nan = Tensor::new(&[f32::NAN], dev)?
        .to_dtype(dtype)?
        .reshape((1, 1, 1, 1))?;
    let poisoned = keys.slice_assign(&[0..1, 0..1, 300..301, 0..1], &nan)?;
    let nan_at = CacheAt {
        keys: &poisoned,
        ..at
    };
    let out = decode::decode_attention(&q, &nan_at)?.copy()?;
    let row0 = out.get(0)?;
    let rest = out.narrow(0, 1, batch - 1)?;
    let confined = err(&row0, &row0)?.is_nan() && !err(&rest, &rest)?.is_nan();
    println!(
        "kernel,nan propagation decode_attention_fused,BF16,{},{}",
        if confined {
            "NaN reaches sequence 0, the other sequences finite"
        } else {
            "NaN not confined to its sequence"
        },
        if confined { "PASS" } else { "FAIL" }
    );
    // Graph replay against eager at new positions (the position read on the device each replay).
    let at = CacheAt {
        keys: &keys,
        values: &values,
        position: &position,
        scratch: Some(&scratch),
    };
    let work = || decode::decode_attention(&q, &at);
    let fixed = FixedWork::new(dev, GraphMode::Auto, "decode_attention_fused", work);
    let mut replay_ok = fixed.execution().is_graph();
    let mut errors = Vec::new();
    for len in [1, 64, 333, 640] {
        set(&position, len, dev)?;
        let replayed = fixed.run()?.copy()?;
        let eager = decode::decode_attention(&q, &at)?.copy()?;
        let e = err(&replayed, &eager)?;
        replay_ok &= e == 0.0;
        errors.push(format!("len {len} {e:.1e}"));
    }
    println!(
        "kernel,decode_attention_fused graph replay,BF16,{},{},{}",
        fixed.describe(),
        errors.join(" "),
        if replay_ok { "PASS" } else { "FAIL" }
    );
    Ok(same && confined && replay_ok)
}

/// Every check of the one-launch attention; true when all passed.
pub fn check_all(dev: &Device) -> Result<bool> {
    let mut ok = true;
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        for batch in [1, 8] {
            match check_shapes(dev, dtype, batch) {
                Ok(passed) => ok &= passed,
                Err(e) => {
                    println!(
                        "kernel,error decode_attention_fused,{dtype:?},batch {batch},{e},FAIL"
                    );
                    ok = false;
                }
            }
        }
    }
    match check_state(dev) {
        Ok(passed) => ok &= passed,
        Err(e) => {
            println!("kernel,error decode_attention_fused state,BF16,{e},FAIL");
            ok = false;
        }
    }
    Ok(ok)
}

/// gemv-bulk's wide merge (`decode_attention_wide`) against the plain twin and against the
/// narrow merge (the same sums in the same order: bit-identical expected), f32 and bf16, batch 1
/// and 8, every preset shape, the launcher's split count and forced 7, 33 and 64 (past the 32
/// partials a thread loads at once), lengths 1, 65, 577 and 640; then a NaN key confined to its sequence and
/// the kernel's graph replayed at new positions against eager calls.
pub fn check_wide(dev: &Device) -> Result<bool> {
    let mut ok = true;
    for dtype in [DType::F32, DType::BF16] {
        for batch in [1, 8] {
            for (name, _, _, heads, kv_heads, d) in SHAPES {
                let keys = randn(&[batch, kv_heads, CAPACITY, d], dtype, dev)?;
                let values = randn(&[batch, kv_heads, CAPACITY, d], dtype, dev)?;
                let q = randn(&[batch, heads, d], dtype, dev)?;
                let position = Tensor::zeros(1, DType::U32, dev)?;
                let shape = [batch, heads, kv_heads, d, CAPACITY];
                let auto = AttentionScratch::new(shape, dtype, dev)?.splits();
                for splits in [auto, 7, 33, 64] {
                    let scratch = AttentionScratch::with_splits(shape, splits, dtype, dev)?;
                    let at = CacheAt {
                        keys: &keys,
                        values: &values,
                        position: &position,
                        scratch: Some(&scratch),
                    };
                    let (mut errors, mut differ) = (Vec::new(), 0f32);
                    for len in [1, 65, 577, 640] {
                        set(&position, len, dev)?;
                        let wide =
                            decode::decode_attention_wide(&q, &at, Launch::Stream)?.copy()?;
                        let narrow = decode::decode_attention(&q, &at)?.copy()?;
                        let want = decode::plain_decode_attention(&q, &at)?;
                        errors.push((format!("len {len}"), err(&wide, &want)?));
                        differ = differ.max(err(&wide, &narrow)?);
                    }
                    let named: Vec<(&str, f32)> =
                        errors.iter().map(|(n, e)| (n.as_str(), *e)).collect();
                    ok &= report(
                        &format!("decode_attention_wide {name} b{batch} splits {splits}"),
                        dtype,
                        &named,
                    );
                    let same = differ == 0.0;
                    ok &= same;
                    println!(
                        "kernel,decode_attention_wide = narrow {name} b{batch} splits {splits},{dtype:?},largest difference {differ:.2e},{}",
                        if same { "PASS" } else { "FAIL" }
                    );
                }
            }
        }
    }
    // NaN at sequence 0 (KV head 0, position 300) and graph replay = eager, Llama's shape, b8.
    let (batch, heads, kv_heads, d, dtype) = (8, 32, 8, 64, DType::BF16);
    let keys = randn(&[batch, kv_heads, CAPACITY, d], dtype, dev)?;
    let values = randn(&[batch, kv_heads, CAPACITY, d], dtype, dev)?;
    let q = randn(&[batch, heads, d], dtype, dev)?;
    let position = Tensor::zeros(1, DType::U32, dev)?;
    let scratch =
        AttentionScratch::with_splits([batch, heads, kv_heads, d, CAPACITY], 33, dtype, dev)?;
    let nan = Tensor::new(&[f32::NAN], dev)?
        .to_dtype(dtype)?
        .reshape((1, 1, 1, 1))?;
    let poisoned = keys.slice_assign(&[0..1, 0..1, 300..301, 0..1], &nan)?;
    let nan_at = CacheAt {
        keys: &poisoned,
        values: &values,
        position: &position,
        scratch: Some(&scratch),
    };
    set(&position, 577, dev)?;
    let out = decode::decode_attention_wide(&q, &nan_at, Launch::Stream)?.copy()?;
    let (row0, rest) = (out.get(0)?, out.narrow(0, 1, batch - 1)?);
    let confined = err(&row0, &row0)?.is_nan() && !err(&rest, &rest)?.is_nan();
    ok &= confined;
    println!(
        "kernel,nan propagation decode_attention_wide,BF16,NaN in sequence 0 {},{}",
        if confined {
            "reaches it only"
        } else {
            "not confined"
        },
        if confined { "PASS" } else { "FAIL" }
    );
    let at = CacheAt {
        keys: &keys,
        ..nan_at
    };
    let work = || decode::decode_attention_wide(&q, &at, Launch::Stream);
    let fixed = FixedWork::new(dev, GraphMode::Auto, "decode_attention_wide", work);
    let mut replay_ok = fixed.execution().is_graph();
    let mut errors = Vec::new();
    for len in [1, 64, 333, 640] {
        set(&position, len, dev)?;
        let replayed = fixed.run()?.copy()?;
        let eager = decode::decode_attention_wide(&q, &at, Launch::Stream)?.copy()?;
        let e = err(&replayed, &eager)?;
        replay_ok &= e == 0.0;
        errors.push(format!("len {len} {e:.1e}"));
    }
    ok &= replay_ok;
    println!(
        "kernel,decode_attention_wide graph replay,BF16,{},{},{}",
        fixed.describe().replace(',', ";"),
        errors.join(" "),
        if replay_ok { "PASS" } else { "FAIL" }
    );
    Ok(ok)
}
