//! W8A8 FP8 (E4M3) linear layers on CUDA tensor cores: each input row quantized to E4M3 by a
//! runner kernel (per token, dynamic scale), then one cuBLASLt GEMM E4M3 x E4M3 with f32
//! accumulation that applies the per-token and per-channel scales itself
//! (`CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F` on A and B) and adds the bias in its epilogue,
//! writing the float dtype directly: no int32 round trip, no dequantization pass (what the int8
//! path pays, src/ops/eight_bit/int8_gemm.rs). The arithmetic is that of the CPU reference
//! (src/model/parts/w8a8.rs), which examples/int8_check.rs checks it against on the GPU.
//!
//! Layout: row-major x (M, K) and W (N, K) are the column-major K x M and K x N matrices they are in
//! memory; cuBLASLt computes D = op(W)^T' x X in the TN form FP8 GEMMs require, which is row-major
//! D (M, N). The weight's E4M3 bytes are held in a U8 tensor (candle's CUDA backend has no FP8
//! storage), its channel scales in an f32 (1, N) tensor.

use candle_core::{Result, Tensor};

/// FP8 GEMMs want every dimension of A and B (and D's leading dimension) a multiple of 16: layers
/// narrower than this get zero output channels (a 2-label classifier), dropped after the GEMM.
pub const FP8_WIDTH_MULTIPLE: usize = 16;

/// `x W^T (+ b)` in FP8 on CUDA. `x` (rows, K) f16 or bf16, `weight` (N, K) U8 holding E4M3 bits,
/// `scales` (1, N) f32 per-channel weight scales, `bias` (N) in x's dtype when the epilogue adds it.
/// `fast_accumulation` lets cuBLASLt keep the products in the tensor cores' own accumulator
/// (`CUBLASLT_MATMUL_DESC_FAST_ACCUM`) instead of promoting them to f32 along K.
pub fn fp8_linear(
    x: &Tensor,
    weight: &Tensor,
    scales: &Tensor,
    bias: Option<&Tensor>,
    fast_accumulation: bool,
) -> Result<Tensor> {
    let op = Fp8Op {
        packed_rows: None,
        float: x.dtype(),
        fast_accumulation,
    };
    apply(x, weight, scales, bias, op)
}

/// As [`fp8_linear`] from `rows` inputs already quantized to E4M3 and packed (U8 `bytes`, see
/// [`crate::ops::eight_bit::Packed8`]), writing `float` (f16 or bf16).
pub fn fp8_linear_packed(
    bytes: &Tensor,
    rows: usize,
    weight: &Tensor,
    scales: &Tensor,
    bias: Option<&Tensor>,
    float: candle_core::DType,
    fast_accumulation: bool,
) -> Result<Tensor> {
    let op = Fp8Op {
        packed_rows: Some(rows),
        float,
        fast_accumulation,
    };
    apply(bytes, weight, scales, bias, op)
}

/// What one FP8 linear takes and how it accumulates.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
struct Fp8Op {
    /// The input is packed E4M3 bytes of this many rows (already quantized).
    packed_rows: Option<usize>,
    /// The output's dtype (f16 or bf16).
    float: candle_core::DType,
    fast_accumulation: bool,
}

/// `gelu(y + bias)` for the FP8 FFN-in's GEMM output `y` (rows, N), quantized per row to E4M3 by
/// the same kernel and packed for FFN-out: the GELU output is never stored in the float dtype,
/// and one pass (the separate quantization) goes.
pub fn bias_gelu_to_e4m3(y: &Tensor, bias: &Tensor) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    {
        y.contiguous()?
            .apply_op2_no_bwd(&bias.contiguous()?, &cuda::BiasGeluE4m3)
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = (y, bias);
        candle_core::bail!("the FP8 tensor-core path needs a CUDA build")
    }
}

