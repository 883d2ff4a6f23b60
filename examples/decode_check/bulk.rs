//! The bulk GEMV (gemv.cu's gemv_bulk, `decode_kernels = "gemv-bulk"`: the weights streamed by
//! TMA bulk copies into a ring of shared-memory stages) against its plain twin (`plain_gemv`) on
//! fresh random inputs, f32/f16/bf16, batch 1, 3 and 8 (eight of the combinations), at the linears the decoder runs it on for
//! every preset shape: Q|K|V with the RMSNorm prologue (and a bias), o adding into the residual,
//! gate|up with the RMSNorm prologue, down adding into the residual, and 1001 rows (blocks' row
//! ranges and stages cut short). Launched plainly and programmatically (after a copy). Also: a NaN
//! in batch row 1 reaches row 1 of the output only, two calls are bit-identical, and the largest
//! difference to the loads' GEMV (the same sums in the same order: expected 0) is printed.
//! f32 at Llama's 8192-wide down runs stages of 3 rows (two stages of 4 would pass 227 KB): the
//! warps without a row in a stage wait.

use candle_core::{DType, Device, Result, Tensor};
use runner::ops::decode::gemv::{gemv_bulk_into, gemv_into_launched, plain_gemv, Prologue};
use runner::ops::decode::Launch;

use super::gemv::nan_rows;
use super::kernels::{err, report, SHAPES};

fn randn(shape: &[usize], scale: f64, dtype: DType, dev: &Device) -> Result<Tensor> {
    (Tensor::randn(0f32, 1f32, shape, dev)? * scale)?.to_dtype(dtype)
}

/// (bulk result, plain twin's, the loads' GEMV's) of one linear into a copy of `out`.
fn three(
    out: &Tensor,
    x: &Tensor,
    w: &Tensor,
    (prologue, launch): (Prologue, Launch),
    bias: Option<&Tensor>,
    residual: bool,
) -> Result<(Tensor, Tensor, Tensor)> {
    let got = out.copy()?;
    gemv_bulk_into(&got, x, w, prologue, bias, residual, launch)?;
    let loads = out.copy()?;
    gemv_into_launched(&loads, x, w, prologue, bias, residual, launch)?;
    Ok((got, plain_gemv(out, x, w, prologue, bias, residual)?, loads))
}

/// One linear of the check: (name, output, input, weight, how, bias, residual).
type Linear<'a> = (
    &'a str,
    &'a Tensor,
    &'a Tensor,
    &'a Tensor,
    (Prologue<'a>, Launch),
    Option<&'a Tensor>,
    bool,
);

