//! The W8A8 tensor-core kernels (`int8-*`, `fp8-*`): cuBLASLt GEMMs with int32 or f32
//! accumulation, the quantizing GELU and layer-norm kernels, and the packed 8-bit buffer they hand
//! each other. Numerics live in `model::quant::w8a8` (the f32 reference these kernels are checked
//! against); the layer that picks a kernel is `model::parts::w8a8::EightBitLinear`.

pub mod cutlass_linear;
pub mod fp8_gemm;
pub mod int8_gemm;
pub mod norm_quantize;

use candle_core::Tensor;

use crate::config::EightBit;

/// The widest row the fused GELU + quantization kernels take (256 threads x 16 values in
/// registers); wider FFNs run the two passes.
pub const FUSED_ROW_MAX: usize = 4096;

/// An 8-bit layer's input already quantized, as the kernel that produced it wrote it (the FFN's
/// GELU, src/ops/kernels/eight_bit.cu): per row, the int8 or E4M3 bytes of `rows x cols` values,
/// then, from byte [`Packed8::scales_at`] on, one f32 scale per row. One U8 buffer, because a
/// candle op has one output.
#[derive(Clone)]
pub struct Packed8 {
    bytes: Tensor,
    rows: usize,
    cols: usize,
    format: EightBit,
}

impl Packed8 {
    /// `bytes` as [`Packed8::len`] lays them out, for `rows x cols` values in `format`.
    pub fn new(bytes: Tensor, rows: usize, cols: usize, format: EightBit) -> Self {
        Self {
            bytes,
            rows,
            cols,
            format,
        }
    }

    /// Where the scales start: after the values, at a 16-byte boundary.
    pub fn scales_at(rows: usize, cols: usize) -> usize {
        (rows * cols).next_multiple_of(16)
    }

    /// Bytes of the whole buffer.
    pub fn len(rows: usize, cols: usize) -> usize {
        Self::scales_at(rows, cols) + 4 * rows
    }

    /// The one U8 buffer: values, then scales.
    pub fn bytes(&self) -> &Tensor {
        &self.bytes
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    pub fn format(&self) -> EightBit {
        self.format
    }
}
