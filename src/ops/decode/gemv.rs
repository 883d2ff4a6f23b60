//! The decode step's own GEMV (src/ops/kernels/gemv.cu, `decode_kernels = "gemv"`): a linear of a
//! decode batch (1..8 rows) with the step's small kernels folded in, written in place into a
//! preallocated output so a captured step holds kernel nodes only:
//!
//!   [`Prologue::RmsNorm`]  the input row RMS-normalized first (Q|K|V and gate|up: no norm launch)
//!   [`Prologue::SwiGlu`]   the input is silu(gate) * up of a gate|up row (down: no swiglu launch)
//!   `residual`             out += the product (o_proj and down into the residual stream)
//!
//! [`plain_gemv`] is the same computation in candle ops, what the GPU checks compare against.

use candle_core::{Result, Tensor, D};

use super::Launch;

/// What the GEMV applies to its input rows before the product.
#[derive(Clone, Copy)]
pub enum Prologue<'a> {
    None,
    /// rms_norm(x) * weight (weight: (in,)).
    RmsNorm {
        weight: &'a Tensor,
        eps: f64,
    },
    /// x is a gate|up row of 2 `in` values: silu(gate) * up. Checked, but recomputed for every
    /// output row: the decoder runs [`swiglu_into`] once, then the plain GEMV.
    SwiGlu,
}

impl Prologue<'_> {
    pub fn name(&self) -> &'static str {
        match self {
            Prologue::None => "plain",
            Prologue::RmsNorm { .. } => "rms",
            Prologue::SwiGlu => "swiglu",
        }
    }
}

/// Most batch rows the GEMV serves (GV_MAXB in gemv.cu); larger batches take the GEMM path.
pub const MAX_BATCH: usize = crate::config::DecodeKernels::GEMV_MAX_BATCH;

/// Warps of a block (GV_WARPS in gemv.cu), each owning whole output rows.
pub const WARPS: usize = 4;

/// The bulk GEMV's stage, about: GV_WARPS x rpw rows, rpw as many rows a warp as fit.
const BULK_STAGE_BYTES: usize = 16 << 10;
/// Its ring of stages a block, about (two blocks a multiprocessor where the rows allow).
const BULK_RING_BYTES: usize = 96 << 10;
/// Most stages (GV_MAX_STAGES in gemv.cu) and the most rows a warp computes a stage.
const BULK_MAX_STAGES: usize = 8;
const BULK_MAX_RPW: usize = 8;
/// Dynamic shared memory a block may opt into on sm_90 (227 KB).
pub const MAX_SHARED_OPT_IN: usize = 232_448;

/// The bulk GEMV's (rows a stage, stages, ring bytes) for rows of `row_bytes`: stages of
/// [`WARPS`] x rpw whole rows of about 16 KB, 2-8 of them in about 96 KB; rows so long that two
/// stages of [`WARPS`] rows pass 227 KB (f32 at 8192 wide: the fidelity pass's reference) get
/// stages of fewer rows than warps (the other warps wait). An error where two stages of one row
/// do not fit.
pub fn bulk_ring(row_bytes: usize) -> Result<(usize, usize, usize)> {
    let rpw = (BULK_STAGE_BYTES / (WARPS * row_bytes)).clamp(1, BULK_MAX_RPW);
    let stage_rows = (WARPS * rpw).min(MAX_SHARED_OPT_IN / (2 * row_bytes));
    if stage_rows == 0 {
        candle_core::bail!(
            "gemv-bulk: rows of {row_bytes} bytes are too long for two stages of one row in a block's {MAX_SHARED_OPT_IN} bytes of shared memory: use decode_kernels = \"gemv-pdl\" for this model and precision"
        );
    }
    let slot = stage_rows * row_bytes;
    let stages = (BULK_RING_BYTES / slot).clamp(2, BULK_MAX_STAGES);
    Ok((stage_rows, stages, stages * slot))
}

/// `out` (batch, out) = prologue(`x`) . `weight`^T (+ `bias`), or with `residual` `out` += it,
/// in place: `weight` (out, in), `x` (batch, in) or (batch, 2 in) for SwiGLU, all one dtype
/// (f32, f16 or bf16), `in` a multiple of 16 bytes' values. CUDA only.
pub fn gemv_into(
    out: &Tensor,
    x: &Tensor,
    weight: &Tensor,
    prologue: Prologue,
    bias: Option<&Tensor>,
    residual: bool,
) -> Result<()> {
    gemv_into_launched(out, x, weight, prologue, bias, residual, Launch::Stream)
}

