//! Precisions: what a cell computes in, by name (`fp16`, `q8_0-fp16`, `int8-bf16`, ...).

use serde::{Deserialize, Serialize};

/// What a cell computes in. Float precisions hold every weight and activation in one dtype;
/// quantized ones hold every linear layer's weight in a GGML block format (candle's `QMatMul`),
/// quantized in-process from the loaded weights, and everything else (embeddings, norms,
/// attention, activations) in the stated float dtype: `q8_0` is q8_0 linears with fp32 floats,
/// `q8_0-fp16` the same linears with fp16 floats. `int8-<float>` and `fp8-<float>` quantize the
/// linear layers' weights AND inputs ([`EightBit`]); the rest stays in the float dtype.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Precision {
    Fp32,
    Fp16,
    Bf16,
    Quantized(QuantFormat, FloatPrecision),
    EightBit(EightBit, FloatPrecision),
}

/// Weights and activations both in 8 bits (W8A8), the arithmetic tensor cores run natively:
/// weights with one symmetric scale per output channel, each linear layer's input quantized per
/// token with a scale computed on the fly (dynamic), products accumulated in 32 bits, then scaled
/// back (scale_token x scale_channel), bias and activation in the float dtype.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EightBit {
    /// int8 values in [-127, 127] (symmetric: no -128), round to nearest; int32 accumulation.
    Int8,
    /// FP8 E4M3 (4 exponent bits, 3 mantissa bits, largest finite 448), round to nearest even;
    /// f32 accumulation.
    Fp8E4M3,
}

impl EightBit {
    pub fn name(self) -> &'static str {
        match self {
            Self::Int8 => "int8",
            Self::Fp8E4M3 => "fp8",
        }
    }

    /// The largest magnitude a value may take: the per-channel or per-token scale maps the
    /// largest input magnitude onto it.
    pub fn max_value(self) -> f32 {
        match self {
            Self::Int8 => 127.0,
            Self::Fp8E4M3 => 448.0,
        }
    }
}

/// GGML block formats candle quantizes to and multiplies with on CPU and CUDA (on CUDA through
/// its MMVQ kernels for up to 8 rows, MMQ above; q8k through dequantize + GEMM).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QuantFormat {
    /// 8-bit weights in blocks of 32 with an f16 scale (8.5 bits per weight).
    Q8_0,
    /// 4-bit weights in blocks of 32 with an f16 scale (4.5 bits per weight).
    Q4_0,
    /// 4-bit weights in blocks of 32 with an f16 scale and minimum (5 bits per weight).
    Q4_1,
    /// 5-bit weights in blocks of 32 with an f16 scale (5.5 bits per weight).
    Q5_0,
    /// 5-bit weights in blocks of 32 with an f16 scale and minimum (6 bits per weight).
    Q5_1,
    /// 2-bit K-quant: super-blocks of 256 (2.625 bits per weight).
    Q2K,
    /// 3-bit K-quant: super-blocks of 256 (3.44 bits per weight).
    Q3K,
    /// 4-bit K-quant: super-blocks of 256 (4.5 bits per weight); inputs must be multiples of 256.
    Q4K,
    /// 5-bit K-quant: super-blocks of 256 (5.5 bits per weight).
    Q5K,
    /// 6-bit K-quant: super-blocks of 256 (6.56 bits per weight); inputs must be multiples of 256.
    Q6K,
    /// 8-bit K-quant: super-blocks of 256 with an f32 scale (9.1 bits per weight).
    Q8K,
}

impl QuantFormat {
    pub const ALL: [QuantFormat; 11] = [
        Self::Q8_0,
        Self::Q4_0,
        Self::Q4_1,
        Self::Q5_0,
        Self::Q5_1,
        Self::Q2K,
        Self::Q3K,
        Self::Q4K,
        Self::Q5K,
        Self::Q6K,
        Self::Q8K,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Q8_0 => "q8_0",
            Self::Q4_0 => "q4_0",
            Self::Q4_1 => "q4_1",
            Self::Q5_0 => "q5_0",
            Self::Q5_1 => "q5_1",
            Self::Q2K => "q2k",
            Self::Q3K => "q3k",
            Self::Q4K => "q4k",
            Self::Q5K => "q5k",
            Self::Q6K => "q6k",
            Self::Q8K => "q8k",
        }
    }

    /// Weights per block: a linear layer's input width must be a multiple of it.
    pub fn block_size(self) -> usize {
        match self {
            Self::Q8_0 | Self::Q4_0 | Self::Q4_1 | Self::Q5_0 | Self::Q5_1 => 32,
            Self::Q2K | Self::Q3K | Self::Q4K | Self::Q5K | Self::Q6K | Self::Q8K => 256,
        }
    }
}

/// The float dtype of everything a quantized precision does not quantize.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FloatPrecision {
    Fp32,
    Fp16,
    Bf16,
}

impl FloatPrecision {
    pub fn precision(self) -> Precision {
        match self {
            Self::Fp32 => Precision::Fp32,
            Self::Fp16 => Precision::Fp16,
            Self::Bf16 => Precision::Bf16,
        }
    }
}

