//! The launcher of decode.cu's `logits_pick_*` (`decode_kernels = "gemv-lean"`): what follows the
//! lm_head in a decode step, in one launch (the f32 logits, the greedy pick, the position
//! advanced). Its public face and plain twins: folded.rs's [`super::logits_pick`].

use candle_core::cuda_backend::cudarc::driver::LaunchConfig;
use candle_core::cuda_backend::CudaDType;
use candle_core::{DType, Device, Result, Tensor, WithDType};

use super::attention_rope::held;
use super::cuda::PTX;
use super::launch::{launch, Param};
use super::Launch;

/// Logits a block reads (256 threads, 8 each): argmax_rows_f32's split of a row.
const PER_BLOCK: usize = 2048;

/// `out` (rows, vocab) f32 from `logits` (rows, vocab); `pick` (tokens (rows, 1) u32, scratch
/// (rows, 4) u32); `advance` (from, to), u32 (1,) each.
pub fn run(
    logits: &Tensor,
    out: &Tensor,
    pick: Option<(&Tensor, &Tensor)>,
    advance: Option<(&Tensor, &Tensor)>,
) -> Result<()> {
    match logits.dtype() {
        DType::F32 => typed::<f32>(logits, out, pick, advance, "f32"),
        DType::F16 => typed::<half::f16>(logits, out, pick, advance, "f16"),
        DType::BF16 => typed::<half::bf16>(logits, out, pick, advance, "bf16"),
        other => candle_core::bail!("logits_pick has no {other:?} version"),
    }
}

fn typed<T: CudaDType + WithDType>(
    logits: &Tensor,
    out: &Tensor,
    pick: Option<(&Tensor, &Tensor)>,
    advance: Option<(&Tensor, &Tensor)>,
    suffix: &str,
) -> Result<()> {
    let kernel = "logits_pick";
    let (rows, vocab) = logits.dims2()?;
    let bad_pick = pick.is_some_and(|(t, s)| {
        t.elem_count() != rows
            || t.dtype() != DType::U32
            || s.dims() != [rows, 4]
            || s.dtype() != DType::U32
            || !s.layout().start_offset().is_multiple_of(2)
    });
    let bad_advance = advance.is_some_and(|(f, t)| {
        f.elem_count() != 1
            || t.elem_count() != 1
            || f.dtype() != DType::U32
            || t.dtype() != DType::U32
    });
    if out.dims() != [rows, vocab]
        || out.dtype() != DType::F32
        || vocab == 0
        || vocab > u32::MAX as usize / 2
        || bad_pick
        || bad_advance
    {
        candle_core::bail!(
            "{kernel}: logits {:?} into {:?} {:?}, pick {:?}, advance {:?}: needs (rows, vocab) into f32 (rows, vocab), u32 tokens (rows, 1) and scratch (rows, 4) (on 8 bytes), u32 (1,) positions",
            logits.dims(),
            out.dims(),
            out.dtype(),
            pick.map(|(t, s)| (t.dims().to_vec(), s.dims().to_vec())),
            advance.map(|(f, t)| (f.dims().to_vec(), t.dims().to_vec()))
        );
    }
    let Device::Cuda(dev) = logits.device() else {
        candle_core::bail!("{kernel}: the logits are not on the GPU");
    };
    let logits = logits.contiguous()?;
    let lh = held(&logits, logits.dtype(), kernel, "logits")?;
    let oh = held(out, DType::F32, kernel, "out")?;
    let ph = pick
        .map(|(t, s)| {
            Ok::<_, candle_core::Error>((
                held(t, DType::U32, kernel, "tokens")?,
                held(s, DType::U32, kernel, "scratch")?,
            ))
        })
        .transpose()?;
    // One storage guard where `from` is `to` (the step's position advanced in place).
    let ah = advance
        .map(|(f, t)| {
            let to = (f.id() != t.id())
                .then(|| held(t, DType::U32, kernel, "to"))
                .transpose()?;
            Ok::<_, candle_core::Error>((held(f, DType::U32, kernel, "from")?, to))
        })
        .transpose()?;
    let (from_p, to_p) = match &ah {
        Some((f, t)) => {
            let from = f.ptr::<u32>(kernel)?;
            (from, t.as_ref().map_or(Ok(from), |t| t.ptr::<u32>(kernel))?)
        }
        None => (0, 0),
    };
    let params = [
        Param::Ptr(lh.ptr::<T>(kernel)?),
        Param::Ptr(oh.ptr::<f32>(kernel)?),
        Param::Ptr(ph.as_ref().map_or(Ok(0), |p| p.0.ptr::<u32>(kernel))?),
        Param::Ptr(ph.as_ref().map_or(Ok(0), |p| p.1.ptr::<u32>(kernel))?),
        Param::Ptr(from_p),
        Param::Ptr(to_p),
        Param::U32(vocab as u32),
        Param::U32(PER_BLOCK as u32),
    ];
    let func = dev.get_or_load_custom_func(&format!("{kernel}_{suffix}"), "runner_decode", PTX)?;
    let cfg = LaunchConfig {
        grid_dim: (vocab.div_ceil(PER_BLOCK) as u32, rows as u32, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    // SAFETY: the parameters match logits_pick's signature (decode.cu), in order; the sizes were
    // checked above (rows x vocab in and out, a token and 4 u32 of scratch a row, one position
    // each), and every buffer's storage guard lives until the launch returns.
    unsafe { launch(&func, &dev.cuda_stream(), cfg, Launch::Stream, &params) }
}
