//! The one-kernel attention (src/ops/attention.rs) writing attention-out's 8-bit input itself:
//! the context quantized per token (int8 or E4M3, row scale max |value| / 127 or / 448) in
//! [`Packed8`]'s layout, the bytes the plain path (attention writing f16/bf16, then the 8-bit
//! GEMM's quantization pass reading it back) gives. A token's row spans all heads, and one block
//! computes one head: the blocks of a query tile's 12 heads run as one thread-block cluster and
//! share their rows' maxima through distributed shared memory (src/ops/kernels/fused.cu,
//! `store_packed`). Per call at batch 64 x 128 tokens x 768: 25 MB less memory traffic (the
//! context's 12.6 MB written in f16 and read again, less the 6.3 MB of codes the pass wrote
//! anyway) and one kernel launch fewer.
//!
//! Not used by the encoder: on an H100 (ncu, 2026-12-06) the clustered kernel took 61.5 us a
//! block at batch 64 against 44.3 for the plain attention + 8.2 for the pass it removes (19.8
//! against 13.4 + 4.4 at batch 16): gang-scheduling 12 blocks per cluster and the cluster
//! barrier cost more than the 25 MB saved (docs/results/2026-12-06-nvidia-h100-cutlass/). Kept,
//! with its check in examples/cutlass_check.rs, for the next attempt at this fusion.

use candle_core::{DType, Device, Result, Tensor};

use super::attention::one_kernel_on;
use super::eight_bit::Packed8;
use crate::config::EightBit;

/// Heads the kernel's cluster spans (its `__cluster_dims__`): DistilBERT's, BERT-base's and
/// MiniLM's 12.
pub const PACKED_HEADS: usize = 12;

/// Whether [`attention_packed`] runs here for this dtype, head count and width, or why not (the
/// record says it). On CUDA the first call per kernel also asks the driver whether clusters of 12
/// blocks fit this GPU (a cluster above 8 blocks is "non-portable": allowed on Hopper, opted into
/// per kernel), so a GPU without them keeps the quantization pass instead of failing a cell.
pub fn packed_on(
    device: &Device,
    dtype: DType,
    heads: usize,
    head_dim: usize,
    format: EightBit,
) -> std::result::Result<(), String> {
    if !one_kernel_on(device, dtype, head_dim) {
        return Err(format!(
            "no one-kernel attention for {dtype:?} heads of {head_dim} on this device"
        ));
    }
    if heads != PACKED_HEADS {
        return Err(format!(
            "{heads} heads: the packed kernel's cluster spans {PACKED_HEADS}"
        ));
    }
    #[cfg(feature = "cuda")]
    {
        cuda::clusters_fit(device, &cuda::kernel_name(dtype, head_dim, format)?)
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = format;
        Err("a CUDA build's kernel".into())
    }
}

