//! What ran, for the record: the executed precision and the implementation of each part of the
//! forward pass, read back from the loaded model (numbers from different kernels must not be
//! compared as if they were one thing).

use std::collections::BTreeMap;

use candle_core::DType;

use super::linear::MMQ_ROW_PADDING;
use super::Encoder;
use crate::model::quant::ggml::ggml_name;

impl Encoder {
    /// The linear layer whose implementation the record describes: the first quantized one
    /// (a `quantize` selection may leave the first block in the float path), else the first.
    fn representative(&self) -> Option<&super::Linear> {
        let quantized = |l: &&super::Linear| l.quant_format().is_some() || l.eight_bit().is_some();
        self.linears()
            .find(quantized)
            .or_else(|| self.linears().next())
    }

    /// The executed precision, and for a `quantize` selection which part of the linear layers it
    /// covers (the rest ran in the float path).
    pub fn executed_precision(&self) -> String {
        let all = self.linear_sites().len();
        let some = self.quantized.len();
        let base = self.executed_numerics();
        if some == 0 || some == all {
            return base;
        }
        format!(
            "{base}; quantized: {some} of {all} linear sites ({}), the others in the float path",
            self.quantized_sites().join(", ")
        )
    }

    fn executed_numerics(&self) -> String {
        let linear = self.representative();
        let float = linear.map(|l| l.float_dtype()).unwrap_or(DType::F32);
        let float = crate::model::dtype_name(float);
        let padded = self.linears().any(|l| l.padded());
        if let Some(e) = linear.and_then(|l| l.eight_bit()) {
            let cutlass =
                matches!(linear, Some(super::Linear::EightBit(l)) if l.cutlass(false).is_ok());
            if cutlass {
                let acc = match e {
                    crate::config::EightBit::Int8 => "int32",
                    crate::config::EightBit::Fp8E4M3 if self.fp8_fast_accumulation() => {
                        "fast (partial sums kept in the tensor cores' accumulator, not promoted to f32)"
                    }
                    crate::config::EightBit::Fp8E4M3 => "f32 (promoted along K)",
                };
                return format!(
                    "{} W8A8 linears (tensor cores: CUTLASS {} GEMM, {acc} accumulation, scales and bias in its epilogue; per-channel weights, per-token dynamic inputs) + {float}",
                    e.name(),
                    e.name()
                );
            }
            if linear.is_some_and(|l| l.on_tensor_cores()) {
                let gemm = match e {
                    crate::config::EightBit::Int8 => "cuBLASLt int8 GEMM, int32 accumulation",
                    crate::config::EightBit::Fp8E4M3 if self.fp8_fast_accumulation() => {
                        "cuBLASLt E4M3 GEMM, fast accumulation (partial sums not promoted to f32), scales and bias in its epilogue"
                    }
                    crate::config::EightBit::Fp8E4M3 => {
                        "cuBLASLt E4M3 GEMM, f32 accumulation, scales and bias in its epilogue"
                    }
                };
                return format!(
                    "{} W8A8 linears (tensor cores: {gemm}; per-channel weights, per-token dynamic inputs) + {float}",
                    e.name()
                );
            }
            return format!(
                "{} W8A8 linears (numerics reference: f32 arithmetic on {} values, per-channel weights, per-token dynamic inputs) + {float}",
                e.name(),
                e.name()
            );
        }
        match linear.and_then(|l| l.quant_format()) {
            Some(q) if padded => format!(
                "{} linears (QMatMul, inputs narrower than {MMQ_ROW_PADDING} zero-padded to it) + {float}",
                ggml_name(q)
            ),
            Some(q) => format!("{} linears (QMatMul) + {float}", ggml_name(q)),
            None => float.to_string(),
        }
    }