/// Every precision with its name, in the order error messages list them: the floats, each GGML
/// format with fp32, fp16 and bf16 floats, then the 8-bit W8A8 precisions.
const PRECISIONS: [(&str, Precision); 42] = {
    use FloatPrecision as F;
    use Precision::Quantized as Q;
    use QuantFormat as QF;
    [
        ("fp32", Precision::Fp32),
        ("fp16", Precision::Fp16),
        ("bf16", Precision::Bf16),
        ("q8_0", Q(QF::Q8_0, F::Fp32)),
        ("q8_0-fp16", Q(QF::Q8_0, F::Fp16)),
        ("q8_0-bf16", Q(QF::Q8_0, F::Bf16)),
        ("q4_0", Q(QF::Q4_0, F::Fp32)),
        ("q4_0-fp16", Q(QF::Q4_0, F::Fp16)),
        ("q4_0-bf16", Q(QF::Q4_0, F::Bf16)),
        ("q4_1", Q(QF::Q4_1, F::Fp32)),
        ("q4_1-fp16", Q(QF::Q4_1, F::Fp16)),
        ("q4_1-bf16", Q(QF::Q4_1, F::Bf16)),
        ("q5_0", Q(QF::Q5_0, F::Fp32)),
        ("q5_0-fp16", Q(QF::Q5_0, F::Fp16)),
        ("q5_0-bf16", Q(QF::Q5_0, F::Bf16)),
        ("q5_1", Q(QF::Q5_1, F::Fp32)),
        ("q5_1-fp16", Q(QF::Q5_1, F::Fp16)),
        ("q5_1-bf16", Q(QF::Q5_1, F::Bf16)),
        ("q2k", Q(QF::Q2K, F::Fp32)),
        ("q2k-fp16", Q(QF::Q2K, F::Fp16)),
        ("q2k-bf16", Q(QF::Q2K, F::Bf16)),
        ("q3k", Q(QF::Q3K, F::Fp32)),
        ("q3k-fp16", Q(QF::Q3K, F::Fp16)),
        ("q3k-bf16", Q(QF::Q3K, F::Bf16)),
        ("q4k", Q(QF::Q4K, F::Fp32)),
        ("q4k-fp16", Q(QF::Q4K, F::Fp16)),
        ("q4k-bf16", Q(QF::Q4K, F::Bf16)),
        ("q5k", Q(QF::Q5K, F::Fp32)),
        ("q5k-fp16", Q(QF::Q5K, F::Fp16)),
        ("q5k-bf16", Q(QF::Q5K, F::Bf16)),
        ("q6k", Q(QF::Q6K, F::Fp32)),
        ("q6k-fp16", Q(QF::Q6K, F::Fp16)),
        ("q6k-bf16", Q(QF::Q6K, F::Bf16)),
        ("q8k", Q(QF::Q8K, F::Fp32)),
        ("q8k-fp16", Q(QF::Q8K, F::Fp16)),
        ("q8k-bf16", Q(QF::Q8K, F::Bf16)),
        ("int8-fp32", Precision::EightBit(EightBit::Int8, F::Fp32)),
        ("int8-fp16", Precision::EightBit(EightBit::Int8, F::Fp16)),
        ("int8-bf16", Precision::EightBit(EightBit::Int8, F::Bf16)),
        ("fp8-fp32", Precision::EightBit(EightBit::Fp8E4M3, F::Fp32)),
        ("fp8-fp16", Precision::EightBit(EightBit::Fp8E4M3, F::Fp16)),
        ("fp8-bf16", Precision::EightBit(EightBit::Fp8E4M3, F::Bf16)),
    ]
};

const PRECISION_NAMES: [&str; PRECISIONS.len()] = {
    let mut names = [""; PRECISIONS.len()];
    let mut i = 0;
    while i < PRECISIONS.len() {
        names[i] = PRECISIONS[i].0;
        i += 1;
    }
    names
};

impl Precision {
    pub const FLOATS: [Precision; 3] = [Precision::Fp32, Precision::Fp16, Precision::Bf16];

    pub fn name(self) -> &'static str {
        PRECISIONS
            .iter()
            .find(|(_, p)| *p == self)
            .map(|(n, _)| *n)
            .expect("every precision is in the table")
    }

    pub fn parse(name: &str) -> Option<Precision> {
        PRECISIONS.iter().find(|(n, _)| *n == name).map(|(_, p)| *p)
    }

    /// The dtype of everything that is not a quantized linear weight.
    pub fn float(self) -> FloatPrecision {
        match self {
            Precision::Fp32 => FloatPrecision::Fp32,
            Precision::Fp16 => FloatPrecision::Fp16,
            Precision::Bf16 => FloatPrecision::Bf16,
            Precision::Quantized(_, f) | Precision::EightBit(_, f) => f,
        }
    }

    /// The 8-bit weight-and-activation format, for `int8-*` and `fp8-*`.
    pub fn eight_bit(self) -> Option<EightBit> {
        match self {
            Precision::EightBit(e, _) => Some(e),
            _ => None,
        }
    }

    /// For a quantized precision (GGML or 8-bit), the float precision it replaces.
    pub fn float_path(self) -> Option<Precision> {
        match self {
            Precision::Quantized(_, f) | Precision::EightBit(_, f) => Some(f.precision()),
            _ => None,
        }
    }

    pub fn quant(self) -> Option<QuantFormat> {
        match self {
            Precision::Quantized(q, _) => Some(q),
            _ => None,
        }
    }
}

impl Serialize for Precision {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Precision {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Precision::parse(&name)
            .ok_or_else(|| serde::de::Error::unknown_variant(&name, &PRECISION_NAMES))
    }
}