/// [`gemv_into`], put on the stream as `launch` says (`Programmatic`: the weights prefetched
/// into L2 while the predecessor finishes, src/ops/decode/launch.rs).
pub fn gemv_into_launched(
    out: &Tensor,
    x: &Tensor,
    weight: &Tensor,
    prologue: Prologue,
    bias: Option<&Tensor>,
    residual: bool,
    launch: Launch,
) -> Result<()> {
    gemv_into_way(
        out,
        x,
        weight,
        prologue,
        bias,
        residual,
        (launch, Way::Loads),
    )
}

/// [`gemv_into_launched`] with the weights streamed by TMA bulk copies into a ring of stages in
/// shared memory (gemv.cu's gemv_bulk, `decode_kernels = "gemv-bulk"`): the same sums in the
/// same order; no SwiGLU prologue; rows up to two stages of 4 rows in 227 KB.
pub fn gemv_bulk_into(
    out: &Tensor,
    x: &Tensor,
    weight: &Tensor,
    prologue: Prologue,
    bias: Option<&Tensor>,
    residual: bool,
    launch: Launch,
) -> Result<()> {
    gemv_into_way(
        out,
        x,
        weight,
        prologue,
        bias,
        residual,
        (launch, Way::Bulk),
    )
}

/// `decode_kernels = "gemv-fold"`'s GEMV (gemv.cu's gemv_fold): `prologue` must be the RMSNorm,
/// applied as 1/rms times the finished dot products, the sum of squares taken by each warp from
/// the input chunks it loads anyway (no block prologue); with `swiglu_out` the weight is
/// [gate | up] (2 out, in) and `out` (batch, out) gets silu(gate) * up, gate and up rounded to
/// the dtype first (the swiglu_rows launch folded in; no bias then). Never a residual.
pub fn gemv_fold_into(
    out: &Tensor,
    x: &Tensor,
    weight: &Tensor,
    prologue: Prologue,
    bias: Option<&Tensor>,
    swiglu_out: bool,
    launch: Launch,
) -> Result<()> {
    let way = Way::Fold { swiglu_out };
    gemv_into_way(out, x, weight, prologue, bias, false, (launch, way))
}

/// [`gemv_fold_into`] with a lane's loads batched (gemv_fold's BATCH, `decode_kernels =
/// "gemv-lean"`): each lane issues 8 / rows-a-warp chunks of each weight row before it uses any
/// (~2 or ~4 in flight in gemv_fold's loop as compiled); the same sums in the same order, so the
/// same output bits as [`gemv_fold_into`].
pub fn gemv_fold_batched_into(
    out: &Tensor,
    x: &Tensor,
    weight: &Tensor,
    prologue: Prologue,
    bias: Option<&Tensor>,
    swiglu_out: bool,
    launch: Launch,
) -> Result<()> {
    let way = Way::FoldBatched { swiglu_out };
    gemv_into_way(out, x, weight, prologue, bias, false, (launch, way))
}

/// `decode_kernels = "gemv-fold"`'s GEMV for long rows (gemv.cu's gemv_split, the down
/// projection): a block's 4 warps each take a quarter of every row's columns and sum their parts
/// in shared memory, so an 8192-wide row is one round of loads a lane, not four. No prologue.
pub fn gemv_split_into(
    out: &Tensor,
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    residual: bool,
    launch: Launch,
) -> Result<()> {
    let way = (launch, Way::Split);
    gemv_into_way(out, x, weight, Prologue::None, bias, residual, way)
}

/// gemv.cu's gemv_long: gemv (no prologue) with a lane's 8 weight loads issued before any FMA
/// (gemv's loop keeps ~2 in flight; gemv_long.cuh says why), the same output bits. gemv-cluster
/// runs it for o and down.
pub fn gemv_long_into(
    out: &Tensor,
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    residual: bool,
    launch: Launch,
) -> Result<()> {
    let way = (launch, Way::Long);
    gemv_into_way(out, x, weight, Prologue::None, bias, residual, way)
}

