//! W8A8 int8 linear layers on CUDA tensor cores: each input row quantized to int8 by a runner
//! kernel (per token, dynamic scale), an int8 x int8 -> int32 GEMM through cuBLASLt
//! (`CUBLAS_COMPUTE_32I`, IMMA kernels), then one runner kernel that scales back by token x
//! channel scale and adds the bias (+ erf GELU) into the float dtype. The arithmetic is that of
//! the CPU reference (src/model/parts/w8a8.rs), which examples/int8_check.rs checks it against.
//!
//! The int8 weight is held as raw bytes in a U8 tensor (candle has no i8 dtype), the int32
//! products in an I32 buffer. cuBLASLt reads row-major x (M, K) and W (N, K) as the column-major
//! K x M and K x N matrices they are in memory and computes C^T = W^T' x X^T' in the TN form that
//! int8 tensor-core GEMMs require, which is row-major C (M, N).

use candle_core::{Result, Tensor};

/// `act(x W^T + b)` in int8 on CUDA. `x` (rows, K) in the float dtype, `weight` (N, K) U8 holding
/// int8 values, `scale_bias` (2, N) f32: the per-channel weight scales, then the bias.
pub fn int8_linear(x: &Tensor, weight: &Tensor, scale_bias: &Tensor, gelu: bool) -> Result<Tensor> {
    let op = Int8Op {
        gelu,
        packed_rows: None,
        float: x.dtype(),
        packed_output: false,
    };
    apply(x, weight, scale_bias, op)
}

/// `gelu(x W^T + b)` quantized per row to int8 by the dequantization kernel itself, packed as
/// [`crate::ops::eight_bit::Packed8`] for the next int8 layer: the GELU output is never stored
/// in the float dtype, and one quantization pass goes.
pub fn int8_gelu_to_packed(x: &Tensor, weight: &Tensor, scale_bias: &Tensor) -> Result<Tensor> {
    let op = Int8Op {
        gelu: true,
        packed_rows: None,
        float: x.dtype(),
        packed_output: true,
    };
    apply(x, weight, scale_bias, op)
}

/// [`int8_gelu_to_packed`] from `rows` inputs already quantized and packed (U8 `bytes`): both the
/// input and the output are int8 bytes with their row scales.
pub fn int8_gelu_packed_to_packed(
    bytes: &Tensor,
    rows: usize,
    weight: &Tensor,
    scale_bias: &Tensor,
    float: candle_core::DType,
) -> Result<Tensor> {
    let op = Int8Op {
        gelu: true,
        packed_rows: Some(rows),
        float,
        packed_output: true,
    };
    apply(bytes, weight, scale_bias, op)
}

/// `x W^T + b` in `float` from `rows` inputs already quantized and packed (U8 `bytes`).
pub fn int8_linear_packed(
    bytes: &Tensor,
    rows: usize,
    weight: &Tensor,
    scale_bias: &Tensor,
    float: candle_core::DType,
) -> Result<Tensor> {
    let op = Int8Op {
        gelu: false,
        packed_rows: Some(rows),
        float,
        packed_output: false,
    };
    apply(bytes, weight, scale_bias, op)
}

/// What one int8 linear takes and writes.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
struct Int8Op {
    gelu: bool,
    /// The input is packed bytes of this many rows (already quantized), not a float tensor.
    packed_rows: Option<usize>,
    /// The float dtype the layer computes in (the dequantized output's, before any packing).
    float: candle_core::DType,
    /// Write the output quantized and packed (GELU layers only) instead of in the float dtype.
    packed_output: bool,
}

fn apply(x: &Tensor, weight: &Tensor, scale_bias: &Tensor, op: Int8Op) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    {
        x.contiguous()?.apply_op3_no_bwd(
            &weight.contiguous()?,
            &scale_bias.contiguous()?,
            &cuda::Int8Linear { op },
        )
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = (x, weight, scale_bias, op);
        candle_core::bail!("the int8 tensor-core path needs a CUDA build")
    }
}

#[cfg(feature = "cuda")]
pub(in crate::ops) mod cuda {
    use std::cell::RefCell;
    use std::mem::size_of;

    use candle_core::backend::BackendStorage;
    use candle_core::cuda_backend::cudarc::cublaslt::{result as lt, sys};
    use candle_core::cuda_backend::cudarc::driver::{
        CudaSlice, CudaView, DevicePtr, LaunchConfig, PushKernelArg,
    };
    use candle_core::cuda_backend::{CudaDevice, CudaStorageSlice, WrapErr};
    use candle_core::{CpuStorage, CudaStorage, DType, Layout, Result, Shape};

