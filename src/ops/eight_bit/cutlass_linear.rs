//! W8A8 linears through the runner's CUTLASS GEMMs (`device.gemm_library = "cutlass"`,
//! src/ops/cutlass.rs): the input's rows quantized per token (by a runner kernel, or already, by
//! the layer norm or GELU that wrote them packed), then ONE kernel: the int8 x int8 (int32
//! accumulation) or E4M3 x E4M3 (f32) GEMM whose epilogue applies token x channel scale, the bias
//! and optionally erf GELU, and writes the float dtype. What cuBLASLt needed around it goes: the
//! int32 products written and read again and the dequantization kernel (int8), the separate bias
//! + GELU pass (FP8's FFN-in).
//!
//! FFN-in feeding an 8-bit FFN-out (`packed_output`): the next GEMM's per-token scale is the row's
//! largest |GELU output| over all N columns, which no CTA of the GEMM sees (a 128-column tile of
//! 3072), and an epilogue cannot quantize a row before its maximum is known. So the GEMM writes
//! the GELU output in the float dtype (2 bytes a value) and the runner's row quantization kernel
//! reads it once (2) and writes the int8/E4M3 bytes (1) with the scale: 5 bytes a value, against
//! 9 (int32 written, read, int8 written) in the cuBLASLt int8 path. See the floors in
//! docs/results/2026-12-06-*-cutlass/NOTES.md.

use candle_core::{DType, Result, Tensor};

use crate::config::EightBit;

