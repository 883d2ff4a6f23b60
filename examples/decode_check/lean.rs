//! `decode_kernels = "gemv-lean"`'s kernels against their twins on fresh random inputs
//! (`decode_check lean-kernels`), and its decoder's fixed step against its own eager steps
//! (`decode_check lean-decoder`, after `decoder gemv-lean`):
//!
//! - gemv.cu's gemv_fold with BATCH (a lane's loads issued before any is used) against gemv_fold
//!   (bit-identical: the same chunks and FMAs in the same order) and against `plain_gemv` (+
//!   `plain_swiglu`) within the bounds: Q|K|V with and without a bias, gate|up, gate|up with
//!   SwiGLU out, 1001 rows, 49152 rows (gemv-lean's lm_head with the final RMSNorm); every preset shape, f32/f16/bf16, batch 1, 3, 8, plain and
//!   programmatic launches; NaN in batch row 1 reaches row 1 only.
//! - decode.cu's logits_pick against the tail it replaces (candle's cast to f32, the pick of
//!   argmax_rows_f32's rule, the position's add): the f32 logits equal to the cast's, bit for bit,
//!   NaN kept; the tokens the lowest index of each row's maximum, NaN never picked, an all-NaN row
//!   0; the position advanced by one (in place and into another slot); twice in a row (the
//!   scratch left zero); without a pick (the tokens untouched); graph replay = eager.
//! - the gemv-lean decoder's fixed step (pick and position inside logits_pick) replayed eagerly
//!   against the same model's `step` + the host's pick by logits_pick's rule (the lowest index of
//!   the maximum): identical logits and tokens.

use candle_core::{DType, Device, Result, Tensor};
use runner::config::{DecodeKernels, Precision};
use runner::ops::decode::gemv::{gemv_fold_batched_into, gemv_fold_into, plain_gemv, Prologue};
use runner::ops::decode::{self, Launch};
use runner::ops::graph::{FixedWork, GraphMode};

use super::gemv::nan_rows;
use super::kernels::{err, report, SHAPES};

fn randn(shape: &[usize], scale: f64, dtype: DType, dev: &Device) -> Result<Tensor> {
    (Tensor::randn(0f32, 1f32, shape, dev)? * scale)?.to_dtype(dtype)
}

fn verdict(pass: bool) -> &'static str {
    if pass {
        "PASS"
    } else {
        "FAIL"
    }
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

/// The lm_head case's rows (SmolLM2-135M's vocabulary).
const HEAD_ROWS: usize = 49152;

/// (name, output rows, weight, bias, SwiGLU out, the plain twin's output).
type Case<'a> = (&'a str, usize, &'a Tensor, Option<&'a Tensor>, bool, Tensor);

