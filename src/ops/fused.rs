//! Fused kernels of the runner's own (src/ops/kernels/fused.cu), used on CUDA where candle's generic
//! kernels were measured far from the GPU's bandwidth (docs/results/*-speed/NOTES.md). Elsewhere
//! each function is the plain candle computation it replaces, which is also what the GPU checks
//! (examples/kernel_check.rs) compare against.

use candle_core::{DType, IndexOp, Result, Tensor};

/// `act(x + bias)` for a (rows, cols) `x` and a (cols) `bias`; `gelu` picks erf GELU as `act`,
/// else identity.
pub fn bias_act(x: &Tensor, bias: &Tensor, gelu: bool) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if x.device().is_cuda() {
        let x = x.contiguous()?;
        return x.apply_op2_no_bwd(&bias.contiguous()?, &cuda::BiasAct { gelu });
    }
    plain_bias_act(x, bias, gelu)
}

/// What [`bias_act`] replaces: candle's broadcast add, then its GELU.
pub fn plain_bias_act(x: &Tensor, bias: &Tensor, gelu: bool) -> Result<Tensor> {
    let y = x.broadcast_add(bias)?;
    if gelu {
        y.gelu_erf()
    } else {
        Ok(y)
    }
}

/// The fused Q/K/V projection's output `x` (batch * seq, 3 * heads * head_dim) plus its `bias`,
/// as (3, batch, heads, seq, head_dim), contiguous: `.i(0)`, `.i(1)`, `.i(2)` are Q, K, V laid out
/// for the attention GEMMs.
pub fn qkv_heads(x: &Tensor, bias: &Tensor, seq: usize, heads: usize) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if x.device().is_cuda() {
        let x = x.contiguous()?;
        return x.apply_op2_no_bwd(&bias.contiguous()?, &cuda::QkvHeads { seq, heads });
    }
    plain_qkv_heads(x, bias, seq, heads)
}

/// What [`qkv_heads`] replaces: candle's broadcast add, then a permuted contiguous copy.
pub fn plain_qkv_heads(x: &Tensor, bias: &Tensor, seq: usize, heads: usize) -> Result<Tensor> {
    let (rows, cols) = x.dims2()?;
    x.broadcast_add(bias)?
        .reshape((rows / seq, seq, 3, heads, cols / 3 / heads))?
        .permute((2, 0, 3, 1, 4))?
        .contiguous()
}

/// Attention context (batch, heads, seq, head_dim) -> (batch, seq, heads * head_dim).
pub fn merge_heads(context: &Tensor) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if context.device().is_cuda() {
        return context.contiguous()?.apply_op1_no_bwd(&cuda::MergeHeads);
    }
    plain_merge_heads(context)
}

/// What [`merge_heads`] replaces: candle's strided copy.
pub fn plain_merge_heads(context: &Tensor) -> Result<Tensor> {
    let (b, h, s, d) = context.dims4()?;
    context.transpose(1, 2)?.reshape((b, s, h * d))
}

/// `layer_norm(x + residual)` over the last dimension, with `gamma_beta` = (2, cols) the norm's
/// weight and bias stacked. The sum is rounded to the input dtype first, as the plain path stores it.
pub fn add_layer_norm(
    x: &Tensor,
    residual: &Tensor,
    gamma_beta: &Tensor,
    eps: f64,
) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if x.device().is_cuda() {
        return residual_norm_kernel(x, residual, gamma_beta, eps, false);
    }
    plain_add_layer_norm(x, residual, gamma_beta, eps)
}

/// The runner's residual + layer norm kernel; `with_bias`: `gamma_beta` holds the preceding
/// linear's bias as a third row.
#[cfg(feature = "cuda")]
fn residual_norm_kernel(
    x: &Tensor,
    residual: &Tensor,
    gamma_beta: &Tensor,
    eps: f64,
    with_bias: bool,
) -> Result<Tensor> {
    x.contiguous()?.apply_op3_no_bwd(
        &residual.contiguous()?,
        &gamma_beta.contiguous()?,
        &cuda::AddLayerNorm {
            eps: eps as f32,
            with_bias,
        },
    )
}