fn apply(
    x: &Tensor,
    weight: &Tensor,
    scales: &Tensor,
    bias: Option<&Tensor>,
    op: Fp8Op,
) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    {
        x.contiguous()?.apply_op3_no_bwd(
            &weight.contiguous()?,
            &scales.contiguous()?,
            &cuda::Fp8Linear {
                bias: bias.map(|b| b.contiguous()).transpose()?,
                packed_rows: op.packed_rows,
                float: op.float,
                fast_accumulation: op.fast_accumulation,
            },
        )
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = (x, weight, scales, bias, op);
        candle_core::bail!("the FP8 tensor-core path needs a CUDA build")
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    use std::mem::size_of;

    use candle_core::backend::BackendStorage;
    use candle_core::cuda_backend::cudarc::cublaslt::{result as lt, sys};
    use candle_core::cuda_backend::cudarc::driver::{
        CudaView, DevicePtr, LaunchConfig, PushKernelArg,
    };
    use candle_core::cuda_backend::{CudaStorageSlice, WrapErr};
    use candle_core::{CpuStorage, CudaStorage, DType, Layout, Result, Shape, Storage, Tensor};

    use crate::ops::eight_bit::int8_gemm::cuda::{
        lt_err, row_blocks, with_lt, MODULE, PTX, WORKSPACE,
    };
    use crate::ops::eight_bit::Packed8;

    pub struct Fp8Linear {
        pub bias: Option<Tensor>,
        /// The input is packed E4M3 bytes of this many rows (already quantized).
        pub packed_rows: Option<usize>,
        /// The output's dtype (f16 or bf16).
        pub float: DType,
        pub fast_accumulation: bool,
    }

    /// Sets one attribute of a matmul descriptor from a plain value.
    unsafe fn set<T>(
        desc: sys::cublasLtMatmulDesc_t,
        attr: sys::cublasLtMatmulDescAttributes_t,
        value: &T,
    ) -> std::result::Result<(), lt::CublasError> {
        lt::set_matmul_desc_attribute(desc, attr, value as *const T as *const _, size_of::<T>())
    }

    impl candle_core::CustomOp3 for Fp8Linear {
        fn name(&self) -> &'static str {
            "runner-fp8-linear"
        }

        fn cpu_fwd(
            &self,
            _: &CpuStorage,
            _: &Layout,
            _: &CpuStorage,
            _: &Layout,
            _: &CpuStorage,
            _: &Layout,
        ) -> Result<(CpuStorage, Shape)> {
            candle_core::bail!("runner-fp8-linear is a CUDA kernel (the CPU runs the reference)")
        }

        fn cuda_fwd(
            &self,
            x: &CudaStorage,
            xl: &Layout,
            w: &CudaStorage,
            wl: &Layout,
            sw: &CudaStorage,
            swl: &Layout,
        ) -> Result<(CudaStorage, Shape)> {
            let (n, k) = wl.shape().dims2()?;
            let m = match self.packed_rows {
                Some(rows) => rows,
                None => xl.shape().dims2()?.0,
            };
            let input_ok = match self.packed_rows {
                Some(_) => {
                    x.dtype() == DType::U8
                        && xl.shape().elem_count() == Packed8::len(m, k)
                        && xl.start_offset().is_multiple_of(16)
                }
                None => xl.shape().dims2()?.1 == k && x.dtype() == self.float,
            };
            if !input_ok || swl.shape().elem_count() != n || w.dtype() != DType::U8 {
                candle_core::bail!(
                    "runner-fp8-linear: x {:?} {:?}, weight {:?} {:?}, scales {:?}",
                    xl.shape(),
                    x.dtype(),
                    wl.shape(),
                    w.dtype(),
                    swl.shape()
                );
            }
            if k % super::FP8_WIDTH_MULTIPLE != 0 || n % super::FP8_WIDTH_MULTIPLE != 0 {
                candle_core::bail!("FP8 GEMMs need widths that are multiples of 16 (K {k}, N {n})");
            }
            let (suffix, d_type) = match self.float {
                DType::F16 => ("f16", sys::cudaDataType::CUDA_R_16F),
                DType::BF16 => ("bf16", sys::cudaDataType::CUDA_R_16BF),
                other => candle_core::bail!(
                    "runner-fp8-linear: no version for {other:?} (fp8-fp16 and fp8-bf16 only)"
                ),
            };
            let dev = x.device().clone();
            let stream = dev.cuda_stream();
            // 1. The rows of x in E4M3 with their scales: quantized here, or already (packed).
            let quantized = match self.packed_rows {
                Some(_) => None,
                None => {
                    let q = unsafe { dev.alloc::<u8>(m * k)? };
                    let sx = unsafe { dev.alloc::<f32>(m.max(1))? };
                    let func = dev.get_or_load_custom_func(
                        &format!("quantize_rows_e4m3_{suffix}"),
                        MODULE,
                        PTX,
                    )?;
                    let warps = LaunchConfig {
                        grid_dim: (m.div_ceil(8).max(1) as u32, 1, 1),
                        block_dim: (256, 1, 1),
                        shared_mem_bytes: 0,
                    };
                    let (m32, k32) = (m as u32, k as u32);
                    macro_rules! quantize {
                        ($t:ty) => {{
                            let xs = x.as_cuda_slice::<$t>()?.slice(xl.start_offset()..);
                            let mut b = func.builder();
                            b.arg(&xs).arg(&q).arg(&sx).arg(&m32).arg(&k32);
                            unsafe { b.launch(warps) }.w()?;
                        }};
                    }
                    match self.float {
                        DType::F16 => quantize!(half::f16),
                        _ => quantize!(half::bf16),
                    }
                    Some((q, sx))
                }
            };
            let packed_in = match self.packed_rows {
                Some(_) => Some(x.as_cuda_slice::<u8>()?.slice(xl.start_offset()..)),
                None => None,
            };
            let (q, sx): (CudaView<'_, u8>, CudaView<'_, f32>) = match (&quantized, &packed_in) {
                (Some((q, sx)), _) => (q.slice(..), sx.slice(..)),
                (None, Some(bytes)) => {
                    let (q, rest) = bytes.split_at(Packed8::scales_at(m, k));
                    // SAFETY: the packed buffer holds m f32 scales from a 16-byte boundary on.
                    let sx = unsafe { rest.transmute::<f32>(m) }
                        .ok_or_else(|| candle_core::Error::msg("packed E4M3 input: no scales"))?;
                    (q.slice(0..m * k), sx)
                }
                (None, None) => unreachable!("one of the two is set"),
            };
            // 2. D (M, N) = (X . W^T) scaled by token x channel, + bias, in the float dtype.
            let out_bytes = m * n;
            let w_view = w.as_cuda_slice::<u8>()?.slice(wl.start_offset()..);
            let sw_view = sw.as_cuda_slice::<f32>()?.slice(swl.start_offset()..);
            let bias_guard = self.bias.as_ref().map(|b| b.storage_and_layout());
            let bias_ptr = match &bias_guard {
                None => None,
                Some((storage, layout)) => {
                    let Storage::Cuda(cs) = &**storage else {
                        candle_core::bail!("runner-fp8-linear: the bias is not on the GPU");
                    };
                    if cs.dtype() != self.float || layout.shape().elem_count() != n {
                        candle_core::bail!(
                            "runner-fp8-linear: bias {:?} {:?} for {n} outputs in {:?}",
                            cs.dtype(),
                            layout.shape(),
                            self.float
                        );
                    }
                    let ptr = match &cs.slice {
                        CudaStorageSlice::F16(s) => {
                            s.slice(layout.start_offset()..).device_ptr(&stream).0
                        }
                        CudaStorageSlice::BF16(s) => {
                            s.slice(layout.start_offset()..).device_ptr(&stream).0
                        }
                        _ => candle_core::bail!("runner-fp8-linear: bias dtype"),
                    };
                    Some(ptr)
                }
            };
            macro_rules! gemm {
                ($t:ty, $variant:ident) => {{
                    let out = unsafe { dev.alloc::<$t>(out_bytes.max(1))? };
                    with_lt(&dev, |state| {
                        let (w_ptr, _a) = w_view.device_ptr(&stream);
                        let (q_ptr, _b) = q.device_ptr(&stream);
                        let (sw_ptr, _c) = sw_view.device_ptr(&stream);
                        let (sx_ptr, _d) = sx.device_ptr(&stream);
                        let (d_ptr, _e) = out.device_ptr(&stream);
                        let (ws_ptr, _f) = state.workspace.device_ptr(&stream);
                        // SAFETY: descriptors are created, used and destroyed here; every pointer
                        // addresses a live buffer of the size its layout states.
                        unsafe {
                            let desc = lt::create_matmul_desc(
                                sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                                sys::cudaDataType::CUDA_R_32F,
                            )
                            .map_err(lt_err)?;
                            let a = lt::create_matrix_layout(sys::cudaDataType::CUDA_R_8F_E4M3, k as u64, n as u64, k as i64)
                                .map_err(lt_err)?;
                            let b = lt::create_matrix_layout(sys::cudaDataType::CUDA_R_8F_E4M3, k as u64, m as u64, k as i64)
                                .map_err(lt_err)?;
                            let dl = lt::create_matrix_layout(d_type, n as u64, m as u64, n as i64).map_err(lt_err)?;
                            let pref = lt::create_matmul_pref().map_err(lt_err)?;
                            let run = || -> std::result::Result<(), lt::CublasError> {
                                use sys::cublasLtMatmulDescAttributes_t as A;
                                set(desc, A::CUBLASLT_MATMUL_DESC_TRANSA, &1i32)?; // CUBLAS_OP_T
                                // Per-channel (A's rows = D's columns here) and per-token scales.
                                let outer = sys::cublasLtMatmulMatrixScale_t::CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F;
                                set(desc, A::CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &outer)?;
                                set(desc, A::CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &outer)?;
                                set(desc, A::CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &sw_ptr)?;
                                set(desc, A::CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &sx_ptr)?;
                                set(desc, A::CUBLASLT_MATMUL_DESC_FAST_ACCUM, &i8::from(self.fast_accumulation))?;
                                if let Some(bias) = bias_ptr {
                                    set(desc, A::CUBLASLT_MATMUL_DESC_EPILOGUE, &sys::cublasLtEpilogue_t::CUBLASLT_EPILOGUE_BIAS)?;
                                    set(desc, A::CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias)?;
                                    set(desc, A::CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &d_type)?;
                                }
                                lt::set_matmul_pref_attribute(
                                    pref,
                                    sys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                    (&WORKSPACE) as *const usize as *const _,
                                    size_of::<usize>(),
                                )?;
                                let heuristic = lt::get_matmul_algo_heuristic(state.handle, desc, a, b, dl, dl, pref)?;
                                let (alpha, beta) = (1f32, 0f32);
                                lt::matmul(
                                    state.handle,
                                    desc,
                                    (&alpha) as *const f32 as *const _,
                                    (&beta) as *const f32 as *const _,
                                    w_ptr as *const _,
                                    a,
                                    q_ptr as *const _,
                                    b,
                                    d_ptr as *const _,
                                    dl,
                                    d_ptr as *mut _,
                                    dl,
                                    &heuristic.algo,
                                    ws_ptr as *mut _,
                                    WORKSPACE,
                                    stream.cu_stream() as sys::cudaStream_t,
                                )
                            };
                            let result = run();
                            let _ = lt::destroy_matmul_pref(pref);
                            let _ = lt::destroy_matrix_layout(dl);
                            let _ = lt::destroy_matrix_layout(b);
                            let _ = lt::destroy_matrix_layout(a);
                            let _ = lt::destroy_matmul_desc(desc);
                            result.map_err(|e| {
                                candle_core::Error::msg(format!(
                                    "cuBLASLt has no FP8 GEMM for {m} x {k} x {n} with per-token and per-channel scales{} on this GPU and library ({e:?}): run int8-* or the float precision here",
                                    if bias_ptr.is_some() { " and a bias epilogue" } else { "" }
                                ))
                            })
                        }
                    })?;
                    CudaStorage {
                        slice: CudaStorageSlice::$variant(out),
                        device: dev.clone(),
                    }
                }};
            }
            let out = match self.float {
                DType::F16 => gemm!(half::f16, F16),
                _ => gemm!(half::bf16, BF16),
            };
            drop(bias_guard);
            Ok((out, Shape::from((m, n))))
        }
    }

    /// `gelu(y + bias)` quantized per row to E4M3, packed (src/ops/kernels/eight_bit.cu).
    pub struct BiasGeluE4m3;

    impl candle_core::CustomOp2 for BiasGeluE4m3 {
        fn name(&self) -> &'static str {
            "runner-bias-gelu-e4m3"
        }

        fn cpu_fwd(
            &self,
            _: &CpuStorage,
            _: &Layout,
            _: &CpuStorage,
            _: &Layout,
        ) -> Result<(CpuStorage, Shape)> {
            candle_core::bail!(
                "runner-bias-gelu-e4m3 is a CUDA kernel (the CPU runs the reference)"
            )
        }

        fn cuda_fwd(
            &self,
            y: &CudaStorage,
            yl: &Layout,
            bias: &CudaStorage,
            bl: &Layout,
        ) -> Result<(CudaStorage, Shape)> {
            let (m, n) = yl.shape().dims2()?;
            // 8-byte loads of four values: rows, and both inputs' offsets, in multiples of 4.
            if n % 4 != 0
                || n > crate::ops::eight_bit::FUSED_ROW_MAX
                || !yl.start_offset().is_multiple_of(4)
                || !bl.start_offset().is_multiple_of(4)
                || bl.shape().elem_count() != n
                || bias.dtype() != y.dtype()
            {
                candle_core::bail!(
                    "runner-bias-gelu-e4m3: y {:?} at {}, bias {:?} {:?} at {}",
                    yl.shape(),
                    yl.start_offset(),
                    bl.shape(),
                    bias.dtype(),
                    bl.start_offset()
                );
            }
            let suffix = match y.dtype() {
                DType::F16 => "f16",
                DType::BF16 => "bf16",
                other => candle_core::bail!("runner-bias-gelu-e4m3: no version for {other:?}"),
            };
            let dev = y.device().clone();
            let func = dev.get_or_load_custom_func(
                &format!("bias_gelu_quantize_e4m3_{suffix}"),
                MODULE,
                PTX,
            )?;
            let mut out = unsafe { dev.alloc::<u8>(Packed8::len(m, n))? };
            let (m32, n32) = (m as u32, n as u32);
            let warps = row_blocks(m);
            {
                let (mut q_out, mut rest) = out.split_at_mut(Packed8::scales_at(m, n));
                // SAFETY: m f32 scales fit after the values, from a 16-byte boundary on.
                let mut s_out = unsafe { rest.transmute_mut::<f32>(m) }
                    .ok_or_else(|| candle_core::Error::msg("packed E4M3 output: no room"))?;
                macro_rules! launch {
                    ($t:ty) => {{
                        let ys = y.as_cuda_slice::<$t>()?.slice(yl.start_offset()..);
                        let bs = bias.as_cuda_slice::<$t>()?.slice(bl.start_offset()..);
                        let mut b = func.builder();
                        b.arg(&ys)
                            .arg(&bs)
                            .arg(&mut q_out)
                            .arg(&mut s_out)
                            .arg(&m32)
                            .arg(&n32);
                        unsafe { b.launch(warps) }.w()?;
                    }};
                }
                match y.dtype() {
                    DType::F16 => launch!(half::f16),
                    _ => launch!(half::bf16),
                }
            }
            let len = out.len();
            Ok((
                CudaStorage {
                    slice: CudaStorageSlice::U8(out),
                    device: dev.clone(),
                },
                Shape::from(len),
            ))
        }
    }
}