    /// The W8A8 kernels (src/ops/kernels/eight_bit.cu), embedded once; the FP8 path loads them too.
    pub(in crate::ops) const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/eight_bit.ptx"));
    pub(in crate::ops) const MODULE: &str = "runner_eight_bit";
    /// NVIDIA's recommended cuBLASLt workspace on Hopper.
    pub(in crate::ops) const WORKSPACE: usize = 32 << 20;

    /// One cuBLASLt handle and workspace for the thread that runs the cells.
    pub(in crate::ops) struct Lt {
        pub(in crate::ops) handle: sys::cublasLtHandle_t,
        pub(in crate::ops) workspace: CudaSlice<u8>,
    }

    thread_local! {
        static LT: RefCell<Option<Lt>> = const { RefCell::new(None) };
    }

    /// Runs `f` with this thread's cuBLASLt handle and workspace, created on first use.
    pub(in crate::ops) fn with_lt<R>(
        dev: &CudaDevice,
        f: impl FnOnce(&Lt) -> Result<R>,
    ) -> Result<R> {
        LT.with(|cell| {
            let mut cell = cell.borrow_mut();
            if cell.is_none() {
                let handle = lt::create_handle().map_err(lt_err)?;
                let workspace = unsafe { dev.alloc::<u8>(WORKSPACE)? };
                *cell = Some(Lt { handle, workspace });
            }
            f(cell.as_ref().expect("just set"))
        })
    }

