//! The launcher of gemv.cu (`gemv_{plain|rms|swiglu}_b{B}_{dtype}`): an in-place op on the output
//! (candle's InplaceOp3: output, input rows, weight), the norm weight and bias read through their
//! storages, as the attention's launcher reads the cache.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::sys::CUfunction_attribute;
use candle_core::cuda_backend::cudarc::driver::{DevicePtr, LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::{CudaDType, WrapErr};
use candle_core::{CpuStorage, CudaStorage, DType, Layout, Result, Storage, WithDType};

use super::attention::sm_count;
use super::gemv::{bulk_ring, Prologue, Way, MAX_BATCH, WARPS};
use super::launch::{launch, Param};
use super::Launch;
use crate::ops::fused::cuda::{contiguous, no_cpu};

/// One module a dtype (build.rs compiles gemv.cu once with each GEMV_DTYPE).
const PTX_F32: &str = include_str!(concat!(env!("OUT_DIR"), "/gemv_f32.ptx"));
const PTX_F16: &str = include_str!(concat!(env!("OUT_DIR"), "/gemv_f16.ptx"));
const PTX_BF16: &str = include_str!(concat!(env!("OUT_DIR"), "/gemv_bf16.ptx"));

/// Output rows a warp computes at once in the kernel for batch bound `bound` (rows_a_warp in
/// gemv.cu): each input load feeds that many weight loads.
fn rows_a_warp(bound: usize) -> usize {
    bound.min(4)
}

/// Blocks a multiprocessor at most: the rows are grid-strided beyond, so each block's RMS
/// prologue (B rows from L2) is paid ~8 times a multiprocessor, not once every 4 rows.
const BLOCKS_PER_SM: usize = 8;

pub struct Gemv<'a> {
    pub prologue: Prologue<'a>,
    pub bias: Option<&'a candle_core::Tensor>,
    pub residual: bool,
    pub launch: Launch,
    /// The kernel: the loads' gemv, gemv_bulk (the weights streamed by TMA bulk copies into a
    /// shared-memory ring, `decode_kernels = "gemv-bulk"`) or gemv_fold (`"gemv-fold"`).
    pub way: Way,
}

fn on_gpu(st: &Storage) -> Result<&CudaStorage> {
    match st {
        Storage::Cuda(st) => Ok(st),
        _ => candle_core::bail!("gemv: an input is not on the GPU"),
    }
}

impl candle_core::InplaceOp3 for Gemv<'_> {
    fn name(&self) -> &'static str {
        "runner-decode-gemv"
    }

    fn cpu_fwd(
        &self,
        _: &mut CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<()> {
        no_cpu(self.name())
    }

    fn cuda_fwd(
        &self,
        out: &mut CudaStorage,
        ol: &Layout,
        x: &CudaStorage,
        xl: &Layout,
        w: &CudaStorage,
        wl: &Layout,
    ) -> Result<()> {
        match w.dtype() {
            DType::F32 => self.launch::<f32>(out, ol, x, xl, w, wl, ("f32", PTX_F32)),
            DType::F16 => self.launch::<half::f16>(out, ol, x, xl, w, wl, ("f16", PTX_F16)),
            DType::BF16 => self.launch::<half::bf16>(out, ol, x, xl, w, wl, ("bf16", PTX_BF16)),
            other => candle_core::bail!("gemv has no {other:?} version"),
        }
    }
}