/// How the decode GEMV streams its weights and what it folds in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// gemv.cu's gemv: each lane's 16-byte loads.
    Loads,
    /// gemv_bulk: TMA bulk copies into a shared-memory ring.
    Bulk,
    /// gemv_fold: the loads, the RMSNorm applied at the end, SwiGLU in the epilogue.
    Fold { swiglu_out: bool },
    /// gemv_fold with a lane's loads batched (BATCH).
    FoldBatched { swiglu_out: bool },
    /// gemv_split: a block's warps split each row's columns (long rows: the down projection).
    Split,
    /// gemv_long: the loads, 16 in flight a lane (no prologue).
    Long,
}

/// `(launch, way)`: how the kernel is put on the stream, and which GEMV kernel runs.
fn gemv_into_way(
    out: &Tensor,
    x: &Tensor,
    weight: &Tensor,
    prologue: Prologue,
    bias: Option<&Tensor>,
    residual: bool,
    (launch, way): (Launch, Way),
) -> Result<()> {
    if !(cfg!(feature = "cuda") && x.device().is_cuda()) {
        candle_core::bail!(
            "the decode GEMV (gemv.cu) runs on CUDA only (a CUDA build and a GPU cell); the plain path runs everywhere"
        );
    }
    #[cfg(feature = "cuda")]
    {
        let op = super::gemv_cuda::Gemv {
            prologue,
            bias,
            residual,
            launch,
            way,
        };
        out.inplace_op3(&x.contiguous()?, &weight.contiguous()?, &op)
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = (out, weight, prologue, bias, residual, launch, way);
        unreachable!("refused above")
    }
}

/// `act` (rows, inter) = silu(gate) * up of `gate_up` (rows, 2 inter), in place (f32, rounded
/// once): the down projection's input, computed once a step instead of once an output row (what
/// [`Prologue::SwiGlu`] does: compute-bound at Llama-3.2-1B's 2048 x 8192, 28.9 us on an H100
/// where its bytes take 11). Its plain twin is `decode::plain_swiglu`. CUDA only.
pub fn swiglu_into(act: &Tensor, gate_up: &Tensor) -> Result<()> {
    swiglu_into_launched(act, gate_up, Launch::Stream)
}

/// [`swiglu_into`], put on the stream as `launch` says.
pub fn swiglu_into_launched(act: &Tensor, gate_up: &Tensor, launch: Launch) -> Result<()> {
    if !(cfg!(feature = "cuda") && gate_up.device().is_cuda()) {
        candle_core::bail!(
            "swiglu_rows (gemv.cu) runs on CUDA only (a CUDA build and a GPU cell); the plain path runs everywhere"
        );
    }
    #[cfg(feature = "cuda")]
    {
        act.inplace_op2(
            &gate_up.contiguous()?,
            &super::gemv_cuda::SwiGluInto { launch },
        )
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = (act, launch);
        unreachable!("refused above")
    }
}