    /// One block of 256 threads per row: the fused quantization kernels (src/ops/kernels/eight_bit.cu).
    pub(in crate::ops) fn row_blocks(rows: usize) -> LaunchConfig {
        LaunchConfig {
            grid_dim: (rows.max(1) as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        }
    }

    pub(in crate::ops) fn lt_err(e: lt::CublasError) -> candle_core::Error {
        candle_core::Error::msg(format!("cuBLASLt: {e:?}"))
    }

    pub(super) struct Int8Linear {
        pub(super) op: super::Int8Op,
    }

    impl candle_core::CustomOp3 for Int8Linear {
        fn name(&self) -> &'static str {
            "runner-int8-linear"
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
            candle_core::bail!("runner-int8-linear is a CUDA kernel (the CPU runs the reference)")
        }

        fn cuda_fwd(
            &self,
            x: &CudaStorage,
            xl: &Layout,
            w: &CudaStorage,
            wl: &Layout,
            sb: &CudaStorage,
            sbl: &Layout,
        ) -> Result<(CudaStorage, Shape)> {
            let op = &self.op;
            let (n, k) = wl.shape().dims2()?;
            let m = match op.packed_rows {
                Some(rows) => rows,
                None => xl.shape().dims2()?.0,
            };
            let packed_len = crate::ops::eight_bit::Packed8::len;
            let input_ok = match op.packed_rows {
                Some(_) => {
                    x.dtype() == DType::U8
                        && xl.shape().elem_count() == packed_len(m, k)
                        && xl.start_offset().is_multiple_of(16)
                }
                None => xl.shape().dims2()?.1 == k && x.dtype() == op.float,
            };
            if !input_ok || sbl.shape().dims2()? != (2, n) || w.dtype() != DType::U8 {
                candle_core::bail!(
                    "runner-int8-linear: x {:?} {:?}, weight {:?} {:?}, scale_bias {:?}",
                    xl.shape(),
                    x.dtype(),
                    wl.shape(),
                    w.dtype(),
                    sbl.shape()
                );
            }
            // cuBLASLt's int8 kernels want 4-byte aligned rows.
            if k % 4 != 0 || n % 4 != 0 {
                candle_core::bail!("int8 GEMMs need widths that are multiples of 4 (K {k}, N {n})");
            }
            let dev = x.device().clone();
            let suffix = match op.float {
                DType::F32 => "f32",
                DType::F16 => "f16",
                DType::BF16 => "bf16",
                other => candle_core::bail!("runner-int8-linear: no version for {other:?}"),
            };
            let x_off = xl.start_offset();
            let w_slice = w.as_cuda_slice::<u8>()?.slice(wl.start_offset()..);
            let sb_slice = sb.as_cuda_slice::<f32>()?.slice(sbl.start_offset()..);
            let warps = |rows: usize| LaunchConfig {
                grid_dim: (rows.div_ceil(8).max(1) as u32, 1, 1),
                block_dim: (256, 1, 1),
                shared_mem_bytes: 0,
            };
            let (m32, k32, n32) = (m as u32, k as u32, n as u32);
            // 1. The rows of x in int8 with their scales: quantized here, or already (packed).
            let quantized: Option<(CudaSlice<u8>, CudaSlice<f32>)> = match op.packed_rows {
                Some(_) => None,
                None => {
                    let q = unsafe { dev.alloc::<u8>(m * k)? };
                    let sx = unsafe { dev.alloc::<f32>(m.max(1))? };
                    let func = dev.get_or_load_custom_func(
                        &format!("quantize_rows_i8_{suffix}"),
                        MODULE,
                        PTX,
                    )?;
                    macro_rules! quantize {
                        ($t:ty) => {{
                            let xs = x.as_cuda_slice::<$t>()?.slice(x_off..);
                            let mut b = func.builder();
                            b.arg(&xs).arg(&q).arg(&sx).arg(&m32).arg(&k32);
                            unsafe { b.launch(warps(m)) }.w()?;
                        }};
                    }
                    match op.float {
                        DType::F32 => quantize!(f32),
                        DType::F16 => quantize!(half::f16),
                        _ => quantize!(half::bf16),
                    }
                    Some((q, sx))
                }
            };
            let packed_in = match op.packed_rows {
                Some(_) => Some(x.as_cuda_slice::<u8>()?.slice(x_off..)),
                None => None,
            };
            let (q, sx): (CudaView<'_, u8>, CudaView<'_, f32>) = match (&quantized, &packed_in) {
                (Some((q, sx)), _) => (q.slice(..), sx.slice(..)),
                (None, Some(bytes)) => {
                    let (q, rest) = bytes.split_at(crate::ops::eight_bit::Packed8::scales_at(m, k));
                    // SAFETY: the packed buffer holds m f32 scales from a 16-byte boundary on.
                    let sx = unsafe { rest.transmute::<f32>(m) }
                        .ok_or_else(|| candle_core::Error::msg("packed int8 input: no scales"))?;
                    (q.slice(0..m * k), sx)
                }
                (None, None) => unreachable!("one of the two is set"),
            };
            // 2. int32 products C (M, N) = X (M, K) . W (N, K)^T.
            let acc = unsafe { dev.alloc::<i32>(m * n)? };
            gemm_i8(&dev, &w_slice, &q, &acc, m, n, k)?;
            let total = m * n;
            // The kernels index in 32 bits and read 16 bytes of scales and biases at a time.
            if total >= u32::MAX as usize || !sbl.start_offset().is_multiple_of(4) {
                candle_core::bail!(
                    "runner-int8-linear: {m} x {n} products exceed the dequantization kernel's 32-bit index, or its scales are misaligned"
                );
            }
            // 3a. Scaled back, bias + GELU, quantized per row again for the next int8 layer.
            if op.packed_output {
                if !op.gelu || n > crate::ops::eight_bit::FUSED_ROW_MAX {
                    candle_core::bail!(
                        "runner-int8-linear: packed outputs are GELU layers' of at most {} outputs (this one: {n})",
                        crate::ops::eight_bit::FUSED_ROW_MAX
                    );
                }
                let mut out = unsafe { dev.alloc::<u8>(packed_len(m, n))? };
                let func = dev.get_or_load_custom_func(
                    &format!("dequant_gelu_quantize_i8_{suffix}"),
                    MODULE,
                    PTX,
                )?;
                {
                    let at = crate::ops::eight_bit::Packed8::scales_at(m, n);
                    let (mut q_out, mut rest) = out.split_at_mut(at);
                    // SAFETY: m f32 scales fit after the values, from a 16-byte boundary on.
                    let mut s_out = unsafe { rest.transmute_mut::<f32>(m) }
                        .ok_or_else(|| candle_core::Error::msg("packed int8 output: no room"))?;
                    let mut b = func.builder();
                    b.arg(&acc)
                        .arg(&sx)
                        .arg(&sb_slice)
                        .arg(&mut q_out)
                        .arg(&mut s_out)
                        .arg(&m32)
                        .arg(&n32);
                    unsafe { b.launch(row_blocks(m)) }.w()?;
                }
                let len = out.len();
                return Ok((
                    CudaStorage {
                        slice: CudaStorageSlice::U8(out),
                        device: dev.clone(),
                    },
                    Shape::from(len),
                ));
            }
            // 3b. Scale back, bias (+ GELU), into the float dtype.
            let kernel = format!(
                "dequant_i32_{}_{suffix}",
                if op.gelu { "gelu" } else { "none" }
            );
            let func = dev.get_or_load_custom_func(&kernel, MODULE, PTX)?;
            let flat = LaunchConfig {
                grid_dim: ((total / 4).div_ceil(256).clamp(1, 1 << 20) as u32, 1, 1),
                block_dim: (256, 1, 1),
                shared_mem_bytes: 0,
            };
            macro_rules! dequant {
                ($t:ty, $variant:ident) => {{
                    let out = unsafe { dev.alloc::<$t>(total)? };
                    let mut b = func.builder();
                    b.arg(&acc)
                        .arg(&sx)
                        .arg(&sb_slice)
                        .arg(&out)
                        .arg(&m32)
                        .arg(&n32);
                    unsafe { b.launch(flat) }.w()?;
                    CudaStorage {
                        slice: CudaStorageSlice::$variant(out),
                        device: dev.clone(),
                    }
                }};
            }
            let out = match op.float {
                DType::F32 => dequant!(f32, F32),
                DType::F16 => dequant!(half::f16, F16),
                _ => dequant!(half::bf16, BF16),
            };
            Ok((out, Shape::from((m, n))))
        }
    }