impl Gemv<'_> {
    #[allow(clippy::too_many_arguments)]
    fn launch<T: CudaDType + WithDType>(
        &self,
        out: &mut CudaStorage,
        ol: &Layout,
        x: &CudaStorage,
        xl: &Layout,
        w: &CudaStorage,
        wl: &Layout,
        (suffix, ptx): (&str, &'static str),
    ) -> Result<()> {
        let kernel = "gemv";
        let (rows, k) = wl.shape().dims2()?;
        // gemv_fold with SwiGLU out: [gate | up] rows in, one output a gate row.
        let swiglu_out = matches!(
            self.way,
            Way::Fold { swiglu_out: true } | Way::FoldBatched { swiglu_out: true }
        );
        let n = if swiglu_out { rows / 2 } else { rows };
        if let Way::Fold { .. } | Way::FoldBatched { .. } = self.way {
            if !matches!(self.prologue, Prologue::RmsNorm { .. })
                || self.residual
                || (swiglu_out && (self.bias.is_some() || rows % 2 != 0))
            {
                candle_core::bail!(
                    "gemv-fold: the RMSNorm GEMVs only (no residual; with SwiGLU out an even [gate | up] weight and no bias), not prologue {} weight {:?}",
                    self.prologue.name(),
                    wl.shape()
                );
            }
        }
        let (batch, width) = xl.shape().dims2()?;
        let want_width = match self.prologue {
            Prologue::SwiGlu => 2 * k,
            _ => k,
        };
        let per16 = 16 / std::mem::size_of::<T>();
        if width != want_width
            || ol.shape().dims2()? != (batch, n)
            || batch == 0
            || batch > MAX_BATCH
            || !k.is_multiple_of(per16)
            || x.dtype() != w.dtype()
            || out.dtype() != w.dtype()
            || self
                .bias
                .is_some_and(|b| b.elem_count() != n || b.dtype() != w.dtype())
        {
            candle_core::bail!(
                "{kernel}: input {:?} ({}), weight {:?}, output {:?}: needs batch 1..={MAX_BATCH}, rows of {} values for this prologue, in a multiple of {per16}, one dtype",
                xl.shape(),
                self.prologue.name(),
                wl.shape(),
                ol.shape(),
                want_width
            );
        }
        let (xr, wr, or) = (
            contiguous(xl, kernel)?,
            contiguous(wl, kernel)?,
            contiguous(ol, kernel)?,
        );
        if !xr.start.is_multiple_of(per16) || !wr.start.is_multiple_of(per16) {
            candle_core::bail!("{kernel}: the input or weight view does not start on 16 bytes");
        }
        let norm = match self.prologue {
            Prologue::RmsNorm { weight, eps } => {
                if weight.elem_count() != k || weight.dtype() != w.dtype() {
                    candle_core::bail!(
                        "{kernel}: a norm weight {:?} for rows of {k}",
                        weight.shape()
                    );
                }
                Some((weight.storage_and_layout(), eps as f32))
            }
            _ => None,
        };
        let bias = self.bias.map(|b| b.storage_and_layout());
        let dev = x.device().clone();
        let xv = x.as_cuda_slice::<T>()?.slice(xr);
        let wv = w.as_cuda_slice::<T>()?.slice(wr);
        let null = 0u64;
        let norm_view = match &norm {
            Some(((g, l), _)) => {
                let r = contiguous(l, kernel)?;
                if !r.start.is_multiple_of(per16) {
                    candle_core::bail!("{kernel}: the norm weight does not start on 16 bytes");
                }
                Some(on_gpu(g)?.as_cuda_slice::<T>()?.slice(r))
            }
            None => None,
        };
        let bias_view = match &bias {
            Some((g, l)) => Some(
                on_gpu(g)?
                    .as_cuda_slice::<T>()?
                    .slice(contiguous(l, kernel)?),
            ),
            None => None,
        };
        let eps = norm.as_ref().map_or(0.0f32, |(_, e)| *e);
        let mut ov = out.as_cuda_slice_mut::<T>()?.slice_mut(or);
        // Kernels for batch bounds 1, 2, 4 and 8; the batch itself is an argument.
        let bound = batch.next_power_of_two();
        let name = match self.way {
            Way::Loads => format!("gemv_{}_b{bound}_{suffix}", self.prologue.name()),
            Way::Bulk => format!("gemv_bulk_{}_b{bound}_{suffix}", self.prologue.name()),
            Way::Fold { swiglu_out: false } => format!("gemv_fold_rms_b{bound}_{suffix}"),
            Way::Fold { swiglu_out: true } => format!("gemv_fold_rms_swiglu_b{bound}_{suffix}"),
            Way::FoldBatched { swiglu_out: false } => {
                format!("gemv_fold_batched_rms_b{bound}_{suffix}")
            }
            Way::FoldBatched { swiglu_out: true } => {
                format!("gemv_fold_batched_rms_swiglu_b{bound}_{suffix}")
            }
            Way::Split => format!("gemv_split_plain_b{bound}_{suffix}"),
            Way::Long => format!("gemv_long_plain_b{bound}_{suffix}"),
        };
        if matches!(self.way, Way::Split | Way::Long) && !matches!(self.prologue, Prologue::None) {
            candle_core::bail!("the split and long GEMVs have no prologue");
        }
        let bulk = self.way == Way::Bulk;
        if bulk && matches!(self.prologue, Prologue::SwiGlu) {
            candle_core::bail!(
                "gemv-bulk has no SwiGLU prologue (the decoder runs swiglu_rows, then the GEMV)"
            );
        }
        let func = dev.get_or_load_custom_func(&name, &format!("runner_gemv_{suffix}"), ptx)?;
        let (cfg, ring) = if bulk {
            let (stage_rows, stages, ring) = bulk_ring(k * std::mem::size_of::<T>())?;
            func.set_attribute(
                CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                ring as i32,
            )
            .w()?;
            // Each block owns a contiguous range of rows: only blocks resident at once.
            let resident = func
                .occupancy_max_active_blocks_per_multiprocessor((WARPS * 32) as u32, ring, None)
                .w()? as usize;
            if resident == 0 {
                candle_core::bail!("gemv-bulk: a block with {ring} bytes of shared memory does not fit a multiprocessor");
            }
            let blocks = n
                .div_ceil(WARPS)
                .min(resident.min(4) * sm_count(&dev)?)
                .max(1);
            let cfg = LaunchConfig {
                grid_dim: (blocks as u32, 1, 1),
                block_dim: ((WARPS * 32) as u32, 1, 1),
                shared_mem_bytes: ring as u32,
            };
            (cfg, Some((stage_rows as u32, stages as u32)))
        } else {
            // Output rows a warp (gemv_fold with SwiGLU out: half its weight rows, at least 1).
            let per_warp = if swiglu_out {
                (rows_a_warp(bound) / 2).max(1)
            } else {
                rows_a_warp(bound)
            };
            // gemv_split: a block's warps share its rows.
            let per_block = if self.way == Way::Split {
                per_warp
            } else {
                WARPS * per_warp
            };
            let blocks = n
                .div_ceil(per_block)
                .min(BLOCKS_PER_SM * sm_count(&dev)?)
                .max(1);
            let cfg = LaunchConfig {
                grid_dim: (blocks as u32, 1, 1),
                block_dim: ((WARPS * 32) as u32, 1, 1),
                shared_mem_bytes: 0,
            };
            (cfg, None)
        };
        let (nb, n32, k32) = (batch as u32, n as u32, k as u32);
        let (ldx, res) = (width as u32, self.residual as u32);
        if self.launch == Launch::Programmatic {
            let stream = dev.cuda_stream();
            let (wp, _g0) = wv.device_ptr(&stream);
            let (xp, _g1) = xv.device_ptr(&stream);
            let norm_p = norm_view.as_ref().map(|v| v.device_ptr(&stream));
            let bias_p = bias_view.as_ref().map(|v| v.device_ptr(&stream));
            let (op, _g2) = ov.device_ptr(&stream);
            let mut params = vec![
                Param::Ptr(wp),
                Param::Ptr(xp),
                Param::Ptr(norm_p.as_ref().map_or(0, |p| p.0)),
                Param::Ptr(bias_p.as_ref().map_or(0, |p| p.0)),
                Param::Ptr(op),
                Param::U32(nb),
                Param::U32(n32),
                Param::U32(k32),
                Param::U32(ldx),
                Param::U32(res),
                Param::F32(eps),
            ];
            if let Some((stage_rows, stages)) = ring {
                params.extend([Param::U32(stage_rows), Param::U32(stages)]);
            }
            // SAFETY: the same parameters, in the same order, as the builder's launch below.
            return unsafe { launch(&func, &stream, cfg, self.launch, &params) };
        }
        let mut b = func.builder();
        b.arg(&wv).arg(&xv);
        match &norm_view {
            Some(v) => b.arg(v),
            None => b.arg(&null),
        };
        match &bias_view {
            Some(v) => b.arg(v),
            None => b.arg(&null),
        };
        b.arg(&mut ov)
            .arg(&nb)
            .arg(&n32)
            .arg(&k32)
            .arg(&ldx)
            .arg(&res)
            .arg(&eps);
        let (stage_rows, stages) = ring.unwrap_or((0, 0));
        if ring.is_some() {
            b.arg(&stage_rows).arg(&stages);
        }
        // SAFETY: the arguments match gemv.cu's GEMV_ONE (or GEMV_BULK_ONE, stage_rows and stages last) signature; the shapes, dtypes and
        // 16-byte alignment of the vector-loaded inputs were checked above.
        unsafe { b.launch(cfg) }.w()?;
        Ok(())
    }
}