/// What [`gemv_into`] computes, in candle ops (the normed row and the SwiGLU product rounded to
/// the dtype, as the plain decoder stores them): the new value of `out`.
pub fn plain_gemv(
    out: &Tensor,
    x: &Tensor,
    weight: &Tensor,
    prologue: Prologue,
    bias: Option<&Tensor>,
    residual: bool,
) -> Result<Tensor> {
    let input = match prologue {
        Prologue::None => x.clone(),
        Prologue::RmsNorm { weight: w, eps } => candle_nn::ops::rms_norm(x, w, eps as f32)?,
        Prologue::SwiGlu => {
            let inter = x.dim(D::Minus1)? / 2;
            let gate = x.narrow(D::Minus1, 0, inter)?;
            let up = x.narrow(D::Minus1, inter, inter)?;
            (candle_nn::ops::silu(&gate)? * up)?
        }
    };
    let mut y = input.matmul(&weight.t()?)?;
    if let Some(b) = bias {
        y = y.broadcast_add(b)?;
    }
    if residual {
        y = (out + y)?;
    }
    Ok(y)
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Tensor};

    use super::*;

    /// The bulk GEMV's ring at the decoder's rows: 16 KB stages of whole rows, 96 KB rings (two
    /// blocks a multiprocessor), stages of fewer rows than warps for the longest rows, and rows
    /// too long for two stages of one row refused.
    #[test]
    fn the_bulk_ring_fits_the_rows() {
        // Llama-3.2-1B bf16, hidden 2048: one row a warp, 4 rows = 16 KB a stage, 6 stages.
        assert_eq!(bulk_ring(4096).unwrap(), (4, 6, 6 * 16384));
        // SmolLM2 bf16, hidden 576 (1152 bytes): 3 rows a warp, 13.5 KB a stage, 7 stages.
        assert_eq!(bulk_ring(1152).unwrap(), (12, 7, 7 * 12 * 1152));
        // Llama's down in bf16 (8192 wide): 64 KB stages, two of them.
        assert_eq!(bulk_ring(16384).unwrap(), (4, 2, 2 * 65536));
        // f32 at 8192 wide: two stages of 4 rows would be 256 KB: 3 rows a stage.
        assert_eq!(bulk_ring(32768).unwrap(), (3, 2, 2 * 3 * 32768));
        // Rows over half of 227 KB: refused, naming the way out.
        let err = bulk_ring(116_240).unwrap_err().to_string();
        assert!(
            err.contains("gemv-pdl") && err.contains("116240 bytes"),
            "{err}"
        );
        for row in (16..116_224).step_by(16) {
            let (rows, stages, ring) = bulk_ring(row).unwrap();
            assert!(ring <= MAX_SHARED_OPT_IN && (2..=BULK_MAX_STAGES).contains(&stages));
            assert!(rows >= 1 && ring == stages * rows * row, "{row}");
        }
    }

    /// On the CPU the GEMV is an error naming it (no fallback: the record says which kernels ran).
    #[test]
    fn the_gemv_is_refused_on_the_cpu() {
        let dev = Device::Cpu;
        let out = Tensor::zeros((1, 4), DType::F32, &dev).unwrap();
        let x = Tensor::ones((1, 8), DType::F32, &dev).unwrap();
        let w = Tensor::ones((4, 8), DType::F32, &dev).unwrap();
        let err = gemv_into(&out, &x, &w, Prologue::None, None, false).unwrap_err();
        assert!(format!("{err}").contains("CUDA only"), "{err}");
    }

    /// The plain twin is the decoder's plain computation: norm, SwiGLU, bias, residual.
    #[test]
    fn the_plain_twin_computes_the_layers_linears() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1f32, (3, 8), &dev).unwrap();
        let w = Tensor::randn(0f32, 1f32, (5, 8), &dev).unwrap();
        let g = Tensor::randn(1f32, 0.1f32, 8, &dev).unwrap();
        let bias = Tensor::randn(0f32, 1f32, 5, &dev).unwrap();
        let out = Tensor::randn(0f32, 1f32, (3, 5), &dev).unwrap();
        let close = |a: &Tensor, b: &Tensor| {
            let d: f32 = (a - b)
                .unwrap()
                .abs()
                .unwrap()
                .max_keepdim(1)
                .unwrap()
                .max(0)
                .unwrap()
                .squeeze(0)
                .unwrap()
                .to_scalar()
                .unwrap();
            assert!(d < 1e-5, "differ by {d}");
        };
        // RMSNorm prologue with the bias, no residual.
        let rms = Prologue::RmsNorm {
            weight: &g,
            eps: 1e-6,
        };
        let got = plain_gemv(&out, &x, &w, rms, Some(&bias), false).unwrap();
        let inv = (x.sqr().unwrap().mean_keepdim(1).unwrap() + 1e-6)
            .unwrap()
            .sqrt()
            .unwrap()
            .recip()
            .unwrap();
        let normed = x.broadcast_mul(&inv).unwrap().broadcast_mul(&g).unwrap();
        let want = normed
            .matmul(&w.t().unwrap())
            .unwrap()
            .broadcast_add(&bias)
            .unwrap();
        close(&got, &want);
        // SwiGLU prologue adding into the residual.
        let gu = Tensor::randn(0f32, 1f32, (3, 16), &dev).unwrap();
        let got = plain_gemv(&out, &gu, &w, Prologue::SwiGlu, None, true).unwrap();
        let (gate, up) = (gu.narrow(1, 0, 8).unwrap(), gu.narrow(1, 8, 8).unwrap());
        let silu = (&gate * candle_nn::ops::sigmoid(&gate).unwrap()).unwrap();
        let want = (&out + (silu * up).unwrap().matmul(&w.t().unwrap()).unwrap()).unwrap();
        close(&got, &want);
    }
}
