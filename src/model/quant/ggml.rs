//! GGML block formats: their names as records give them, and the config's names for them.

use candle_core::quantized::GgmlDType;

use crate::config::QuantFormat;

pub fn ggml_name(q: GgmlDType) -> &'static str {
    match q {
        GgmlDType::Q8_0 => "q8_0",
        GgmlDType::Q4_0 => "q4_0",
        GgmlDType::Q4K => "q4k",
        GgmlDType::Q6K => "q6k",
        GgmlDType::Q4_1 => "q4_1",
        GgmlDType::Q5_0 => "q5_0",
        GgmlDType::Q5_1 => "q5_1",
        GgmlDType::Q8_1 => "q8_1",
        GgmlDType::Q2K => "q2k",
        GgmlDType::Q3K => "q3k",
        GgmlDType::Q5K => "q5k",
        GgmlDType::Q8K => "q8k",
        GgmlDType::F16 => "f16",
        GgmlDType::BF16 => "bf16",
        GgmlDType::F32 => "f32",
    }
}

/// The config's format of a GGML type; `None` for the float types and q8_1 (an activation
/// format no weight is stored in).
pub fn format_of(q: GgmlDType) -> Option<QuantFormat> {
    QuantFormat::ALL
        .into_iter()
        .find(|f| f.name() == ggml_name(q))
}