fn check_gemv(dev: &Device, dtype: DType, batch: usize, launch: Launch) -> Result<bool> {
    let mut ok = true;
    let kind = match launch {
        Launch::Stream => "gemv-lean fold",
        Launch::Programmatic => "gemv-lean fold pdl",
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
        // gemv-lean's lm_head: the final RMSNorm folded, SmolLM2-135M's vocabulary of rows.
        let w_head = randn(&[HEAD_ROWS, hidden], scale, dtype, dev)?;
        // (batched, rows, input, weight, bias, SwiGLU out): gemv_fold with or without BATCH.
        let fold = |batched: bool, rows: usize, x: &Tensor, w: &Tensor, b, swiglu: bool| {
            let out = Tensor::zeros((batch, rows), dtype, dev)?;
            if batched {
                gemv_fold_batched_into(&out, x, w, rms, b, swiglu, launch)?;
            } else {
                gemv_fold_into(&out, x, w, rms, b, swiglu, launch)?;
            }
            Ok::<_, candle_core::Error>(out)
        };
        let plain = |rows: usize, w: &Tensor, b: Option<&Tensor>| {
            let out = Tensor::zeros((batch, rows), dtype, dev)?;
            plain_gemv(&out, &h, w, rms, b, false)
        };
        let gate_up = plain(2 * inter, &w_gu, None)?;
        let cases: [Case; 6] = [
            (
                "qkv+rms",
                width,
                &w_qkv,
                None,
                false,
                plain(width, &w_qkv, None)?,
            ),
            (
                "qkv+rms+bias",
                width,
                &w_qkv,
                Some(&bias),
                false,
                plain(width, &w_qkv, Some(&bias))?,
            ),
            (
                "gate_up+rms",
                2 * inter,
                &w_gu,
                None,
                false,
                gate_up.clone(),
            ),
            (
                "gate_up+rms+swiglu_out",
                inter,
                &w_gu,
                None,
                true,
                decode::plain_swiglu(&gate_up)?,
            ),
            (
                "1001 rows+rms",
                1001,
                &w_odd,
                None,
                false,
                plain(1001, &w_odd, None)?,
            ),
            (
                "lm_head rows+rms",
                HEAD_ROWS,
                &w_head,
                None,
                false,
                plain(HEAD_ROWS, &w_head, None)?,
            ),
        ];
        let mut errors = Vec::new();
        let mut unequal = Vec::new();
        for (label, rows, w, b, swiglu, want) in &cases {
            let got = fold(true, *rows, &h, w, *b, *swiglu)?;
            errors.push((*label, err(&got, want)?));
            let old = fold(false, *rows, &h, w, *b, *swiglu)?;
            let same = err(&got, &old)?;
            if same != 0.0 {
                unequal.push(format!("{label} {same:.2e}"));
            }
        }
        ok &= report(&format!("{kind} {name} b{batch}"), dtype, &errors);
        ok &= unequal.is_empty();
        println!(
            "kernel,{kind} {name} b{batch} = gemv_fold,{dtype:?},{},{}",
            if unequal.is_empty() {
                "every case bit-identical".to_string()
            } else {
                format!("differ: {}", unequal.join(" "))
            },
            verdict(unequal.is_empty())
        );
        if batch > 1 {
            let bad = poison(&h, dev)?;
            let ra = nan_rows(&fold(true, width, &bad, &w_qkv, None, false)?)?;
            let rs = nan_rows(&fold(true, inter, &bad, &w_gu, None, true)?)?;
            let pass = ra == [1] && rs == [1];
            ok &= pass;
            println!(
                "kernel,{kind} nan {name} b{batch},{dtype:?},NaN rows of the output: qkv+rms {ra:?} gate_up+swiglu_out {rs:?} (want [1]),{}",
                verdict(pass)
            );
        }
    }
    Ok(ok)
}

/// Each row's pick by argmax_rows_f32's rule: the lowest index of the largest value, NaN never
/// picked, 0 for an all-NaN row.
fn host_pick(rows: &[Vec<f32>]) -> Vec<u32> {
    rows.iter()
        .map(|r| {
            let mut best: Option<(usize, f32)> = None;
            for (i, &v) in r.iter().enumerate() {
                if !v.is_nan() && best.is_none_or(|(_, b)| v > b) {
                    best = Some((i, v));
                }
            }
            best.map_or(0, |(i, _)| i as u32)
        })
        .collect()
}

/// Whether two f32 tables are equal bit for bit (NaN where the other has NaN).
fn same_bits(a: &[Vec<f32>], b: &[Vec<f32>]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits())
        })
}

/// (batch, vocab) logits on the host, as f32 rows.
fn host_rows(logits: &Tensor) -> Result<Vec<Vec<f32>>> {
    logits.to_dtype(DType::F32)?.to_vec2::<f32>()
}

/// [`host_pick`] of host rows as the (batch, 1) tokens a step takes, on `dev`.
fn pick_rows(rows: &[Vec<f32>], dev: &Device) -> Result<Tensor> {
    Tensor::from_vec(host_pick(rows), (rows.len(), 1), dev)
}

/// Rows whose maximum occurs more than once.
fn tied_rows(rows: &[Vec<f32>]) -> usize {
    rows.iter()
        .filter(|r| {
            let max = r
                .iter()
                .copied()
                .filter(|v| !v.is_nan())
                .fold(f32::MIN, f32::max);
            r.iter().filter(|&&v| v == max).count() > 1
        })
        .count()
}

fn tokens_of(t: &Tensor) -> Result<Vec<u32>> {
    t.flatten_all()?.to_vec1()
}

fn position_of(t: &Tensor) -> Result<u32> {
    Ok(t.to_vec1::<u32>()?[0])
}