    /// Which implementation ran each part of the forward pass, for the record: numbers from
    /// different kernels must not be compared as if they were one thing.
    pub fn implementation(&self) -> BTreeMap<String, String> {
        let cuda = self.device.is_cuda();
        let dtype = self
            .representative()
            .map(|l| crate::model::dtype_name(l.float_dtype()))
            .unwrap_or("fp32");
        let matmul = if cuda { "cuBLAS" } else { "gemm crate" };
        let fused = self.blocks.iter().all(|b| b.qkv.is_some());
        let kernels = crate::ops::fused::fused_on(&self.device);
        let tensor_cores = self.representative().is_some_and(|l| l.on_tensor_cores());
        let eight_bit = self.representative().and_then(|l| l.eight_bit());
        // The GEMM that projects Q, K and V: float, or the W8A8 path of the linears.
        let qkv_gemm = match eight_bit {
            Some(crate::config::EightBit::Int8) if tensor_cores => {
                "int8 x int8 -> int32 through cuBLASLt".to_string()
            }
            Some(crate::config::EightBit::Fp8E4M3) if tensor_cores => {
                "E4M3 x E4M3 -> f32 through cuBLASLt".to_string()
            }
            Some(e) => format!("{} numerics reference", e.name()),
            None => matmul.to_string(),
        };
        let projections = match (fused, kernels) {
            (true, true) => format!(
                "Q, K, V in one GEMM ({qkv_gemm}, query pre-scaled), bias add + head split in one runner kernel"
            ),
            (true, false) => format!("Q, K, V in one GEMM ({qkv_gemm}, query pre-scaled)"),
            (false, _) => "Q, K, V as three linears".to_string(),
        };
        let merge = if kernels {
            "; head merge in a runner kernel"
        } else {
            ""
        };
        let softmax = if kernels {
            format!("mask add + softmax in one runner kernel (f32 arithmetic, {dtype} in and out)")
        } else {
            "mask add + softmax in f32 (candle CPU)".to_string()
        };
        let linear = match self.representative().and_then(|l| l.quant_format()) {
            _ if tensor_cores && eight_bit == Some(crate::config::EightBit::Fp8E4M3) => {
                let accumulation = if self.fp8_fast_accumulation() {
                    "f32 compute with fast accumulation on (device.fp8_fast_accumulation: partial sums kept in the tensor cores' accumulator, not promoted to f32 along K)"
                } else {
                    "f32 accumulation, fast accumulation off"
                };
                format!("W8A8 FP8 (E4M3) on tensor cores: each input quantized per token to E4M3 by a runner kernel (dynamic scale, round to nearest even), E4M3 x E4M3 GEMM through cuBLASLt (CUBLAS_COMPUTE_32F, {accumulation}) applying the per-token and per-channel scales (OUTER_VEC_32F) and the bias in its epilogue (CUBLASLT_EPILOGUE_BIAS), output in the float dtype; FFN-in's bias + erf GELU in the runner's kernel after it; weights per output channel, symmetric")
            }
            _ if tensor_cores => {
                "W8A8 int8 on tensor cores: each input quantized per token by a runner kernel (dynamic scale), int8 x int8 -> int32 GEMM through cuBLASLt (CUBLAS_COMPUTE_32I), scaled back by token x channel scale with bias (+ erf GELU) in a runner kernel; weights per output channel, symmetric".to_string()
            }
            _ if eight_bit.is_some() => {
                let e = eight_bit.expect("checked");
                format!(
                    "W8A8 {} numerics reference ({matmul} in f32 on the {} values): weights per output channel, inputs per token (dynamic), symmetric; products accumulated in f32, scaled back by token x channel scale, bias (+ erf GELU) in f32. Not a tensor-core kernel: not a speed figure",
                    e.name(),
                    e.name()
                )
            }
            Some(q) if kernels => format!(
                "GGML {} QMatMul (MMQ int8 tensor-core kernels), then the runner's fused bias(+GELU) kernel",
                ggml_name(q)
            ),
            Some(q) => format!("GGML {} QMatMul + bias add", ggml_name(q)),
            None if kernels => {
                format!("candle matmul ({matmul}), then the runner's fused bias(+GELU) kernel")
            }
            None => format!("candle matmul ({matmul}) + bias add"),
        };
        let fused_ffns = self.ffns_quantized_in_gelu();
        // The runner's kernels evaluate Phi through erfc (src/ops/kernels/common.cuh).
        let how = "runner kernel, f32; Phi through erfc, fractional error < 1.2e-7";
        let activation = if tensor_cores && fused_ffns > 0 {
            if eight_bit == Some(crate::config::EightBit::Fp8E4M3) {
                format!("erf GELU fused with the FFN's bias add after the FP8 GEMM, and FFN-out's input quantized to E4M3 by the same kernel ({how})")
            } else {
                format!("erf GELU in the int8 GEMM's dequantization kernel, which also quantizes FFN-out's input to int8 ({how})")
            }
        } else if tensor_cores && eight_bit == Some(crate::config::EightBit::Fp8E4M3) {
            format!("erf GELU fused with the FFN's bias add after the FP8 GEMM ({how})")
        } else if tensor_cores {
            format!("erf GELU in the int8 GEMM's dequantization kernel ({how})")
        } else if eight_bit.is_some() {
            "erf GELU in f32 after the W8A8 reference product (candle)".to_string()
        } else if kernels {
            format!("erf GELU fused with the FFN's bias add ({how})")
        } else {
            "erf GELU (candle kernel)".to_string()
        };
        let float = self.representative().map(|l| l.float_dtype());
        let one_kernel = fused
            && self.blocks.first().is_some_and(|b| {
                float.is_some_and(|d| {
                    crate::ops::attention::one_kernel_on(&self.device, d, b.head_dim)
                })
            });
        let attention = if one_kernel {
            format!(
                "Q, K, V in one GEMM ({qkv_gemm}, query pre-scaled); then one runner kernel reading its output in place (Q's bias added on load, V's to the context, K's left out: a per-row constant the softmax cancels): QK^T, mask, online softmax (f32) and PV on tensor cores (mma.sync m16n8k16, f32 accumulate, scores and softmax in registers; K and V staged by cp.async, read by ldmatrix) per 64-query tile, context written merged; no score tensor in memory{}",
                crate::ops::attention::padding_description(crate::ops::attention::padding())
            )
        } else {
            let asked = if crate::ops::attention::padding().is_compute() {
                ""
            } else {
                " (device.attention_padding = \"skip\" asked: it is a mode of the one kernel, which does not run here; the padding's keys computed)"
            };
            format!("{projections}; QK^T and PV as batched GEMMs ({matmul}); {softmax}{merge}; no fused attention kernel{asked}")
        };
        let blocks = self.blocks.len();
        let activation_quantization = tensor_cores.then(|| {
            let fmt = eight_bit.map(|e| e.name()).unwrap_or("8-bit");
            let norms = self.norms_quantizing();
            if fused_ffns > 0 || norms > 0 {
                let in_norms = if norms > 0 {
                    format!("; FFN-in's and the next block's Q/K/V inputs quantized inside the residual + layer norm kernel that writes them ({norms} of {} norms); the first block's Q/K/V input (the embeddings'), attention-out's input and any other in a quantization pass of its own (runner kernel)", 2 * blocks)
                } else {
                    format!("; every other {fmt} GEMM's input in a quantization pass of its own (runner kernel)")
                };
                format!("per token, dynamic: FFN-out's input quantized to {fmt} inside FFN-in's GELU kernel ({fused_ffns} of {blocks} FFNs: fused, never stored in {dtype}){in_norms}")
            } else {
                format!("per token, dynamic: every {fmt} GEMM's input quantized in a pass of its own (runner kernel){}", if self.blocks.iter().any(|b| !b.gelu_quantizes) { "; device.fuse_quantization = false" } else { "" })
            }
        });
        let pairs = match (float, self.blocks.first()) {
            (Some(d), Some(b)) => crate::ops::fused::pair_norms_note(d, b.n_heads * b.head_dim),
            _ => "",
        };
        let mut implementation = [
            ("attention", attention),
            ("linear", linear),
            (
                "layer_norm",
                match (kernels, self.norms_adding_linear_bias()) {
                    (true, 0) => {
                        format!("residual add + layer norm in one runner kernel (f32 arithmetic){pairs}")
                    }
                    (true, n) => format!(
                        "residual add + layer norm in one runner kernel (f32 arithmetic){pairs}; {n} of {} norms also add the bias of the float linear before them (attention output, FFN-out), whose GEMMs run without it",
                        2 * self.blocks.len()
                    ),
                    (false, _) => "candle-nn fused layer_norm kernel".to_string(),
                },
            ),
            ("activation", activation.to_string()),
            ("embeddings", self.embeddings.describe()),
        ]
        .into_iter()
        // src/device.rs opens every CUDA device so.
        .chain(cuda.then(|| {
            (
                "allocator",
                "CUDA stream-ordered pool, freed memory kept between batches; one stream, no per-tensor event tracking".to_string(),
            )
        }))
        .chain(cuda.then(|| ("gemm_precision", gemm_precision(float))))
        .chain(activation_quantization.map(|a| ("activation_quantization", a)))
        .map(|(k, v)| (k.to_string(), v))
        .collect::<BTreeMap<_, _>>();
        self.record_gemms(&mut implementation);
        self.amend_for_static_steps(&mut implementation);
        self.amend_for_static_attention(&mut implementation);
        implementation
    }
}

/// What cuBLAS accumulates the float GEMMs in (candle's reduced-precision switches, all off unless
/// set): fp32 GEMMs are true fp32 unless TF32 is on, and the record says which.
fn gemm_precision(float: Option<DType>) -> String {
    #[cfg(feature = "cuda")]
    {
        use candle_core::cuda_backend as cb;
        let (reduced, what) = match float {
            Some(DType::F16) => (cb::gemm_reduced_precision_f16(), "f16 accumulation"),
            Some(DType::BF16) => (cb::gemm_reduced_precision_bf16(), "bf16-rounded reductions"),
            _ => (cb::gemm_reduced_precision_f32(), "TF32 tensor cores"),
        };
        if reduced {
            format!("reduced: {what}")
        } else {
            "f32 accumulation (CUBLAS_COMPUTE_32F; fp32 GEMMs without TF32)".to_string()
        }
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = float;
        "f32 accumulation".to_string()
    }
}