/// `layer_norm(x + bias + residual)`, with `gamma_beta_bias` = (3, cols): the norm's weight and
/// bias, then the bias of the linear layer that produced `x` (its GEMM wrote `x` without it). The
/// sums are rounded to the dtype as the bias kernel and the plain add store them: the values of
/// `add_layer_norm(bias_act(x, bias), residual)`, one pass fewer.
pub fn bias_add_layer_norm(
    x: &Tensor,
    residual: &Tensor,
    gamma_beta_bias: &Tensor,
    eps: f64,
) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if x.device().is_cuda() {
        return residual_norm_kernel(x, residual, gamma_beta_bias, eps, true);
    }
    plain_bias_add_layer_norm(x, residual, gamma_beta_bias, eps)
}

/// What [`bias_add_layer_norm`] replaces: the bias kernel's add, then [`plain_add_layer_norm`].
pub fn plain_bias_add_layer_norm(
    x: &Tensor,
    residual: &Tensor,
    gamma_beta_bias: &Tensor,
    eps: f64,
) -> Result<Tensor> {
    let with_bias = plain_bias_act(x, &gamma_beta_bias.i(2)?, false)?;
    plain_add_layer_norm(&with_bias, residual, &gamma_beta_bias.narrow(0, 0, 2)?, eps)
}

/// What [`add_layer_norm`] replaces: candle's add, then candle-nn's layer norm kernel.
pub fn plain_add_layer_norm(
    x: &Tensor,
    residual: &Tensor,
    gamma_beta: &Tensor,
    eps: f64,
) -> Result<Tensor> {
    candle_nn::ops::layer_norm(
        &(x + residual)?,
        &gamma_beta.i(0)?,
        &gamma_beta.i(1)?,
        eps as f32,
    )
}

/// Softmax over the last dimension of attention scores (batch, heads, queries, keys) after adding
/// the f32 additive mask (batch, 1, 1, keys), computed in f32 and returned in the scores' dtype.
pub fn masked_softmax(scores: &Tensor, additive_mask: &Tensor) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if scores.device().is_cuda() {
        let mask = additive_mask.to_dtype(DType::F32)?.contiguous()?;
        return scores
            .contiguous()?
            .apply_op2_no_bwd(&mask, &cuda::MaskedSoftmax);
    }
    plain_masked_softmax(scores, additive_mask)
}

/// What [`masked_softmax`] computes, with candle's kernels: the mask added and the softmax taken
/// in f32, then rounded to the scores' dtype.
pub fn plain_masked_softmax(scores: &Tensor, additive_mask: &Tensor) -> Result<Tensor> {
    let dtype = scores.dtype();
    let s = scores
        .to_dtype(DType::F32)?
        .broadcast_add(&additive_mask.to_dtype(DType::F32)?)?;
    candle_nn::ops::softmax_last_dim(&s)?.to_dtype(dtype)
}

mod pairs;
pub use pairs::{norm_variant, pair_norms_note, use_pair_norms};

/// Whether the functions above run the runner's kernels on this device.
pub fn fused_on(device: &candle_core::Device) -> bool {
    cfg!(feature = "cuda") && device.is_cuda()
}

#[cfg(feature = "cuda")]
pub(super) mod cuda {
    use std::ops::Range;

    use candle_core::backend::BackendStorage;
    use candle_core::cuda_backend::cudarc::driver::{
        CudaView, DeviceRepr, LaunchConfig, PushKernelArg,
    };
    use candle_core::cuda_backend::{CudaDType, CudaDevice, WrapErr};
    use candle_core::{CpuStorage, CudaStorage, DType, Layout, Result, Shape};

    pub(in crate::ops) const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/fused.ptx"));