/// logits_pick at `dtype`, `rows` (3 or more: rows 0-2 carry the ties, the NaN and the all-NaN
/// row; 1: random only), at the presets' vocabularies and 1001.
fn check_pick(dev: &Device, dtype: DType, rows: usize) -> Result<bool> {
    let mut ok = true;
    for vocab in [49152, 151936, 128256, 1001] {
        let mut host: Vec<Vec<f32>> = randn(&[rows, vocab], 3.0, dtype, dev)?
            .to_dtype(DType::F32)?
            .to_vec2()?;
        if rows >= 3 {
            host[0][7] = 100.0;
            host[0][vocab - 3] = 100.0;
            host[1][5] = f32::NAN;
            host[1][vocab / 2] = 50.0;
            host[2].iter_mut().for_each(|v| *v = f32::NAN);
        }
        let flat: Vec<f32> = host.concat();
        let logits = Tensor::from_vec(flat, (rows, vocab), dev)?.to_dtype(dtype)?;
        let want_f32: Vec<Vec<f32>> = logits.to_dtype(DType::F32)?.to_vec2()?;
        let want = host_pick(&want_f32);
        let out = Tensor::zeros((rows, vocab), DType::F32, dev)?;
        let tokens = Tensor::zeros((rows, 1), DType::U32, dev)?;
        let scratch = Tensor::zeros((rows, 4), DType::U32, dev)?;
        let position = Tensor::new(&[41u32], dev)?;
        let slot = Tensor::zeros(1, DType::U32, dev)?;
        decode::logits_pick(
            &logits,
            &out,
            Some((&tokens, &scratch)),
            Some((&position, &position)),
        )?;
        let (f1, t1, p1) = (
            out.to_vec2::<f32>()?,
            tokens_of(&tokens)?,
            position_of(&position)?,
        );
        decode::logits_pick(
            &logits,
            &out,
            Some((&tokens, &scratch)),
            Some((&position, &slot)),
        )?;
        let (t2, p2, s2) = (
            tokens_of(&tokens)?,
            position_of(&position)?,
            position_of(&slot)?,
        );
        let scratch_zero = tokens_of(&scratch)?.iter().all(|&v| v == 0);
        let bare = Tensor::zeros((rows, vocab), DType::F32, dev)?;
        let kept = Tensor::full(7u32, (rows, 1), dev)?;
        decode::logits_pick(&logits, &bare, None, None)?;
        let bare_ok =
            same_bits(&bare.to_vec2()?, &want_f32) && tokens_of(&kept)?.iter().all(|&v| v == 7);
        let pass = same_bits(&f1, &want_f32)
            && t1 == want
            && t2 == want
            && (p1, p2, s2) == (42, 42, 43)
            && scratch_zero
            && bare_ok
            && position_of(&position)? == 42;
        ok &= pass;
        println!(
            "kernel,logits_pick vocab {vocab} rows {rows},{dtype:?},f32 logits {} the cast's; tokens {:?} (want {:?}); position 41 -> {p1} in place then {p2} -> {s2} into a slot (want 42; 42 -> 43); scratch zero after {scratch_zero}; without a pick {},{}",
            if same_bits(&f1, &want_f32) { "equal to" } else { "differ from" },
            &t1[..t1.len().min(4)],
            &want[..want.len().min(4)],
            if bare_ok { "the same f32 logits" } else { "WRONG" },
            verdict(pass)
        );
    }
    Ok(ok)
}

/// logits_pick captured once, replayed on new logits: the same f32 logits, tokens and position
/// as eager (bf16, 8 rows, Llama's vocabulary).
fn check_pick_graph(dev: &Device) -> Result<bool> {
    let (rows, vocab) = (8, 128256);
    let logits = randn(&[rows, vocab], 3.0, DType::BF16, dev)?;
    let out = Tensor::zeros((rows, vocab), DType::F32, dev)?;
    let tokens = Tensor::zeros((rows, 1), DType::U32, dev)?;
    let scratch = Tensor::zeros((rows, 4), DType::U32, dev)?;
    let position = Tensor::new(&[100u32], dev)?;
    let work = || {
        decode::logits_pick(
            &logits,
            &out,
            Some((&tokens, &scratch)),
            Some((&position, &position)),
        )?;
        Ok(out.clone())
    };
    let fixed = FixedWork::new(dev, GraphMode::Auto, "logits_pick", work);
    let mut pass = fixed.execution().is_graph();
    for _ in 0..3 {
        logits.slice_set(&randn(&[rows, vocab], 3.0, DType::BF16, dev)?, 0, 0)?;
        let before = position_of(&position)?;
        let got = fixed.run()?.to_vec2::<f32>()?;
        let (got_t, got_p) = (tokens_of(&tokens)?, position_of(&position)?);
        let e_out = Tensor::zeros((rows, vocab), DType::F32, dev)?;
        let e_tokens = Tensor::zeros((rows, 1), DType::U32, dev)?;
        let e_pos = Tensor::new(&[before], dev)?;
        decode::logits_pick(
            &logits,
            &e_out,
            Some((&e_tokens, &scratch)),
            Some((&e_pos, &e_pos)),
        )?;
        pass &= same_bits(&got, &e_out.to_vec2()?)
            && got_t == tokens_of(&e_tokens)?
            && got_p == before + 1
            && position_of(&e_pos)? == before + 1;
    }
    println!(
        "kernel,logits_pick graph replay,BF16,{},new logits 3 times: f32 logits; tokens and position = eager,{}",
        fixed.describe().replace(',', ";"),
        verdict(pass)
    );
    Ok(pass)
}