    /// C (M, N) int32 row-major = X (M, K) int8 . W (N, K)^T int8, on candle's stream.
    fn gemm_i8(
        dev: &CudaDevice,
        w: &candle_core::cuda_backend::cudarc::driver::CudaView<'_, u8>,
        x: &CudaView<'_, u8>,
        c: &CudaSlice<i32>,
        m: usize,
        n: usize,
        k: usize,
    ) -> Result<()> {
        let stream = dev.cuda_stream();
        with_lt(dev, |lt_state| {
            let (w_ptr, _w) = w.device_ptr(&stream);
            let (x_ptr, _x) = x.device_ptr(&stream);
            let (c_ptr, _c) = c.device_ptr(&stream);
            let (ws_ptr, _ws) = lt_state.workspace.device_ptr(&stream);
            // SAFETY: descriptors are created, used and destroyed here; the pointers address
            // buffers of the sizes the layouts state, alive until the stream-ordered call ends.
            unsafe {
                let desc = lt::create_matmul_desc(
                    sys::cublasComputeType_t::CUBLAS_COMPUTE_32I,
                    sys::cudaDataType::CUDA_R_32I,
                )
                .map_err(lt_err)?;
                let transpose: i32 = 1;
                lt::set_matmul_desc_attribute(
                    desc,
                    sys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_TRANSA,
                    (&transpose) as *const i32 as *const _,
                    size_of::<i32>(),
                )
                .map_err(lt_err)?;
                let a = lt::create_matrix_layout(
                    sys::cudaDataType::CUDA_R_8I,
                    k as u64,
                    n as u64,
                    k as i64,
                )
                .map_err(lt_err)?;
                let b = lt::create_matrix_layout(
                    sys::cudaDataType::CUDA_R_8I,
                    k as u64,
                    m as u64,
                    k as i64,
                )
                .map_err(lt_err)?;
                let cl = lt::create_matrix_layout(
                    sys::cudaDataType::CUDA_R_32I,
                    n as u64,
                    m as u64,
                    n as i64,
                )
                .map_err(lt_err)?;
                let pref = lt::create_matmul_pref().map_err(lt_err)?;
                lt::set_matmul_pref_attribute(
                    pref,
                    sys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                    (&WORKSPACE) as *const usize as *const _,
                    size_of::<usize>(),
                )
                .map_err(lt_err)?;
                let run = || -> std::result::Result<(), lt::CublasError> {
                    let heuristic =
                        lt::get_matmul_algo_heuristic(lt_state.handle, desc, a, b, cl, cl, pref)?;
                    let (alpha, beta) = (1i32, 0i32);
                    lt::matmul(
                        lt_state.handle,
                        desc,
                        (&alpha) as *const i32 as *const _,
                        (&beta) as *const i32 as *const _,
                        w_ptr as *const _,
                        a,
                        x_ptr as *const _,
                        b,
                        c_ptr as *const _,
                        cl,
                        c_ptr as *mut _,
                        cl,
                        &heuristic.algo,
                        ws_ptr as *mut _,
                        WORKSPACE,
                        stream.cu_stream() as sys::cudaStream_t,
                    )
                };
                let result = run();
                let _ = lt::destroy_matmul_pref(pref);
                let _ = lt::destroy_matrix_layout(cl);
                let _ = lt::destroy_matrix_layout(b);
                let _ = lt::destroy_matrix_layout(a);
                let _ = lt::destroy_matmul_desc(desc);
                result.map_err(lt_err)
            }
        })
    }
}