fn check(dev: &Device, dtype: DType, batch: usize, launch: Launch) -> Result<bool> {
    let mut ok = true;
    let kind = match launch {
        Launch::Stream => "gemv-bulk",
        Launch::Programmatic => "gemv-bulk pdl",
    };
    for (name, hidden, inter, heads, kv_heads, d) in SHAPES {
        let width = (heads + 2 * kv_heads) * d;
        let h = randn(&[batch, hidden], 1.0, dtype, dev)?;
        let norm_w = randn(&[hidden], 0.1, DType::F32, dev)?
            .affine(1.0, 1.0)?
            .to_dtype(dtype)?;
        let rms = (
            Prologue::RmsNorm {
                weight: &norm_w,
                eps: 1e-5,
            },
            launch,
        );
        let none = (Prologue::None, launch);
        let scale = |k: usize| 1.0 / (k as f64).sqrt();
        let w_qkv = randn(&[width, hidden], scale(hidden), dtype, dev)?;
        let bias = randn(&[width], 0.5, dtype, dev)?;
        let w_o = randn(&[hidden, heads * d], scale(heads * d), dtype, dev)?;
        let w_gu = randn(&[2 * inter, hidden], scale(hidden), dtype, dev)?;
        let w_down = randn(&[hidden, inter], scale(inter), dtype, dev)?;
        let ctx = randn(&[batch, heads * d], 1.0, dtype, dev)?;
        let act = randn(&[batch, inter], 1.0, dtype, dev)?;
        let qkv_out = Tensor::zeros((batch, width), dtype, dev)?;
        let gu_out = Tensor::zeros((batch, 2 * inter), dtype, dev)?;
        let w_odd = randn(&[1001, hidden], scale(hidden), dtype, dev)?;
        let odd_out = randn(&[batch, 1001], 1.0, dtype, dev)?;
        let mut errors = Vec::new();
        let mut vs_loads = 0f32;
        let cases: [Linear; 6] = [
            ("qkv+rms", &qkv_out, &h, &w_qkv, rms, None, false),
            (
                "qkv+rms+bias",
                &qkv_out,
                &h,
                &w_qkv,
                rms,
                Some(&bias),
                false,
            ),
            ("o+residual", &h, &ctx, &w_o, none, None, true),
            ("gate_up+rms", &gu_out, &h, &w_gu, rms, None, false),
            ("down+residual", &h, &act, &w_down, none, None, true),
            (
                "1001 rows+rms+residual",
                &odd_out,
                &h,
                &w_odd,
                rms,
                None,
                true,
            ),
        ];
        for (what, out, x, w, how, b, residual) in cases {
            let (a, p, l) = three(out, x, w, how, b, residual)?;
            errors.push((what, err(&a, &p)?));
            vs_loads = vs_loads.max(err(&a, &l)?);
        }
        ok &= report(&format!("{kind} {name} b{batch}"), dtype, &errors);
        println!("info,{kind} {name} b{batch},{dtype:?},largest difference to the loads' GEMV {vs_loads:.2e} of scale");
        let (once, ..) = three(&h, &act, &w_down, none, None, true)?;
        let (twice, ..) = three(&h, &act, &w_down, none, None, true)?;
        let repeat = err(&once, &twice)?;
        if repeat != 0.0 {
            ok = false;
            println!(
                "kernel,{kind} {name} b{batch},{dtype:?},two calls differ by {repeat:.2e},FAIL"
            );
        }
        if batch > 1 {
            // A NaN in row 1 of the input: row 1 of the output only.
            let poison = |t: &Tensor| -> Result<Tensor> {
                let cols = t.dim(1)?;
                let nan = Tensor::full(f32::NAN, (1, 1), dev)?.to_dtype(dtype)?;
                let row1 = Tensor::cat(&[&nan, &t.narrow(0, 1, 1)?.narrow(1, 1, cols - 1)?], 1)?;
                Tensor::cat(
                    &[&t.narrow(0, 0, 1)?, &row1, &t.narrow(0, 2, batch - 2)?],
                    0,
                )
            };
            let (a, ..) = three(&qkv_out, &poison(&h)?, &w_qkv, rms, None, false)?;
            let (c, ..) = three(&h, &poison(&ctx)?, &w_o, none, None, true)?;
            let (ra, rc) = (nan_rows(&a)?, nan_rows(&c)?);
            let pass = ra == [1] && rc == [1];
            ok &= pass;
            println!(
                "kernel,{kind} nan {name} b{batch},{dtype:?},NaN rows of the output: qkv+rms {ra:?} o+residual {rc:?} (want [1]),{}",
                if pass { "PASS" } else { "FAIL" }
            );
        }
    }
    Ok(ok)
}

/// Every bulk GEMV check (`decode_check gemv-bulk`); true when all passed.
pub fn check_all(dev: &Device) -> Result<bool> {
    let mut ok = true;
    // The decoder's case first (bf16 b1 programmatic), then each dtype and each kernel batch
    // bound (1, 4 at batch 3, 8), plain and programmatic: the lines print as they finish, so a
    // short call keeps the ones that matter most.
    let cases = [
        (DType::BF16, 1, Launch::Programmatic),
        (DType::F32, 1, Launch::Stream),
        (DType::BF16, 8, Launch::Programmatic),
        (DType::F16, 3, Launch::Stream),
        (DType::F32, 8, Launch::Programmatic),
        (DType::BF16, 3, Launch::Stream),
        (DType::F16, 1, Launch::Programmatic),
        (DType::F32, 3, Launch::Stream),
    ];
    for (dtype, batch, launch) in cases {
        match check(dev, dtype, batch, launch) {
            Ok(pass) => ok &= pass,
            Err(e) => {
                ok = false;
                println!("kernel,gemv-bulk b{batch},{dtype:?},{launch:?},error: {e},FAIL");
            }
        }
    }
    Ok(ok)
}