/// Every gemv-lean kernel check; true when all passed. The decoder's cases first.
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
        "gemv-lean fold bf16 b1".into(),
        check_gemv(dev, DType::BF16, 1, Launch::Programmatic),
    );
    run(
        "logits_pick bf16 rows 1".into(),
        check_pick(dev, DType::BF16, 1),
    );
    run(
        "logits_pick bf16 rows 8".into(),
        check_pick(dev, DType::BF16, 8),
    );
    run("logits_pick graph".into(), check_pick_graph(dev));
    run(
        "logits_pick f32 rows 3".into(),
        check_pick(dev, DType::F32, 3),
    );
    run(
        "logits_pick f16 rows 3".into(),
        check_pick(dev, DType::F16, 3),
    );
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
            format!("gemv-lean fold {dtype:?} b{batch}"),
            check_gemv(dev, dtype, batch, launch),
        );
    }
    Ok(ok)
}

/// The gemv-lean decoder's fixed step (its pick and position advance inside logits_pick),
/// replayed eagerly over 32 steps, against a second copy's `step` + the host's pick by the same
/// rule from the same prompt: identical logits (0 difference) and tokens every step. fp32 and bf16.
pub fn fixed_versus_steps(dev: &Device, arch: &str, preset: &str) -> Result<bool> {
    let spec = super::kernels_spec(arch, preset, DecodeKernels::GemvLean);
    let mut ok = true;
    for precision in [Precision::Fp32, Precision::Bf16] {
        let load = || spec.load(precision, dev).map_err(candle_core::Error::wrap);
        let (mut a, mut b) = (load()?, load()?);
        let steps = 32;
        let p = super::prompt(dev, 2, 16, spec.shapes.vocab)?;
        a.reserve(2, 16 + steps + 1)?;
        b.reserve(2, 16 + steps + 1)?;
        // Both sides pick by logits_pick's rule (the lowest index of the maximum): candle's CUDA
        // argmax breaks the ties of bf16 logits its own way, and one tie sends the two apart
        // (session 11's H100 run: SmolLM2 bf16 7/32 steps, fp32 and the tiny models 32/32).
        let first = pick_rows(&host_rows(&a.prefill(&p)?)?, dev)?;
        let mut lb = b.prefill(&p)?;
        a.mark()?;
        let fixed = a.fixed_step(&first, steps)?.expect("a fixed step");
        let eager = FixedWork::stateful(
            dev,
            GraphMode::Off,
            "one decode step",
            &fixed.run,
            &*fixed.restore,
        );
        (fixed.restore)()?;
        let (mut same, mut worst, mut ties) = (0, 0f32, 0);
        // b's logits on the host once a step: its pick feeds the next step and the comparison.
        let mut rows_b = host_rows(&lb)?;
        for _ in 0..steps {
            ties += tied_rows(&rows_b);
            lb = b.step(&pick_rows(&rows_b, dev)?)?;
            let la = eager.run()?;
            let d = err(&la, &lb)?;
            worst = if d.is_nan() { f32::NAN } else { worst.max(d) };
            rows_b = host_rows(&lb)?;
            same += usize::from(host_pick(&host_rows(&la)?) == host_pick(&rows_b));
        }
        let pass = same == steps && worst == 0.0;
        ok &= pass;
        println!(
            "gemv-lean_fixed_vs_step,{preset},{},{same}/{steps} steps with identical tokens,worst logit difference {worst:.2e},{ties} rows with a tied maximum,{}",
            precision.name(),
            verdict(pass)
        );
    }
    Ok(ok)
}