/// silu(gate) * up of a gate|up output (rows, 2 inter) written into `act` (rows, inter) in place.
pub struct SwiGluInto {
    pub launch: Launch,
}

impl candle_core::InplaceOp2 for SwiGluInto {
    fn name(&self) -> &'static str {
        "runner-swiglu-into"
    }

    fn cpu_fwd(&self, _: &mut CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout) -> Result<()> {
        no_cpu(self.name())
    }

    fn cuda_fwd(
        &self,
        out: &mut CudaStorage,
        ol: &Layout,
        x: &CudaStorage,
        xl: &Layout,
    ) -> Result<()> {
        match x.dtype() {
            DType::F32 => swiglu_launch::<f32>(out, ol, x, xl, ("f32", PTX_F32), self.launch),
            DType::F16 => swiglu_launch::<half::f16>(out, ol, x, xl, ("f16", PTX_F16), self.launch),
            DType::BF16 => {
                swiglu_launch::<half::bf16>(out, ol, x, xl, ("bf16", PTX_BF16), self.launch)
            }
            other => candle_core::bail!("swiglu_rows has no {other:?} version"),
        }
    }
}

fn swiglu_launch<T: CudaDType + WithDType>(
    out: &mut CudaStorage,
    ol: &Layout,
    x: &CudaStorage,
    xl: &Layout,
    (suffix, ptx): (&str, &'static str),
    how: Launch,
) -> Result<()> {
    let kernel = "swiglu_rows";
    let (rows, width) = xl.shape().dims2()?;
    if !width.is_multiple_of(2)
        || ol.shape().dims2()? != (rows, width / 2)
        || out.dtype() != x.dtype()
    {
        candle_core::bail!(
            "{kernel}: gate|up {:?} into {:?}: needs (rows, 2 inter) into (rows, inter), one dtype",
            xl.shape(),
            ol.shape()
        );
    }
    let inter = width / 2;
    let dev = x.device().clone();
    let xv = x.as_cuda_slice::<T>()?.slice(contiguous(xl, kernel)?);
    let mut ov = out
        .as_cuda_slice_mut::<T>()?
        .slice_mut(contiguous(ol, kernel)?);
    let func = dev.get_or_load_custom_func(
        &format!("{kernel}_{suffix}"),
        &format!("runner_gemv_{suffix}"),
        ptx,
    )?;
    let cfg = LaunchConfig {
        grid_dim: ((rows * inter).div_ceil(256).min(1 << 16) as u32, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    let (r, i) = (rows as u32, inter as u32);
    if how == Launch::Programmatic {
        let stream = dev.cuda_stream();
        let (xp, _g0) = xv.device_ptr(&stream);
        let (op, _g1) = ov.device_ptr(&stream);
        let params = [Param::Ptr(xp), Param::Ptr(op), Param::U32(r), Param::U32(i)];
        // SAFETY: the same parameters, in the same order, as the builder's launch below.
        return unsafe { launch(&func, &stream, cfg, how, &params) };
    }
    let mut b = func.builder();
    b.arg(&xv).arg(&mut ov).arg(&r).arg(&i);
    // SAFETY: the arguments match gemv.cu's swiglu_rows; the shapes were checked above.
    unsafe { b.launch(cfg) }.w()?;
    Ok(())
}