    /// A kernel input: of the first input's dtype, or always f32 (the attention mask).
    #[derive(Clone)]
    pub(in crate::ops) enum Input<'a> {
        Same(&'a CudaStorage, Range<usize>),
        F32(&'a CudaStorage, Range<usize>),
    }

    /// A scalar argument after the output pointer (sizes are u32 in the kernels).
    pub(in crate::ops) enum Scalar {
        U32(u32),
        F32(f32),
    }

    pub(in crate::ops) fn size(v: usize) -> Scalar {
        Scalar::U32(v as u32)
    }

    enum View<'a, T> {
        Same(CudaView<'a, T>),
        F32(CudaView<'a, f32>),
    }

    /// Runs `{kernel}_{f32|f16|bf16}` (by the first input's dtype) as
    /// `kernel(inputs..., out, scalars...)`, with `out` a new buffer of `out_len` elements.
    pub(in crate::ops) fn launch(
        kernel: &str,
        inputs: &[Input<'_>],
        out_len: usize,
        scalars: &[Scalar],
        cfg: LaunchConfig,
    ) -> Result<CudaStorage> {
        let Some(Input::Same(first, _)) = inputs.first() else {
            candle_core::bail!("runner kernel {kernel}: the first input sets the dtype");
        };
        let dev = first.device();
        let call = (inputs, out_len, scalars, cfg);
        match first.dtype() {
            DType::F32 => launch_typed::<f32>(dev, &format!("{kernel}_f32"), call),
            DType::F16 => launch_typed::<half::f16>(dev, &format!("{kernel}_f16"), call),
            DType::BF16 => launch_typed::<half::bf16>(dev, &format!("{kernel}_bf16"), call),
            other => candle_core::bail!("runner kernel {kernel}: no version for {other:?}"),
        }
    }

    /// [`launch`]'s arguments after the kernel name: inputs, output length, scalars, grid.
    type Call<'a, 'b> = (&'a [Input<'b>], usize, &'a [Scalar], LaunchConfig);

    fn launch_typed<T: CudaDType + DeviceRepr>(
        dev: &CudaDevice,
        name: &str,
        (inputs, out_len, scalars, cfg): Call<'_, '_>,
    ) -> Result<CudaStorage> {
        let func = dev.get_or_load_custom_func(name, "runner_fused", PTX)?;
        let views = inputs
            .iter()
            .map(|input| {
                Ok(match input {
                    Input::Same(s, r) => View::Same(s.as_cuda_slice::<T>()?.slice(r.clone())),
                    Input::F32(s, r) => View::F32(s.as_cuda_slice::<f32>()?.slice(r.clone())),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        // SAFETY: every kernel here writes every element of its output.
        let out = unsafe { dev.alloc::<T>(out_len)? };
        let mut b = func.builder();
        for v in &views {
            match v {
                View::Same(s) => b.arg(s),
                View::F32(s) => b.arg(s),
            };
        }
        b.arg(&out);
        for s in scalars {
            match s {
                Scalar::U32(v) => b.arg(v),
                Scalar::F32(v) => b.arg(v),
            };
        }
        // SAFETY: the arguments match the kernel's signature.
        unsafe { b.launch(cfg) }.w()?;
        Ok(CudaStorage::wrap_cuda_slice(out, dev.clone()))
    }

    /// The element range of a contiguous input, or an error naming the kernel.
    pub(in crate::ops) fn contiguous(l: &Layout, kernel: &str) -> Result<Range<usize>> {
        match l.contiguous_offsets() {
            Some((start, end)) => Ok(start..end),
            None => candle_core::bail!("runner kernel {kernel} needs contiguous inputs"),
        }
    }

    /// Values per 16-byte load of this dtype.
    fn vec_width(dtype: DType) -> usize {
        16 / dtype.size_in_bytes()
    }

    /// `kernel_vec` when the width (row, head) and every input's start are multiples of the
    /// 16-byte vector (cudaMalloc aligns buffers to 256 bytes), else the one-value `kernel`; and
    /// the number of threads the chosen version needs for `elements`.
    fn pick(
        kernel: &str,
        dtype: DType,
        width: usize,
        inputs: &[Input<'_>],
        elements: usize,
    ) -> (String, usize) {
        let n = vec_width(dtype);
        // No vectorized kernel reads an f32 side input.
        let aligned = width.is_multiple_of(n)
            && inputs.iter().all(|i| match i {
                Input::Same(_, r) => r.start.is_multiple_of(n),
                Input::F32(..) => true,
            });
        if aligned {
            (format!("{kernel}_vec"), elements / n)
        } else {
            (kernel.to_string(), elements)
        }
    }

    /// 256 threads a block over `threads` (the kernels stride over the grid).
    fn flat(threads: usize) -> LaunchConfig {
        LaunchConfig {
            grid_dim: (threads.div_ceil(256).clamp(1, 1 << 20) as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        }
    }

    /// One warp a row, 8 rows a block.
    fn warp_per_row(rows: usize) -> LaunchConfig {
        LaunchConfig {
            grid_dim: (rows.div_ceil(8).max(1) as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        }
    }

    pub(in crate::ops) fn no_cpu<T>(name: &str) -> Result<T> {
        candle_core::bail!("{name} is a CUDA kernel (the CPU runs the plain path)")
    }

    pub struct BiasAct {
        pub gelu: bool,
    }

    impl candle_core::CustomOp2 for BiasAct {
        fn name(&self) -> &'static str {
            "runner-bias-act"
        }

        fn cpu_fwd(
            &self,
            _: &CpuStorage,
            _: &Layout,
            _: &CpuStorage,
            _: &Layout,
        ) -> Result<(CpuStorage, Shape)> {
            no_cpu(self.name())
        }

        fn cuda_fwd(
            &self,
            x: &CudaStorage,
            xl: &Layout,
            bias: &CudaStorage,
            bl: &Layout,
        ) -> Result<(CudaStorage, Shape)> {
            let cols = *xl.shape().dims().last().unwrap_or(&1);
            let rows = xl.shape().elem_count() / cols.max(1);
            if bl.shape().elem_count() != cols {
                candle_core::bail!(
                    "bias of {} values for rows of {cols}",
                    bl.shape().elem_count()
                );
            }
            let kernel = if self.gelu { "bias_gelu" } else { "bias_none" };
            let inputs = [
                Input::Same(x, contiguous(xl, kernel)?),
                Input::Same(bias, contiguous(bl, kernel)?),
            ];
            let (name, threads) = pick(kernel, x.dtype(), cols, &inputs, rows * cols);
            let scalars = [size(rows), size(cols)];
            let out = launch(&name, &inputs, rows * cols, &scalars, flat(threads))?;
            Ok((out, xl.shape().clone()))
        }
    }

    pub struct QkvHeads {
        pub seq: usize,
        pub heads: usize,
    }

    impl candle_core::CustomOp2 for QkvHeads {
        fn name(&self) -> &'static str {
            "runner-qkv-heads"
        }

        fn cpu_fwd(
            &self,
            _: &CpuStorage,
            _: &Layout,
            _: &CpuStorage,
            _: &Layout,
        ) -> Result<(CpuStorage, Shape)> {
            no_cpu(self.name())
        }

        fn cuda_fwd(
            &self,
            x: &CudaStorage,
            xl: &Layout,
            bias: &CudaStorage,
            bl: &Layout,
        ) -> Result<(CudaStorage, Shape)> {
            let kernel = "qkv_heads";
            let (rows, cols) = xl.shape().dims2()?;
            let (seq, heads) = (self.seq, self.heads);
            if seq == 0
                || heads == 0
                || !rows.is_multiple_of(seq)
                || !cols.is_multiple_of(3 * heads)
                || bl.shape().elem_count() != cols
            {
                candle_core::bail!("{kernel}: ({rows}, {cols}) with a bias of {} is no Q/K/V output of {heads} heads over sequences of {seq}", bl.shape().elem_count());
            }
            let head_dim = cols / 3 / heads;
            let inputs = [
                Input::Same(x, contiguous(xl, kernel)?),
                Input::Same(bias, contiguous(bl, kernel)?),
            ];
            let (name, threads) = pick(kernel, x.dtype(), head_dim, &inputs, rows * cols);
            let scalars = [size(rows), size(seq), size(heads), size(head_dim)];
            let out = launch(&name, &inputs, rows * cols, &scalars, flat(threads))?;
            Ok((out, Shape::from((3, rows / seq, heads, seq, head_dim))))
        }
    }

    pub struct MergeHeads;

    impl candle_core::CustomOp1 for MergeHeads {
        fn name(&self) -> &'static str {
            "runner-merge-heads"
        }

        fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
            no_cpu(self.name())
        }

        fn cuda_fwd(&self, x: &CudaStorage, xl: &Layout) -> Result<(CudaStorage, Shape)> {
            let kernel = "merge_heads";
            let (batch, heads, seq, head_dim) = xl.shape().dims4()?;
            let inputs = [Input::Same(x, contiguous(xl, kernel)?)];
            let n = xl.shape().elem_count();
            let (name, threads) = pick(kernel, x.dtype(), head_dim, &inputs, n);
            let scalars = [size(batch), size(heads), size(seq), size(head_dim)];
            let out = launch(&name, &inputs, n, &scalars, flat(threads))?;
            Ok((out, Shape::from((batch, seq, heads * head_dim))))
        }
    }

    pub struct AddLayerNorm {
        pub eps: f32,
        /// gamma_beta holds a third row, the preceding linear's bias (bias_add_layer_norm).
        pub with_bias: bool,
    }

    impl candle_core::CustomOp3 for AddLayerNorm {
        fn name(&self) -> &'static str {
            "runner-add-layer-norm"
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
            no_cpu(self.name())
        }

        fn cuda_fwd(
            &self,
            x: &CudaStorage,
            xl: &Layout,
            residual: &CudaStorage,
            rl: &Layout,
            gamma_beta: &CudaStorage,
            gl: &Layout,
        ) -> Result<(CudaStorage, Shape)> {
            let (kernel, parts) = if self.with_bias {
                ("bias_add_layer_norm", 3)
            } else {
                ("add_layer_norm", 2)
            };
            let cols = *xl.shape().dims().last().unwrap_or(&1);
            let rows = xl.shape().elem_count() / cols.max(1);
            if rl.shape() != xl.shape() || gl.shape().elem_count() != parts * cols {
                candle_core::bail!(
                    "{kernel}: input {:?}, residual {:?}, gamma_beta {:?} (want ({parts}, {cols}))",
                    xl.shape(),
                    rl.shape(),
                    gl.shape()
                );
            }
            let inputs = [
                Input::Same(x, contiguous(xl, kernel)?),
                Input::Same(residual, contiguous(rl, kernel)?),
                Input::Same(gamma_beta, contiguous(gl, kernel)?),
            ];
            let (name, _) = pick(kernel, x.dtype(), cols, &inputs, rows * cols);
            let vec = name.ends_with("_vec");
            let name = format!("{kernel}{}", super::norm_variant(x.dtype(), cols, vec));
            let scalars = [size(rows), size(cols), Scalar::F32(self.eps)];
            let out = launch(&name, &inputs, rows * cols, &scalars, warp_per_row(rows))?;
            Ok((out, xl.shape().clone()))
        }
    }

    /// Values per lane and load of the vectorized softmax.
    const SOFTMAX_VEC: usize = 4;

    pub struct MaskedSoftmax;

    impl candle_core::CustomOp2 for MaskedSoftmax {
        fn name(&self) -> &'static str {
            "runner-masked-softmax"
        }

        fn cpu_fwd(
            &self,
            _: &CpuStorage,
            _: &Layout,
            _: &CpuStorage,
            _: &Layout,
        ) -> Result<(CpuStorage, Shape)> {
            no_cpu(self.name())
        }

        fn cuda_fwd(
            &self,
            x: &CudaStorage,
            xl: &Layout,
            mask: &CudaStorage,
            ml: &Layout,
        ) -> Result<(CudaStorage, Shape)> {
            let dims = xl.shape().dims();
            let (&batch, &cols) = match (dims.first(), dims.last()) {
                (Some(b), Some(c)) if dims.len() == 4 => (b, c),
                _ => candle_core::bail!("runner-masked-softmax wants (batch, heads, q, k) scores"),
            };
            if ml.shape().elem_count() != batch * cols {
                candle_core::bail!(
                    "mask of {} values for {batch} sequences of {cols} keys",
                    ml.shape().elem_count()
                );
            }
            let rows = xl.shape().elem_count() / cols;
            let kernel = "masked_softmax";
            let inputs = [
                Input::Same(x, contiguous(xl, kernel)?),
                Input::F32(mask, contiguous(ml, kernel)?),
            ];
            // Four values per lane and load where every row and both inputs start on a multiple
            // of four (8-byte f16/bf16, 16-byte f32 loads).
            let aligned = cols.is_multiple_of(SOFTMAX_VEC)
                && inputs.iter().all(|i| match i {
                    Input::Same(_, r) | Input::F32(_, r) => r.start.is_multiple_of(SOFTMAX_VEC),
                });
            let name = if aligned {
                format!("{kernel}_vec")
            } else {
                kernel.to_string()
            };
            let scalars = [size(rows), size(cols), size(rows / batch)];
            let out = launch(&name, &inputs, rows * cols, &scalars, warp_per_row(rows))?;
            Ok((out, xl.shape().clone()))
        }
    }
}