/// softmax(Q K^T + mask) V, as [`super::attention::attention`] computes it from the fused Q/K/V
/// projection's output `x` before its `bias`, quantized per row for the next 8-bit GEMM: `rows`
/// = batch * seq rows of heads * head_dim. Fails where [`packed_on`] says no.
pub fn attention_packed(
    x: &Tensor,
    bias: &Tensor,
    additive_mask: &Tensor,
    seq: usize,
    heads: usize,
    format: EightBit,
) -> Result<Packed8> {
    let (rows, cols) = x.dims2()?;
    let head_dim = cols / 3 / heads.max(1);
    if let Err(why) = packed_on(x.device(), x.dtype(), heads, head_dim, format) {
        candle_core::bail!("packed attention: {why}");
    }
    if seq == 0 || rows % seq != 0 || rows / seq > 65_535 {
        candle_core::bail!("packed attention: {rows} rows are not a batch of sequences of {seq}");
    }
    #[cfg(feature = "cuda")]
    {
        let op = cuda::AttentionPacked {
            seq,
            heads,
            head_dim,
            format,
        };
        let bytes = x.contiguous()?.apply_op3_no_bwd(
            &bias.contiguous()?,
            &additive_mask.to_dtype(DType::F32)?.contiguous()?,
            &op,
        )?;
        Ok(Packed8::new(bytes, rows, heads * head_dim, format))
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = (bias, additive_mask);
        unreachable!("packed_on is false without CUDA")
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use candle_core::backend::BackendStorage;
    use candle_core::cuda_backend::cudarc::driver::sys::CUfunction_attribute_enum;
    use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
    use candle_core::cuda_backend::{CudaStorageSlice, WrapErr};
    use candle_core::{CpuStorage, CudaStorage, DType, Device, Layout, Result, Shape};

    use super::PACKED_HEADS;
    use crate::config::EightBit;
    use crate::ops::eight_bit::Packed8;
    use crate::ops::fused::cuda::{contiguous, no_cpu, PTX};

    /// Query rows per block, as the kernel's `attn::ROWS`.
    const ROWS: usize = 64;
    const MODULE: &str = "runner_fused";

    pub(super) fn kernel_name(
        dtype: DType,
        head_dim: usize,
        format: EightBit,
    ) -> std::result::Result<String, String> {
        let t = match dtype {
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            other => return Err(format!("no packed attention for {other:?}")),
        };
        let f = match format {
            EightBit::Int8 => "i8",
            EightBit::Fp8E4M3 => "e4m3",
        };
        Ok(format!(
            "attention_packed_h{PACKED_HEADS}_d{head_dim}_{f}_{t}"
        ))
    }

    /// Per (device ordinal, kernel name): whether clusters of 12 blocks were allowed and fit
    /// (else why not).
    type ClusterAnswers = HashMap<(usize, String), std::result::Result<(), String>>;

    /// Each device's and kernel's answer, asked once.
    static CLUSTERS: Mutex<Option<ClusterAnswers>> = Mutex::new(None);

    pub(super) fn clusters_fit(device: &Device, kernel: &str) -> std::result::Result<(), String> {
        let Device::Cuda(dev) = device else {
            return Err("not a CUDA device".into());
        };
        let ordinal = match device.location() {
            candle_core::DeviceLocation::Cuda { gpu_id } => gpu_id,
            _ => 0,
        };
        let mut cache = CLUSTERS.lock().map_err(|_| "poisoned".to_string())?;
        let cache = cache.get_or_insert_with(HashMap::new);
        let key = (ordinal, kernel.to_string());
        if let Some(known) = cache.get(&key) {
            return known.clone();
        }
        let asked = (|| -> std::result::Result<(), String> {
            let func = dev
                .get_or_load_custom_func(kernel, MODULE, PTX)
                .map_err(|e| format!("loading {kernel}: {e}"))?;
            func.set_attribute(
                CUfunction_attribute_enum::CU_FUNC_ATTRIBUTE_NON_PORTABLE_CLUSTER_SIZE_ALLOWED,
                1,
            )
            .map_err(|e| format!("{kernel}: clusters of {PACKED_HEADS} blocks not allowed: {e}"))?;
            let cfg = LaunchConfig {
                grid_dim: (2, PACKED_HEADS as u32, 1),
                block_dim: (128, 1, 1),
                shared_mem_bytes: 0,
            };
            match func.occupancy_max_active_clusters(cfg, &dev.cuda_stream()) {
                Ok(0) => Err(format!(
                    "{kernel}: no cluster of {PACKED_HEADS} blocks fits this GPU"
                )),
                Ok(_) => Ok(()),
                Err(e) => Err(format!("{kernel}: cluster occupancy query failed: {e}")),
            }
        })();
        cache.insert(key, asked.clone());
        asked
    }

    pub(super) struct AttentionPacked {
        pub(super) seq: usize,
        pub(super) heads: usize,
        pub(super) head_dim: usize,
        pub(super) format: EightBit,
    }

    impl candle_core::CustomOp3 for AttentionPacked {
        fn name(&self) -> &'static str {
            "runner-attention-packed"
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
            x: &candle_core::CudaStorage,
            xl: &Layout,
            bias: &CudaStorage,
            bl: &Layout,
            mask: &CudaStorage,
            ml: &Layout,
        ) -> Result<(CudaStorage, Shape)> {
            let (seq, heads, head_dim) = (self.seq, self.heads, self.head_dim);
            let kernel =
                kernel_name(x.dtype(), head_dim, self.format).map_err(candle_core::Error::msg)?;
            let width = heads * head_dim;
            let rows = xl.shape().elem_count() / (3 * width).max(1);
            let batch = rows / seq.max(1);
            let (xr, br, mr) = (
                contiguous(xl, &kernel)?,
                contiguous(bl, &kernel)?,
                contiguous(ml, &kernel)?,
            );
            if xl.shape().elem_count() != rows * 3 * width
                || bl.shape().elem_count() != 3 * width
                || ml.shape().elem_count() != batch * seq
                || batch * seq != rows
                || heads != PACKED_HEADS
                || bias.dtype() != x.dtype()
                || mask.dtype() != DType::F32
                || !xr.start.is_multiple_of(8)
                || !br.start.is_multiple_of(8)
            {
                candle_core::bail!(
                    "{kernel}: qkv {:?}, bias {:?}, mask {:?} for seq {seq}, {heads} heads of {head_dim} (16-byte aligned starts)",
                    xl.shape(),
                    bl.shape(),
                    ml.shape()
                );
            }
            let dev = x.device().clone();
            let func = dev.get_or_load_custom_func(&kernel, MODULE, PTX)?;
            let mut packed = unsafe { dev.alloc::<u8>(Packed8::len(rows, width))? };
            let cfg = LaunchConfig {
                grid_dim: (seq.div_ceil(ROWS) as u32, heads as u32, batch as u32),
                block_dim: (128, 1, 1),
                shared_mem_bytes: 0,
            };
            let (s32, h32) = (seq as u32, heads as u32);
            {
                let (mut q, mut rest) = packed.split_at_mut(Packed8::scales_at(rows, width));
                // SAFETY: `rows` f32 scales fit after the values, from a 16-byte boundary on.
                let mut scales = unsafe { rest.transmute_mut::<f32>(rows) }
                    .ok_or_else(|| candle_core::Error::msg("packed output: no room"))?;
                let ms = mask.as_cuda_slice::<f32>()?.slice(mr);
                macro_rules! launch {
                    ($t:ty) => {{
                        let xs = x.as_cuda_slice::<$t>()?.slice(xr);
                        let bs = bias.as_cuda_slice::<$t>()?.slice(br);
                        let mut b = func.builder();
                        b.arg(&xs)
                            .arg(&bs)
                            .arg(&ms)
                            .arg(&mut q)
                            .arg(&mut scales)
                            .arg(&s32)
                            .arg(&h32);
                        // SAFETY: the arguments match the kernel's signature; every row's codes
                        // and scale are written (rows past a sequence do not exist: rows = b * seq).
                        unsafe { b.launch(cfg) }.w()?;
                    }};
                }
                match x.dtype() {
                    DType::F16 => launch!(half::f16),
                    _ => launch!(half::bf16),
                }
            }
            let len = packed.len();
            Ok((
                CudaStorage {
                    slice: CudaStorageSlice::U8(packed),
                    device: dev,
                },
                Shape::from(len),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_cuda_there_is_no_packed_attention_and_a_call_says_why() {
        let why = packed_on(&Device::Cpu, DType::F16, 12, 64, EightBit::Int8).unwrap_err();
        assert!(why.contains("no one-kernel attention"), "{why}");
        let x = Tensor::zeros((128, 3 * 768), DType::F16, &Device::Cpu).unwrap();
        let bias = Tensor::zeros(3 * 768, DType::F16, &Device::Cpu).unwrap();
        let mask = Tensor::zeros((1, 1, 1, 128), DType::F32, &Device::Cpu).unwrap();
        let err = attention_packed(&x, &bias, &mask, 128, 12, EightBit::Int8)
            .err()
            .expect("no kernel on the CPU")
            .to_string();
        assert!(err.starts_with("packed attention: "), "{err}");
    }
}