/// The layer's input: float rows to quantize, or bytes already quantized and packed
/// ([`crate::ops::eight_bit::Packed8`]) of `rows` rows.
pub enum Input<'a> {
    Float(&'a Tensor),
    Packed { bytes: &'a Tensor, rows: usize },
}

/// Where the bias is: none, the second row of int8's (2, N) f32 `scale_bias`, or a tensor in the
/// float dtype (FP8 layers).
pub enum Bias<'a> {
    None,
    SecondScaleRow,
    Float(&'a Tensor),
}

/// What the layer computes: `act(x W^T + b)` in `float`, packed in the layer's format for the
/// next 8-bit GEMM when `packed_output` (GELU layers); E4M3 with `fast_accumulation` keeps the
/// partial sums in the tensor cores' accumulator (`device.fp8_fast_accumulation`).
pub struct Epilogue {
    pub format: EightBit,
    pub float: DType,
    pub gelu: bool,
    pub packed_output: bool,
    pub fast_accumulation: bool,
}

/// FFN-in writing FFN-out's codes directly (`device.ffn_activation_scales = "static"`): the GEMM's
/// epilogue dequantizes, adds the bias, applies erf GELU, multiplies column n by `inv_scale[n]`
/// (1 / its calibrated step, f32 (N)) and rounds to int8 / E4M3 (src/ops/kernels/cutlass/
/// gemm_codes.cuh); the row scales are 1 (NaN for a row whose input scale is NaN). Returns the
/// [`crate::ops::eight_bit::Packed8`] bytes. No row pass: half of FFN-in's store, none of the
/// pass's read and write.
pub fn linear_to_codes(
    x: Input<'_>,
    weight: &Tensor,
    scales: &Tensor,
    bias: Bias<'_>,
    epilogue: Epilogue,
    inv_scale: &Tensor,
) -> Result<Tensor> {
    apply(x, weight, scales, bias, epilogue, Some(inv_scale))
}

/// One W8A8 linear through CUTLASS. `weight` (N, K) U8 (int8 or E4M3 bits), `scales` f32: (1, N)
/// channel scales, or int8's (2, N) scales then bias.
pub fn linear(
    x: Input<'_>,
    weight: &Tensor,
    scales: &Tensor,
    bias: Bias<'_>,
    epilogue: Epilogue,
) -> Result<Tensor> {
    apply(x, weight, scales, bias, epilogue, None)
}

/// The one CUTLASS launch behind [`linear`] and [`linear_to_codes`]: `inv_scale` set means the
/// epilogue writes codes.
fn apply(
    x: Input<'_>,
    weight: &Tensor,
    scales: &Tensor,
    bias: Bias<'_>,
    epilogue: Epilogue,
    inv_scale: Option<&Tensor>,
) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    {
        let (x, packed_rows) = match x {
            Input::Float(t) => (t, None),
            Input::Packed { bytes, rows } => (bytes, Some(rows)),
        };
        let op = cuda::CutlassLinear {
            bias_in_scales: matches!(bias, Bias::SecondScaleRow),
            bias: match bias {
                Bias::Float(t) => Some(t.contiguous()?),
                _ => None,
            },
            packed_rows,
            epilogue,
            inv_scale: inv_scale.map(Tensor::contiguous).transpose()?,
        };
        x.contiguous()?
            .apply_op3_no_bwd(&weight.contiguous()?, &scales.contiguous()?, &op)
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = (x, weight, scales, bias, epilogue, inv_scale);
        candle_core::bail!("the CUTLASS GEMMs need a CUDA build")
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    use candle_core::backend::BackendStorage;
    use candle_core::cuda_backend::cudarc::driver::{DevicePtr, LaunchConfig, PushKernelArg};
    use candle_core::cuda_backend::{CudaStorageSlice, WrapErr};
    use candle_core::{CpuStorage, CudaStorage, DType, Layout, Result, Shape, Storage, Tensor};

    use crate::config::EightBit;
    use crate::ops::cutlass::{launch, Inputs, Kind, Operands};
    use crate::ops::eight_bit::int8_gemm::cuda::{MODULE, PTX};
    use crate::ops::eight_bit::Packed8;

    pub(super) struct CutlassLinear {
        pub(super) bias_in_scales: bool,
        pub(super) bias: Option<Tensor>,
        pub(super) packed_rows: Option<usize>,
        pub(super) epilogue: super::Epilogue,
        /// Static per-column 1 / step (f32, N): the GEMM writes codes (`linear_to_codes`).
        pub(super) inv_scale: Option<Tensor>,
    }

    /// A warp per row, eight rows a block: the runner's row quantization kernels.
    fn warps(rows: usize) -> LaunchConfig {
        LaunchConfig {
            grid_dim: (rows.div_ceil(8).max(1) as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        }
    }

    /// The device address of a float or byte storage from `offset` elements on.
    fn address(
        s: &CudaStorage,
        offset: usize,
        stream: &std::sync::Arc<candle_core::cuda_backend::cudarc::driver::CudaStream>,
    ) -> Result<u64> {
        Ok(match &s.slice {
            CudaStorageSlice::U8(v) => v.slice(offset..).device_ptr(stream).0,
            CudaStorageSlice::F16(v) => v.slice(offset..).device_ptr(stream).0,
            CudaStorageSlice::BF16(v) => v.slice(offset..).device_ptr(stream).0,
            CudaStorageSlice::F32(v) => v.slice(offset..).device_ptr(stream).0,
            _ => candle_core::bail!("runner-cutlass-linear: an operand of dtype {:?}", s.dtype()),
        })
    }

    impl CutlassLinear {
        /// The codes path of `cuda_fwd` (`linear_to_codes`): the GEMM writes the codes into a
        /// [`Packed8`] buffer, then the row scales (1, or NaN from the input's row scale).
        #[allow(clippy::too_many_arguments)]
        fn codes(
            &self,
            dev: &candle_core::cuda_backend::CudaDevice,
            q_ptr: u64,
            sx_ptr: u64,
            w: &CudaStorage,
            wl: &Layout,
            scales: u64,
            bias: u64,
            inv: &Tensor,
            (m, n, k): (usize, usize, usize),
        ) -> Result<(CudaStorage, Shape)> {
            let stream = dev.cuda_stream();
            let (out, format) = match self.epilogue.format {
                EightBit::Int8 => (DType::U8, Inputs::Int8),
                EightBit::Fp8E4M3 => (DType::F8E4M3, Inputs::E4m3),
            };
            let (guard, layout) = inv.storage_and_layout();
            let Storage::Cuda(inv_storage) = &*guard else {
                candle_core::bail!("runner-cutlass-linear: the inverse scales are not on the GPU");
            };
            if inv_storage.dtype() != DType::F32 || layout.shape().elem_count() != n {
                candle_core::bail!(
                    "runner-cutlass-linear: inverse scales {:?} {:?} for {n} outputs",
                    inv_storage.dtype(),
                    layout.shape()
                );
            }
            let inv_scale = address(inv_storage, layout.start_offset(), &stream)?;
            let mut packed = unsafe { dev.alloc::<u8>(Packed8::len(m, n))? };
            let operands = Operands {
                a: q_ptr,
                b: address(w, wl.start_offset(), &stream)?,
                scale_x: sx_ptr,
                scale_w: scales,
                bias,
                inv_scale,
                d: packed.device_ptr(&stream).0,
                m,
                n,
                k,
            };
            let kind = Kind {
                inputs: format,
                out,
                gelu: true,
                fast_accumulation: self.epilogue.fast_accumulation,
            };
            // SAFETY: every address is a live buffer of the sizes checked by the caller and here
            // (the codes: m * n bytes at the buffer's start), on this stream.
            unsafe { launch(kind, &operands, stream.cu_stream())? };
            drop(guard);
            let flags = dev.get_or_load_custom_func("static_row_scales", MODULE, PTX)?;
            {
                let (_, mut rest) = packed.split_at_mut(Packed8::scales_at(m, n));
                // SAFETY: m f32 scales fit after the codes, from a 16-byte boundary on.
                let mut s_out = unsafe { rest.transmute_mut::<f32>(m) }
                    .ok_or_else(|| candle_core::Error::msg("packed output: no room"))?;
                let m32 = m as u32;
                let mut b = flags.builder();
                // The input's row scales by address (a pointer parameter is its 8 bytes).
                b.arg(&sx_ptr).arg(&mut s_out).arg(&m32);
                let cfg = LaunchConfig {
                    grid_dim: (m.div_ceil(256).max(1) as u32, 1, 1),
                    block_dim: (256, 1, 1),
                    shared_mem_bytes: 0,
                };
                unsafe { b.launch(cfg) }.w()?;
            }
            let len = packed.len();
            Ok((
                CudaStorage {
                    slice: CudaStorageSlice::U8(packed),
                    device: dev.clone(),
                },
                Shape::from(len),
            ))
        }
    }

    impl candle_core::CustomOp3 for CutlassLinear {
        fn name(&self) -> &'static str {
            "runner-cutlass-linear"
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
            candle_core::bail!(
                "runner-cutlass-linear is a CUDA kernel (the CPU runs the reference)"
            )
        }

        fn cuda_fwd(
            &self,
            x: &CudaStorage,
            xl: &Layout,
            w: &CudaStorage,
            wl: &Layout,
            s: &CudaStorage,
            sl: &Layout,
        ) -> Result<(CudaStorage, Shape)> {
            let ep = &self.epilogue;
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
                None => xl.shape().dims2()?.1 == k && x.dtype() == ep.float,
            };
            let scale_rows = if self.bias_in_scales { 2 } else { 1 };
            if !input_ok
                || w.dtype() != DType::U8
                || s.dtype() != DType::F32
                || sl.shape().elem_count() != scale_rows * n
                || (ep.packed_output && !ep.gelu)
                || (self.inv_scale.is_some()
                    && (!ep.packed_output
                        || (ep.fast_accumulation && ep.format != EightBit::Fp8E4M3)))
            {
                candle_core::bail!(
                    "runner-cutlass-linear: x {:?} {:?}, weight {:?} {:?}, scales {:?} {:?}",
                    xl.shape(),
                    x.dtype(),
                    wl.shape(),
                    w.dtype(),
                    sl.shape(),
                    s.dtype()
                );
            }
            let (inputs, format) = match ep.format {
                EightBit::Int8 => (Inputs::Int8, "i8"),
                EightBit::Fp8E4M3 => (Inputs::E4m3, "e4m3"),
            };
            let suffix = match ep.float {
                DType::F16 => "f16",
                DType::BF16 => "bf16",
                other => candle_core::bail!(
                    "runner-cutlass-linear: the CUTLASS GEMMs write f16 or bf16, not {other:?}"
                ),
            };
            let dev = x.device().clone();
            let stream = dev.cuda_stream();
            let quantize = dev.get_or_load_custom_func(
                &format!("quantize_rows_{format}_{suffix}"),
                MODULE,
                PTX,
            )?;
            // 1. The rows of x in 8 bits with their scales: quantized here, or already (packed).
            let (q_ptr, sx_ptr, _owned) = match self.packed_rows {
                Some(_) => {
                    let base = address(x, xl.start_offset(), &stream)?;
                    (base, base + Packed8::scales_at(m, k) as u64, None)
                }
                None => {
                    let q = unsafe { dev.alloc::<u8>(m * k)? };
                    let sx = unsafe { dev.alloc::<f32>(m.max(1))? };
                    let (m32, k32) = (m as u32, k as u32);
                    macro_rules! quantize {
                        ($t:ty) => {{
                            let xs = x.as_cuda_slice::<$t>()?.slice(xl.start_offset()..);
                            let mut b = quantize.builder();
                            b.arg(&xs).arg(&q).arg(&sx).arg(&m32).arg(&k32);
                            unsafe { b.launch(warps(m)) }.w()?;
                        }};
                    }
                    match ep.float {
                        DType::F16 => quantize!(half::f16),
                        _ => quantize!(half::bf16),
                    }
                    let q_ptr = q.device_ptr(&stream).0;
                    let sx_ptr = sx.device_ptr(&stream).0;
                    (q_ptr, sx_ptr, Some((q, sx)))
                }
            };
            // 2. The GEMM with the scales, bias and activation in its epilogue.
            let scales = address(s, sl.start_offset(), &stream)?;
            let bias_guard = self.bias.as_ref().map(|b| b.storage_and_layout());
            let bias = match (&bias_guard, self.bias_in_scales) {
                (None, true) => scales + 4 * n as u64,
                (None, false) => 0,
                (Some((storage, layout)), _) => {
                    let Storage::Cuda(cs) = &**storage else {
                        candle_core::bail!("runner-cutlass-linear: the bias is not on the GPU");
                    };
                    if cs.dtype() != ep.float || layout.shape().elem_count() != n {
                        candle_core::bail!(
                            "runner-cutlass-linear: bias {:?} {:?} for {n} outputs in {:?}",
                            cs.dtype(),
                            layout.shape(),
                            ep.float
                        );
                    }
                    address(cs, layout.start_offset(), &stream)?
                }
            };
            if let Some(inv) = &self.inv_scale {
                return self.codes(&dev, q_ptr, sx_ptr, w, wl, scales, bias, inv, (m, n, k));
            }
            macro_rules! alloc {
                ($t:ty, $variant:ident) => {{
                    let out = unsafe { dev.alloc::<$t>((m * n).max(1))? };
                    let ptr = out.device_ptr(&stream).0;
                    (CudaStorageSlice::$variant(out), ptr)
                }};
            }
            let (out, d) = match ep.float {
                DType::F16 => alloc!(half::f16, F16),
                _ => alloc!(half::bf16, BF16),
            };
            let operands = Operands {
                a: q_ptr,
                b: address(w, wl.start_offset(), &stream)?,
                scale_x: sx_ptr,
                scale_w: scales,
                bias,
                inv_scale: 0,
                d,
                m,
                n,
                k,
            };
            // SAFETY: every address is a live buffer of the sizes checked above, on this stream.
            let kind = Kind {
                inputs,
                out: ep.float,
                gelu: ep.gelu,
                fast_accumulation: ep.fast_accumulation,
            };
            unsafe { launch(kind, &operands, stream.cu_stream())? };
            drop(bias_guard);
            let out = CudaStorage {
                slice: out,
                device: dev.clone(),
            };
            if !ep.packed_output {
                return Ok((out, Shape::from((m, n))));
            }
            // 3. FFN-in for an 8-bit FFN-out: the GELU output quantized per row (one pass).
            let mut packed = unsafe { dev.alloc::<u8>(Packed8::len(m, n))? };
            {
                let (mut q_out, mut rest) = packed.split_at_mut(Packed8::scales_at(m, n));
                // SAFETY: m f32 scales fit after the values, from a 16-byte boundary on.
                let mut s_out = unsafe { rest.transmute_mut::<f32>(m) }
                    .ok_or_else(|| candle_core::Error::msg("packed output: no room"))?;
                let (m32, n32) = (m as u32, n as u32);
                macro_rules! quantize {
                    ($t:ty) => {{
                        let ys = out.as_cuda_slice::<$t>()?;
                        let mut b = quantize.builder();
                        b.arg(ys)
                            .arg(&mut q_out)
                            .arg(&mut s_out)
                            .arg(&m32)
                            .arg(&n32);
                        unsafe { b.launch(warps(m)) }.w()?;
                    }};
                }
                match ep.float {
                    DType::F16 => quantize!(half::f16),
                    _ => quantize!(half::bf16),
                }
            }
            let len = packed.len();
            Ok((
                CudaStorage {
                    slice: CudaStorageSlice::U8(packed),
                    device: dev.clone(),
                },
                Shape::from(len),
            ))
        }
    }
}
